//! The units of export work. A range task reads one range of one table through the shared
//! snapshot, decodes, remaps and partitions it, and writes each flush's sorted day slices
//! straight into files when they come in stretches of one day ([`direct`](super::direct)), or
//! spills them to local disk (CSV is written straight through instead). A merge task, once every
//! range of the table is read, merges one day's spilled runs into sorted Parquet files and
//! uploads them.
//! Network I/O stays on tokio; decoding, merging and encoding run on one blocking thread per
//! task.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arrow::array::{AsArray, RecordBatch};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::dataset::csv::CsvWriter;
use crate::dataset::dictionary;
use crate::dataset::layout::{self, FileFormat};
use crate::dataset::manifest::FileEntry;
use crate::dataset::parquet::ParquetOptions;
use crate::dataset::partition::Partitioner;
use crate::dataset::spill::{self, Merge, Run, Spill, SpillError};
use crate::error::{Error, Result};
use crate::export::direct::DirectFiles;
use crate::export::files::{FileSink, OpenFile, check_size};
use crate::export::upload::{self, CHUNKS_IN_FLIGHT, ChannelWriter};
use crate::remap;
use crate::source::query::ReadPlan;
use crate::source::read;
use crate::source::runs::RunIndex;
use crate::store::Store;

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
    /// The DAG runs, when the plan looks them up instead of joining `dag_run`. Released
    /// ([`TableJob::release_runs`]) once every range is read, so that merges do not hold them.
    pub(crate) runs: Mutex<Option<Arc<RunIndex>>>,
    /// Where range tasks leave sorted runs for the merge (Parquet only).
    pub(crate) spill: Option<Arc<Spill>>,
    /// A merged file is closed once it reaches about this size.
    pub(crate) max_file_bytes: usize,
    /// The columns the table's files write without a dictionary, once a file's first rows
    /// were a full sample ([`TableJob::plain_columns`]).
    pub(crate) plain_columns: OnceLock<Vec<bool>>,
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
    let processor =
        tokio::task::spawn_blocking(move || match (processor_job.format, &processor_job.spill) {
            (FileFormat::Parquet, Some(spill)) => process(&processor_job, rx, spill, &handle),
            (FileFormat::Csv, _) => process_csv(&processor_job, rx, &handle),
            (FileFormat::Parquet, None) => Err(Error::Export {
                message: format!(
                    "{} has no spill directory for its Parquet rows",
                    processor_job.plan.table
                ),
            }),
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
    rx: mpsc::Receiver<read::Chunk>,
    spill: &Spill,
    handle: &Handle,
) -> Result<TaskOutput> {
    let mut partitioner = Partitioner::new(
        job.column_indexes(&job.plan.partition_columns),
        job.column_indexes(&job.plan.sort_columns),
        job.memory_budget,
    );
    let mut files = DirectFiles::new(FileSink::new(job, handle), job.memory_budget);
    let runs = job.runs();
    let mut orphan_rows = 0u64;
    let read = (|| -> Result<u64> {
        let mut place = |flushed| {
            let spilled = files.place(flushed)?;
            spill.write(spilled).map_err(|e| job.spill_error(e))
        };
        let rows = read::decode_chunks(&job.plan, rx, job.batch_rows, |decoded| {
            let canonical = job.canonical(decoded, runs.as_deref(), &mut orphan_rows)?;
            place(
                partitioner
                    .push(canonical)
                    .map_err(|e| job.arrow_error(e))?,
            )
        })?;
        place(partitioner.finish().map_err(|e| job.arrow_error(e))?)?;
        Ok(rows)
    })();
    match read {
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

/// Merges the spilled runs of partition `day` of `job`'s table into sorted Parquet files.
pub(crate) async fn merge(
    job: Arc<TableJob>,
    day: Option<String>,
    runs: Vec<Run>,
) -> Result<TaskOutput> {
    let handle = Handle::current();
    let table = job.plan.table.clone();
    tokio::task::spawn_blocking(move || merge_runs(&job, day, runs, &handle))
        .await
        .map_err(|e| Error::Export {
            message: format!("the {table} merge thread failed: {e}"),
        })?
}

fn merge_runs(
    job: &TableJob,
    day: Option<String>,
    runs: Vec<Run>,
    handle: &Handle,
) -> Result<TaskOutput> {
    let spill = job.spill.as_deref().ok_or_else(|| Error::Export {
        message: format!("{} has no spilled rows to merge", job.plan.table),
    })?;
    let sort_columns = job.column_indexes(&job.plan.sort_columns);
    tracing::debug!(
        table = %job.plan.table,
        day = day.as_deref().unwrap_or("-"),
        runs = runs.len(),
        rows = runs.iter().map(Run::rows).sum::<usize>(),
        "Merging spilled runs."
    );
    // The last merge shares the job's memory with the Parquet writer (a row group's pages, up
    // to a quarter of it, and a dictionary per column): it takes a third of the runs a merge
    // alone could.
    let runs = spill
        .reduce(
            runs,
            &sort_columns,
            spill::fan_in(job.memory_budget),
            spill::fan_in(job.memory_budget / 3),
        )
        .map_err(|e| job.spill_error(e))?;
    let mut files = FileSink::new(job, handle);
    let mut open: Option<OpenFile> = None;
    let written = (|| -> Result<()> {
        let mut merge = Merge::try_new(
            &runs,
            job.plan.output_schema.clone(),
            &sort_columns,
            job.batch_rows,
        )
        .map_err(|e| job.spill_error(e))?;
        while let Some(batch) = merge.next_batch().map_err(|e| job.spill_error(e))? {
            files.write(&mut open, day.as_deref(), &batch)?;
        }
        if let Some(file) = open.take() {
            files.close(file)?;
        }
        Ok(())
    })();
    runs.into_iter().for_each(Run::remove);
    match written {
        Ok(()) => Ok(TaskOutput {
            files: files.finish()?,
            ..TaskOutput::default()
        }),
        Err(error) => {
            if let Some(file) = open.take() {
                files.discard(file);
            }
            files.abandon();
            Err(error)
        }
    }
}

/// Writes the whole table as one CSV file, streaming rows as they are decoded (unsorted: sorting
/// would hold the table in memory).
fn process_csv(
    job: &TableJob,
    rx: mpsc::Receiver<read::Chunk>,
    handle: &Handle,
) -> Result<TaskOutput> {
    let key = layout::data_key(&job.plan.table, None, &job.export_id, 0, "csv");
    let (tx, pieces) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let uploading = handle.spawn(upload::upload(job.store.clone(), key.clone(), pieces));
    let write_error = |e: std::io::Error| Error::Export {
        message: format!("writing {key}: {e}"),
    };
    let runs = job.runs();
    let mut orphan_rows = 0u64;
    let written = (|| -> Result<FileEntry> {
        let mut writer = CsvWriter::try_new(ChannelWriter::new(tx), &job.plan.output_schema)
            .map_err(write_error)?;
        read::decode_chunks(&job.plan, rx, job.batch_rows, |decoded| {
            let canonical = job.canonical(decoded, runs.as_deref(), &mut orphan_rows)?;
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

impl TableJob {
    /// Indexes in the output schema of the columns named `names`.
    pub(super) fn column_indexes(&self, names: &[String]) -> Vec<usize> {
        let schema = &self.plan.output_schema;
        names
            .iter()
            .filter_map(|n| schema.index_of(n).ok())
            .collect()
    }

    fn spill_error(&self, error: SpillError) -> Error {
        Error::Export {
            message: format!(
                "{}: {error}; if the disk is full, free space or point --spill-dir at a \
                 larger one",
                self.plan.table
            ),
        }
    }

    /// Which columns a file starting with `first_rows` writes without a dictionary
    /// ([`dictionary::plain_columns`]). The first file to start with a full sample
    /// ([`dictionary::SAMPLE_ROWS`] rows) decides for every later file of the table, so that a
    /// file started by a few rows (the first rows of a day, written straight from a flush)
    /// does not decide from them; until then each file decides from its own rows.
    pub(crate) fn plain_columns(&self, first_rows: &RecordBatch) -> Vec<bool> {
        if let Some(plain) = self.plain_columns.get() {
            return plain.clone();
        }
        let plain = dictionary::plain_columns(first_rows);
        if first_rows.num_rows() >= dictionary::SAMPLE_ROWS {
            let _ = self.plain_columns.set(plain.clone());
        }
        plain
    }

    /// The run index, until [`TableJob::release_runs`].
    fn runs(&self) -> Option<Arc<RunIndex>> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lets go of the run index: every range is read.
    pub(crate) fn release_runs(&self) {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// The canonical rows of a decoded batch: progress reported, runs looked up in `runs`,
    /// orphans counted into `orphan_rows`, columns remapped.
    fn canonical(
        &self,
        decoded: RecordBatch,
        runs: Option<&RunIndex>,
        orphan_rows: &mut u64,
    ) -> Result<RecordBatch> {
        self.progress
            .rows(&self.plan.table, decoded.num_rows() as u64);
        let decoded = self.with_runs(decoded, runs)?;
        if let Some(flag) = self.plan.orphan_flag {
            *orphan_rows += decoded.column(flag).as_boolean().true_count() as u64;
        }
        remap::assemble(&self.plan, &decoded).map_err(|e| Error::Export {
            message: format!("remapping {}: {e}", self.plan.table),
        })
    }

    /// `decoded` with its run columns filled from the run index, when the plan uses one.
    fn with_runs(&self, decoded: RecordBatch, runs: Option<&RunIndex>) -> Result<RecordBatch> {
        match (&self.plan.run_lookup, runs) {
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
