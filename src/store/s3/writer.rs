//! Streaming uploads: chunks are cut into parts of a fixed size and uploaded as an S3 multipart
//! upload, a few parts at a time, so memory holds at most `concurrency + 1` parts whatever the
//! object's size. An object smaller than one part is sent with a single PutObject instead.
//!
//! On any failure, on [`ObjectWriter::abort`] and on drop, the multipart upload is aborted, so
//! no parts are left to be billed; S3 shows nothing until CompleteMultipartUpload succeeds.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::task::JoinSet;

use super::Inner;
use super::errors::{Intent, sdk_error};
use crate::error::{Error, Result, StoreErrorKind};
use crate::store::{ObjectInfo, ObjectWriter};

/// Most parts one S3 multipart upload may have.
pub(crate) const MAX_PARTS: i32 = 10_000;

/// Cuts a stream of chunks into parts of exactly `part_size` bytes (the last one shorter),
/// copying only what must wait for the rest of its part.
#[derive(Debug)]
pub(crate) struct PartBuffer {
    part_size: usize,
    buf: BytesMut,
}

impl PartBuffer {
    pub(crate) fn new(part_size: usize) -> PartBuffer {
        PartBuffer {
            part_size,
            buf: BytesMut::new(),
        }
    }

    /// Adds `chunk`; returns the parts it completed, in order.
    pub(crate) fn push(&mut self, mut chunk: Bytes) -> Vec<Bytes> {
        let mut parts = Vec::new();
        while !chunk.is_empty() {
            if self.buf.is_empty() && chunk.len() >= self.part_size {
                // A whole part inside the chunk: no copy.
                parts.push(chunk.split_to(self.part_size));
                continue;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(self.part_size);
            }
            let take = (self.part_size - self.buf.len()).min(chunk.len());
            self.buf.extend_from_slice(&chunk.split_to(take));
            if self.buf.len() == self.part_size {
                parts.push(self.buf.split().freeze());
            }
        }
        parts
    }

    /// Bytes waiting for the rest of their part.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes waiting, as the last (short) part.
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// The part number after `current`, or an error once S3's limit of parts is reached.
pub(crate) fn next_part_number(current: i32, part_size: usize) -> std::result::Result<i32, String> {
    if current >= MAX_PARTS {
        Err(format!(
            "the object is larger than S3 allows with {part_size}-byte parts ({MAX_PARTS} parts \
             at most); raise the part size"
        ))
    } else {
        Ok(current + 1)
    }
}

/// A multipart upload in progress.
struct Upload {
    id: String,
    last_part: i32,
    in_flight: JoinSet<Result<CompletedPart>>,
    completed: Vec<CompletedPart>,
}

/// Writes one S3 object, from [`super::S3Store`]'s `create`.
pub(super) struct S3Writer {
    inner: Arc<Inner>,
    key: String,
    full_key: String,
    object: String,
    parts: PartBuffer,
    upload: Option<Upload>,
    written: u64,
    failed: bool,
}

impl S3Writer {
    pub(super) fn new(inner: Arc<Inner>, key: String) -> S3Writer {
        let full_key = inner.full_key(&key);
        let object = inner.object(&key);
        let parts = PartBuffer::new(inner.options.part_size);
        S3Writer {
            inner,
            key,
            full_key,
            object,
            parts,
            upload: None,
            written: 0,
            failed: false,
        }
    }

    fn fail(&self, operation: &'static str, message: String) -> Error {
        Error::Store {
            kind: StoreErrorKind::Other,
            operation,
            object: self.object.clone(),
            message,
            source: None,
        }
    }

