//! Sorted runs spilled to local disk and merged back into one sorted stream per partition, so
//! that a day's rows land in one large sorted file however scattered they arrive.
//!
//! A job's memory budget holds only a slice of a big table, and rows of one day may arrive
//! spread over every range of the table. Each time the partitioner flushes, each day's sorted
//! rows that are not written straight into a file (`export::direct`: those that come in
//! stretches of one day) are written here as one *run*: an Arrow IPC stream, uncompressed,
//! since it is written and read once; a flush's runs share one file. When every range of the table has been read, the runs
//! of each day are merged ([`Merge`]), as many at a time as a memory budget allows
//! ([`fan_in`]), holding one small batch per run.
//!
//! This module owns the temporary files only; what becomes of the merged rows is the caller's.

mod merge;
mod read;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use arrow::error::ArrowError;

pub use merge::Merge;
pub use write::{Run, Spill};

/// Target size of the batches a run is written in. Rows of a run are read back one batch at a
/// time, so this is the memory a merge holds per run: small, so that many runs merge in one
/// pass.
const SPILL_BATCH_BYTES: usize = 128 * 1024;

/// Write buffer of a run file. Arrow writes a batch as many small pieces (a header, then each
/// column's buffers), and the file gets them in writes of this size. Writing them as they come
/// (an 8 KiB buffer passed most of them straight through) made ~7 KiB writes, most ending inside
/// a new page whose unwritten rest the kernel zeroes first: writing a run cost the kernel about
/// twice what 256 KiB writes cost (a 2M-row export's `write` calls 89k -> ~3k), far more than
/// copying the pieces into this buffer costs. One such buffer per run file being written is
/// outside `--memory-per-job`.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// How many runs one merge may take within `memory` bytes. A run holds up to two batches at a
/// time (the one being merged, and the one rows still point into until the next output batch);
/// the batch's sort keys and the all-NULL arrays of columns left out of runs are small beside
/// them and not counted. More runs of one partition are first merged in groups into longer
/// runs ([`Spill::reduce`]), so merge memory stays bounded however large the table.
pub fn fan_in(memory: usize) -> usize {
    (memory / (2 * SPILL_BATCH_BYTES)).clamp(4, 1024)
}

/// The indexes of `columns` columns other than `dropped`: those a run's batches hold.
fn kept(columns: usize, dropped: &[usize]) -> Vec<usize> {
    (0..columns).filter(|i| !dropped.contains(i)).collect()
}

/// Bounds on the rows per spilled batch, whatever the rows' width.
const SPILL_BATCH_ROWS: std::ops::RangeInclusive<usize> = 64..=8192;

/// A failure reading or writing a spill file.
#[derive(Debug, thiserror::Error)]
#[error("{action} the temporary file {}: {source}", path.display())]
pub struct SpillError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: ArrowError,
}

impl SpillError {
    fn writing(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| Self {
            action: "writing",
            path: path.to_owned(),
            source,
        }
    }

    fn reading(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| Self {
            action: "reading",
            path: path.to_owned(),
            source,
        }
    }
}
