//! A local directory as a [`Store`]: each key is a file under the root.
//!
//! Every write goes to a hidden temporary file in the destination directory, is fsynced, and is
//! then renamed (or, for create-only writes, hard-linked) into place, so a reader sees either no
//! file or all of it. Temporary files are named `.<name>.contrail-tmp-<pid>-<n>`; listings skip
//! them, and an aborted or dropped writer removes its own.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use super::location::{check_key, check_prefix};
use super::{ObjectInfo, ObjectWriter, Store};
use crate::error::{Error, Result, StoreErrorKind};

/// What marks a temporary file of an unfinished write.
const TEMP_MARKER: &str = ".contrail-tmp-";

/// Distinguishes the temporary files of concurrent writes in one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A directory on the local file system holding objects as files.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    url: String,
}

impl LocalStore {
    /// A store rooted at `root`, which is created on the first write if missing.
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        let root = root.into();
        let url = root.display().to_string();
        LocalStore { root, url }
    }

    fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.url.trim_end_matches('/'))
    }
}

impl Store for LocalStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn check(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match tokio::fs::metadata(&self.root).await {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(Error::Store {
                    kind: StoreErrorKind::Other,
                    operation: "check",
                    object: self.url.clone(),
                    message: "exists and is not a directory; choose another destination".to_owned(),
                    source: None,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("check", self.url.clone(), e)),
            }
        })
    }

    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>> {
        self.put_file(key, data, false)
    }

    fn put_if_absent(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>> {
        self.put_file(key, data, true)
    }

    fn create(&self, key: &str) -> BoxFuture<'_, Result<Box<dyn ObjectWriter>>> {
        let checked = check_key(key).map(|()| (key.to_owned(), self.root.join(key)));
        Box::pin(async move {
            let (key, dest) = checked?;
            let object = self.object(&key);
            let temp = temp_path(&dest);
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| io_error("create", object.clone(), e))?;
            }
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .await
                .map_err(|e| io_error("create", object.clone(), e))?;
            Ok(Box::new(LocalWriter {
                key,
                object,
                temp,
                dest,
                file: Some(file),
                written: 0,
                done: false,
            }) as Box<dyn ObjectWriter>)
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Bytes>> {
        let checked = check_key(key).map(|()| (self.object(key), self.root.join(key)));
        Box::pin(async move {
            let (object, path) = checked?;
            tokio::fs::read(&path)
                .await
                .map(Bytes::from)
                .map_err(|e| io_error("get", object, e))
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        let checked = check_key(key).map(|()| (self.object(key), self.root.join(key)));
        Box::pin(async move {
            let (object, path) = checked?;
            let op_object = object.clone();
            blocking("get_range", object, move || {
                read_range(&op_object, &path, range)
            })
            .await
        })
    }

    fn head(&self, key: &str) -> BoxFuture<'_, Result<Option<ObjectInfo>>> {
        let checked = check_key(key).map(|()| (key.to_owned(), self.root.join(key)));
        Box::pin(async move {
            let (key, path) = checked?;
            match tokio::fs::metadata(&path).await {
                Ok(meta) if meta.is_file() => Ok(Some(ObjectInfo {
                    key,
                    size: meta.len(),
                })),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_error("head", self.object(&key), e)),
            }
        })
    }

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<ObjectInfo>>> {
        let checked = check_prefix(prefix).map(|()| prefix.to_owned());
        Box::pin(async move {
            let prefix = checked?;
            let root = self.root.clone();
            let object = self.object(&prefix);
            let op_object = object.clone();
            blocking("list", object, move || {
                list_files(&op_object, &root, &prefix)
            })
            .await
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<()>> {
        let checked = check_key(key).map(|()| (self.object(key), self.root.join(key)));
        Box::pin(async move {
            let (object, path) = checked?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error("delete", object, e)),
            }
            // Like S3, a prefix disappears with its last object: remove directories left empty.
            let mut dir = path.parent();
            while let Some(d) = dir {
                if d == self.root || tokio::fs::remove_dir(d).await.is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
    }
}

impl LocalStore {
    fn put_file(
        &self,
        key: &str,
        data: Bytes,
        if_absent: bool,
    ) -> BoxFuture<'_, Result<ObjectInfo>> {
        let checked = check_key(key).map(|()| (key.to_owned(), self.root.join(key)));
        let operation = if if_absent { "put_if_absent" } else { "put" };
        Box::pin(async move {
            let (key, dest) = checked?;
            let object = self.object(&key);
            let size = data.len() as u64;
            blocking(operation, object, move || {
                write_durably(&dest, &data, if_absent)?;
                Ok(ObjectInfo { key, size })
            })
            .await
        })
    }
}

/// Writes `data` to a temporary file beside `dest`, fsyncs it, and moves it into place: by
/// rename, or by hard link when `if_absent` (which fails if `dest` exists).
fn write_durably(dest: &Path, data: &[u8], if_absent: bool) -> std::io::Result<()> {
    use std::io::Write;

    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = temp_path(dest);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        if if_absent {
            std::fs::hard_link(&temp, dest)?;
            std::fs::remove_file(&temp)?;
        } else {
            std::fs::rename(&temp, dest)?;
        }
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Makes a rename or link in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    dest.with_file_name(format!(".{name}{TEMP_MARKER}{}-{n}", std::process::id()))
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

fn read_range(object: &str, path: &Path, range: Range<u64>) -> std::io::Result<Bytes> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if range.start > range.end || range.end > size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "range {}..{} is not within {object} ({size} bytes)",
                range.start, range.end
            ),
        ));
    }
    let len = usize::try_from(range.end - range.start)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(range.start))?;
    file.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Lists files under the deepest directory that `prefix` names, keeping keys that start with it.
