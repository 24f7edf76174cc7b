//! The shape of the synthetic environment: which features the target schema version has, the
//! DAGs with their tasks and schedules, and how many runs each gets. Built once, small (one
//! entry per DAG and task); runs and task instances are derived from it on demand
//! ([`crate::generate::runs`]).

use crate::catalog::{Catalog, SchemaVersion, VersionSchema};
use crate::generate::content;
use crate::generate::options::{GenerateOptions, InsertionOrder};
use crate::generate::rng::Rng;
use crate::generate::time::{DAY, HOUR, MINUTE};

/// Hash-path tags, so that draws for different kinds of things never share a stream.
pub(crate) mod tag {
    pub(crate) const DAG: u64 = 1;
    pub(crate) const TASK: u64 = 2;
    pub(crate) const RUN: u64 = 3;
    pub(crate) const TI: u64 = 4;
    pub(crate) const MAP: u64 = 5;
    pub(crate) const XCOM: u64 = 6;
    pub(crate) const LOG: u64 = 7;
    pub(crate) const UUID: u64 = 8;
    pub(crate) const NOTE: u64 = 9;
}

/// Schedule intervals a DAG may have, shortest first.
const INTERVALS: &[i64] = &[
    MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    7 * DAY,
];

/// What the target schema version can hold, read from the catalog where it can tell.
#[derive(Debug, Clone)]
pub(crate) struct Features {
    /// `task_instance.map_index` exists (2.3+).
    pub(crate) map_index: bool,
    /// Task instances are keyed by `(dag_id, execution_date)` with no FK to dag_run (< 2.2),
    /// so orphans are possible.
    pub(crate) ti_by_execution_date: bool,
    /// Deferral exists (`task_instance.next_method`, 2.2+).
    pub(crate) deferrable: bool,
    /// try_number is incremented when a try is scheduled, never decremented (2.10+).
    pub(crate) try_on_schedule: bool,
    /// Task instances carry `job_id` (LocalTaskJob), < 3.0.
    pub(crate) ti_job_id: bool,
    /// The run type of data-aware runs, if the version has them.
    pub(crate) dataset_run_type: Option<&'static str>,
    /// `dag_run.logical_date` may be NULL (3.x).
    pub(crate) nullable_logical_date: bool,
    /// Backfill run ids use `backfill__` (2.0+) rather than 1.10's `backfill_`.
    pub(crate) backfill_double_underscore: bool,
    /// `EmptyOperator` exists (2.3+); before, `DummyOperator`.
    pub(crate) empty_operator: bool,
    /// XCom values that are pickles rather than JSON, as a fraction (only where bytea).
    pub(crate) xcom_pickle_share: f64,
    /// Airflow 1.10 (no run_type): confs of runs that were given none are NULL.
    pub(crate) legacy_1_10: bool,
}

impl Features {
    pub(crate) fn new(
        catalog: &Catalog,
        version: &SchemaVersion,
        schema: &VersionSchema,
        xcom_pickles: bool,
    ) -> Features {
        let at_least = |id: &str| {
            catalog
                .version(id)
                .is_some_and(|v| version.index >= v.index)
        };
        let has = |table: &str, column: &str| {
            schema
                .table(table)
                .is_some_and(|t| t.column(column).is_some())
        };
        let airflow3 = at_least("3.0");
        Features {
            map_index: has("task_instance", "map_index"),
            ti_by_execution_date: has("task_instance", "execution_date"),
            deferrable: has("task_instance", "next_method"),
            try_on_schedule: at_least("2.10"),
            ti_job_id: has("task_instance", "job_id"),
            dataset_run_type: match (airflow3, at_least("2.4.3")) {
                (true, _) => Some("asset_triggered"),
                (false, true) => Some("dataset_triggered"),
                _ => None,
            },
            nullable_logical_date: schema
                .table("dag_run")
                .and_then(|t| t.column("logical_date"))
                .is_some_and(|c| c.nullable),
            backfill_double_underscore: has("dag_run", "run_type"),
            empty_operator: at_least("2.4.3"),
            legacy_1_10: !has("dag_run", "run_type"),
            xcom_pickle_share: if !at_least("2.0.2") {
                0.5
            } else if xcom_pickles && !airflow3 {
                0.1
            } else {
                0.0
            },
        }
    }
}

