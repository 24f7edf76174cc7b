//! Reading a run back, one batch per read.
//!
//! A run is an Arrow IPC stream, but arrow's stream reader is not used to read it back: it
//! zeroes each body's buffer before reading into it, reads through a buffer of its own, and
//! (unless told not to) validates every value again. The writer recorded the size of every
//! message of the run, so each batch is one exact read into a buffer that becomes the batch's
//! memory, decoded without validation.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::RecordBatchDecoder;
use arrow::ipc::{MessageHeader, root_as_message};
use arrow_data::UnsafeFlag;

/// The IPC continuation marker that starts every message.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// The batches of one run, read from its file in order.
pub(crate) struct RunReader {
    file: File,
    schema: SchemaRef,
    /// The size of each batch's message still to read, in order.
    batches: std::vec::IntoIter<u32>,
    dictionaries: HashMap<i64, ArrayRef>,
    skip_validation: UnsafeFlag,
}

impl RunReader {
    /// Reads the batch messages of sizes `batches` from `file`, positioned at the first one.
    ///
    /// # Safety
    /// The messages must have been written by arrow's IPC writer from valid arrays of
    /// `schema`: they are decoded without validating offsets or UTF-8.
    pub(crate) unsafe fn new(file: File, schema: SchemaRef, batches: Vec<u32>) -> Self {
        let mut skip_validation = UnsafeFlag::new();
        // SAFETY: the caller vouches for the data (see above).
        unsafe { skip_validation.set(true) };
        Self {
            file,
            schema,
            batches: batches.into_iter(),
            dictionaries: HashMap::new(),
            skip_validation,
        }
    }

    /// The next batch, or `None` after the last.
    ///
    /// # Errors
    /// When the file cannot be read, or holds something else than the messages written.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(bytes) = self.batches.next() else {
            return Ok(None);
        };
        let bytes = bytes as usize;
        // `read_to_end` into reserved capacity reads without first zeroing it, as a `resize`
        // and `read_exact` would.
        let mut message = Vec::with_capacity(bytes);
        (&mut self.file)
            .take(bytes as u64)
            .read_to_end(&mut message)?;
        if message.len() != bytes {
            return Err(corrupt(format!(
                "a batch of {bytes} bytes ends after {}",
                message.len()
            )));
        }
        let message = Buffer::from_vec(message);
        let (metadata, body) = split(&message)?;
        let header = root_as_message(&message[metadata])
            .map_err(|e| corrupt(format!("unreadable batch metadata: {e}")))?;
        let (Some(batch), MessageHeader::RecordBatch) =
            (header.header_as_record_batch(), header.header_type())
        else {
            return Err(corrupt(format!(
                "a {:?} message where a batch was written",
                header.header_type()
            )));
        };
        if header.bodyLength() != body.len() as i64 {
            return Err(corrupt(format!(
                "a batch body of {} bytes where {} were written",
                header.bodyLength(),
                body.len()
            )));
        }
        let body = message.slice_with_length(body.start, body.len());
        RecordBatchDecoder::try_new(
            &body,
            batch,
            self.schema.clone(),
            &self.dictionaries,
            &header.version(),
        )?
        .with_skip_validation(self.skip_validation.clone())
        .read_record_batch()
        .map(Some)
    }
}

/// The byte ranges of a message's metadata and body: after the continuation marker and the
/// metadata's length, the metadata, then the body.
fn split(message: &[u8]) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>), ArrowError> {
    let (Some(marker), Some(length)) = (message.get(..4), message.get(4..8)) else {
        return Err(corrupt("a batch shorter than its prefix".into()));
    };
    if marker != CONTINUATION {
        return Err(corrupt(
            "a batch that does not start with a message marker".into(),
        ));
    }
    let length = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
    let body = 8 + length;
    if body > message.len() {
        return Err(corrupt(format!(
            "batch metadata of {length} bytes in a message of {}",
            message.len()
        )));
    }
    Ok((8..body, body..message.len()))
}

fn corrupt(message: String) -> ArrowError {
    ArrowError::IpcError(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_split_into_metadata_and_body() {
        let mut message = CONTINUATION.to_vec();
        message.extend(3u32.to_le_bytes());
        message.extend([1, 2, 3, 4, 5]);
        assert_eq!(split(&message).unwrap(), (8..11, 11..13));
        for (bad, why) in [
            (&message[..6], "shorter than its prefix"),
            (&[0u8; 12][..], "message marker"),
        ] {
            let error = split(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        }
        let mut long = CONTINUATION.to_vec();
        long.extend(9u32.to_le_bytes());
        let error = split(&long).unwrap_err().to_string();
        assert!(error.contains("metadata of 9 bytes"), "{error}");
    }
}
