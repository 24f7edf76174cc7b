//! The export's spill directory, which holds every table's spilled runs, and the removal of
//! those that killed exports left behind.
//!
//! Each table's runs live in a temporary directory ([`crate::dataset::spill::Spill`]) that is
//! removed when the table is done or the export fails. A process killed with SIGKILL removes
//! nothing, so an export puts its tables' directories inside one `contrail-spill-XXXXXX`
//! directory, which holds an exclusively locked `.lock` file for as long as the export runs.
//! The kernel releases the lock when the process ends, however it ends: a directory whose lock
//! can be taken belongs to no live export, and the next export spilling to the same place
//! removes it. A directory is created under a hidden name and renamed once locked; one still
//! under that name an hour later was left by an export killed in between, and is removed too.
//!
//! This module owns the export-level directory and its lock only; what goes inside is the
//! caller's.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The name of an export's spill directory: this, then a random suffix.
const PREFIX: &str = "contrail-spill-";

/// The name of a spill directory while it is being created, before its lock is held. Sweeps
/// leave these alone unless they are older than [`ABANDONED_NEW_AFTER`].
const NEW_PREFIX: &str = ".contrail-new-";

/// A directory still under its creation name this long after it last changed was left by an
/// export killed between creating and renaming it (a live one renames it at once), so a sweep
/// removes it.
const ABANDONED_NEW_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The lock file inside a spill directory.
const LOCK_FILE: &str = ".lock";

/// An export's spill directory inside a root (`--spill-dir` or `TMPDIR`): locked while this
/// lives, removed when it is dropped.
#[derive(Debug)]
pub(crate) struct SpillRoot {
    path: PathBuf,
    /// Open and exclusively locked for the directory's whole life; closing it releases the lock.
    _lock: File,
}

