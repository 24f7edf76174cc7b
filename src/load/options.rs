//! What an import reads, where it writes, and the choices the user makes.

use std::sync::Arc;

use crate::load::secrets::FernetKeys;
use crate::load::{ImportProgress, NoProgress};
use crate::source::DatabaseUrl;
use crate::store::StoreOptions;

/// Rows per batch decoded from Parquet and COPied to a staging table.
pub const DEFAULT_BATCH_ROWS: usize = 32 * 1024;

/// What to do with a dataset row whose natural key already exists in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep the target's row and count the dataset's as skipped.
    #[default]
    Skip,
    /// Abort the whole import (nothing is written) and name the first conflicting keys.
    Fail,
    /// Overwrite the target row's columns with the dataset's (ids and references stay the
    /// target's).
    Update,
}

/// What Airflow 3 `dag_version` references of imported rows point at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DagVersionPolicy {
    /// Leave `task_instance.dag_version_id` and `dag_run.created_dag_version_id` NULL, as
    /// Airflow's own 2→3 migration does.
    #[default]
    Null,
    /// Point them at the newest `dag_version` of the row's DAG in the target (the DAG must
    /// have been parsed there first); NULL for DAGs with none.
    Latest,
}

/// The choices of one `contrail import`.
#[derive(Clone)]
pub struct ImportOptions {
    pub(crate) db: DatabaseUrl,
    pub(crate) source: String,
    pub(crate) store: StoreOptions,
    pub(crate) export_id: Option<String>,
    pub(crate) schema: String,
    pub(crate) assume_version: Option<String>,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) exclude: Vec<String>,
    pub(crate) on_conflict: OnConflict,
    pub(crate) dry_run: bool,
    pub(crate) allow_downgrade: bool,
    pub(crate) dag_version: DagVersionPolicy,
    pub(crate) keys: FernetKeys,
    pub(crate) batch_rows: usize,
    pub(crate) verify: bool,
    pub(crate) progress: Arc<dyn ImportProgress>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("db", &self.db)
            .field("source", &self.source)
            .field("export_id", &self.export_id)
            .field("on_conflict", &self.on_conflict)
            .field("dry_run", &self.dry_run)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl ImportOptions {
    /// Import the dataset at `source` (a directory or `s3://bucket/prefix`) into `db`.
    pub fn new(db: DatabaseUrl, source: impl Into<String>) -> Self {
        Self {
            db,
            source: source.into(),
            store: StoreOptions::default(),
            export_id: None,
            schema: crate::source::inspect::DEFAULT_SCHEMA.to_owned(),
            assume_version: None,
            only: None,
            exclude: Vec::new(),
            on_conflict: OnConflict::default(),
            dry_run: false,
            allow_downgrade: false,
            dag_version: DagVersionPolicy::default(),
            keys: FernetKeys::default(),
            batch_rows: DEFAULT_BATCH_ROWS,
            verify: true,
            progress: Arc::new(NoProgress),
        }
    }

    /// How to reach the dataset's store (endpoint, retries). Default: the standard chain.
    pub fn with_store_options(mut self, store: StoreOptions) -> Self {
        self.store = store;
        self
    }

    /// Import this export. Default: the newest manifest at the source.
    pub fn with_export_id(mut self, id: Option<String>) -> Self {
        self.export_id = id;
        self
    }

    /// PostgreSQL schema of the target's Airflow tables. Default `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Treat the target as this Airflow version instead of detecting it.
    pub fn with_assumed_version(mut self, version: Option<String>) -> Self {
        self.assume_version = version;
        self
    }

    /// Only these tables (default: every table of the dataset the target has).
    pub fn with_only_tables(mut self, tables: Option<Vec<String>>) -> Self {
        self.only = tables;
        self
    }

    /// Never these tables.
    pub fn with_excluded_tables(mut self, tables: Vec<String>) -> Self {
        self.exclude = tables;
        self
    }

    /// What to do with rows that exist. Default [`OnConflict::Skip`].
    pub fn with_on_conflict(mut self, on_conflict: OnConflict) -> Self {
        self.on_conflict = on_conflict;
        self
    }

    /// Do everything, report, and roll back. Default: off.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Allow a target older than the source; every column that cannot be kept is reported.
    pub fn with_allow_downgrade(mut self, allow: bool) -> Self {
        self.allow_downgrade = allow;
        self
    }

    /// Where Airflow 3 `dag_version` references point. Default [`DagVersionPolicy::Null`].
    pub fn with_dag_version(mut self, policy: DagVersionPolicy) -> Self {
        self.dag_version = policy;
        self
    }

    /// Fernet keys of both environments, for variables and connections.
    pub fn with_keys(mut self, keys: FernetKeys) -> Self {
        self.keys = keys;
        self
    }

    /// Rows per staged batch. Default [`DEFAULT_BATCH_ROWS`].
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Compare counts and content checksums after the commit. Default: on.
    pub fn with_verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }

    /// Where progress goes. Default: nowhere.
    pub fn with_progress(mut self, progress: Arc<dyn ImportProgress>) -> Self {
        self.progress = progress;
        self
    }
}
