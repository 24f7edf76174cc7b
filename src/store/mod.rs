//! Object stores behind one small trait: a local directory ([`local`]) and Amazon S3 ([`s3`]).
//!
//! This module owns how bytes reach a destination and come back: atomic writes, streaming
//! uploads, ranged reads, listing, conditional creation, encryption at rest and retries. It does
//! not know what the bytes are (that is `dataset`), and nothing outside it names S3: callers hold
//! an `Arc<dyn Store>` from [`open`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use bytes::Bytes;
//! use contrail::store::{self, StoreOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = store::open(dir.path().to_str().unwrap(), StoreOptions::default()).await?;
//! store.put("_contrail/exports/1.json", Bytes::from_static(b"{}")).await?;
//!
//! let mut writer = store.create("dag_run/date=2024-01-01/part-1-0.parquet").await?;
//! writer.write(Bytes::from_static(b"PAR1")).await?;
//! let info = writer.finish().await?;
//! assert_eq!(info.size, 4);
//! assert_eq!(store.list("dag_run/").await?, vec![info]);
//! # Ok::<(), contrail::Error>(())
//! # }).unwrap();
//! ```

pub mod local;
mod location;
pub mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::error::{Error, Result};
use location::Location;

pub use local::LocalStore;
pub use s3::S3Store;

/// One stored object: its key relative to the store's root and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// The key, `/`-separated and relative to the store's root.
    pub key: String,
    /// The size in bytes.
    pub size: u64,
}

/// A place that holds objects under `/`-separated keys: a local directory or an S3 prefix.
///
/// Keys are relative paths (`dag_run/date=2024-01-01/part-1-0.parquet`): no leading, trailing
/// or doubled `/`, no `.` or `..` segments. Every method checks the key first and fails with
/// [`Error::StoreConfig`] on an invalid one, before any I/O.
///
/// Implementations MUST satisfy this contract, which `tests/store.rs` checks for each of them:
///
/// - An object is either absent or complete: [`put`](Store::put), [`put_if_absent`](Store::put_if_absent)
///   and a finished [`ObjectWriter`] make it visible at once, with all its bytes; readers and
///   [`list`](Store::list) MUST never see a partly written object.
/// - [`put_if_absent`](Store::put_if_absent) MUST fail with
///   [`StoreErrorKind::AlreadyExists`](crate::error::StoreErrorKind::AlreadyExists) and leave the
///   object unchanged when the key exists, atomically with respect to other writers.
/// - Reads of a missing key ([`get`](Store::get), [`get_range`](Store::get_range)) MUST fail
///   with [`StoreErrorKind::NotFound`](crate::error::StoreErrorKind::NotFound);
///   [`head`](Store::head) MUST return `None`; [`delete`](Store::delete) MUST succeed.
/// - [`get_range`](Store::get_range) MUST return exactly the bytes of `range`, and fail when the
///   range reaches past the end of the object.
/// - [`list`](Store::list) MUST return every object whose key starts with the prefix (a plain
///   string prefix, as in S3), across all pages, sorted by key.
/// - An [`ObjectWriter`] that is aborted or dropped before [`finish`](ObjectWriter::finish) MUST
///   NOT leave a visible object, and MUST NOT replace an existing object with the same key.
/// - Errors MUST name the object and say what the user can do.
pub trait Store: Debug + Send + Sync {
    /// The store's root as a URL or path, for messages and summaries.
    fn url(&self) -> &str;

    /// Checks before any work that the store is usable: the bucket exists and the credentials
    /// may use it, or the directory is a directory.
    ///
    /// # Errors
    /// [`Error::Store`] saying what is wrong and what to do.
    fn check(&self) -> BoxFuture<'_, Result<()>>;

