//! The manifest of one export: the only proof that a dataset is complete. It is written last;
//! a reader trusts only files it lists, and files of an export without a manifest are
//! leftovers of a run that failed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// `_contrail/exports/<export_id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// Identifier of this export; part of every data file name.
    pub export_id: String,
    /// contrail version that wrote it.
    pub tool_version: String,
    /// Canonical interchange model version of the files.
    pub canonical_version: u32,
    /// The source database.
    pub source: SourceInfo,
    /// When the consistent snapshot was taken (RFC 3339, UTC); every row is as of then.
    pub snapshot_time: String,
    /// The time window exported, if any.
    pub window: Window,
    /// When the export started and finished (RFC 3339, UTC).
    pub started_at: String,
    /// When the last file was written.
    pub finished_at: String,
    /// File format: `parquet` or `csv`.
    pub file_format: String,
    /// Per table: what was exported.
    pub tables: BTreeMap<String, TableEntry>,
}

/// Where the data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Catalog schema version of the source (`2.10`).
    pub airflow_version: String,
    /// Alembic revision(s) of the source.
    pub alembic_revisions: Vec<String>,
    /// The database (no password).
    pub database: String,
    /// PostgreSQL server version.
    pub server_version: String,
}

/// A half-open time window `[since, until)` on each table's time column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive lower bound (RFC 3339), if any.
    pub since: Option<String>,
    /// Exclusive upper bound (RFC 3339), if any.
    pub until: Option<String>,
}

/// One exported table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Rows exported.
    pub rows: u64,
    /// Rows whose dag_run could not be found (kept, flagged; `run_id`/`logical_date` NULL).
    pub orphan_rows: u64,
    /// The time columns the window was applied to.
    pub time_columns: Vec<String>,
    /// Upper bound of the window for this table: where an `--incremental` export continues.
    pub watermark: Option<String>,
    /// Data files, in key order.
    pub files: Vec<FileEntry>,
}

/// One data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Key relative to the dataset root.
    pub key: String,
    /// Day partition, if the table is partitioned.
    pub partition: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}
