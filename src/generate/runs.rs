//! DAG runs and their task instances, derived from the [`World`] and a run's indices alone.
//!
//! A run is laid out relative to its start: each layer of tasks starts when the previous one has
//! finished, failed tries are followed by a retry delay, a failing task fails downstream layers,
//! branches skip some targets. The run is then placed in time, and everything after the end of
//! the window ("now") is not done yet: those task instances are running, queued, deferred,
//! up for retry or reschedule, or have no state at all — as in a live environment.

use crate::generate::rng::{Rng, hash, uuid7};
use crate::generate::time::{MINUTE, SECOND, iso};
use crate::generate::world::{Dag, Tail, TaskKind, Trigger, World, tag};

/// Runs newer than this many per DAG keep their rendered fields (Airflow's
/// `max_num_rendered_ti_fields_per_task` default).
const RENDERED_RUNS: u32 = 30;
/// Airflow's default `retry_delay`.
const RETRY_DELAY: i64 = 5 * MINUTE;
/// Reschedule sensors poke this often.
pub(crate) const POKE_INTERVAL: i64 = MINUTE;

/// How a run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    Scheduled,
    Manual,
    Backfill,
    Dataset,
}

/// One DAG run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) dag: u32,
    pub(crate) k: u32,
    /// `dag_run.id`.
    pub(crate) id: i64,
    pub(crate) kind: RunKind,
    pub(crate) run_id: String,
    /// Logical (execution) date; `None` only where the version allows it (3.x).
    pub(crate) logical: Option<i64>,
    pub(crate) interval: Option<(i64, i64)>,
    pub(crate) queued_at: i64,
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
    pub(crate) state: &'static str,
    /// Its dag_run row is missing on purpose (< 2.2 only): its task instances are orphans.
    pub(crate) orphan: bool,
    pub(crate) clear_number: i32,
    /// Conf of a manual run; other runs have `{}` (or NULL on 1.10).
    pub(crate) conf: Option<serde_json::Value>,
    /// Among the newest runs of its DAG (rendered fields are kept).
    pub(crate) recent: bool,
    /// Who triggered a manual or backfill run.
    pub(crate) user: Option<&'static str>,
    /// Per-run random bits for the tables that draw more from it.
    pub(crate) hash: u64,
}

impl Run {
    /// 3.x `run_after`: data interval end, else logical date, else when it was queued.
    pub(crate) fn run_after(&self) -> i64 {
        self.interval
            .map(|(_, end)| end)
            .or(self.logical)
            .unwrap_or(self.queued_at)
    }

    /// The date Airflow < 3.0 keys rows by (never `None` there).
    pub(crate) fn execution_date(&self) -> i64 {
        self.logical.unwrap_or(self.queued_at)
    }
}

/// One task instance, in its latest try.
#[derive(Debug, Clone)]
pub(crate) struct Ti {
    pub(crate) task: u32,
    pub(crate) map_index: i32,
    /// Position in the whole generation, the same in every pass.
    pub(crate) ordinal: u64,
    pub(crate) state: Option<&'static str>,
    /// Tries started, the current one included.
    pub(crate) tries: u32,
    /// `task_instance.try_number` as the version stores it.
    pub(crate) try_number: i32,
    pub(crate) ready: i64,
    pub(crate) scheduled: Option<i64>,
    pub(crate) queued: Option<i64>,
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
    /// Earlier tries (start, end), oldest first; `previous_count` are valid.
    pub(crate) previous: [(i64, i64); 3],
    pub(crate) previous_count: usize,
    /// Reschedule pokes done (task_reschedule rows).
    pub(crate) pokes: u32,
    pub(crate) hash: u64,
}

impl Ti {
    /// Earlier tries, oldest first.
    pub(crate) fn previous_tries(&self) -> &[(i64, i64)] {
        &self.previous[..self.previous_count]
    }

    /// 3.x `task_instance.id` of try `try_number` (1-based): UUIDv7 at the time the try was
    /// queued, so ids sort by time as Airflow's do.
    pub(crate) fn uuid(&self, try_number: u32, at: i64) -> [u8; 16] {
        let bits = hash(self.hash, &[tag::UUID, u64::from(try_number)]);
        uuid7(at / 1000, bits, bits.rotate_left(17) ^ self.ordinal)
    }

    /// The id of the current try.
    pub(crate) fn current_uuid(&self, run: &Run) -> [u8; 16] {
        let at = self.queued.or(self.start).unwrap_or(run.queued_at);
        self.uuid(self.tries.max(1), at)
    }

    /// Whether the instance ran (or runs) at all.
    pub(crate) fn ran(&self) -> bool {
        self.start.is_some()
    }
}