    /// Writes a small object (a manifest) in one request, replacing any object with that key.
    ///
    /// # Errors
    /// [`Error::Store`] when the write fails.
    fn put(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>>;

    /// Writes a small object only if no object has that key.
    ///
    /// # Errors
    /// [`Error::Store`] of kind `AlreadyExists` when the key exists; other kinds when the write
    /// fails.
    fn put_if_absent(&self, key: &str, data: Bytes) -> BoxFuture<'_, Result<ObjectInfo>>;

    /// Starts streaming a large object; it becomes visible when the writer is finished.
    ///
    /// # Errors
    /// [`Error::Store`] when the destination cannot be prepared.
    fn create(&self, key: &str) -> BoxFuture<'_, Result<Box<dyn ObjectWriter>>>;

    /// Reads a whole object.
    ///
    /// # Errors
    /// [`Error::Store`] of kind `NotFound` when it does not exist.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Bytes>>;

    /// Reads the bytes `range` of an object (Parquet footers and column chunks).
    ///
    /// # Errors
    /// [`Error::Store`] of kind `NotFound` when it does not exist; of kind `Other` when the range
    /// reaches past its end.
    fn get_range(&self, key: &str, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>>;

    /// The object's size, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be asked.
    fn head(&self, key: &str) -> BoxFuture<'_, Result<Option<ObjectInfo>>>;

    /// Every object whose key starts with `prefix` (`""` for all), sorted by key.
    ///
    /// # Errors
    /// [`Error::Store`] when listing fails.
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<ObjectInfo>>>;

    /// Removes an object; succeeds when it does not exist.
    ///
    /// # Errors
    /// [`Error::Store`] when the removal fails.
    fn delete(&self, key: &str) -> BoxFuture<'_, Result<()>>;
}

/// A large object being written in chunks, from [`Store::create`].
///
/// Memory use is bounded by the store's options, never by the object's size. Dropping the writer
/// without calling [`finish`](ObjectWriter::finish) abandons the object as
/// [`abort`](ObjectWriter::abort) does, in the background and on a best-effort basis; call
/// `abort` to know the clean-up is done.
pub trait ObjectWriter: Send {
    /// Appends `chunk` to the object. May wait for earlier parts to upload.
    ///
    /// # Errors
    /// [`Error::Store`] when writing or uploading fails; the writer should then be aborted.
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<()>>;

    /// Bytes written so far.
    fn written(&self) -> u64;

    /// Completes the object and makes it visible.
    ///
    /// # Errors
    /// [`Error::Store`] when the last bytes cannot be written or the object cannot be completed;
    /// nothing is left behind then.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<ObjectInfo>>;

    /// Abandons the object: nothing becomes visible and no temporary data is left behind.
    ///
    /// # Errors
    /// [`Error::Store`] when the clean-up itself fails (a pending S3 multipart upload that could
    /// not be aborted is then removed by a bucket lifecycle rule, if one is set).
    fn abort(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
}

/// Server-side encryption requested for every object written to S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: keys managed by S3 (`AES256`).
    S3,
    /// SSE-KMS with the given key (id, ARN or alias), or the account's default `aws/s3` key.
    Kms {
        /// The KMS key; `None` for the default key.
        key_id: Option<String>,
    },
}

/// Default size of one part of an S3 multipart upload: 8 MiB.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Smallest part S3 accepts (except the last one): 5 MiB.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Largest part S3 accepts: 5 GiB.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// Default number of parts of one object uploaded at the same time.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// Default number of attempts of one S3 request, the first included (the SDK's standard retry
/// with exponential backoff and jitter, on throttling, 5xx and transient network errors).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default number of keys asked for per S3 listing page (the most S3 returns).
pub const DEFAULT_LIST_PAGE_SIZE: i32 = 1000;

/// How to open a store. Options that do not apply to the chosen store are refused by [`open`]
/// when they would change the result (encryption), and ignored otherwise.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub(crate) part_size: usize,
    pub(crate) upload_concurrency: usize,
    /// `None`: what the AWS configuration says, else [`DEFAULT_MAX_ATTEMPTS`].
    pub(crate) max_attempts: Option<u32>,
    pub(crate) list_page_size: i32,
    pub(crate) sse: Option<Sse>,
    pub(crate) endpoint_url: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            max_attempts: None,
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
            sse: None,
            endpoint_url: None,
        }
    }
}

impl StoreOptions {
    /// Sets the multipart part size in bytes, between [`MIN_PART_SIZE`] and [`MAX_PART_SIZE`];
    /// default [`DEFAULT_PART_SIZE`]. Objects smaller than one part are written in one request.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Sets how many parts of one object upload at once, at least 1; default
    /// [`DEFAULT_UPLOAD_CONCURRENCY`]. A writer holds at most this many parts plus one in memory.
    pub fn with_upload_concurrency(mut self, parts: usize) -> Self {
        self.upload_concurrency = parts;
        self
    }

