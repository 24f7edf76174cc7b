//! Task-instance tables: `task_instance`, `task_instance_history` (2.10+), `task_fail`
//! (< 3.0), `task_reschedule`, `task_instance_note` (2.5+).

use std::sync::atomic::Ordering;

use crate::generate::content;
use crate::generate::copy::{Cell, Col, Kind, plan};
use crate::generate::rng::{Rng, uuid_text};
use crate::generate::runs::POKE_INTERVAL;
use crate::generate::tables::{Attempt, TableGen, TiF, TiRow, each_ti, ti_col as col};
use crate::generate::time::{HOUR, SECOND};
use crate::generate::world::tag;

impl TiRow<'_> {
    fn job_id(&self) -> Option<i64> {
        self.ti
            .ran()
            .then(|| self.w.local_job_base + self.ti.ordinal as i64)
    }

    fn updated_at(&self) -> i64 {
        let ti = self.ti;
        ti.end
            .or(ti.start)
            .or(ti.queued)
            .or(ti.scheduled)
            .unwrap_or(self.run.queued_at)
    }

    fn has_note(&self) -> bool {
        self.ti.ran() && (self.ti.hash % 300 == 11 || (self.ti.ordinal == 0))
    }
}

/// A row that belongs to one task instance.
trait HasTi {
    fn tir(&self) -> &TiRow<'_>;
}

impl HasTi for TiRow<'_> {
    fn tir(&self) -> &TiRow<'_> {
        self
    }
}

/// Columns every task-instance-like row shares (task_instance and its history).
fn common() -> Vec<Col<TiF>> {
    vec![
        col("task_id", Kind::Text, |e, c| {
            c.text(&e.tir().task().task_id)
        }),
        col("dag_id", Kind::Text, |e, c| c.text(&e.tir().dag.dag_id)),
        col("execution_date", Kind::Time, |e, c| {
            c.time(e.tir().run.execution_date())
        }),
        col("run_id", Kind::Text, |e, c| c.text(&e.tir().run.run_id)),
        col("map_index", Kind::Int, |e, c| {
            c.int(i64::from(e.tir().ti.map_index))
        }),
        col("max_tries", Kind::Int, |e, c| {
            c.int(i64::from(e.tir().task().retries))
        }),
        col("hostname", Kind::Text, |e, c| {
            let r = e.tir();
            c.opt_text(r.ti.ran().then(|| r.host()))
        }),
        col("unixname", Kind::Text, |_, c| c.text("airflow")),
        col("pool", Kind::Text, |e, c| c.text(e.tir().task().pool)),
        col("pool_slots", Kind::Int, |e, c| {
            c.int(i64::from(e.tir().task().pool_slots))
        }),
        col("queue", Kind::Text, |_, c| c.text("default")),
        col("priority_weight", Kind::Int, |e, c| {
            c.int(i64::from(e.tir().task().priority_weight))
        }),
        col("operator", Kind::Text, |e, c| {
            c.text(e.tir().task().operator)
        }),
        col("custom_operator_name", Kind::Text, |e, c| {
            c.opt_text(e.tir().task().custom_operator_name)
        }),
        col("executor", Kind::Text, |e, c| {
            c.opt_text((e.tir().ti.hash % 20 == 0).then_some("CeleryExecutor"))
        }),
        col("executor_config", Kind::Bytes, |e, c| {
            c.bytes(&e.tir().ctx.empty_pickle)
        }),
        col("rendered_map_index", Kind::Text, |e, c| {
            let ti = e.tir().ti;
            let shown = ti.map_index >= 0 && ti.hash % 2 == 0;
            c.opt_text(
                shown
                    .then(|| format!("fichier_{}.csv", ti.map_index))
                    .as_deref(),
            )
        }),
        col("task_display_name", Kind::Text, |e, c| {
            c.opt_text(e.tir().task().display_name.as_deref())
        }),
        col("trigger_id", Kind::Int, |_, c| c.null()),
        col("next_kwargs", Kind::Json, |_, c| c.null()),
        col("context_carrier", Kind::Json, |_, c| c.null()),
        col("span_status", Kind::Text, |_, c| c.text("not_started")),
        col("dag_version_id", Kind::Uuid, |_, c| c.null()),
    ]
}

fn duration(start: Option<i64>, end: Option<i64>, c: &mut Cell<'_>) {
    c.opt_float(start.zip(end).map(|(s, e)| (e - s) as f64 / 1e6));
}