/// How a task behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// Runs once and finishes.
    Plain,
    /// A sensor in reschedule mode: task_reschedule rows, `up_for_reschedule` while waiting.
    RescheduleSensor,
    /// A deferrable sensor: `deferred` while waiting (2.2+; a poking sensor before).
    DeferrableSensor,
    /// Dynamically mapped: one task instance per map index (2.3+).
    Mapped,
    /// Chooses a branch; its targets are skipped in some runs.
    Branch,
}

/// One task of a DAG.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) task_id: String,
    pub(crate) kind: TaskKind,
    /// Position in the DAG's layers; a task starts when the previous layer is done.
    pub(crate) layer: u32,
    /// Downstream of a branch task: skipped in some runs.
    pub(crate) branch_target: bool,
    pub(crate) operator: &'static str,
    pub(crate) custom_operator_name: Option<&'static str>,
    pub(crate) display_name: Option<String>,
    pub(crate) retries: u32,
    pub(crate) pool: &'static str,
    pub(crate) pool_slots: i32,
    pub(crate) priority_weight: i32,
    /// Median duration of a try, microseconds.
    pub(crate) median: f64,
    pub(crate) pushes_xcom: bool,
}

/// How a DAG's runs come about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A timetable with a fixed interval.
    Schedule,
    /// Data-aware scheduling: runs when its datasets / assets update.
    Dataset,
}

/// What the DAG's newest run is doing at the end of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Finished, or running if it happens to overlap the end of the window.
    Normal,
    /// Running: started so that the end of the window falls in its middle.
    Running,
    /// Queued: created, not started; its task instances have no state yet.
    Queued,
}

/// One DAG.
#[derive(Debug, Clone)]
pub(crate) struct Dag {
    pub(crate) index: u32,
    pub(crate) dag_id: String,
    pub(crate) owner: &'static str,
    pub(crate) tasks: Vec<Task>,
    pub(crate) trigger: Trigger,
    /// Schedule interval, or mean spacing of data-aware runs, microseconds.
    pub(crate) interval: i64,
    /// Logical date of the first regular run.
    pub(crate) first: i64,
    /// Backfill runs, logically before `first`, run in the middle of the window.
    pub(crate) backfills: u32,
    /// Regular runs (scheduled, manual or data-aware).
    pub(crate) regular: u32,
    /// Position of run 0 among all runs listed DAG by DAG ([`World::run_id`]).
    pub(crate) first_run: usize,
    /// Probability that a finished run failed.
    pub(crate) fail_rate: f64,
    /// Largest map count of its mapped tasks.
    pub(crate) max_map: u32,
    pub(crate) tail: Tail,
    /// Has an SLA (sla_miss rows, < 3.0).
    pub(crate) sla: bool,
    /// 32 hex digits for `dag_run.dag_hash`.
    pub(crate) dag_hash: String,
}

impl Dag {
    /// All runs, backfills first.
    pub(crate) fn runs(&self) -> u32 {
        self.backfills + self.regular
    }
}

/// The environment: features, time window and DAGs.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) features: Features,
    /// Start of the window.
    pub(crate) start: i64,
    /// End of the window: "now" for the environment; later work has not happened yet.
    pub(crate) now: i64,
    pub(crate) dags: Vec<Dag>,
    /// Scheduler jobs (ids 1..=n); the one in charge at time t is `scheduler_job(t)`.
    pub(crate) scheduler_jobs: i64,
    /// Fixed jobs (schedulers, triggerers, backfills...) occupy ids below this; LocalTaskJob
    /// ids are this plus the task instance's ordinal.
    pub(crate) local_job_base: i64,
    /// Every run as `(dag index, k)`, in insertion order.
    pub(crate) order: Vec<(u32, u32)>,
    /// `dag_run.id` of each run, by its position DAG by DAG (`dag.first_run + k`): ids follow
    /// insertion order, as a serial column's do.
    pub(crate) run_ids: Vec<i64>,
}

/// DAG count when none is given: grows like the square root of the task instances.
pub(crate) fn default_dags(task_instances: u64) -> u32 {
    ((task_instances as f64).sqrt() / 4.0)
        .round()
        .clamp(3.0, 5_000.0) as u32
}

