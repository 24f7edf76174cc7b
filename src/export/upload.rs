//! The bridge from the blocking encoder thread to the async object store: Parquet bytes are
//! written into a [`ChannelWriter`], whose chunks an async task streams into an
//! [`ObjectWriter`](crate::store::ObjectWriter). The channel is bounded, so a slow upload
//! slows the encoder instead of growing memory.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::store::{ObjectInfo, Store};

/// Bytes gathered before a chunk is handed to the uploader.
pub(super) const CHUNK_BYTES: usize = 1024 * 1024;

/// Chunks buffered between encoder and uploader per file.
pub(super) const CHUNKS_IN_FLIGHT: usize = 8;

/// What the encoder sends the uploader.
#[derive(Debug)]
pub(super) enum Piece {
    /// More bytes of the file.
    Chunk(Bytes),
    /// The file is complete: finish the object. A channel that closes without this aborts it.
    Done,
}

/// A `Write` that sends fixed-size chunks over a channel, blocking when it is full.
#[derive(Debug)]
pub(super) struct ChannelWriter {
    tx: mpsc::Sender<Piece>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    /// A writer feeding `tx`.
    pub(super) fn new(tx: mpsc::Sender<Piece>) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send(&mut self, piece: Piece) -> std::io::Result<()> {
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is buffered and marks the file complete.
    ///
    /// # Errors
    /// When the uploader has stopped (its own error says why).
    pub(super) fn complete(mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buffer));
            self.send(Piece::Chunk(chunk))?;
        }
        self.send(Piece::Done)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_BYTES {
            let chunk = Bytes::from(std::mem::replace(
                &mut self.buffer,
                Vec::with_capacity(CHUNK_BYTES),
            ));
            self.send(Piece::Chunk(chunk))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams the pieces received on `rx` into object `key`, finishing it on [`Piece::Done`] and
/// aborting it if the channel closes first or a write fails.
///
/// # Errors
/// The store's error, or [`Error::Export`] when the encoder stopped before completing the file.
pub(super) async fn upload(
    store: Arc<dyn Store>,
    key: String,
    mut rx: mpsc::Receiver<Piece>,
) -> Result<ObjectInfo> {
    let mut writer = store.create(&key).await?;
    loop {
        match rx.recv().await {
            Some(Piece::Chunk(chunk)) => {
                if let Err(error) = writer.write(chunk).await {
                    let _ = writer.abort().await;
                    return Err(error);
                }
            }
            Some(Piece::Done) => return writer.finish().await,
            None => {
                let _ = writer.abort().await;
                return Err(Error::Export {
                    message: format!("writing {key} stopped before the file was complete"),
                });
            }
        }
    }
}