impl SpillRoot {
    /// Removes the spill directories in `root` left by exports that are no longer running, then
    /// creates this export's own, already locked when it first appears under its final name.
    ///
    /// # Errors
    /// When the directory cannot be created, locked or renamed. Failures of the sweep are only
    /// logged.
    pub(crate) fn try_new(root: &Path) -> io::Result<Self> {
        sweep(root);
        let new = tempfile::Builder::new()
            .prefix(NEW_PREFIX)
            .tempdir_in(root)?;
        let suffix = new
            .path()
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix(NEW_PREFIX))
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other("the new directory's name has no random suffix"))?;
        let lock_path = new.path().join(LOCK_FILE);
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .map_err(|e| context(e, "creating", &lock_path))?;
        lock.try_lock().map_err(|e| {
            let e = match e {
                TryLockError::Error(e) => e,
                TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            };
            context(e, "locking", &lock_path)
        })?;
        let path = root.join(format!("{PREFIX}{suffix}"));
        // On failure `new` is still a TempDir, so it is removed on return.
        std::fs::rename(new.path(), &path).map_err(|e| context(e, "renaming", new.path()))?;
        // Renamed away: dropping the TempDir would find nothing to remove.
        let _ = new.keep();
        Ok(Self { path, _lock: lock })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillRoot {
    fn drop(&mut self) {
        // Removed while still locked, so that no sweep races this removal; the lock goes after.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `error`, saying what was being done to which file.
fn context(error: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("{action} {}: {error}", path.display()),
    )
}

/// Removes every spill directory in `root` whose export is no longer running. Never fails: a
/// directory that cannot be checked or removed is left, with a warning.
fn sweep(root: &Path) {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        // Creating this export's directory fails next, with the error the user needs.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return,
        Err(error) => {
            tracing::warn!(
                path = %root.display(),
                error = %error,
                "Could not look for spill directories left by exports that did not finish."
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_str().unwrap_or_default();
        let (is_spill, is_new) = (name.starts_with(PREFIX), name.starts_with(NEW_PREFIX));
        // Not following symbolic links: only real directories are ever removed.
        if !(is_spill || is_new) || !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let removed = if is_new {
            remove_if_stale(&dir)
        } else {
            remove_if_abandoned(&dir)
        };
        if let Err(error) = removed {
            tracing::warn!(
                path = %dir.display(),
                error = %error,
                "Could not remove a spill directory left by an export that did not finish; \
                 remove it by hand if no export is running."
            );
        }
    }
}

/// Removes `dir` if its lock can be taken: its export ended without removing it. Held by a live
/// export, without a lock file, or not readable (another user's), it is left alone.
fn remove_if_abandoned(dir: &Path) -> io::Result<()> {
    let Ok(lock) = File::open(dir.join(LOCK_FILE)) else {
        return Ok(());
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(()),
        Err(TryLockError::Error(error)) => return Err(error),
    }
    // The lock is held until the directory is gone, so no other sweep removes it at once.
    let bytes = tree_bytes(dir);
    // Gone already: its export removed it just before releasing the lock, or another sweep did.
    if !remove_tree(dir)? {
        return Ok(());
    }
    tracing::info!(
        path = %dir.display(),
        bytes,
        "Removed the spill directory left by an export that did not finish."
    );
    Ok(())
}

/// Removes `dir`, a directory under its creation name, if it has not changed for
/// [`ABANDONED_NEW_AFTER`]. It holds at most an empty lock file: no run is written before the
/// rename.
fn remove_if_stale(dir: &Path) -> io::Result<()> {
    let age = std::fs::metadata(dir)?
        .modified()?
        .elapsed()
        .unwrap_or_default();
    if age < ABANDONED_NEW_AFTER {
        return Ok(());
    }
    if !remove_tree(dir)? {
        return Ok(());
    }
    tracing::info!(
        path = %dir.display(),
        "Removed a spill directory left half-created by an export that did not finish."
    );
    Ok(())
}

/// Removes `dir` and everything in it: true if this removed it, false if it was already gone.
fn remove_tree(dir: &Path) -> io::Result<bool> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// Bytes of the regular files under `dir`, without following symbolic links (best effort).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let kind = entry.file_type().ok()?;
            if kind.is_dir() {
                Some(tree_bytes(&entry.path()))
            } else if kind.is_file() {
                entry.metadata().ok().map(|m| m.len())
            } else {
                None
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn is_a_locked_directory_inside_the_root_removed_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let spill = SpillRoot::try_new(root.path()).unwrap();
        let path = spill.path().to_owned();
        assert_eq!(path.parent(), Some(root.path()));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(PREFIX), "{name}");
        assert_eq!(names(root.path()), [name]);
        std::fs::write(path.join("run"), b"rows").unwrap();
        let lock = File::open(path.join(LOCK_FILE)).unwrap();
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));

        drop(spill);
        assert!(!path.exists());
        assert!(names(root.path()).is_empty());
    }

    #[test]
    fn a_live_exports_directory_is_not_swept() {
        let root = tempfile::tempdir().unwrap();
        let first = SpillRoot::try_new(root.path()).unwrap();
        std::fs::create_dir(first.path().join("contrail-log-abc")).unwrap();
        std::fs::write(first.path().join("contrail-log-abc/run"), b"rows").unwrap();
        let second = SpillRoot::try_new(root.path()).unwrap();
        assert!(first.path().join("contrail-log-abc/run").exists());
        assert_ne!(first.path(), second.path());
        assert_eq!(names(root.path()).len(), 2);
    }

    #[test]
    fn a_dead_exports_directory_is_swept() {
        let root = tempfile::tempdir().unwrap();
        let dead = root.path().join("contrail-spill-dead01");
        std::fs::create_dir_all(dead.join("contrail-log-xyz")).unwrap();
        std::fs::write(dead.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dead.join("contrail-log-xyz/run"), vec![0; 1000]).unwrap();
        assert_eq!(tree_bytes(&dead), 1000);

        let spill = SpillRoot::try_new(root.path()).unwrap();
        assert!(!dead.exists());
        let name = spill.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(names(root.path()), [name]);
    }

    #[test]
    fn what_is_not_a_dead_exports_directory_is_left() {
        let root = tempfile::tempdir().unwrap();
        // Being created (its lock not held yet), without a lock file, or someone else's.
        for dir in [".contrail-new-abc123", "contrail-spill-nolock", "other"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join("run"), b"rows").unwrap();
        }
        std::fs::write(
            root.path().join(".contrail-new-abc123").join(LOCK_FILE),
            b"",
        )
        .unwrap();
        std::fs::write(root.path().join("other").join(LOCK_FILE), b"").unwrap();
        std::fs::write(root.path().join("contrail-spill-file"), b"not a directory").unwrap();

        let spill = SpillRoot::try_new(root.path()).unwrap();
        let name = spill
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let mut expected = vec![
            ".contrail-new-abc123".to_owned(),
            "contrail-spill-file".to_owned(),
            "contrail-spill-nolock".to_owned(),
            name,
            "other".to_owned(),
        ];
        expected.sort();
        assert_eq!(names(root.path()), expected);
    }

    #[test]
    fn a_half_created_directory_is_swept_once_it_is_an_hour_old() {
        let root = tempfile::tempdir().unwrap();
        for dir in [".contrail-new-old", ".contrail-new-recent"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join(LOCK_FILE), b"").unwrap();
        }
        let old = root.path().join(".contrail-new-old");
        let two_hours_ago = std::time::SystemTime::now() - 2 * ABANDONED_NEW_AFTER;
        File::open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();

        let spill = SpillRoot::try_new(root.path()).unwrap();
        let names = names(root.path());
        assert!(
            !names.contains(&".contrail-new-old".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&".contrail-new-recent".to_owned()),
            "{names:?}"
        );
        drop(spill);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let error = SpillRoot::try_new(&missing).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
