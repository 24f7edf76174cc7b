//! One unit of export work: one range of one table, read through the shared snapshot, decoded,
//! remapped, partitioned, encoded and uploaded. Network I/O stays on tokio; decoding and
//! encoding run on one blocking thread per task.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{AsArray, RecordBatch};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::dataset::csv::CsvWriter;
use crate::dataset::layout::{self, FileFormat};
use crate::dataset::manifest::FileEntry;
use crate::dataset::parquet::{self as pq, ParquetOptions};
use crate::dataset::partition::{Flushed, Partitioner};
use crate::error::{Error, Result};
use crate::export::upload::{self, CHUNKS_IN_FLIGHT, ChannelWriter};
use crate::remap;
use crate::source::query::ReadPlan;
use crate::source::read;
use crate::source::runs::RunIndex;
use crate::store::{ObjectInfo, Store};

/// Files of one task that may be uploading while the next is encoded.
const UPLOADS_IN_FLIGHT: usize = 2;

/// Everything a task needs besides its connection; shared by all tasks of a table.
pub(crate) struct TableJob {
    pub(crate) plan: ReadPlan,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) export_id: String,
    pub(crate) file_counter: Arc<AtomicUsize>,
    pub(crate) parquet: ParquetOptions,
    pub(crate) batch_rows: usize,
    pub(crate) format: FileFormat,
    pub(crate) memory_budget: usize,
    pub(crate) canonical_version: u32,
    pub(crate) source_version: String,
    pub(crate) progress: Arc<dyn crate::export::ExportProgress>,
    /// The DAG runs, when the plan looks them up instead of joining `dag_run`.
    pub(crate) runs: Option<Arc<RunIndex>>,
}

/// What one task produced.
#[derive(Debug, Default)]
pub(crate) struct TaskOutput {
    pub(crate) rows: u64,
    pub(crate) orphan_rows: u64,
    pub(crate) bytes_read: u64,
    pub(crate) files: Vec<FileEntry>,
}

/// Runs one range of `job` on `client` (already inside the snapshot).
pub(crate) async fn run(
    client: &Client,
    job: Arc<TableJob>,
    predicate: Option<String>,
) -> Result<TaskOutput> {
    let (tx, rx) = mpsc::channel(read::DEFAULT_CHUNKS_IN_FLIGHT);
    let handle = Handle::current();
    let processor_job = job.clone();
    let processor = tokio::task::spawn_blocking(move || match processor_job.format {
        FileFormat::Parquet => process(&processor_job, rx, &handle),
        FileFormat::Csv => process_csv(&processor_job, rx, &handle),
    });
    let statement = job.plan.copy_statement(predicate.as_deref());
    let copied = read::copy_out(client, &job.plan.table, &statement, tx).await;
    let processed = processor.await.map_err(|e| Error::Export {
        message: format!("the {} encoder thread failed: {e}", job.plan.table),
    })?;
    let bytes_read = copied?;
    let mut output = processed?;
    output.bytes_read = bytes_read;
    Ok(output)
}

fn process(
    job: &TableJob,
    rx: mpsc::Receiver<bytes::Bytes>,
    handle: &Handle,
) -> Result<TaskOutput> {
    let schema = job.plan.output_schema.clone();
    let index = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| schema.index_of(n).ok())
            .collect()
    };
    let mut partitioner = Partitioner::new(
        index(&job.partition_columns()),
        index(&job.sort_columns()),
        job.memory_budget,
    );
    let mut files = FileSink {
        job,
        handle,
        pending: VecDeque::new(),
        done: Vec::new(),
    };
    let mut orphan_rows = 0u64;
    let result = (|| -> Result<u64> {
        let rows = read::decode_chunks(&job.plan, rx, job.batch_rows, |decoded| {
            let canonical = job.canonical(decoded, &mut orphan_rows)?;
            for flushed in partitioner
                .push(canonical)
                .map_err(|e| job.arrow_error(e))?
            {
                files.write(flushed)?;
            }
            Ok(())
        })?;
        for flushed in partitioner.finish().map_err(|e| job.arrow_error(e))? {
            files.write(flushed)?;
        }
        Ok(rows)
    })();
    match result {
        Ok(rows) => Ok(TaskOutput {
            rows,
            orphan_rows,
            bytes_read: 0,
            files: files.finish()?,
        }),
        Err(error) => {
            files.abandon();
            Err(error)
        }
    }
}