impl World {
    /// Calls `f` with every run and its task instances, in the one order all passes share.
    pub(crate) fn each_run<E>(
        &self,
        mut f: impl FnMut(&Dag, &Run, &[Ti]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut tis = Vec::new();
        let mut ordinal = 0;
        for &(d, k) in &self.order {
            let dag = &self.dags[d as usize];
            let run = self.run(dag, k, &mut tis);
            for ti in &mut tis {
                ti.ordinal = ordinal;
                ordinal += 1;
            }
            f(dag, &run, &tis)?;
        }
        Ok(())
    }

    /// Run `k` of `dag`, with its task instances in `tis` (cleared first).
    pub(crate) fn run(&self, dag: &Dag, k: u32, tis: &mut Vec<Ti>) -> Run {
        let f = &self.features;
        let d = u64::from(dag.index);
        let mut rng = Rng::new(self.seed, &[tag::RUN, d, u64::from(k)]);
        let run_hash = rng.next_u64();
        let last = k + 1 == dag.runs();
        let i = dag.interval;
        let (kind, slot) = if k < dag.backfills {
            (
                RunKind::Backfill,
                dag.first - i64::from(dag.backfills - k) * i,
            )
        } else {
            let j = i64::from(k - dag.backfills);
            let slot = dag.first + j * i;
            match dag.trigger {
                Trigger::Dataset => (
                    RunKind::Dataset,
                    slot + rng.range(SECOND, i / 2 + 2 * SECOND),
                ),
                Trigger::Schedule if !last && rng.chance(0.03) => (
                    RunKind::Manual,
                    slot + rng.range(SECOND, i.max(2 * SECOND) - SECOND),
                ),
                Trigger::Schedule => (RunKind::Scheduled, slot),
            }
        };
        let latency = rng.range(200_000, 5 * SECOND);
        let (mut logical, interval, queued_at) = match kind {
            RunKind::Scheduled => (Some(slot), Some((slot, slot + i)), slot + i + latency),
            RunKind::Backfill => {
                let at = self.start + (self.now - self.start) * 2 / 5 + i64::from(k) * 2 * MINUTE;
                (Some(slot), Some((slot, slot + i)), at)
            }
            RunKind::Manual => {
                let boundary = slot.div_euclid(i) * i;
                (Some(slot), Some((boundary - i, boundary)), slot)
            }
            RunKind::Dataset => {
                let from = slot - rng.range(SECOND, i / 2 + 2 * SECOND);
                (Some(slot), Some((from, slot)), slot)
            }
        };
        let mut interval = interval;
        if f.nullable_logical_date
            && (kind == RunKind::Dataset || (kind == RunKind::Manual && rng.chance(0.5)))
        {
            logical = None;
            interval = None;
        }
        let run_id = run_id(
            f.backfill_double_underscore,
            f.dataset_run_type,
            kind,
            logical.unwrap_or(queued_at),
        );
        // DAG 0's running newest run must show every in-flight state: it does not fail.
        // ... and its first run fails early, so every history has upstream failures.
        let fails = (rng.chance(dag.fail_rate) && !(last && dag.index == 0))
            || (dag.index == 0 && k == 0 && !last);
        let failing_task = match (dag.index, k) {
            (0, 0) => 1,
            _ => rng.range(0, dag.tasks.len() as i64) as u32,
        };
        let orphan =
            f.ti_by_execution_date && !last && (rng.chance(0.003) || (dag.index == 2 && k == 0));
        let clear_number = i32::from(rng.chance(0.02));
        let conf =
            (kind == RunKind::Manual).then(|| crate::generate::content::manual_conf(&mut rng));
        let user = matches!(kind, RunKind::Manual | RunKind::Backfill)
            .then(|| rng.pick(crate::generate::content::USERS));

        let planned_start = queued_at + rng.range(500_000, 3 * SECOND);
        let duration = self.lay_out(dag, k, fails.then_some(failing_task), tis);
        let queued_only = last && dag.tail == Tail::Queued;
        let start = if last && dag.tail == Tail::Running {
            // Now falls just after the first layer after the root started: its task instances
            // are in flight, the rest have not begun.
            let layer = tis
                .iter()
                .map(|t| dag.tasks[t.task as usize].layer)
                .max()
                .unwrap_or(0)
                .min(1);
            let frontier = tis
                .iter()
                .filter(|t| dag.tasks[t.task as usize].layer == layer)
                .filter_map(|t| t.start)
                .max()
                .unwrap_or(duration / 2);
            planned_start.max(self.now - frontier - 500_000)
        } else {
            planned_start
        };
        let mut run = Run {
            dag: dag.index,
            k,
            id: self.run_id(dag, k),
            kind,
            run_id,
            logical,
            interval,
            queued_at,
            start: None,
            end: None,
            state: "queued",
            orphan,
            clear_number,
            conf,
            recent: k + RENDERED_RUNS >= dag.runs(),
            user,
            hash: run_hash,
        };
        if queued_only || start > self.now {
            for ti in tis.iter_mut() {
                *ti = unstarted(ti, dag, false);
            }
            dedup_unexpanded(tis);
            return run;
        }
        let mut done = true;
        let mut failed = false;
        let mut end = start;
        for ti in tis.iter_mut() {
            shift(ti, start);
            self.settle(ti, dag);
            match ti.state {
                Some("success" | "skipped") => {}
                Some("failed" | "upstream_failed") => failed = true,
                _ => done = false,
            }
            end = end.max(ti.end.unwrap_or(start));
        }
        dedup_unexpanded(tis);
        run.start = Some(start);
        if done {
            run.end = Some(end);
            run.state = if failed { "failed" } else { "success" };
        } else {
            run.state = "running";
        }
        run
    }

    /// Lays out the run's task instances relative to its start; returns its duration.
    fn lay_out(&self, dag: &Dag, k: u32, failing: Option<u32>, tis: &mut Vec<Ti>) -> i64 {
        let (d, k) = (u64::from(dag.index), u64::from(k));
        tis.clear();
        let mut layer = 0;
        let mut layer_start = 0;
        let mut layer_end = 0;
        let mut failure: Option<(u32, i64)> = None;
        for (t, task) in dag.tasks.iter().enumerate() {
            if task.layer != layer {
                layer = task.layer;
                layer_start = layer_end;
            }
            let t64 = t as u64;
            let upstream_failed = failure.is_some_and(|(l, _)| task.layer > l);
            let count = if task.kind == TaskKind::Mapped && !upstream_failed {
                Rng::new(self.seed, &[tag::MAP, d, k, t64]).range(1, i64::from(dag.max_map) + 1)
            } else {
                1
            };
            for m in 0..count {
                let mut rng = Rng::new(self.seed, &[tag::TI, d, k, t64, m as u64]);
                let mut ti = Ti {
                    task: t as u32,
                    map_index: if task.kind == TaskKind::Mapped && !upstream_failed {
                        m as i32
                    } else {
                        -1
                    },
                    ordinal: 0,
                    state: None,
                    tries: 0,
                    try_number: 0,
                    ready: layer_start,
                    scheduled: None,
                    queued: None,
                    start: None,
                    end: None,
                    previous: [(0, 0); 3],
                    previous_count: 0,
                    pokes: 0,
                    hash: rng.next_u64(),
                };
                if let Some((_, at)) = failure.filter(|_| upstream_failed) {
                    ti.state = Some("upstream_failed");
                    ti.end = Some(at);
                    tis.push(ti);
                    continue;
                }
                if task.branch_target && Rng::new(self.seed, &[tag::RUN, d, k, t64, 77]).chance(0.5)
                {
                    ti.state = Some("skipped");
                    ti.end = Some(layer_start + rng.range(SECOND, 3 * SECOND));
                    tis.push(ti);
                    continue;
                }
                let queued = layer_start + rng.range(SECOND, 6 * SECOND) + m * 200_000;
                let fails_all = failing == Some(t as u32) && m == 0;
                let retries = task.retries;
                let tries = if fails_all {
                    retries + 1
                } else if retries > 0 && rng.chance(0.06) {
                    rng.range(1, i64::from(retries) + 1) as u32 + 1
                } else {
                    1
                };
                let mut at = queued + rng.range(500_000, 3 * SECOND);
                for i in 0..tries - 1 {
                    let dur = rng.lognormal(task.median * 0.4, 0.5) as i64 + SECOND;
                    ti.previous[i as usize] = (at, at + dur);
                    at += dur + RETRY_DELAY;
                }
                ti.previous_count = (tries - 1) as usize;
                let dur = if task.kind == TaskKind::RescheduleSensor {
                    ti.pokes = rng.range(1, 7) as u32;
                    i64::from(ti.pokes) * (POKE_INTERVAL + 2 * SECOND)
                } else {
                    rng.lognormal(task.median, 0.6) as i64 + SECOND
                };
                ti.tries = tries;
                ti.try_number = tries as i32;
                ti.queued = Some(queued);
                ti.scheduled = Some(layer_start);
                ti.start = Some(at);
                ti.end = Some(at + dur);
                ti.state = Some(if fails_all { "failed" } else { "success" });
                if fails_all {
                    failure = Some((task.layer, at + dur));
                }
                layer_end = layer_end.max(at + dur);
                tis.push(ti);
            }
        }
        tis.iter().filter_map(|t| t.end).max().unwrap_or(0).max(1)
    }

    /// Applies "now": what has not happened by the end of the window is in flight or not begun.
    fn settle(&self, ti: &mut Ti, dag: &Dag) {
        let now = self.now;
        let f = &self.features;
        if ti.end.is_none_or(|end| end <= now) {
            return;
        }
        let task = &dag.tasks[ti.task as usize];
        if ti.start.is_none() || ti.queued.is_some_and(|q| q > now) {
            // Skip / upstream-failure not decided yet, or not queued yet.
            let ready = ti.ready <= now && ti.state != Some("upstream_failed");
            let scheduled = ready && ti.state != Some("skipped");
            *ti = unstarted(ti, dag, ti.ready <= now);
            if scheduled {
                ti.state = Some("scheduled");
                ti.scheduled = Some(ti.ready);
                ti.try_number = i32::from(f.try_on_schedule);
                ti.tries = 1;
            }
            return;
        }
        let mut tries: Vec<(i64, i64)> = ti.previous_tries().to_vec();
        tries.extend(ti.start.zip(ti.end));
        let Some(current) = tries.iter().rposition(|(s, _)| *s <= now) else {
            ti.state = Some("queued");
            ti.start = None;
            ti.end = None;
            ti.previous_count = 0;
            ti.tries = 1;
            ti.try_number = i32::from(f.try_on_schedule);
            ti.pokes = 0;
            return;
        };
        let (s, e) = tries[current];
        let final_try = current + 1 == tries.len();
        ti.previous_count = current.min(3);
        ti.tries = current as u32 + 1;
        ti.start = Some(s);
        let behind = i32::from(!f.try_on_schedule);
        if now >= e {
            ti.state = Some("up_for_retry");
            ti.end = Some(e);
            ti.try_number = ti.tries as i32;
            ti.pokes = 0;
            return;
        }
        ti.end = None;
        ti.try_number = ti.tries as i32;
        match task.kind {
            TaskKind::RescheduleSensor if final_try => {
                ti.pokes = (((now - s) / (POKE_INTERVAL + 2 * SECOND)) as u32)
                    .max(1)
                    .min(ti.pokes);
                ti.state = Some("up_for_reschedule");
                ti.try_number -= behind;
            }
            TaskKind::DeferrableSensor if final_try && f.deferrable => {
                ti.state = Some("deferred");
                ti.try_number -= behind;
            }
            _ => {
                ti.pokes = 0;
                // Deterministic variety among in-flight instances; DAG 0 cycles through all.
                let roll = if dag.index == 0 {
                    u64::from(ti.task) % 3
                } else {
                    ti.hash % 10
                };
                let retry_left = ti.tries <= task.retries;
                match roll {
                    1 => {
                        ti.state = Some("queued");
                        ti.start = None;
                        ti.queued = Some(ti.queued.unwrap_or(now).min(now - SECOND));
                        ti.try_number -= behind;
                    }
                    2 if retry_left => {
                        ti.state = Some("up_for_retry");
                        ti.end = Some((now - SECOND).max(s));
                    }
                    _ => ti.state = Some("running"),
                }
            }
        }
    }
}

/// A task instance of a run that has not reached it: no state, no times, try 0. A mapped task
/// whose upstream is not done is not `expanded` yet: one instance with map index -1.
fn unstarted(ti: &Ti, dag: &Dag, expanded: bool) -> Ti {
    let mapped = dag.tasks[ti.task as usize].kind == TaskKind::Mapped;
    Ti {
        map_index: if mapped && !expanded {
            -1
        } else {
            ti.map_index
        },
        state: None,
        tries: 0,
        try_number: 0,
        scheduled: None,
        queued: None,
        start: None,
        end: None,
        previous_count: 0,
        pokes: 0,
        ..ti.clone()
    }
}

/// Keeps one instance of each unexpanded mapped task (they are adjacent).
fn dedup_unexpanded(tis: &mut Vec<Ti>) {
    tis.dedup_by(|later, earlier| {
        later.task == earlier.task && later.map_index == earlier.map_index
    });
}

fn shift(ti: &mut Ti, by: i64) {
    ti.ready += by;
    for t in [
        &mut ti.scheduled,
        &mut ti.queued,
        &mut ti.start,
        &mut ti.end,
    ] {
        *t = t.map(|v| v + by);
    }
    for p in &mut ti.previous[..ti.previous_count] {
        *p = (p.0 + by, p.1 + by);
    }
}

fn run_id(double: bool, dataset: Option<&str>, kind: RunKind, at: i64) -> String {
    let prefix = match kind {
        RunKind::Scheduled => "scheduled__",
        RunKind::Manual => "manual__",
        RunKind::Backfill if double => "backfill__",
        RunKind::Backfill => "backfill_",
        RunKind::Dataset => match dataset {
            Some("asset_triggered") => "asset_triggered__",
            _ => "dataset_triggered__",
        },
    };
    format!("{prefix}{}", iso(at))
}