    /// Starts the multipart upload if needed, waits for room, and starts uploading `part`.
    async fn send_part(&mut self, part: Bytes) -> Result<()> {
        if self.upload.is_none() {
            let mut request = self
                .inner
                .client
                .create_multipart_upload()
                .bucket(&self.inner.bucket)
                .key(&self.full_key);
            if let Some(sse) = &self.inner.options.sse {
                let (algorithm, key_id) = super::sse_headers(sse);
                request = request
                    .server_side_encryption(algorithm)
                    .set_ssekms_key_id(key_id);
            }
            let created = request.send().await.map_err(|e| {
                sdk_error(
                    "create_multipart_upload",
                    self.object.clone(),
                    Intent::Plain,
                    self.inner.attempts,
                    e,
                )
            })?;
            let id = created
                .upload_id
                .ok_or_else(|| self.fail("write", "S3 returned no upload id".to_owned()))?;
            self.upload = Some(Upload {
                id,
                last_part: 0,
                in_flight: JoinSet::new(),
                completed: Vec::new(),
            });
        }
        let concurrency = self.inner.options.upload_concurrency;
        let part_size = self.inner.options.part_size;
        let object = self.object.clone();
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.fail("write", "no multipart upload".to_owned()));
        };
        while upload.in_flight.len() >= concurrency {
            collect_one(upload, &object).await?;
        }
        let number =
            next_part_number(upload.last_part, part_size).map_err(|message| Error::Store {
                kind: StoreErrorKind::Other,
                operation: "write",
                object: object.clone(),
                message,
                source: None,
            })?;
        upload.last_part = number;
        let request = self
            .inner
            .client
            .upload_part()
            .bucket(&self.inner.bucket)
            .key(&self.full_key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(ByteStream::from(part));
        let attempts = self.inner.attempts;
        upload.in_flight.spawn(async move {
            let done = request
                .send()
                .await
                .map_err(|e| sdk_error("upload_part", object, Intent::Plain, attempts, e))?;
            Ok(CompletedPart::builder()
                .set_e_tag(done.e_tag)
                .part_number(number)
                .build())
        });
        Ok(())
    }

    /// Finishes the object; on error the caller aborts.
    async fn complete(&mut self) -> Result<ObjectInfo> {
        if self.failed {
            return Err(self.fail(
                "finish",
                "an earlier write failed; nothing was written".to_owned(),
            ));
        }
        let info = ObjectInfo {
            key: self.key.clone(),
            size: self.written,
        };
        if self.upload.is_none() {
            let body = self.parts.take_rest();
            self.inner
                .put_object(&self.key, body, Intent::Plain)
                .await?;
            return Ok(info);
        }
        if self.parts.pending() > 0 {
            let rest = self.parts.take_rest();
            self.send_part(rest).await?;
        }
        let object = self.object.clone();
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.fail("finish", "no multipart upload".to_owned()));
        };
        while !upload.in_flight.is_empty() {
            collect_one(upload, &object).await?;
        }
        let mut parts = std::mem::take(&mut upload.completed);
        parts.sort_by_key(|p| p.part_number);
        self.inner
            .client
            .complete_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&self.full_key)
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                sdk_error(
                    "complete_multipart_upload",
                    object,
                    Intent::Plain,
                    self.inner.attempts,
                    e,
                )
            })?;
        // Completed: nothing to abort any more.
        self.upload = None;
        Ok(info)
    }

    /// Stops the uploads in flight and aborts the multipart upload, if one was started.
    async fn abort_upload(&mut self) -> Result<()> {
        let Some(mut upload) = self.upload.take() else {
            return Ok(());
        };
        upload.in_flight.shutdown().await;
        abort_request(&self.inner, &self.full_key, &upload.id)
            .await
            .map_err(|e| {
                sdk_error(
                    "abort_multipart_upload",
                    self.object.clone(),
                    Intent::Plain,
                    self.inner.attempts,
                    e,
                )
            })
    }
}

/// Waits for one part upload to end and records it.
async fn collect_one(upload: &mut Upload, object: &str) -> Result<()> {
    match upload.in_flight.join_next().await {
        Some(Ok(Ok(part))) => {
            upload.completed.push(part);
            Ok(())
        }
        Some(Ok(Err(e))) => Err(e),
        Some(Err(join)) => Err(Error::Store {
            kind: StoreErrorKind::Other,
            operation: "upload_part",
            object: object.to_owned(),
            message: format!("the upload task failed: {join}"),
            source: Some(Box::new(join)),
        }),
        None => Ok(()),
    }
}