/// Writes the whole table as one CSV file, streaming rows as they are decoded (unsorted: sorting
/// would hold the table in memory).
fn process_csv(
    job: &TableJob,
    rx: mpsc::Receiver<bytes::Bytes>,
    handle: &Handle,
) -> Result<TaskOutput> {
    let key = layout::data_key(&job.plan.table, None, &job.export_id, 0, "csv");
    let (tx, pieces) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let uploading = handle.spawn(upload::upload(job.store.clone(), key.clone(), pieces));
    let write_error = |e: std::io::Error| Error::Export {
        message: format!("writing {key}: {e}"),
    };
    let mut orphan_rows = 0u64;
    let written = (|| -> Result<FileEntry> {
        let mut writer = CsvWriter::try_new(ChannelWriter::new(tx), &job.plan.output_schema)
            .map_err(write_error)?;
        read::decode_chunks(&job.plan, rx, job.batch_rows, |decoded| {
            let canonical = job.canonical(decoded, &mut orphan_rows)?;
            writer.write(&canonical).map_err(write_error)
        })?;
        let (stats, channel) = writer.finish().map_err(write_error)?;
        channel.complete().map_err(write_error)?;
        Ok(FileEntry {
            key: key.clone(),
            partition: None,
            rows: stats.rows,
            bytes: stats.bytes,
            sha256: stats.sha256,
        })
    })();
    // On error the channel is closed without `Done`, so the upload aborts; wait for that.
    let uploaded = handle.block_on(uploading).map_err(|e| Error::Export {
        message: format!("uploading {key}: {e}"),
    });
    let entry = match (written, uploaded) {
        (Ok(entry), Ok(Ok(info))) => {
            check_size(&entry, &info)?;
            entry
        }
        // A store error is the cause when the upload failed first; otherwise the upload
        // only stopped because the rows did.
        (Err(_), Ok(Err(error))) if error.store_kind().is_some() => return Err(error),
        (Err(error), _) | (Ok(_), Err(error)) | (Ok(_), Ok(Err(error))) => return Err(error),
    };
    Ok(TaskOutput {
        rows: entry.rows,
        orphan_rows,
        bytes_read: 0,
        files: vec![entry],
    })
}

/// The store must hold exactly the bytes that were encoded.
fn check_size(entry: &FileEntry, info: &ObjectInfo) -> Result<()> {
    if info.size == entry.bytes {
        return Ok(());
    }
    Err(Error::Export {
        message: format!(
            "{} has {} bytes in the store, {} were written",
            entry.key, info.size, entry.bytes
        ),
    })
}

impl TableJob {
    fn partition_columns(&self) -> Vec<String> {
        self.plan.partition_columns.clone()
    }

    fn sort_columns(&self) -> Vec<String> {
        self.plan.sort_columns.clone()
    }

    /// The canonical rows of a decoded batch: progress reported, runs looked up, orphans
    /// counted into `orphan_rows`, columns remapped.
    fn canonical(&self, decoded: RecordBatch, orphan_rows: &mut u64) -> Result<RecordBatch> {
        self.progress
            .rows(&self.plan.table, decoded.num_rows() as u64);
        let decoded = self.with_runs(decoded)?;
        if let Some(flag) = self.plan.orphan_flag {
            *orphan_rows += decoded.column(flag).as_boolean().true_count() as u64;
        }
        remap::assemble(&self.plan, &decoded).map_err(|e| Error::Export {
            message: format!("remapping {}: {e}", self.plan.table),
        })
    }

