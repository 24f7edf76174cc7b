//! One writer per Airflow table: which columns it can fill and how, and which rows it emits.
//!
//! Each writer walks the [`World`] on its own (one table, one COPY stream, one pass) and emits
//! rows for the entities its table holds. The column lists are the union over every Airflow
//! version; [`crate::generate::copy::plan`] keeps those the target version has.

mod audit;
mod config;
mod payloads;
mod runs;
mod task_instances;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::catalog::TableSchema;
use crate::catalog::detect::LiveTable;
use crate::error::Result;
use crate::generate::copy::{Encoder, Plan, family};
use crate::generate::runs::{Run, Ti};
use crate::generate::world::{Dag, Task, World};

/// A table the generator can fill.
#[derive(Clone, Copy)]
pub(crate) struct TableGen {
    /// Chooses the columns to write at the target version.
    pub(crate) plan: fn(&TableSchema, &LiveTable) -> Result<Plan>,
    /// Writes every row.
    pub(crate) produce: fn(&World, &Ctx, &Plan, &mut Encoder) -> Result<()>,
}

/// The writer of `table`, if the generator fills it.
pub(crate) fn generator(table: &str) -> Option<TableGen> {
    Some(match table {
        "dag_run" => runs::DAG_RUN,
        "dag_run_note" => runs::DAG_RUN_NOTE,
        "sla_miss" => runs::SLA_MISS,
        "log_template" => config::LOG_TEMPLATE,
        "slot_pool" => config::SLOT_POOL,
        "variable" => config::VARIABLE,
        "connection" => config::CONNECTION,
        "task_instance" => task_instances::TASK_INSTANCE,
        "task_instance_history" => task_instances::TASK_INSTANCE_HISTORY,
        "task_fail" => task_instances::TASK_FAIL,
        "task_reschedule" => task_instances::TASK_RESCHEDULE,
        "task_instance_note" => task_instances::TASK_INSTANCE_NOTE,
        "xcom" => payloads::XCOM,
        "rendered_task_instance_fields" => payloads::RENDERED_FIELDS,
        "log" => audit::LOG,
        "job" => audit::JOB,
        _ => return None,
    })
}

/// Counters the task-instance pass keeps for the summary.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) mapped: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) orphans: AtomicU64,
}

impl Stats {
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the writers need besides the world: the database's existing rows and the secrets.
pub(crate) struct Ctx {
    /// Largest existing `id` per table with a serial id; new rows continue after it.
    pub(crate) id_base: BTreeMap<String, i64>,
    /// Natural keys already present (pool names, variable keys, conn ids): not written again.
    pub(crate) existing: BTreeSet<String>,
    pub(crate) fernet: Option<fernet::Fernet>,
    /// `log_template` ids written: (legacy pre-2.3 template, current template).
    pub(crate) log_templates: Option<(i64, i64)>,
    /// Pickle of `{}`: executor_config.
    pub(crate) empty_pickle: Vec<u8>,
    pub(crate) stats: Stats,
}

impl Ctx {
    /// First id for new rows of `table`.
    pub(crate) fn first_id(&self, table: &str) -> i64 {
        self.id_base.get(table).copied().unwrap_or(0) + 1
    }

    /// Fernet-encrypts `value` when a key was given.
    pub(crate) fn encrypt(&self, value: &str) -> (String, bool) {
        match &self.fernet {
            Some(f) => (f.encrypt(value.as_bytes()), true),
            None => (value.to_owned(), false),
        }
    }
}

/// A run with its DAG, for run-level tables.
pub(crate) struct RunRow<'a> {
    pub(crate) w: &'a World,
    pub(crate) ctx: &'a Ctx,
    pub(crate) dag: &'a Dag,
    pub(crate) run: &'a Run,
}

family!(RunF, RunRow, run_col);

/// One try of a task instance, for the tables that have a row per try or per poke.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Attempt {
    /// The row's serial id.
    pub(crate) id: i64,
    /// 1-based try number.
    pub(crate) number: u32,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// A task instance with its run, for task-instance-level tables.
#[derive(Clone, Copy)]
pub(crate) struct TiRow<'a> {
    pub(crate) w: &'a World,
    pub(crate) ctx: &'a Ctx,
    pub(crate) dag: &'a Dag,
    pub(crate) run: &'a Run,
    pub(crate) ti: &'a Ti,
    /// The try a history, failure or reschedule row is about; unused for the instance itself.
    pub(crate) attempt: Attempt,
}

family!(TiF, TiRow, ti_col);

impl TiRow<'_> {
    pub(crate) fn task(&self) -> &Task {
        &self.dag.tasks[self.ti.task as usize]
    }

    /// The worker a try ran on.
    pub(crate) fn host(&self) -> &'static str {
        crate::generate::content::HOSTS
            [(self.ti.hash % crate::generate::content::HOSTS.len() as u64) as usize]
    }
}

/// Walks every task instance of the world.
pub(crate) fn each_ti(
    w: &World,
    ctx: &Ctx,
    mut f: impl FnMut(&TiRow<'_>) -> Result<()>,
) -> Result<()> {
    w.each_run(|dag, run, tis| {
        for ti in tis {
            f(&TiRow {
                w,
                ctx,
                dag,
                run,
                ti,
                attempt: Attempt::default(),
            })?;
        }
        Ok(())
    })
}