async fn abort_request(
    inner: &Inner,
    full_key: &str,
    upload_id: &str,
) -> std::result::Result<
    (),
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadError,
    >,
> {
    inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.bucket)
        .key(full_key)
        .upload_id(upload_id)
        .send()
        .await
        .map(|_| ())
}

impl ObjectWriter for S3Writer {
    fn write(&mut self, chunk: Bytes) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.failed {
                return Err(self.fail(
                    "write",
                    "write after a failed write; abort the writer".to_owned(),
                ));
            }
            let len = chunk.len() as u64;
            for part in self.parts.push(chunk) {
                if let Err(e) = self.send_part(part).await {
                    self.failed = true;
                    return Err(e);
                }
            }
            self.written += len;
            Ok(())
        })
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<ObjectInfo>> {
        Box::pin(async move {
            match self.complete().await {
                Ok(info) => Ok(info),
                Err(e) => {
                    if let Err(abort) = self.abort_upload().await {
                        tracing::warn!(object = %self.object, error = %abort,
                            "Could not abort the multipart upload after a failure.");
                    }
                    Err(e)
                }
            }
        })
    }

    fn abort(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.abort_upload().await })
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        // Dropping the JoinSet cancels the part uploads; the abort itself needs a runtime.
        drop(upload.in_flight);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(object = %self.object, upload_id = %upload.id,
                "Writer dropped outside a runtime; the multipart upload is left for the bucket's lifecycle rule.");
            return;
        };
        let inner = Arc::clone(&self.inner);
        let full_key = std::mem::take(&mut self.full_key);
        let object = std::mem::take(&mut self.object);
        runtime.spawn(async move {
            if let Err(e) = abort_request(&inner, &full_key, &upload.id).await {
                tracing::warn!(object = %object, error = %aws_sdk_s3::error::DisplayErrorContext(&e),
                    "Could not abort the multipart upload of a dropped writer.");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(parts: &[Bytes]) -> Vec<usize> {
        parts.iter().map(Bytes::len).collect()
    }

    #[test]
    fn parts_are_cut_at_exactly_part_size() {
        let mut buffer = PartBuffer::new(10);
        assert_eq!(
            sizes(&buffer.push(Bytes::from(vec![1; 4]))),
            Vec::<usize>::new()
        );
        assert_eq!(
            sizes(&buffer.push(Bytes::from(vec![2; 4]))),
            Vec::<usize>::new()
        );
        assert_eq!(sizes(&buffer.push(Bytes::from(vec![3; 25]))), [10, 10, 10]);
        assert_eq!(buffer.pending(), 3);
        let rest = buffer.take_rest();
        assert_eq!(rest.len(), 3);
        assert_eq!(buffer.pending(), 0);
    }

    #[test]
    fn bytes_keep_their_order_across_parts() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let mut buffer = PartBuffer::new(64);
        let mut out = Vec::new();
        for chunk in data.chunks(37) {
            for part in buffer.push(Bytes::copy_from_slice(chunk)) {
                assert_eq!(part.len(), 64);
                out.extend_from_slice(&part);
            }
        }
        out.extend_from_slice(&buffer.take_rest());
        assert_eq!(out, data);
    }

    #[test]
    fn a_big_chunk_is_split_without_copying() {
        let chunk = Bytes::from(vec![7; 30]);
        let start = chunk.as_ptr();
        let mut buffer = PartBuffer::new(10);
        let parts = buffer.push(chunk);
        assert_eq!(sizes(&parts), [10, 10, 10]);
        assert_eq!(parts[0].as_ptr(), start);
        assert_eq!(buffer.pending(), 0);
    }

    #[test]
    fn part_numbers_stop_at_s3s_limit() {
        assert_eq!(next_part_number(0, 5), Ok(1));
        assert_eq!(next_part_number(MAX_PARTS - 1, 5), Ok(MAX_PARTS));
        let message = next_part_number(MAX_PARTS, 5).unwrap_err();
        assert!(message.contains("raise the part size"), "{message}");
    }
}