    /// `decoded` with its run columns filled from the run index, when the plan uses one.
    fn with_runs(&self, decoded: RecordBatch) -> Result<RecordBatch> {
        match (&self.plan.run_lookup, &self.runs) {
            (Some(lookup), Some(runs)) => runs
                .fill(lookup, self.plan.orphan_flag, &decoded)
                .map_err(|e| Error::Export {
                    message: format!("looking up the DAG runs of {}: {e}", self.plan.table),
                }),
            (Some(_), None) => Err(Error::Export {
                message: format!(
                    "{} was planned with a run index but has none",
                    self.plan.table
                ),
            }),
            (None, _) => Ok(decoded),
        }
    }

    fn arrow_error(&self, error: arrow::error::ArrowError) -> Error {
        Error::Export {
            message: format!("partitioning {}: {error}", self.plan.table),
        }
    }
}

/// Writes flushed partitions as files, keeping a few uploads in flight.
struct FileSink<'a> {
    job: &'a TableJob,
    handle: &'a Handle,
    pending: VecDeque<(FileEntry, JoinHandle<Result<ObjectInfo>>)>,
    done: Vec<FileEntry>,
}

impl FileSink<'_> {
    fn write(&mut self, flushed: Flushed) -> Result<()> {
        let job = self.job;
        let n = job.file_counter.fetch_add(1, Ordering::SeqCst);
        let partition = flushed
            .day
            .as_deref()
            .map(|d| layout::partition_dir(Some(d)));
        let partition = if job.plan.partition_columns.is_empty() {
            None
        } else {
            Some(partition.unwrap_or_else(|| layout::partition_dir(None)))
        };
        let key = layout::data_key(
            &job.plan.table,
            partition.as_deref(),
            &job.export_id,
            n,
            "parquet",
        );
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let uploading = self
            .handle
            .spawn(upload::upload(job.store.clone(), key.clone(), rx));
        let properties = job
            .parquet
            .properties(
                &job.plan.output_schema,
                vec![
                    ("contrail.table".to_owned(), job.plan.table.clone()),
                    (
                        "contrail.canonical_version".to_owned(),
                        job.canonical_version.to_string(),
                    ),
                    (
                        "contrail.source_version".to_owned(),
                        job.source_version.clone(),
                    ),
                    ("contrail.export_id".to_owned(), job.export_id.clone()),
                ],
            )
            .map_err(|e| Error::Export {
                message: format!("Parquet settings: {e}"),
            })?;
        let encoded = pq::write_sorted(&flushed.rows, ChannelWriter::new(tx), properties)
            .map_err(|e| Error::Export {
                message: format!("encoding {key}: {e}"),
            })
            .and_then(|(stats, writer)| {
                writer
                    .complete()
                    .map(|()| stats)
                    .map_err(|e| Error::Export {
                        message: format!("writing {key}: {e}"),
                    })
            });
        let stats = match encoded {
            Ok(stats) => stats,
            Err(error) => {
                // The uploader's own error (if it failed first) explains more than ours.
                return Err(self
                    .handle
                    .block_on(uploading)
                    .ok()
                    .and_then(Result::err)
                    .unwrap_or(error));
            }
        };
        let entry = FileEntry {
            key,
            partition: flushed.day.clone(),
            rows: stats.rows,
            bytes: stats.bytes,
            sha256: stats.sha256,
        };
        self.pending.push_back((entry, uploading));
        while self.pending.len() > UPLOADS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((entry, uploading)) = self.pending.pop_front() {
            let info = self
                .handle
                .block_on(uploading)
                .map_err(|e| Error::Export {
                    message: format!("uploading {}: {e}", entry.key),
                })??;
            check_size(&entry, &info)?;
            self.done.push(entry);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<FileEntry>> {
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    /// Waits for uploads still running so that none outlives a failed task.
    fn abandon(mut self) {
        for (_, uploading) in self.pending.drain(..) {
            let _ = self.handle.block_on(uploading);
        }
    }
}
