//! What the generator is asked for ([`GenerateOptions`]) and what it reports
//! ([`GenerateSummary`]).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::generate::time;

/// Seed used when none is given: the same seed always gives the same history.
pub const DEFAULT_SEED: u64 = 42;
/// Task instances to aim for (the result is within a few percent).
pub const DEFAULT_TASK_INSTANCES: u64 = 10_000;
/// Days of history, ending at `start + days`.
pub const DEFAULT_DAYS: u32 = 30;
/// First day of the history window, `YYYY-MM-DD`, UTC. Fixed, not "today", so that a seed means
/// the same database whenever it is run.
pub const DEFAULT_START: &str = "2024-01-01";
/// PostgreSQL schema holding Airflow's tables.
pub const DEFAULT_SCHEMA: &str = "public";
/// Bytes of COPY data handed to PostgreSQL at a time.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Chunks buffered between the thread that encodes rows and the connection that sends them.
pub const DEFAULT_CHANNEL_CHUNKS: usize = 8;

/// A Fernet key as Airflow's `[core] fernet_key` holds it. `Display` and `Debug` print
/// `REDACTED`; the key is read only through [`FernetKey::expose`].
#[derive(Clone)]
pub struct FernetKey(String);

impl FernetKey {
    /// Checks `text` (Airflow's comma-separated list; the first key encrypts).
    ///
    /// # Errors
    /// [`Error::Generate`] when the first key is not 32 bytes of URL-safe base64.
    pub fn try_new(text: &str) -> Result<FernetKey> {
        let first = text.split(',').next().unwrap_or("").trim();
        if fernet::Fernet::new(first).is_none() {
            return Err(Error::Generate {
                table: "variable".to_owned(),
                message: "the Fernet key is not 32 bytes of URL-safe base64; make one with \
                          `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
                    .to_owned(),
            });
        }
        Ok(FernetKey(first.to_owned()))
    }

    /// The key itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REDACTED")
    }
}

impl std::fmt::Display for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("REDACTED")
    }
}

/// The order runs, with their task instances, are inserted in, and so their ids and where their
/// rows sit in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InsertionOrder {
    /// When each run was created, across DAGs, as Airflow's scheduler inserts them: a table read
    /// in physical order meets the days mostly one after another (backfills come in a burst).
    #[default]
    Time,
    /// DAG by DAG, every run of one DAG before the next DAG's: each stretch of the table spans
    /// every day. The worst case for an export that groups rows by day.
    Dag,
}

/// Options for [`crate::generate::run`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub(crate) seed: u64,
    pub(crate) task_instances: u64,
    pub(crate) dags: Option<u32>,
    pub(crate) days: u32,
    pub(crate) start: i64,
    pub(crate) fernet_key: Option<FernetKey>,
    pub(crate) xcom_pickles: bool,
    pub(crate) schema: String,
    pub(crate) chunk_bytes: usize,
    pub(crate) order: InsertionOrder,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SEED,
            task_instances: DEFAULT_TASK_INSTANCES,
            dags: None,
            days: DEFAULT_DAYS,
            start: time::parse_date(DEFAULT_START).unwrap_or_default(),
            fernet_key: None,
            xcom_pickles: false,
            schema: DEFAULT_SCHEMA.to_owned(),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            order: InsertionOrder::default(),
        }
    }
}

impl GenerateOptions {
    /// Seed of every random choice. Default [`DEFAULT_SEED`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Task instances to aim for. Default [`DEFAULT_TASK_INSTANCES`].
    pub fn with_task_instances(mut self, count: u64) -> Self {
        self.task_instances = count.max(1);
        self
    }

    /// Number of DAGs. Default: grows with the square root of the task instances.
    pub fn with_dags(mut self, dags: Option<u32>) -> Self {
        self.dags = dags.map(|d| d.max(1));
        self
    }

    /// Days of history. Default [`DEFAULT_DAYS`].
    pub fn with_days(mut self, days: u32) -> Self {
        self.days = days.max(1);
        self
    }

    /// First day of the history, `YYYY-MM-DD`. Default [`DEFAULT_START`].
    ///
    /// # Errors
    /// [`Error::Generate`] when the date does not parse.
    pub fn with_start(mut self, date: &str) -> Result<Self> {
        self.start = time::parse_date(date).ok_or_else(|| Error::Generate {
            table: "dag_run".to_owned(),
            message: format!("start date {date:?} is not a YYYY-MM-DD date"),
        })?;
        Ok(self)
    }

    /// Fernet key to encrypt variables and connection secrets with, as Airflow would. Default:
    /// none, so values are stored in clear with `is_encrypted = false`.
    pub fn with_fernet_key(mut self, key: Option<FernetKey>) -> Self {
        self.fernet_key = key;
        self
    }

    /// Store a few XCom values as pickles on Airflow 2.x (`enable_xcom_pickling = True`).
    /// 1.10 always has some (pickling was its default); 3.x never (jsonb). Default false.
    pub fn with_xcom_pickles(mut self, pickles: bool) -> Self {
        self.xcom_pickles = pickles;
        self
    }

    /// PostgreSQL schema holding Airflow's tables. Default [`DEFAULT_SCHEMA`].
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Bytes of COPY data per chunk sent to PostgreSQL. Default [`DEFAULT_CHUNK_BYTES`].
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(4096);
        self
    }

    /// The order runs are inserted in. Default [`InsertionOrder::Time`].
    pub fn with_insertion_order(mut self, order: InsertionOrder) -> Self {
        self.order = order;
        self
    }
}

/// Rows written to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    /// Table name.
    pub table: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes of COPY data sent.
    pub bytes: u64,
}

/// What [`crate::generate::run`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    /// The database, without password.
    pub database: String,
    /// Catalog schema version detected.
    pub airflow_version: String,
    /// Seed used.
    pub seed: u64,
    /// DAGs the history covers.
    pub dags: u64,
    /// dag_run rows.
    pub dag_runs: u64,
    /// task_instance rows.
    pub task_instances: u64,
    /// Task instances with `map_index >= 0`.
    pub mapped_task_instances: u64,
    /// Task instances with more than one try.
    pub retried_task_instances: u64,
    /// Task instances whose `(dag_id, execution_date)` deliberately has no dag_run (only on
    /// versions that key task instances by execution date, 1.10 and 2.0, as real ones do).
    pub orphan_task_instances: u64,
    /// Rows per table, in load order.
    pub tables: Vec<TableCount>,
    /// Wall-clock seconds, connection to commit.
    pub seconds: f64,
    /// All rows written per second.
    pub rows_per_second: f64,
}

impl GenerateSummary {
    /// Rows written to `table` (0 when it was not written).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.rows)
    }

    /// All rows written.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}
