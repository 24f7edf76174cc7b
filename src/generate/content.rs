//! The words and payloads of the synthetic history: DAG and task names (some non-ASCII, as
//! Airflow's `[\w.-]+` ids allow), operators, run confs, XCom values, rendered template fields
//! and audit-log extras. Every function is a pure function of an [`Rng`].

use serde_json::{Value, json};

use crate::generate::rng::Rng;

/// Stems of DAG ids; the DAG's index is appended so ids are unique.
const DAG_WORDS: &[&str] = &[
    "sales_daily",
    "données_ventes",
    "inventory_sync",
    "東京_etl",
    "отчёт_продаж",
    "marketing_attribution",
    "finance_close",
    "crm_sync",
    "clickstream",
    "facturación",
    "logistik_größen",
    "ml_features",
    "partner_feeds",
    "payroll",
    "ad_spend",
    "warehouse_maintenance",
];

/// Stems of task ids; the task's index is appended.
const TASK_WORDS: &[&str] = &[
    "extract",
    "load",
    "transform",
    "validate",
    "publish",
    "notify",
    "chargement_données",
    "集計",
    "check_partition",
    "train_model",
    "export_csv",
    "dbt_run",
    "quality_checks",
    "aggregate",
    "cleanup",
];

/// Owners of DAGs, as `default_args["owner"]` gives them.
pub(crate) const OWNERS: &[&str] = &[
    "airflow",
    "data-eng",
    "équipe_données",
    "データ基盤",
    "ml-platform",
];

/// Users who trigger runs and write notes.
pub(crate) const USERS: &[&str] = &["admin", "josé.garcía", "anna", "李雷", "ops-bot"];

/// Worker host names.
pub(crate) const HOSTS: &[&str] = &[
    "worker-0.airflow.svc.cluster.local",
    "worker-1.airflow.svc.cluster.local",
    "worker-2.airflow.svc.cluster.local",
    "airflow-worker-7d9f8c",
];

/// A DAG id: stem plus index, so ids are unique and about one in four is non-ASCII.
pub(crate) fn dag_id(rng: &mut Rng, index: u32) -> String {
    format!("{}_{index:03}", rng.pick(DAG_WORDS))
}

/// A task id unique within its DAG.
pub(crate) fn task_id(rng: &mut Rng, index: u32, sensor: bool, mapped: bool) -> String {
    let stem = if sensor {
        rng.pick(&["wait_for_file", "wait_for_upstream", "attendre_partition"])
    } else if mapped {
        rng.pick(&["process_file", "traiter_lot", "score_shard"])
    } else {
        rng.pick(TASK_WORDS)
    };
    format!("{stem}_{index}")
}

/// The conf of a manually triggered run.
pub(crate) fn manual_conf(rng: &mut Rng) -> Value {
    match rng.range(0, 4) {
        0 => json!({"raison": "relance après incident ✓", "force": true}),
        1 => json!({"date_cible": "2024-01-05", "tables": ["ventes", "clients"], "limite": 1000}),
        2 => json!({"comment": "手動実行", "retries": 2, "dry_run": false, "ratio": 0.25}),
        _ => json!({"partition": format!("p{}", rng.range(0, 500)), "owner": rng.pick(USERS)}),
    }
}

/// An XCom value as JSON text: mostly small dicts, some scalars and lists, now and then a
/// record list of one to ten kilobytes.
pub(crate) fn xcom_value(rng: &mut Rng) -> Value {
    let roll = rng.unit();
    if roll < 0.02 {
        let records = rng.range(8, 80);
        Value::Array(
            (0..records)
                .map(|i| {
                    json!({
                        "id": i,
                        "client": format!("Société Générale n°{i}"),
                        "montant": (rng.range(0, 1_000_000) as f64) / 100.0,
                        "ville": rng.pick(&["Zürich", "São Paulo", "Москва", "北京", "Reykjavík"]),
                        "ok": rng.chance(0.9),
                    })
                })
                .collect(),
        )
    } else if roll < 0.70 {
        json!({
            "rows": rng.range(0, 5_000_000),
            "status": rng.pick(&["ok", "partiel", "完了"]),
            "table": format!("ventes_{}", rng.range(2019, 2025)),
            "note": "naïve café ✓",
        })
    } else if roll < 0.80 {
        Value::String(format!(
            "s3://données/brut/part-{:05}.parquet",
            rng.range(0, 99_999)
        ))
    } else if roll < 0.90 {
        json!(rng.range(-1_000, 1_000_000))
    } else if roll < 0.95 {
        json!([rng.range(0, 10), "zwei", 3.5, null, true])
    } else {
        Value::Null
    }
}

/// `rendered_task_instance_fields.rendered_fields` of a task.
pub(crate) fn rendered_fields(
    operator: &str,
    dag_id: &str,
    task_id: &str,
    logical: &str,
) -> String {
    let value = match operator {
        "BashOperator" => json!({
            "bash_command": format!("python /opt/jobs/{task_id}.py --date {logical}"),
            "env": {"RÉGION": "eu-west-1", "LANG": "fr_FR.UTF-8"},
        }),
        "SQLExecuteQueryOperator" | "PostgresOperator" => json!({
            "sql": format!("INSERT INTO agrégats SELECT * FROM brut WHERE jour = '{}'", &logical[..10.min(logical.len())]),
            "parameters": null,
        }),
        _ => json!({
            "templates_dict": {"dag": dag_id, "ds": &logical[..10.min(logical.len())]},
            "op_args": [],
            "op_kwargs": {"libellé": "exécution planifiée ✓"},
        }),
    };
    value.to_string()
}

/// `log.extra` of an audit-log row.
pub(crate) fn log_extra(rng: &mut Rng, dag_id: &str, task_id: &str, host: &str) -> String {
    json!({
        "host_name": host,
        "full_command": format!("['airflow', 'tasks', 'run', '{dag_id}', '{task_id}', '--local']"),
        "remarque": rng.pick(&["relancé par l’équipe ✓", "自動", "ok"]),
    })
    .to_string()
}

/// A short note on a run or a task instance.
pub(crate) fn note(rng: &mut Rng) -> String {
    (rng.pick(&[
        "Relancé après la panne du entrepôt — voir INC-4521 ✓",
        "Данные пришли с опозданием",
        "上流の遅延のため再実行しました",
        "Known flaky upstream; ignore this failure.",
        "Größere Datenmenge als üblich 📈",
    ]))
    .to_owned()
}