    /// Sets the attempts per S3 request, at least 1. Default: the AWS configuration's
    /// (`AWS_MAX_ATTEMPTS`, or the profile's `max_attempts`) when it sets one, else
    /// [`DEFAULT_MAX_ATTEMPTS`] (more than the SDK's 3, since an export's uploads are long).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets the keys per S3 listing page, 1 to 1000; default [`DEFAULT_LIST_PAGE_SIZE`].
    pub fn with_list_page_size(mut self, keys: i32) -> Self {
        self.list_page_size = keys;
        self
    }

    /// Encrypts every S3 object with SSE-KMS under `key_id` (`None`: the account's `aws/s3`
    /// key). Default: no encryption header, so the bucket's default encryption applies.
    pub fn with_sse_kms(mut self, key_id: Option<String>) -> Self {
        self.sse = Some(Sse::Kms { key_id });
        self
    }

    /// Encrypts every S3 object with SSE-S3 (`AES256`). Default: no encryption header.
    pub fn with_sse_s3(mut self) -> Self {
        self.sse = Some(Sse::S3);
        self
    }

    /// Sends S3 requests to `url` (an S3-compatible server) with path-style addressing. Default:
    /// none, so the standard `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / profile setting applies,
    /// and without one, AWS itself.
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The server-side encryption requested, if any.
    pub fn sse(&self) -> Option<&Sse> {
        self.sse.as_ref()
    }

    /// Checks the ranges of the numeric options.
    fn validate(&self, url: &str) -> Result<()> {
        let problem = if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            Some(format!(
                "part size {} is outside S3's limits ({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)",
                self.part_size
            ))
        } else if self.upload_concurrency == 0 {
            Some("upload concurrency must be at least 1".to_owned())
        } else if self.max_attempts == Some(0) {
            Some("max attempts must be at least 1".to_owned())
        } else if !(1..=1000).contains(&self.list_page_size) {
            Some(format!(
                "list page size {} is outside 1 to 1000",
                self.list_page_size
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(Error::StoreConfig {
                location: url.to_owned(),
                message,
            }),
            None => Ok(()),
        }
    }
}

/// Opens the store that `url` names: a plain path or `file:///path` is a local directory,
/// `s3://bucket/prefix` is S3. Makes no request; call [`Store::check`] before long work.
///
/// # Errors
/// [`Error::StoreConfig`] for any other scheme, options out of range, encryption asked of a local
/// directory, or (for S3) no AWS region configured.
pub async fn open(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    options.validate(url)?;
    match Location::parse(url)? {
        Location::Local(root) => {
            if options.sse.is_some() {
                return Err(Error::StoreConfig {
                    location: url.to_owned(),
                    message: "server-side encryption applies to s3:// destinations only; \
                              encrypt the local file system instead, or drop the SSE option"
                        .to_owned(),
                });
            }
            Ok(Arc::new(LocalStore::new(root)))
        }
        Location::S3 { bucket, prefix } => {
            Ok(Arc::new(S3Store::connect(bucket, prefix, options).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_refused() {
        let cases = [
            (
                StoreOptions::default().with_part_size(MIN_PART_SIZE - 1),
                "part size",
            ),
            (
                StoreOptions::default().with_part_size(MAX_PART_SIZE + 1),
                "part size",
            ),
            (
                StoreOptions::default().with_upload_concurrency(0),
                "concurrency",
            ),
            (StoreOptions::default().with_max_attempts(0), "attempts"),
            (
                StoreOptions::default().with_list_page_size(1001),
                "page size",
            ),
        ];
        for (options, needle) in cases {
            let message = options.validate("s3://b").unwrap_err().to_string();
            assert!(message.contains(needle), "{message}");
        }
        StoreOptions::default().validate("s3://b").unwrap();
    }

    #[tokio::test]
    async fn open_picks_the_store_from_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let store = open(path, StoreOptions::default()).await.unwrap();
        assert_eq!(store.url(), path);
        let store = open(&format!("file://{path}"), StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(store.url(), path);
        let err = open("gs://bucket/x", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unsupported store scheme"),
            "{err}"
        );
        let err = open(path, StoreOptions::default().with_sse_s3())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("s3:// destinations only"), "{err}");
    }
}