fn list_files(object: &str, root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
    let base = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut found = Vec::new();
    let mut pending = vec![(root.join(base), base.to_owned())];
    while let Some((dir, key_dir)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|name| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("file name {name:?} under {object} is not UTF-8"),
                )
            })?;
            let key = if key_dir.is_empty() {
                name.clone()
            } else {
                format!("{key_dir}/{name}")
            };
            let meta = std::fs::metadata(entry.path())?;
            if meta.is_dir() {
                if key.starts_with(prefix) || prefix.starts_with(&format!("{key}/")) {
                    pending.push((entry.path(), key));
                }
            } else if meta.is_file() && !is_temp(&name) && key.starts_with(prefix) {
                found.push(ObjectInfo {
                    key,
                    size: meta.len(),
                });
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    object: String,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|e| io_error(operation, object, e)),
        Err(e) => Err(Error::Store {
            kind: StoreErrorKind::Other,
            operation,
            object,
            message: format!("the file task failed: {e}"),
            source: Some(Box::new(e)),
        }),
    }
}

/// Wraps an I/O error as an [`Error::Store`] with a kind and a hint.
fn io_error(operation: &'static str, object: String, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let (kind, hint) = match e.kind() {
        K::NotFound => (StoreErrorKind::NotFound, "; no such object"),
        K::AlreadyExists => (
            StoreErrorKind::AlreadyExists,
            "; the object already exists and is not replaced",
        ),
        K::PermissionDenied | K::ReadOnlyFilesystem => (
            StoreErrorKind::Other,
            "; check the directory's owner and permissions",
        ),
        K::NotADirectory | K::IsADirectory => (
            StoreErrorKind::Other,
            "; a file or folder of that name is in the way: move it, or choose another destination",
        ),
        K::StorageFull | K::QuotaExceeded => (
            StoreErrorKind::Other,
            "; free disk space or choose another destination",
        ),
        _ => (StoreErrorKind::Other, ""),
    };
    Error::Store {
        kind,
        operation,
        object,
        message: format!("{e}{hint}"),
        source: Some(Box::new(e)),
    }
}

/// A file being written under a temporary name until [`ObjectWriter::finish`] renames it.
struct LocalWriter {
    key: String,
    object: String,
    temp: PathBuf,
    dest: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
    /// Set once the temporary file has been renamed into place (or removed).
    done: bool,
}

impl ObjectWriter for LocalWriter {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(file) = self.file.as_mut() else {
                return Err(Error::Store {
                    kind: StoreErrorKind::Other,
                    operation: "write",
                    object: self.object.clone(),
                    message: "write after a failed write; abort the writer".to_owned(),
                    source: None,
                });
            };
            if let Err(e) = file.write_all(&chunk).await {
                self.file = None;
                return Err(io_error("write", self.object.clone(), e));
            }
            self.written += chunk.len() as u64;
            Ok(())
        })
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<ObjectInfo>> {
        Box::pin(async move {
            let object = self.object.clone();
            let Some(mut file) = self.file.take() else {
                return Err(Error::Store {
                    kind: StoreErrorKind::Other,
                    operation: "finish",
                    object,
                    message: "an earlier write failed; nothing was written".to_owned(),
                    source: None,
                });
            };
            let io_err = |e| io_error("finish", object.clone(), e);
            file.flush().await.map_err(io_err)?;
            file.sync_all().await.map_err(io_err)?;
            drop(file);
            tokio::fs::rename(&self.temp, &self.dest)
                .await
                .map_err(io_err)?;
            self.done = true;
            if let Some(dir) = self.dest.parent() {
                let dir = dir.to_owned();
                blocking("finish", object.clone(), move || sync_dir(&dir)).await?;
            }
            Ok(ObjectInfo {
                key: std::mem::take(&mut self.key),
                size: self.written,
            })
        })
    }

    fn abort(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            drop(self.file.take());
            self.done = true;
            match tokio::fs::remove_file(&self.temp).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error("abort", self.object.clone(), e)),
            }
        })
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: an unfinished write must leave nothing behind.
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_are_hidden_and_recognised() {
        let temp = temp_path(Path::new("/r/t/date=2024-01-01/part-1.parquet"));
        let name = temp.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".part-1.parquet.contrail-tmp-"), "{name}");
        assert!(is_temp(name));
        assert!(!is_temp("part-1.parquet"));
        assert!(!is_temp(".hidden"));
        assert_ne!(
            temp,
            temp_path(Path::new("/r/t/date=2024-01-01/part-1.parquet"))
        );
    }

    #[test]
    fn list_filters_by_string_prefix_and_skips_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["a/x", "a/y/z", "ab/w", "b", "a/.x.contrail-tmp-1-1"] {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"1").unwrap();
        }
        let keys = |prefix: &str| -> Vec<String> {
            list_files("t", dir.path(), prefix)
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect()
        };
        assert_eq!(keys(""), ["a/x", "a/y/z", "ab/w", "b"]);
        assert_eq!(keys("a"), ["a/x", "a/y/z", "ab/w"]);
        assert_eq!(keys("a/"), ["a/x", "a/y/z"]);
        assert_eq!(keys("a/y"), ["a/y/z"]);
        assert_eq!(keys("c/"), Vec::<String>::new());
    }
}
