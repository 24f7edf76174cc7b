//! Run-level tables: `dag_run`, `dag_run_note` (2.5+), `sla_miss` (< 3.0).

use serde_json::Value;

use crate::generate::content;
use crate::generate::copy::{Col, Kind, plan};
use crate::generate::rng::Rng;
use crate::generate::runs::RunKind;
use crate::generate::tables::{RunF, RunRow, TableGen, run_col as col};
use crate::generate::time::SECOND;
use crate::generate::world::tag;

impl RunRow<'_> {
    fn run_type(&self) -> &'static str {
        match self.run.kind {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
            RunKind::Backfill => "backfill",
            RunKind::Dataset => self.w.features.dataset_run_type.unwrap_or("manual"),
        }
    }

    fn triggered_by(&self) -> &'static str {
        match self.run.kind {
            RunKind::Scheduled => "TIMETABLE",
            RunKind::Manual => ["UI", "REST_API", "CLI"][(self.run.hash % 3) as usize],
            RunKind::Backfill => "BACKFILL",
            RunKind::Dataset => "ASSET",
        }
    }

    fn creating_job(&self) -> Option<i64> {
        match self.run.kind {
            RunKind::Scheduled | RunKind::Dataset => Some(self.w.scheduler_job(self.run.queued_at)),
            RunKind::Backfill => Some(2 * self.w.scheduler_jobs + i64::from(self.dag.index) + 1),
            RunKind::Manual => None,
        }
    }

    fn conf(&self) -> Option<std::borrow::Cow<'_, Value>> {
        match &self.run.conf {
            Some(conf) => Some(std::borrow::Cow::Borrowed(conf)),
            // 1.10 left conf NULL unless given; 2.x pickles `{}`; 3.x stores `{}`.
            None if self.w.features.legacy_1_10 => None,
            None => Some(std::borrow::Cow::Owned(Value::Object(Default::default()))),
        }
    }

    fn updated_at(&self) -> i64 {
        self.run
            .end
            .or(self.run.start)
            .unwrap_or(self.run.queued_at)
    }

    fn log_template(&self) -> Option<i64> {
        let (legacy, current) = self.ctx.log_templates?;
        let upgrade = self.w.start + (self.w.now - self.w.start) / 4;
        Some(if self.run.queued_at < upgrade {
            legacy
        } else {
            current
        })
    }

    fn has_note(&self) -> bool {
        (self.dag.index == 0 && self.run.k == 0) || self.run.hash % 100 == 7
    }

    fn missed_sla(&self) -> bool {
        self.dag.sla
            && self.run.kind == RunKind::Scheduled
            && self.run.state == "success"
            && self.run.hash % 20 == 3
    }
}

fn dag_run_cols() -> Vec<Col<RunF>> {
    vec![
        col("id", Kind::Int, |r, c| c.int(r.run.id)),
        col("dag_id", Kind::Text, |r, c| c.text(&r.dag.dag_id)),
        col("execution_date", Kind::Time, |r, c| {
            c.time(r.run.execution_date())
        }),
        col("logical_date", Kind::Time, |r, c| c.opt_time(r.run.logical)),
        col("state", Kind::Text, |r, c| c.text(r.run.state)),
        col("run_id", Kind::Text, |r, c| c.text(&r.run.run_id)),
        col("external_trigger", Kind::Bool, |r, c| {
            c.bool(r.run.kind == RunKind::Manual)
        }),
        col("conf", Kind::Payload, |r, c| match r.conf() {
            Some(conf) => c.payload(&conf, true),
            None => c.null(),
        }),
        col("start_date", Kind::Time, |r, c| c.opt_time(r.run.start)),
        col("end_date", Kind::Time, |r, c| c.opt_time(r.run.end)),
        col("run_type", Kind::Text, |r, c| c.text(r.run_type())),
        col("last_scheduling_decision", Kind::Time, |r, c| {
            c.opt_time(r.run.end.or(r.run.start))
        }),
        col("dag_hash", Kind::Text, |r, c| c.text(&r.dag.dag_hash)),
        col("creating_job_id", Kind::Int, |r, c| {
            c.opt_int(r.creating_job())
        }),
        col("queued_at", Kind::Time, |r, c| c.time(r.run.queued_at)),
        col("data_interval_start", Kind::Time, |r, c| {
            c.opt_time(r.run.interval.map(|i| i.0))
        }),
        col("data_interval_end", Kind::Time, |r, c| {
            c.opt_time(r.run.interval.map(|i| i.1))
        }),
        col("log_template_id", Kind::Int, |r, c| {
            c.opt_int(r.log_template())
        }),
        col("updated_at", Kind::Time, |r, c| c.time(r.updated_at())),
        col("clear_number", Kind::Int, |r, c| {
            c.int(i64::from(r.run.clear_number))
        }),
        col("triggered_by", Kind::Text, |r, c| c.text(r.triggered_by())),
        col("run_after", Kind::Time, |r, c| c.time(r.run.run_after())),
        col("scheduled_by_job_id", Kind::Int, |r, c| {
            c.opt_int(r.creating_job().filter(|_| r.run.kind != RunKind::Backfill))
        }),
        col("span_status", Kind::Text, |_, c| c.text("not_started")),
        col("triggering_user_name", Kind::Text, |r, c| {
            c.opt_text(r.run.user)
        }),
        col("created_at", Kind::Time, |r, c| c.time(r.run.queued_at)),
    ]
}

