//! Operational tables: the audit `log` and `job`.

use crate::generate::content;
use crate::generate::copy::{Col, Kind, family, plan};
use crate::generate::rng::Rng;
use crate::generate::runs::RunKind;
use crate::generate::tables::{TableGen, TiRow, each_ti};
use crate::generate::time::{DAY, SECOND};
use crate::generate::world::{World, tag};

/// One audit-log row.
struct LogRow<'a> {
    r: &'a TiRow<'a>,
    id: i64,
    at: i64,
    event: &'static str,
    /// Whether the row is about the task instance (else about the run).
    task_level: bool,
    owner: &'a str,
    extra: Option<String>,
}

family!(LogF, LogRow, log_col);

fn log_cols() -> Vec<Col<LogF>> {
    vec![
        log_col("id", Kind::Int, |l, c| c.int(l.id)),
        log_col("dttm", Kind::Time, |l, c| c.time(l.at)),
        log_col("dag_id", Kind::Text, |l, c| c.text(&l.r.dag.dag_id)),
        log_col("task_id", Kind::Text, |l, c| {
            c.opt_text(l.task_level.then(|| l.r.task().task_id.as_str()))
        }),
        log_col("map_index", Kind::Int, |l, c| {
            c.opt_int(l.task_level.then_some(i64::from(l.r.ti.map_index)))
        }),
        log_col("event", Kind::Text, |l, c| c.text(l.event)),
        log_col("execution_date", Kind::Time, |l, c| {
            c.time(l.r.run.execution_date())
        }),
        log_col("logical_date", Kind::Time, |l, c| {
            c.opt_time(l.r.run.logical)
        }),
        log_col("run_id", Kind::Text, |l, c| c.text(&l.r.run.run_id)),
        log_col("owner", Kind::Text, |l, c| c.text(l.owner)),
        log_col("owner_display_name", Kind::Text, |l, c| c.text(l.owner)),
        log_col("extra", Kind::Text, |l, c| c.opt_text(l.extra.as_deref())),
        log_col("try_number", Kind::Int, |l, c| {
            c.opt_int(l.task_level.then_some(i64::from(l.r.ti.tries)))
        }),
    ]
}

/// `log`: a few audit rows per run: who triggered or cleared it, the first task's run and
/// outcome, every failure.
pub(super) const LOG: TableGen = TableGen {
    plan: |t, l| plan(t, l, &log_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&log_cols());
        let mut id = ctx.first_id("log");
        let mut first_of_run = (u32::MAX, u32::MAX);
        each_ti(w, ctx, |r| {
            let run = r.run;
            let mut rows: Vec<LogRow<'_>> = Vec::new();
            let owner = r.dag.owner;
            let user = run.user.unwrap_or(owner);
            if first_of_run != (run.dag, run.k) {
                first_of_run = (run.dag, run.k);
                if run.kind == RunKind::Manual {
                    rows.push(log_row(r, run.queued_at, "trigger", false, user, None));
                }
                if run.clear_number > 0 {
                    let at = run.end.unwrap_or(run.queued_at) + 60 * SECOND;
                    rows.push(log_row(r, at, "clear", false, user, None));
                }
            }
            let ti = r.ti;
            if let Some(start) = ti.start.filter(|_| ti.task == 0 && ti.map_index <= 0) {
                let mut rng = Rng::new(w.seed, &[tag::LOG, ti.hash]);
                let extra =
                    content::log_extra(&mut rng, &r.dag.dag_id, &r.task().task_id, r.host());
                rows.push(log_row(
                    r,
                    start - SECOND,
                    "cli_task_run",
                    true,
                    owner,
                    Some(extra),
                ));
                rows.push(log_row(r, start, "running", true, owner, None));
                if let (Some(end), Some(state @ ("success" | "failed"))) = (ti.end, ti.state) {
                    rows.push(log_row(r, end, state, true, owner, None));
                }
            } else if let (Some(end), Some("failed")) = (ti.end, ti.state) {
                rows.push(log_row(r, end, "failed", true, owner, None));
            }
            for mut row in rows {
                row.id = id;
                enc.row(&cols, &row)?;
                id += 1;
            }
            Ok(())
        })
    },
};