impl World {
    pub(crate) fn build(options: &GenerateOptions, features: Features) -> World {
        let seed = options.seed;
        let start = options.start;
        let window = i64::from(options.days) * DAY;
        let now = start + window;
        let n_dags = options
            .dags
            .unwrap_or_else(|| default_dags(options.task_instances));
        let mut dags: Vec<Dag> = (0..n_dags)
            .map(|d| build_dag(seed, d, n_dags, &features))
            .collect();

        // Share the task-instance budget: bigger DAGs get more, not proportionally more.
        let weights: Vec<f64> = dags
            .iter()
            .map(|d| {
                let mut rng = Rng::new(seed, &[tag::DAG, u64::from(d.index), 1]);
                (d.tasks.len() as f64).powf(0.6) * rng.lognormal(1.0, 0.5)
            })
            .collect();
        let total_weight: f64 = weights.iter().sum();
        let mut next_run = 0;
        for (dag, weight) in dags.iter_mut().zip(weights) {
            let share = options.task_instances as f64 * weight / total_weight;
            let runs = (share / expected_tis_per_run(dag)).round().max(1.0) as i64;
            let raw = window / runs.max(1);
            let interval = INTERVALS
                .iter()
                .rev()
                .copied()
                .find(|&i| i <= raw)
                .unwrap_or(INTERVALS[0]);
            let runs = runs.min(window / interval).max(1);
            let mut rng = Rng::new(seed, &[tag::DAG, u64::from(dag.index), 2]);
            let backfills = if dag.trigger == Trigger::Schedule && runs >= 4 && rng.chance(0.15) {
                (runs / 8).max(1)
            } else {
                0
            };
            dag.backfills = backfills as u32;
            dag.regular = (runs - backfills) as u32;
            dag.interval = interval;
            // The newest regular run is the last whose interval ended before now.
            dag.first =
                (now - 1 - i64::from(dag.regular) * interval).div_euclid(interval) * interval;
            dag.first_run = next_run;
            next_run += dag.runs() as usize;
        }
        let scheduler_jobs = (i64::from(options.days) + 2) / 3;
        let order: Vec<(u32, u32)> = dags
            .iter()
            .flat_map(|dag| (0..dag.runs()).map(move |k| (dag.index, k)))
            .collect();
        let mut world = World {
            seed,
            features,
            start,
            now,
            dags,
            scheduler_jobs,
            // schedulers, one triggerer per scheduler, one backfill job per DAG, then a gap.
            local_job_base: 2 * scheduler_jobs + i64::from(n_dags) + 100,
            run_ids: (1..=order.len() as i64).collect(),
            order,
        };
        if options.order == InsertionOrder::Time {
            world.order_by_time();
        }
        world
    }

    /// Puts runs in the order they were created (queued), across DAGs, and numbers them so.
    fn order_by_time(&mut self) {
        let mut tis = Vec::new();
        let mut keyed: Vec<(i64, u32, u32)> = self
            .order
            .iter()
            .map(|&(d, k)| {
                let run = self.run(&self.dags[d as usize], k, &mut tis);
                (run.queued_at, d, k)
            })
            .collect();
        keyed.sort_unstable();
        self.order = keyed.into_iter().map(|(_, d, k)| (d, k)).collect();
        for (id, &(d, k)) in (1..).zip(&self.order) {
            self.run_ids[self.dags[d as usize].first_run + k as usize] = id;
        }
    }

    /// `dag_run.id` of run `k` of `dag`.
    pub(crate) fn run_id(&self, dag: &Dag, k: u32) -> i64 {
        self.run_ids[dag.first_run + k as usize]
    }

    /// The scheduler job in charge at `time` (one per three days: restarts).
    pub(crate) fn scheduler_job(&self, time: i64) -> i64 {
        ((time - self.start).div_euclid(3 * DAY)).clamp(0, self.scheduler_jobs - 1) + 1
    }
}

fn expected_tis_per_run(dag: &Dag) -> f64 {
    dag.tasks
        .iter()
        .map(|t| {
            if t.kind == TaskKind::Mapped {
                (1.0 + f64::from(dag.max_map)) / 2.0
            } else {
                1.0
            }
        })
        .sum()
}

