//! `contrail export`: every history table of an Airflow database, as of one snapshot, into
//! canonical partitioned Parquet in a local directory or on S3, with the manifest written last.
//!
//! This module orchestrates; the stages do the work: [`crate::source`] reads, [`crate::remap`]
//! maps, [`crate::dataset`] encodes, [`crate::store`] writes.

mod direct;
mod files;
pub mod plan;
mod run;
mod spill_root;
mod task;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use plan::{ExportPlan, TablePlan, TableSelection, TimeWindow};
pub use run::run;

use crate::dataset::layout::FileFormat;
use crate::dataset::parquet::ParquetOptions;
use crate::source::DatabaseUrl;
use crate::store::StoreOptions;

/// Parallel readers (connections) by default.
pub const DEFAULT_JOBS: usize = 2;

/// Memory for buffering rows before they are sorted and written or spilled, per job; a merge
/// holds about as much (its runs' batches, and the row group being encoded). Measured at 5M task
/// instances inserted in time order, with two jobs: peak RSS 176–181 MiB with 24 MiB (about 200
/// with 32), most of it while both jobs read, sort and write their flushes, plus the run index
/// (at most [`crate::source::runs::DEFAULT_RUN_INDEX_MEMORY`]).
pub const DEFAULT_MEMORY_PER_JOB: usize = 24 * 1024 * 1024;

/// A merged Parquet file is closed once it reaches about this size, and the day's next rows
/// start a new one. Analysts' engines read files of a few hundred MB best.
pub const DEFAULT_MAX_FILE_BYTES: usize = 256 * 1024 * 1024;

/// Receives progress while an export runs. Called from worker threads.
pub trait ExportProgress: Send + Sync {
    /// The export of `table` is planned with about `estimated_rows` rows.
    fn table_planned(&self, table: &str, estimated_rows: u64);
    /// `rows` more rows of `table` were decoded.
    fn rows(&self, table: &str, rows: u64);
    /// Every range of `table` is done.
    fn table_done(&self, table: &str);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default)]
pub struct NoProgress;

impl ExportProgress for NoProgress {
    fn table_planned(&self, _: &str, _: u64) {}
    fn rows(&self, _: &str, _: u64) {}
    fn table_done(&self, _: &str) {}
}

/// What to export, from where, to where, and how.
#[derive(Clone)]
pub struct ExportOptions {
    pub(crate) db: DatabaseUrl,
    pub(crate) destination: String,
    pub(crate) schema: String,
    pub(crate) assume_version: Option<String>,
    pub(crate) tables: TableSelection,
    pub(crate) window: TimeWindow,
    pub(crate) max_age_days: Option<u32>,
    pub(crate) incremental: bool,
    pub(crate) jobs: usize,
    pub(crate) memory_per_job: usize,
    pub(crate) spill_dir: Option<PathBuf>,
    pub(crate) max_file_bytes: usize,
    pub(crate) run_index_memory: usize,
    pub(crate) batch_rows: usize,
    pub(crate) format: FileFormat,
    pub(crate) parquet: ParquetOptions,
    pub(crate) store: StoreOptions,
    pub(crate) dry_run: bool,
    pub(crate) allow_plaintext_secrets: bool,
    pub(crate) progress: Arc<dyn ExportProgress>,
}

