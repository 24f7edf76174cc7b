//! Streaming a table out: `COPY … TO STDOUT (FORMAT binary)` messages go, in chunks of many,
//! over a bounded channel to a blocking thread that frames and decodes them into Arrow batches.
//! The channel bounds memory: when decoding falls behind, the reader stops pulling from the
//! server. Bytes are not copied on the way: the decoder reads them where the connection put them.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::catalog::WireType;
use crate::error::{Error, Result};
use crate::source::decode::BatchDecoder;
use crate::source::decode::copy::CopyFramer;
use crate::source::query::ReadPlan;

/// Rows per decoded batch: about 4 MB of task instances. Each job holds one batch being
/// decoded (and the next one's builders) besides its partition buffer, so larger batches only
/// add memory.
pub const DEFAULT_BATCH_ROWS: usize = 8 * 1024;

/// [`Chunk`]s (about 256 KiB each) buffered between the network and the decoder:
/// 2 MiB per job, enough to keep the server streaming while a batch is decoded; while a file
/// is encoded, the other jobs keep the CPUs busy.
pub const DEFAULT_CHUNKS_IN_FLIGHT: usize = 8;

/// Bytes gathered from the server before a chunk is handed to the decoder, each message counted
/// with its handle and its 5-byte header (which its buffer holds too): narrow rows make many
/// small messages, and a chunk's memory is what the channel bounds.
const CHUNK_BYTES: usize = 256 * 1024;

/// What a message costs a chunk besides its bytes.
const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Bytes>() + 5;

/// `COPY` data messages as received (PostgreSQL sends one per row), handed to the decoder
/// together: one channel send and one wake-up per about 256 KiB, not per row.
pub type Chunk = Vec<Bytes>;

/// Groups `COPY` messages into [`Chunk`]s of about 256 KiB, counting each message with its
/// handle and header.
#[derive(Debug, Default)]
pub struct Chunker {
    pending: Chunk,
    bytes: usize,
}

impl Chunker {
    /// Adds `message`; returns the chunk it completes.
    pub fn push(&mut self, message: Bytes) -> Option<Chunk> {
        self.bytes += message.len() + MESSAGE_OVERHEAD;
        self.pending.push(message);
        if self.bytes < CHUNK_BYTES {
            return None;
        }
        self.bytes = 0;
        let next = Chunk::with_capacity(self.pending.len());
        Some(std::mem::replace(&mut self.pending, next))
    }

    /// The last chunk, unless no message is left.
    pub fn finish(self) -> Option<Chunk> {
        (!self.pending.is_empty()).then_some(self.pending)
    }
}

/// Runs `statement` (a `COPY … TO STDOUT`) and sends its messages to `chunks`, in chunks of
/// about 256 KiB ([`Chunker`]). Returns the bytes received. Stops early, without error, when
/// the receiver is gone (the decoder failed and reports why).
///
/// # Errors
/// [`Error::ConnectionLost`] naming `table` when the connection drops, [`Error::Query`] when
/// the server fails the query.
pub async fn copy_out(
    client: &Client,
    table: &str,
    statement: &str,
    chunks: mpsc::Sender<Chunk>,
) -> Result<u64> {
    let stream = client
        .copy_out(statement)
        .await
        .map_err(|e| read_error(table, e))?;
    futures_util::pin_mut!(stream);
    let mut total = 0u64;
    let mut chunker = Chunker::default();
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| read_error(table, e))?;
        total += message.len() as u64;
        if let Some(chunk) = chunker.push(message)
            && chunks.send(chunk).await.is_err()
        {
            return Ok(total);
        }
    }
    if let Some(chunk) = chunker.finish() {
        let _ = chunks.send(chunk).await;
    }
    Ok(total)
}

/// A lost connection says so; anything else is a failed query.
///
/// A terminated backend shows up either as a closed socket or, when the server got to say
/// goodbye first, as a FATAL `admin_shutdown` / `crash_shutdown` / connection-class error.
fn read_error(table: &str, error: tokio_postgres::Error) -> Error {
    if error.is_closed() || ends_the_session(&error) {
        Error::ConnectionLost {
            table: table.to_owned(),
            source: error,
        }
    } else {
        Error::query(table)(error)
    }
}

/// Whether the server's error means the session is gone (SQLSTATE class 08 or 57P0x).
fn ends_the_session(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let Some(code) = error.code() else {
        return false;
    };
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
}