fn build_dag(seed: u64, index: u32, n_dags: u32, features: &Features) -> Dag {
    let mut rng = Rng::new(seed, &[tag::DAG, u64::from(index)]);
    let dag_id = content::dag_id(&mut rng, index);
    // DAG 0 is the one whose newest run is running; wide enough to show every in-flight state.
    let n_tasks = if index == 0 {
        rng.pareto(2.0, 1.1, 250).max(7)
    } else {
        rng.pareto(2.0, 1.1, 250)
    };
    let width = if index == 0 {
        3
    } else {
        rng.range(1, 5) as u32
    };
    let has_branch = index == 1 || (index != 0 && n_tasks >= 4 && rng.chance(0.25));
    let trigger = if features.dataset_run_type.is_some() && index % 8 == 5 {
        Trigger::Dataset
    } else {
        Trigger::Schedule
    };
    let mut tasks = Vec::with_capacity(n_tasks as usize);
    let mut branch_layer = None;
    for t in 0..n_tasks {
        let mut trng = Rng::new(seed, &[tag::TASK, u64::from(index), u64::from(t)]);
        let layer = t.div_ceil(width);
        let kind = if t == 0 && trng.chance(0.35) {
            if trng.chance(0.5) {
                TaskKind::RescheduleSensor
            } else {
                TaskKind::DeferrableSensor
            }
        } else if has_branch && branch_layer.is_none() && t > 0 {
            branch_layer = Some(layer);
            TaskKind::Branch
        } else if features.map_index && t > 0 && (trng.chance(0.08) || (index == 0 && t == 1)) {
            TaskKind::Mapped
        } else {
            TaskKind::Plain
        };
        let sensor = matches!(
            kind,
            TaskKind::RescheduleSensor | TaskKind::DeferrableSensor
        );
        let (operator, custom) = match kind {
            TaskKind::RescheduleSensor => (trng.pick(&["S3KeySensor", "FileSensor"]), None),
            TaskKind::DeferrableSensor => (trng.pick(&["ExternalTaskSensor", "HttpSensor"]), None),
            TaskKind::Branch => ("BranchPythonOperator", None),
            TaskKind::Mapped => ("_PythonDecoratedOperator", Some("@task")),
            TaskKind::Plain => match trng.range(0, 6) {
                0 => ("BashOperator", None),
                1 => ("_PythonDecoratedOperator", Some("@task")),
                2 if features.empty_operator => ("EmptyOperator", None),
                2 => ("DummyOperator", None),
                3 => ("KubernetesPodOperator", None),
                4 if features.empty_operator => ("SQLExecuteQueryOperator", None),
                4 => ("PostgresOperator", None),
                _ => ("PythonOperator", None),
            },
        };
        let median = if sensor {
            trng.lognormal(10.0 * 60.0, 0.8)
        } else {
            trng.lognormal(45.0, 1.2)
        } * 1e6;
        tasks.push(Task {
            task_id: content::task_id(&mut trng, t, sensor, kind == TaskKind::Mapped),
            kind,
            layer,
            branch_target: kind == TaskKind::Plain
                && branch_layer.is_some_and(|b| layer == b + 1)
                && (trng.chance(0.6) || index == 1),
            operator,
            custom_operator_name: custom,
            display_name: trng.chance(0.1).then(|| {
                format!(
                    "Étape {t} — {}",
                    trng.pick(&["chargement", "contrôle", "集計"])
                )
            }),
            retries: if index == 0 {
                2
            } else {
                trng.pick(&[0, 0, 1, 1, 2, 3])
            },
            pool: trng.pick(&[
                "default_pool",
                "default_pool",
                "default_pool",
                "pool_etl",
                "pool_api",
                "pool_données",
            ]),
            pool_slots: if trng.chance(0.05) { 2 } else { 1 },
            priority_weight: (n_tasks - t) as i32,
            median,
            pushes_xcom: !sensor
                && operator != "EmptyOperator"
                && operator != "DummyOperator"
                && trng.chance(0.7),
        });
    }
    let tail = match index {
        0 => Tail::Running,
        1 if n_dags > 1 => Tail::Queued,
        _ if rng.chance(0.2) => Tail::Running,
        _ if rng.chance(0.08) => Tail::Queued,
        _ => Tail::Normal,
    };
    Dag {
        index,
        dag_id,
        owner: rng.pick(content::OWNERS),
        tasks,
        trigger,
        interval: DAY,
        first: 0,
        backfills: 0,
        regular: 1,
        first_run: 0,
        fail_rate: 0.01 + 0.2 * rng.unit().powi(3),
        max_map: rng.range(2, 25) as u32,
        tail,
        sla: trigger == Trigger::Schedule && rng.chance(0.15),
        dag_hash: format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64()),
    }
}