/// `dag_run`: every run but the deliberately orphaned ones.
pub(super) const DAG_RUN: TableGen = TableGen {
    plan: |t, l| plan(t, l, &dag_run_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&dag_run_cols());
        w.each_run(|dag, run, _| {
            if run.orphan {
                return Ok(());
            }
            enc.row(&cols, &RunRow { w, ctx, dag, run })
        })
    },
};

fn note_cols() -> Vec<Col<RunF>> {
    vec![
        col("dag_run_id", Kind::Int, |r, c| c.int(r.run.id)),
        // An int FK to ab_user in 2.x (left NULL: no such users here), a name in 3.x.
        col("user_id", Kind::Text, |r, c| {
            c.text(content::USERS[(r.run.hash % content::USERS.len() as u64) as usize])
        }),
        col("user_id", Kind::Int, |_, c| c.null()),
        col("content", Kind::Text, |r, c| {
            c.text(&content::note(&mut Rng::new(
                r.w.seed,
                &[tag::NOTE, r.run.hash],
            )))
        }),
        col("created_at", Kind::Time, |r, c| {
            c.time(r.updated_at() + SECOND)
        }),
        col("updated_at", Kind::Time, |r, c| {
            c.time(r.updated_at() + 2 * SECOND)
        }),
    ]
}

/// `dag_run_note`: about one run in a hundred.
pub(super) const DAG_RUN_NOTE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &note_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&note_cols());
        w.each_run(|dag, run, _| {
            let row = RunRow { w, ctx, dag, run };
            if run.orphan || !row.has_note() {
                return Ok(());
            }
            enc.row(&cols, &row)
        })
    },
};

fn sla_cols() -> Vec<Col<RunF>> {
    vec![
        col("task_id", Kind::Text, |r, c| {
            c.text(r.dag.tasks.last().map_or("", |t| t.task_id.as_str()))
        }),
        col("dag_id", Kind::Text, |r, c| c.text(&r.dag.dag_id)),
        col("execution_date", Kind::Time, |r, c| {
            c.time(r.run.execution_date())
        }),
        col("email_sent", Kind::Bool, |r, c| c.bool(r.run.hash % 2 == 0)),
        col("timestamp", Kind::Time, |r, c| c.opt_time(r.run.end)),
        col("description", Kind::Text, |_, c| {
            c.text("Tâche en retard sur son SLA ⏰")
        }),
        col("notification_sent", Kind::Bool, |r, c| {
            c.bool(r.run.hash % 3 == 0)
        }),
    ]
}

/// `sla_miss`: some successful scheduled runs of DAGs with an SLA.
pub(super) const SLA_MISS: TableGen = TableGen {
    plan: |t, l| plan(t, l, &sla_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&sla_cols());
        w.each_run(|dag, run, _| {
            let row = RunRow { w, ctx, dag, run };
            if !row.missed_sla() {
                return Ok(());
            }
            enc.row(&cols, &row)
        })
    },
};