impl std::fmt::Debug for ExportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("db", &self.db)
            .field("destination", &self.destination)
            .field("tables", &self.tables)
            .field("window", &self.window)
            .field("incremental", &self.incremental)
            .field("jobs", &self.jobs)
            .field("format", &self.format)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl ExportOptions {
    /// Export the database at `db` to `destination` (a directory, or `s3://bucket/prefix`).
    pub fn new(db: DatabaseUrl, destination: impl Into<String>) -> Self {
        Self {
            db,
            destination: destination.into(),
            schema: crate::source::inspect::DEFAULT_SCHEMA.to_owned(),
            assume_version: None,
            tables: TableSelection::default(),
            window: TimeWindow::default(),
            max_age_days: None,
            incremental: false,
            jobs: DEFAULT_JOBS,
            memory_per_job: DEFAULT_MEMORY_PER_JOB,
            spill_dir: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            run_index_memory: crate::source::runs::DEFAULT_RUN_INDEX_MEMORY,
            batch_rows: crate::source::read::DEFAULT_BATCH_ROWS,
            format: FileFormat::default(),
            parquet: ParquetOptions::default(),
            store: StoreOptions::default(),
            dry_run: false,
            allow_plaintext_secrets: false,
            progress: Arc::new(NoProgress),
        }
    }

    /// PostgreSQL schema of Airflow's tables. Default `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Treat the source as this Airflow version instead of detecting it. Default: detect.
    pub fn with_assumed_version(mut self, version: Option<String>) -> Self {
        self.assume_version = version;
        self
    }

    /// Which tables. Default: every history table, without `connection`.
    pub fn with_tables(mut self, tables: TableSelection) -> Self {
        self.tables = tables;
        self
    }

    /// Only rows whose time falls in `window`. Default: everything.
    pub fn with_window(mut self, window: TimeWindow) -> Self {
        self.window = window;
        self
    }

    /// Only rows older than this many days (the window's upper bound becomes snapshot time
    /// minus the days). Default: none.
    pub fn with_max_age_days(mut self, days: Option<u32>) -> Self {
        self.max_age_days = days;
        self
    }

    /// Continue from the watermark of the newest manifest at the destination. Default: off.
    pub fn with_incremental(mut self, incremental: bool) -> Self {
        self.incremental = incremental;
        self
    }

    /// Parallel readers. Default [`DEFAULT_JOBS`].
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Memory for buffered rows per job, in bytes. Default [`DEFAULT_MEMORY_PER_JOB`].
    pub fn with_memory_per_job(mut self, bytes: usize) -> Self {
        self.memory_per_job = bytes.max(1024 * 1024);
        self
    }

    /// Directory for the sorted runs of rows that wait, on local disk, to be merged into one
    /// large sorted file per day. It needs about the size of the largest table as Arrow data
    /// (several times its Parquet size); each table's runs are deleted as its files are written.
    /// What a killed export left there is removed by the next export spilling to the same place.
    /// Default: the system's temporary directory (`TMPDIR`).
    pub fn with_spill_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.spill_dir = dir;
        self
    }

    /// Size at which a Parquet file is closed and the next begun, in bytes. Default
    /// [`DEFAULT_MAX_FILE_BYTES`].
    pub fn with_max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes.max(1);
        self
    }

    /// Memory for the in-memory index of DAG runs that replaces PostgreSQL's join of `dag_run`
    /// to task instances (and other tables naming runs by `run_id`), in bytes. When `dag_run`
    /// does not fit, or with 0, PostgreSQL joins instead (slower, no client memory). Default
    /// [`crate::source::runs::DEFAULT_RUN_INDEX_MEMORY`].
    pub fn with_run_index_memory(mut self, bytes: usize) -> Self {
        self.run_index_memory = bytes;
        self
    }

    /// Rows per decoded batch. Default [`crate::source::read::DEFAULT_BATCH_ROWS`].
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// File format: day-partitioned Parquet, or one CSV file per table (read by one task, so
    /// not in parallel within a table). Default [`FileFormat::Parquet`].
    pub fn with_format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// Parquet encoding. Default [`ParquetOptions::default`].
    pub fn with_parquet(mut self, parquet: ParquetOptions) -> Self {
        self.parquet = parquet;
        self
    }

    /// Object store settings (S3 part size, retries, encryption). Default
    /// [`StoreOptions::default`].
    pub fn with_store(mut self, store: StoreOptions) -> Self {
        self.store = store;
        self
    }

    /// Plan only: print tables, estimates, ranges and keys; write nothing. Default: off.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Allow exporting connections with unencrypted passwords to a destination without
    /// server-side encryption. Default: refused.
    pub fn with_allow_plaintext_secrets(mut self, allow: bool) -> Self {
        self.allow_plaintext_secrets = allow;
        self
    }

    /// Where progress goes. Default: nowhere.
    pub fn with_progress(mut self, progress: Arc<dyn ExportProgress>) -> Self {
        self.progress = progress;
        self
    }
}

/// What an export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// The plan it followed.
    pub plan: ExportPlan,
    /// Whether it only planned.
    pub dry_run: bool,
    /// Per table results (empty for a dry run).
    pub tables: Vec<TableSummary>,
    /// Wall time in seconds.
    pub elapsed_seconds: f64,
}

/// One table's result.
#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    /// Table name.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// Rows whose dag_run was missing (kept and flagged).
    pub orphan_rows: u64,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Bytes read from PostgreSQL (binary COPY).
    pub bytes_read: u64,
    /// Whether rows were matched to their DAG runs by contrail's run index rather than by a
    /// PostgreSQL join (see [`ExportOptions::with_run_index_memory`]).
    pub runs_indexed: bool,
    /// Bytes of sorted runs left on local disk to be merged (see
    /// [`ExportOptions::with_spill_dir`]).
    pub spilled_bytes: u64,
}
