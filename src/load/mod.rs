//! `contrail import` and `contrail verify`: a contrail dataset into another environment's
//! Airflow database, whose own `airflow db migrate` made its schema.
//!
//! One import is one transaction. Each table's files are checked against the manifest, decoded,
//! and binary-COPied into a temporary staging table holding canonical columns
//! (`stage`); one `INSERT … SELECT` per table then maps them to the target version's columns,
//! resolves every environment-local id through the target's own rows (dag_run by
//! `(dag_id, run_id)`, task instances by their natural key, jobs through a map of new ids,
//! log templates by file name), and skips, updates or refuses rows whose natural key exists
//! (`mapping`, `merge`). Nothing is visible to Airflow until the commit; any error rolls
//! everything back.
//!
//! Nothing imported resumes or re-runs: runs still `running` or `queued` at export time, and
//! task instances `running`, `queued`, `scheduled`, `deferred`, `up_for_reschedule`,
//! `up_for_retry` or `restarting`, are imported as `failed`, without their deferral state
//! (trigger, next method and kwargs). Trigger rows are never copied.

mod encode;
mod mapping;
mod merge;
mod options;
mod run;
mod secrets;
mod stage;
mod verify;

pub use options::{DEFAULT_BATCH_ROWS, DagVersionPolicy, ImportOptions, OnConflict};
pub use run::{ImportSummary, TableOutcome, run};
pub use secrets::FernetKeys;
pub use verify::{TableCheck, VerifySummary, verify};

/// Tables in the order they load: each after every table whose rows it refers to.
///
/// Jobs come before the rows that name them (their new ids are mapped first), log templates
/// before dag runs, dag runs before everything keyed by a run, task instances before
/// everything keyed by a task instance.
pub const LOAD_ORDER: &[&str] = &[
    "slot_pool",
    "variable",
    "connection",
    "log_template",
    "job",
    "dag_run",
    "task_instance",
    "task_instance_history",
    "task_reschedule",
    "task_fail",
    "rendered_task_instance_fields",
    "xcom",
    "task_instance_note",
    "dag_run_note",
    "sla_miss",
    "log",
];

/// Receives progress while an import runs.
pub trait ImportProgress: Send + Sync {
    /// Loading `table` starts; the dataset holds `rows` rows of it.
    fn table_started(&self, table: &str, rows: u64);
    /// `rows` more rows of `table` were staged.
    fn rows(&self, table: &str, rows: u64);
    /// `table` is merged into the target.
    fn table_done(&self, table: &str);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default)]
pub struct NoProgress;

impl ImportProgress for NoProgress {
    fn table_started(&self, _: &str, _: u64) {}
    fn rows(&self, _: &str, _: u64) {}
    fn table_done(&self, _: &str) {}
}