/// Decodes [`Chunk`]s from `chunks` into batches of about `batch_rows` rows and hands each to
/// `on_batch`. Blocking: run it on a blocking thread. Returns the rows decoded.
///
/// # Errors
/// [`Error::Decode`] naming the table and column; whatever `on_batch` returns.
pub fn decode_chunks(
    plan: &ReadPlan,
    chunks: mpsc::Receiver<Chunk>,
    batch_rows: usize,
    on_batch: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    decode_stream(
        &plan.table,
        plan.decode_schema.clone(),
        &plan.wires,
        chunks,
        batch_rows,
        on_batch,
    )
}

/// [`decode_chunks`] for any `COPY` whose columns are `schema`, sent as `wires`.
///
/// # Errors
/// As [`decode_chunks`].
pub fn decode_stream(
    table: &str,
    schema: SchemaRef,
    wires: &[WireType],
    mut chunks: mpsc::Receiver<Chunk>,
    batch_rows: usize,
    mut on_batch: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<u64> {
    let decode_error = |source| Error::Decode {
        table: table.to_owned(),
        source,
    };
    let mut decoder = BatchDecoder::try_new(schema, wires, batch_rows).map_err(decode_error)?;
    let mut framer = CopyFramer::new();
    let width = decoder.width();
    let mut rows = 0u64;
    while let Some(chunk) = chunks.blocking_recv() {
        // A batch is cut before a chunk that could take it past `batch_rows` (a message holds
        // at most one row): past their capacity the builders would double, copying every
        // column and counting twice the memory against the budget.
        if decoder.rows() > 0 && decoder.rows() + chunk.len() > batch_rows {
            on_batch(decoder.finish().map_err(decode_error)?)?;
        }
        rows += framer
            .feed(&chunk, width, |fields| decoder.append(fields))
            .map_err(decode_error)? as u64;
        if decoder.rows() >= batch_rows {
            on_batch(decoder.finish().map_err(decode_error)?)?;
        }
    }
    if !framer.is_finished() {
        return Err(decode_error(crate::source::decode::DecodeError::new(
            "the COPY stream ended before its trailer (connection lost?)",
        )));
    }
    if decoder.rows() > 0 {
        on_batch(decoder.finish().map_err(decode_error)?)?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::{COPY_HEADER, COPY_TRAILER};

    #[test]
    fn a_chunk_counts_each_message_with_its_overhead() {
        let message = Bytes::from(vec![0u8; 18]);
        let per_chunk = CHUNK_BYTES.div_ceil(18 + MESSAGE_OVERHEAD);
        let mut chunker = Chunker::default();
        let chunks: Vec<Chunk> = (0..per_chunk * 2 + 1)
            .filter_map(|_| chunker.push(message.clone()))
            .collect();
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() == per_chunk));
        assert_eq!(chunker.finish().map(|c| c.len()), Some(1));
        assert!(Chunker::default().finish().is_none());
    }

    #[test]
    fn batches_are_cut_before_a_chunk_that_would_overfill_them() {
        use arrow::array::AsArray;
        use arrow::datatypes::{DataType, Field, Int32Type, Schema};

        // A one-column COPY stream as PostgreSQL sends it: the header with the first row,
        // then a message per row, then the trailer; in chunks of 7 messages.
        let row = |n: i32| [&[0, 1, 0, 0, 0, 4][..], &n.to_be_bytes()].concat();
        let mut messages = vec![Bytes::from([COPY_HEADER, &row(0)].concat())];
        messages.extend((1..100).map(|n| Bytes::from(row(n))));
        messages.push(Bytes::from_static(COPY_TRAILER));
        let (tx, rx) = mpsc::channel(messages.len());
        for chunk in messages.chunks(7) {
            tx.try_send(chunk.to_vec()).unwrap();
        }
        drop(tx);

        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let mut batches = Vec::new();
        let rows = decode_stream("t", schema, &[WireType::Int4], rx, 20, |batch| {
            batches.push(batch);
            Ok(())
        })
        .unwrap();

        assert_eq!(rows, 100);
        // Each batch takes whole chunks up to 20 rows: two chunks of 7, never a third; the
        // last two chunks (7 rows, then 2 and the trailer) fit together.
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, [14, 14, 14, 14, 14, 14, 16]);
        let values: Vec<i32> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
            .collect();
        assert_eq!(values, (0..100).collect::<Vec<_>>());
    }
}