fn ti_cols() -> Vec<Col<TiF>> {
    let mut cols = vec![
        col("id", Kind::Uuid, |r, c| c.uuid(&r.ti.current_uuid(r.run))),
        col("start_date", Kind::Time, |r, c| c.opt_time(r.ti.start)),
        col("end_date", Kind::Time, |r, c| c.opt_time(r.ti.end)),
        col("duration", Kind::Float, |r, c| {
            duration(r.ti.start, r.ti.end, c)
        }),
        col("state", Kind::Text, |r, c| c.opt_text(r.ti.state)),
        col("try_number", Kind::Int, |r, c| {
            c.int(i64::from(r.ti.try_number))
        }),
        col("job_id", Kind::Int, |r, c| c.opt_int(r.job_id())),
        col("queued_dttm", Kind::Time, |r, c| c.opt_time(r.ti.queued)),
        col("scheduled_dttm", Kind::Time, |r, c| {
            c.opt_time(r.ti.scheduled)
        }),
        col("queued_by_job_id", Kind::Int, |r, c| {
            c.opt_int(r.ti.queued.map(|q| r.w.scheduler_job(q)))
        }),
        col("last_heartbeat_at", Kind::Time, |r, c| {
            match (r.ti.state, r.ti.end) {
                (Some("running"), _) => c.time(r.w.now - 3 * SECOND),
                (_, Some(end)) if r.ti.ran() => c.time(end),
                _ => c.null(),
            }
        }),
        col("pid", Kind::Int, |r, c| {
            c.opt_int(r.ti.ran().then(|| 1000 + (r.ti.hash >> 8) as i64 % 60_000))
        }),
        col("updated_at", Kind::Time, |r, c| c.time(r.updated_at())),
        col("external_executor_id", Kind::Text, |r, c| {
            let id =
                r.ti.ran()
                    .then(|| uuid_text(&r.ti.uuid(0, r.ti.start.unwrap_or(0))));
            c.opt_text(id.as_deref())
        }),
        col("trigger_timeout", Kind::Time, |r, c| {
            c.opt_time((r.ti.state == Some("deferred")).then(|| r.w.now + HOUR))
        }),
        col("next_method", Kind::Text, |r, c| {
            c.opt_text((r.ti.state == Some("deferred")).then_some("execute_complete"))
        }),
    ];
    cols.extend(common());
    cols
}

/// `task_instance`: one row per task instance, orphans included.
pub(super) const TASK_INSTANCE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &ti_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&ti_cols());
        let stats = &ctx.stats;
        each_ti(w, ctx, |r| {
            if r.ti.map_index >= 0 {
                stats.mapped.fetch_add(1, Ordering::Relaxed);
            }
            if r.ti.tries > 1 {
                stats.retried.fetch_add(1, Ordering::Relaxed);
            }
            if r.run.orphan {
                stats.orphans.fetch_add(1, Ordering::Relaxed);
            }
            enc.row(&cols, r)
        })
    },
};

fn history_cols() -> Vec<Col<TiF>> {
    let mut cols: Vec<Col<TiF>> = vec![
        col("id", Kind::Int, |t, c| c.int(t.attempt.id)),
        col("task_instance_id", Kind::Uuid, |t, c| {
            c.uuid(&t.ti.uuid(t.attempt.number, t.attempt.start - 2 * SECOND))
        }),
        col("try_number", Kind::Int, |t, c| {
            c.int(i64::from(t.attempt.number))
        }),
        col("start_date", Kind::Time, |t, c| c.time(t.attempt.start)),
        col("end_date", Kind::Time, |t, c| c.time(t.attempt.end)),
        col("duration", Kind::Float, |t, c| {
            c.float((t.attempt.end - t.attempt.start) as f64 / 1e6)
        }),
        col("state", Kind::Text, |_, c| c.text("failed")),
        col("queued_dttm", Kind::Time, |t, c| {
            c.time(t.attempt.start - 2 * SECOND)
        }),
        col("scheduled_dttm", Kind::Time, |t, c| {
            c.time(t.attempt.start - 4 * SECOND)
        }),
        col("updated_at", Kind::Time, |t, c| c.time(t.attempt.end)),
        col("job_id", Kind::Int, |_, c| c.null()),
        col("queued_by_job_id", Kind::Int, |t, c| {
            c.int(t.w.scheduler_job(t.attempt.start))
        }),
        col("pid", Kind::Int, |t, c| {
            c.int(2000 + i64::from(t.attempt.number))
        }),
    ];
    // The rest is what the task instance had then, which is what it has now.
    cols.extend(common());
    cols
}

/// `task_instance_history`: the earlier tries of retried task instances.
pub(super) const TASK_INSTANCE_HISTORY: TableGen = TableGen {
    plan: |t, l| plan(t, l, &history_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&history_cols());
        let mut id = ctx.first_id("task_instance_history");
        each_ti(w, ctx, |r| {
            for (i, &(start, end)) in r.ti.previous_tries().iter().enumerate() {
                let row = TiRow {
                    attempt: Attempt {
                        id,
                        number: i as u32 + 1,
                        start,
                        end,
                    },
                    ..*r
                };
                enc.row(&cols, &row)?;
                id += 1;
            }
            Ok(())
        })
    },
};

