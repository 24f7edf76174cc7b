//! The checkpoint of a copy: which source streams are finished, so that a re-run skips them.
//!
//! It is a small JSON file, replaced atomically (written beside, then renamed) about once a
//! second while the copy runs and once at the end. Streams not recorded as finished are
//! reconciled with the target on the next run (see `copy`), so events written after the last
//! save are not written twice either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the checkpoint format.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// Finished streams of one copy from one group to another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`].
    pub format: u32,
    /// The source group.
    pub from_group: String,
    /// The target group.
    pub to_group: String,
    /// Source stream → what was done with it.
    pub streams: BTreeMap<String, Finished>,
}

/// A finished stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// The target stream.
    pub target: String,
    /// Events written to it.
    pub events: u64,
    /// The archive (its id) that holds this stream's old events, if any were archived. Its
    /// manifest must exist for the stream to count as finished.
    pub archived_in: Option<String>,
}

impl Checkpoint {
    /// The checkpoint at `path` for a copy from `from` to `to`; an empty one when the file does
    /// not exist.
    ///
    /// # Errors
    /// [`Error::Logs`] when the file cannot be read, is not a checkpoint, or belongs to another
    /// pair of groups.
    pub fn load(path: &Path, from: &str, to: &str) -> Result<Checkpoint> {
        let empty = Checkpoint {
            format: CHECKPOINT_FORMAT,
            from_group: from.to_owned(),
            to_group: to.to_owned(),
            streams: BTreeMap::new(),
        };
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
            Err(source) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let checkpoint: Checkpoint = serde_json::from_slice(&text).map_err(|e| Error::Logs {
            target: path.display().to_string(),
            message: format!(
                "not a contrail logs checkpoint ({e}); remove it or pick another path"
            ),
        })?;
        if checkpoint.from_group != from || checkpoint.to_group != to {
            return Err(Error::Logs {
                target: path.display().to_string(),
                message: format!(
                    "this checkpoint is of a copy from {} to {}, not from {from} to {to}; use \
                     another --checkpoint path",
                    checkpoint.from_group, checkpoint.to_group
                ),
            });
        }
        Ok(checkpoint)
    }

    /// Writes the checkpoint to `path` atomically.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::Logs {
            target: path.display().to_string(),
            message: format!("cannot encode the checkpoint: {e}"),
        })?;
        let temporary = temporary_path(path);
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::write(&temporary, body).map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_other_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.json");
        let mut checkpoint = Checkpoint::load(&path, "a", "b").unwrap();
        assert!(checkpoint.streams.is_empty());
        checkpoint.streams.insert(
            "s1".into(),
            Finished {
                target: "t1".into(),
                events: 3,
                archived_in: None,
            },
        );
        checkpoint.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path, "a", "b").unwrap(), checkpoint);
        let error = Checkpoint::load(&path, "a", "c").unwrap_err().to_string();
        assert!(error.contains("from a to b"), "{error}");
        std::fs::write(&path, "{").unwrap();
        assert!(Checkpoint::load(&path, "a", "b").is_err());
    }
}
