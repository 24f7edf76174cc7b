//! Reading a run back, one batch per read.
//!
//! A run is an Arrow IPC stream, but arrow's stream reader is not used to read it back: it
//! zeroes each body's buffer before reading into it, reads through a buffer of its own, and
//! (unless told not to) validates every value again. The writer recorded the size of every
//! message of the run, so each batch is read, at its exact size, into memory that is not
//! zeroed first and becomes the batch's buffers (std's `read_to_end` into reserved capacity:
//! two `read` calls, the first of at most 8 KiB), and decoded without validation. Columns NULL
//! in every row of a run were left out of it and come back as slices of one all-NULL array per
//! column ([`NullColumns`]).

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::RecordBatchDecoder;
use arrow::ipc::{MessageHeader, root_as_message};
use arrow_data::UnsafeFlag;

use super::{SPILL_BATCH_ROWS, kept};

/// The IPC continuation marker that starts every message.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// The batches of one run, read from its file in order.
pub(crate) struct RunReader {
    file: File,
    /// The schema of the batches read back, and of the run's batches (without `dropped`).
    schema: SchemaRef,
    written: SchemaRef,
    dropped: Vec<usize>,
    /// The size of each batch's message still to read, in order.
    batches: std::vec::IntoIter<u32>,
    dictionaries: HashMap<i64, ArrayRef>,
    skip_validation: UnsafeFlag,
}

impl RunReader {
    /// Reads the batch messages of sizes `batches` from `file`, positioned at the first one,
    /// as batches of `schema`; the columns at `dropped` were left out when they were written.
    ///
    /// # Safety
    /// The messages must have been written by arrow's IPC writer from valid arrays of
    /// `schema` without the columns `dropped`: they are decoded without validating offsets or
    /// UTF-8.
    ///
    /// # Errors
    /// When `dropped` names a column `schema` does not have.
    pub(crate) unsafe fn try_new(
        file: File,
        schema: &SchemaRef,
        dropped: &[usize],
        batches: Vec<u32>,
    ) -> Result<Self, ArrowError> {
        let written = Arc::new(schema.project(&kept(schema.fields().len(), dropped))?);
        let mut skip_validation = UnsafeFlag::new();
        // SAFETY: the caller vouches for the data (see above).
        unsafe { skip_validation.set(true) };
        Ok(Self {
            file,
            schema: schema.clone(),
            written,
            dropped: dropped.to_vec(),
            batches: batches.into_iter(),
            dictionaries: HashMap::new(),
            skip_validation,
        })
    }

    /// The next batch, or `None` after the last; its left-out columns are slices of `nulls`.
    ///
    /// # Errors
    /// When the file cannot be read, or holds something else than the messages written.
    pub(crate) fn next_batch(
        &mut self,
        nulls: &NullColumns,
    ) -> Result<Option<RecordBatch>, ArrowError> {
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
        let read = RecordBatchDecoder::try_new(
            &body,
            batch,
            self.written.clone(),
            &self.dictionaries,
            &header.version(),
        )?
        .with_skip_validation(self.skip_validation.clone())
        .read_record_batch()?;
        if self.dropped.is_empty() {
            return Ok(Some(read));
        }
        let rows = read.num_rows();
        let mut read = read.columns().iter();
        let columns = (0..self.schema.fields().len())
            .map(|i| match self.dropped.binary_search(&i) {
                Ok(_) => Some(nulls.column(i, rows)),
                Err(_) => read.next().cloned(),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt("a batch with fewer columns than written".into()))?;
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map(Some)
    }
}

/// An all-NULL array for each column of a schema, made the first time a run lacks the column
/// and sliced for every batch that does, so that putting a left-out column back costs nothing
/// per row.
pub(crate) struct NullColumns {
    schema: SchemaRef,
    columns: Vec<OnceCell<ArrayRef>>,
}

impl NullColumns {
    /// Rows of each all-NULL array: as many as a spilled batch may have.
    const ROWS: usize = *SPILL_BATCH_ROWS.end();

    /// None made yet, for the columns of `schema`.
    pub(crate) fn new(schema: SchemaRef) -> Self {
        let columns = schema.fields().iter().map(|_| OnceCell::new()).collect();
        Self { schema, columns }
    }

    /// Column `i`, all NULL, `rows` long.
    fn column(&self, i: usize, rows: usize) -> ArrayRef {
        let data_type = self.schema.field(i).data_type();
        if rows > Self::ROWS {
            return new_null_array(data_type, rows);
        }
        self.columns[i]
            .get_or_init(|| new_null_array(data_type, Self::ROWS))
            .slice(0, rows)
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