fn fail_cols() -> Vec<Col<TiF>> {
    vec![
        col("id", Kind::Int, |t, c| c.int(t.attempt.id)),
        col("task_id", Kind::Text, |t, c| c.text(&t.task().task_id)),
        col("dag_id", Kind::Text, |t, c| c.text(&t.dag.dag_id)),
        col("run_id", Kind::Text, |t, c| c.text(&t.run.run_id)),
        col("map_index", Kind::Int, |t, c| {
            c.int(i64::from(t.ti.map_index))
        }),
        col("execution_date", Kind::Time, |t, c| {
            c.time(t.run.execution_date())
        }),
        col("start_date", Kind::Time, |t, c| c.time(t.attempt.start)),
        col("end_date", Kind::Time, |t, c| c.time(t.attempt.end)),
        col("duration", Kind::Int, |t, c| {
            c.int((t.attempt.end - t.attempt.start) / SECOND)
        }),
    ]
}

/// `task_fail`: one row per failed try, the final one of failed task instances included.
pub(super) const TASK_FAIL: TableGen = TableGen {
    plan: |t, l| plan(t, l, &fail_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&fail_cols());
        let mut id = ctx.first_id("task_fail");
        each_ti(w, ctx, |r| {
            let ti = r.ti;
            let last = (ti.state == Some("failed"))
                .then(|| ti.start.zip(ti.end))
                .flatten();
            let tries = ti.previous_tries().iter().copied().chain(last);
            for (i, (start, end)) in tries.enumerate() {
                let row = TiRow {
                    attempt: Attempt {
                        id,
                        number: i as u32 + 1,
                        start,
                        end,
                    },
                    ..*r
                };
                enc.row(&cols, &row)?;
                id += 1;
            }
            Ok(())
        })
    },
};

fn reschedule_cols() -> Vec<Col<TiF>> {
    vec![
        col("id", Kind::Int, |p, c| c.int(p.attempt.id)),
        col("ti_id", Kind::Uuid, |p, c| {
            c.uuid(&p.ti.current_uuid(p.run))
        }),
        col("task_id", Kind::Text, |p, c| c.text(&p.task().task_id)),
        col("dag_id", Kind::Text, |p, c| c.text(&p.dag.dag_id)),
        col("run_id", Kind::Text, |p, c| c.text(&p.run.run_id)),
        col("map_index", Kind::Int, |p, c| {
            c.int(i64::from(p.ti.map_index))
        }),
        col("execution_date", Kind::Time, |p, c| {
            c.time(p.run.execution_date())
        }),
        col("try_number", Kind::Int, |p, c| c.int(i64::from(p.ti.tries))),
        col("start_date", Kind::Time, |p, c| c.time(p.attempt.start)),
        col("end_date", Kind::Time, |p, c| {
            c.time(p.attempt.start + 2 * SECOND)
        }),
        col("duration", Kind::Int, |_, c| c.int(2)),
        col("reschedule_date", Kind::Time, |p, c| {
            c.time(p.attempt.start + 2 * SECOND + POKE_INTERVAL)
        }),
    ]
}

/// `task_reschedule`: the pokes of reschedule-mode sensors that did not find what they wait for.
pub(super) const TASK_RESCHEDULE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &reschedule_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&reschedule_cols());
        let mut id = ctx.first_id("task_reschedule");
        each_ti(w, ctx, |r| {
            let (Some(start), pokes) = (r.ti.start, r.ti.pokes) else {
                return Ok(());
            };
            // The last poke of a finished sensor succeeded: no reschedule for it.
            let rescheduled = if r.ti.state == Some("up_for_reschedule") {
                pokes
            } else {
                pokes.saturating_sub(1)
            };
            for j in 0..i64::from(rescheduled) {
                let poke = start + j * (POKE_INTERVAL + 2 * SECOND);
                let row = TiRow {
                    attempt: Attempt {
                        id,
                        number: r.ti.tries,
                        start: poke,
                        end: poke + 2 * SECOND,
                    },
                    ..*r
                };
                enc.row(&cols, &row)?;
                id += 1;
            }
            Ok(())
        })
    },
};

fn ti_note_cols() -> Vec<Col<TiF>> {
    vec![
        col("ti_id", Kind::Uuid, |r, c| {
            c.uuid(&r.ti.current_uuid(r.run))
        }),
        col("task_id", Kind::Text, |r, c| c.text(&r.task().task_id)),
        col("dag_id", Kind::Text, |r, c| c.text(&r.dag.dag_id)),
        col("run_id", Kind::Text, |r, c| c.text(&r.run.run_id)),
        col("map_index", Kind::Int, |r, c| {
            c.int(i64::from(r.ti.map_index))
        }),
        col("user_id", Kind::Text, |r, c| {
            c.text(content::USERS[(r.ti.hash % content::USERS.len() as u64) as usize])
        }),
        col("user_id", Kind::Int, |_, c| c.null()),
        col("content", Kind::Text, |r, c| {
            c.text(&content::note(&mut Rng::new(
                r.w.seed,
                &[tag::NOTE, r.ti.hash],
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

/// `task_instance_note`: about one task instance in three hundred that ran.
pub(super) const TASK_INSTANCE_NOTE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &ti_note_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&ti_note_cols());
        each_ti(w, ctx, |r| {
            if r.has_note() {
                enc.row(&cols, r)
            } else {
                Ok(())
            }
        })
    },
};