fn log_row<'a>(
    r: &'a TiRow<'a>,
    at: i64,
    event: &'static str,
    task_level: bool,
    owner: &'a str,
    extra: Option<String>,
) -> LogRow<'a> {
    LogRow {
        r,
        id: 0,
        at,
        event,
        task_level,
        owner,
        extra,
    }
}

/// One `job` row.
struct JobRow<'a> {
    id: i64,
    dag_id: Option<&'a str>,
    state: &'static str,
    job_type: &'static str,
    start: i64,
    end: Option<i64>,
    heartbeat: i64,
    hostname: &'a str,
}

family!(JobF, JobRow, job_col);

fn job_cols() -> Vec<Col<JobF>> {
    vec![
        job_col("id", Kind::Int, |j, c| c.int(j.id)),
        job_col("dag_id", Kind::Text, |j, c| c.opt_text(j.dag_id)),
        job_col("state", Kind::Text, |j, c| c.text(j.state)),
        job_col("job_type", Kind::Text, |j, c| c.text(j.job_type)),
        job_col("start_date", Kind::Time, |j, c| c.time(j.start)),
        job_col("end_date", Kind::Time, |j, c| c.opt_time(j.end)),
        job_col("latest_heartbeat", Kind::Time, |j, c| c.time(j.heartbeat)),
        job_col("executor_class", Kind::Text, |_, c| {
            c.text("CeleryExecutor")
        }),
        job_col("hostname", Kind::Text, |j, c| c.text(j.hostname)),
        job_col("unixname", Kind::Text, |_, c| c.text("airflow")),
    ]
}

/// Schedulers (one per three days, the last still running), triggerers where deferral exists,
/// one backfill job per backfilled DAG (< 3.0).
fn fixed_jobs(w: &World) -> Vec<JobRow<'_>> {
    let mut jobs = Vec::new();
    for i in 0..w.scheduler_jobs {
        let start = w.start + i * 3 * DAY;
        let last = i + 1 == w.scheduler_jobs;
        let end = (!last).then(|| (start + 3 * DAY).min(w.now));
        let heartbeat = end.unwrap_or(w.now - 2 * SECOND);
        let state = if last { "running" } else { "success" };
        jobs.push(JobRow {
            id: i + 1,
            dag_id: None,
            state,
            job_type: "SchedulerJob",
            start,
            end,
            heartbeat,
            hostname: "airflow-scheduler-0",
        });
        if w.features.deferrable {
            let id = w.scheduler_jobs + i + 1;
            jobs.push(JobRow {
                id,
                dag_id: None,
                state,
                job_type: "TriggererJob",
                start,
                end,
                heartbeat,
                hostname: "airflow-triggerer-0",
            });
        }
    }
    if w.features.ti_job_id {
        for dag in w.dags.iter().filter(|d| d.backfills > 0) {
            let start = w.start + (w.now - w.start) * 2 / 5;
            let end = start + i64::from(dag.backfills) * 3 * 60 * SECOND;
            let id = 2 * w.scheduler_jobs + i64::from(dag.index) + 1;
            jobs.push(JobRow {
                id,
                dag_id: Some(&dag.dag_id),
                state: "success",
                job_type: "BackfillJob",
                start,
                end: Some(end),
                heartbeat: end,
                hostname: "airflow-worker-7d9f8c",
            });
        }
    }
    jobs
}

/// `job`: the fixed jobs, then a LocalTaskJob for each task instance of the last three days
/// (< 3.0; older ones are gone, as after `airflow db clean`).
pub(super) const JOB: TableGen = TableGen {
    plan: |t, l| plan(t, l, &job_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&job_cols());
        for job in fixed_jobs(w) {
            enc.row(&cols, &job)?;
        }
        if !w.features.ti_job_id {
            return Ok(());
        }
        let since = w.now - 3 * DAY;
        each_ti(w, ctx, |r| {
            let Some(start) = r.ti.start.filter(|s| *s >= since) else {
                return Ok(());
            };
            let running = r.ti.end.is_none();
            let job = JobRow {
                id: w.local_job_base + r.ti.ordinal as i64,
                dag_id: Some(&r.dag.dag_id),
                state: if running { "running" } else { "success" },
                job_type: "LocalTaskJob",
                start,
                end: r.ti.end,
                heartbeat: r.ti.end.unwrap_or(w.now - 3 * SECOND),
                hostname: r.host(),
            };
            enc.row(&cols, &job)
        })
    },
};
