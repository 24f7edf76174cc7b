//! Payload tables: `xcom` and `rendered_task_instance_fields`.

use crate::generate::content;
use crate::generate::copy::{Col, Kind, family, plan};
use crate::generate::rng::Rng;
use crate::generate::tables::{TableGen, TiF, TiRow, each_ti, ti_col};
use crate::generate::time::iso;
use crate::generate::world::tag;

/// One XCom value.
struct XcomRow<'a> {
    r: &'a TiRow<'a>,
    id: i64,
    key: &'static str,
    value: serde_json::Value,
    pickled: bool,
}

family!(XcomF, XcomRow, col);

fn xcom_cols() -> Vec<Col<XcomF>> {
    vec![
        col("id", Kind::Int, |x, c| c.int(x.id)),
        col("dag_run_id", Kind::Int, |x, c| c.int(x.r.run.id)),
        col("task_id", Kind::Text, |x, c| c.text(&x.r.task().task_id)),
        col("map_index", Kind::Int, |x, c| {
            c.int(i64::from(x.r.ti.map_index))
        }),
        col("key", Kind::Text, |x, c| c.text(x.key)),
        col("dag_id", Kind::Text, |x, c| c.text(&x.r.dag.dag_id)),
        col("run_id", Kind::Text, |x, c| c.text(&x.r.run.run_id)),
        col("execution_date", Kind::Time, |x, c| {
            c.time(x.r.run.execution_date())
        }),
        col("value", Kind::Payload, |x, c| {
            c.payload(&x.value, x.pickled)
        }),
        col("timestamp", Kind::Time, |x, c| {
            c.time(x.r.ti.end.or(x.r.ti.start).unwrap_or(x.r.run.queued_at))
        }),
    ]
}

/// `xcom`: the return value of most successful tasks, and a second key for some.
pub(super) const XCOM: TableGen = TableGen {
    plan: |t, l| plan(t, l, &xcom_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&xcom_cols());
        let mut id = ctx.first_id("xcom");
        let share = w.features.xcom_pickle_share;
        each_ti(w, ctx, |r| {
            if r.ti.state != Some("success") || !r.task().pushes_xcom {
                return Ok(());
            }
            let mut rng = Rng::new(w.seed, &[tag::XCOM, r.ti.hash]);
            let keys: &[&str] = if rng.chance(0.2) {
                &["return_value", "métriques"]
            } else {
                &["return_value"]
            };
            for key in keys {
                let value = content::xcom_value(&mut rng);
                let pickled = rng.chance(share);
                enc.row(
                    &cols,
                    &XcomRow {
                        r,
                        id,
                        key,
                        value,
                        pickled,
                    },
                )?;
                id += 1;
            }
            Ok(())
        })
    },
};

fn rendered_cols() -> Vec<Col<TiF>> {
    vec![
        ti_col("dag_id", Kind::Text, |r, c| c.text(&r.dag.dag_id)),
        ti_col("task_id", Kind::Text, |r, c| c.text(&r.task().task_id)),
        ti_col("run_id", Kind::Text, |r, c| c.text(&r.run.run_id)),
        ti_col("map_index", Kind::Int, |r, c| {
            c.int(i64::from(r.ti.map_index))
        }),
        ti_col("execution_date", Kind::Time, |r, c| {
            c.time(r.run.execution_date())
        }),
        ti_col("rendered_fields", Kind::Json, |r, c| {
            let logical = iso(r.run.logical.unwrap_or(r.run.queued_at));
            c.json(&content::rendered_fields(
                r.task().operator,
                &r.dag.dag_id,
                &r.task().task_id,
                &logical,
            ))
        }),
        ti_col("k8s_pod_yaml", Kind::Json, |_, c| c.null()),
    ]
}

/// `rendered_task_instance_fields`: for task instances that ran in the newest runs of each DAG
/// (Airflow keeps 30 per task).
pub(super) const RENDERED_FIELDS: TableGen = TableGen {
    plan: |t, l| plan(t, l, &rendered_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&rendered_cols());
        each_ti(w, ctx, |r| {
            if r.run.recent && r.ti.ran() {
                enc.row(&cols, r)
            } else {
                Ok(())
            }
        })
    },
};
