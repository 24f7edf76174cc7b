//! The synthetic history generator against every Airflow schema fixture: row counts, keys that
//! must agree across tables, orphans, determinism, and the payload encodings of each version.

use contrail::catalog::Catalog;
use contrail::generate::{self, FernetKey, GenerateOptions, GenerateSummary};
use contrail::source::DatabaseUrl;
use tokio_postgres::Client;

use crate::util::contrail;
use crate::util::fixtures::ddl_fixtures;
use crate::util::pg::cluster;

/// The fixed Fernet key of the fixtures (tests/fixtures/ddl/README.md).
const FERNET_KEY: &str = "VIuEC4IWyRhNcFROzir8-mGzC3aWCzDloPXh9s6Fa3o=";

fn options(seed: u64, task_instances: u64) -> GenerateOptions {
    GenerateOptions::default()
        .with_seed(seed)
        .with_task_instances(task_instances)
        .with_days(10)
        .with_fernet_key(Some(FernetKey::try_new(FERNET_KEY).unwrap()))
}

async fn generate_into(fixture: &str, options: GenerateOptions) -> (String, GenerateSummary) {
    let db = cluster().db_from_fixture(fixture);
    let url = DatabaseUrl::parse(&cluster().url(&db)).unwrap();
    let summary = generate::run(&url, options)
        .await
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    (db, summary)
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn has_column(client: &Client, table: &str, column: &str) -> bool {
    count(
        client,
        &format!(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
        ),
    )
    .await
        > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_every_fixture_consistently() {
    let catalog = Catalog::builtin().unwrap();
    for fixture in ddl_fixtures() {
        let name = fixture.name.as_str();
        let (db, summary) = generate_into(name, options(1, 700)).await;
        let client = cluster().client(&db).await;
        let version = catalog.version_for_revision(&fixture.revision).unwrap();
        assert_eq!(summary.airflow_version, version.id, "{name}");

        // Every table the catalog knows at this version was written, and holds what was sent.
        let expected: Vec<&str> = catalog.schema(version).load_order();
        let written: Vec<&str> = summary.tables.iter().map(|t| t.table.as_str()).collect();
        assert_eq!(written, expected, "{name}: tables in load order");
        for table in &summary.tables {
            let rows = count(
                &client,
                &format!("SELECT count(*) FROM \"{}\"", table.table),
            )
            .await;
            assert_eq!(rows as u64, table.rows, "{name}: {}", table.table);
            let always = [
                "dag_run",
                "task_instance",
                "xcom",
                "log",
                "job",
                "slot_pool",
                "variable",
                "connection",
            ];
            if always.contains(&table.table.as_str()) {
                assert!(table.rows > 0, "{name}: {} is empty", table.table);
            }
        }
        assert!(
            (500..=900).contains(&summary.task_instances),
            "{name}: {summary:?}"
        );

        // xcom.dag_run_id is the id of the run the row belongs to.
        if has_column(&client, "xcom", "dag_run_id").await {
            let wrong = count(
                &client,
                "SELECT count(*) FROM xcom x LEFT JOIN dag_run r \
                 ON r.dag_id = x.dag_id AND r.run_id = x.run_id WHERE r.id IS DISTINCT FROM x.dag_run_id",
            )
            .await;
            assert_eq!(wrong, 0, "{name}: xcom.dag_run_id");
        }
        // Before 2.2, task instances join runs by execution date; the orphans are deliberate.
        if has_column(&client, "task_instance", "execution_date").await {
            let orphans = count(
                &client,
                "SELECT count(*) FROM task_instance ti WHERE NOT EXISTS (SELECT 1 FROM dag_run r \
                 WHERE r.dag_id = ti.dag_id AND r.execution_date = ti.execution_date)",
            )
            .await;
            assert_eq!(orphans as u64, summary.orphan_task_instances, "{name}");
            assert!(orphans > 0, "{name}: no orphans");
        } else {
            assert_eq!(summary.orphan_task_instances, 0, "{name}");
        }

        // Mapped tasks, retries, NULLs where Airflow leaves them, non-ASCII.
        if has_column(&client, "task_instance", "map_index").await {
            let mapped = count(
                &client,
                "SELECT count(*) FROM task_instance WHERE map_index >= 0",
            )
            .await;
            assert_eq!(mapped as u64, summary.mapped_task_instances, "{name}");
            assert!(mapped > 0, "{name}: no mapped task instances");
        }
        let retried = count(
            &client,
            "SELECT count(*) FROM task_instance WHERE try_number > 1",
        )
        .await;
        assert!(retried > 0, "{name}: no retries");
        for (what, sql) in [
            (
                "running without end",
                "SELECT count(*) FROM task_instance WHERE state = 'running' AND end_date IS NULL",
            ),
            (
                "queued",
                "SELECT count(*) FROM task_instance WHERE state = 'queued' AND start_date IS NULL",
            ),
            (
                "up_for_retry",
                "SELECT count(*) FROM task_instance WHERE state = 'up_for_retry'",
            ),
            (
                "skipped without start",
                "SELECT count(*) FROM task_instance WHERE state = 'skipped' AND start_date IS NULL",
            ),
            (
                "upstream_failed",
                "SELECT count(*) FROM task_instance WHERE state = 'upstream_failed'",
            ),
            (
                "no state yet",
                "SELECT count(*) FROM task_instance WHERE state IS NULL",
            ),
            (
                "failed runs",
                "SELECT count(*) FROM dag_run WHERE state = 'failed'",
            ),
            (
                "running runs",
                "SELECT count(*) FROM dag_run WHERE state = 'running' AND end_date IS NULL",
            ),
            (
                "queued runs",
                "SELECT count(*) FROM dag_run WHERE state = 'queued' AND start_date IS NULL",
            ),
            (
                "non-ASCII dag ids",
                "SELECT count(*) FROM dag_run WHERE dag_id ~ '[^[:ascii:]]'",
            ),
            (
                "non-ASCII task ids",
                "SELECT count(*) FROM task_instance WHERE task_id ~ '[^[:ascii:]]'",
            ),
            (
                "non-ASCII log extras",
                "SELECT count(*) FROM log WHERE extra ~ '[^[:ascii:]]'",
            ),
        ] {
            assert!(count(&client, sql).await > 0, "{name}: {what}");
        }

        // dag_run.conf: a pickle before 3.0, jsonb in 3.x.
        let conf_type: String = client
            .query_one(
                "SELECT data_type FROM information_schema.columns \
                 WHERE table_name = 'dag_run' AND column_name = 'conf'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if conf_type == "bytea" {
            let rows = client
                .query("SELECT conf FROM dag_run WHERE conf IS NOT NULL", &[])
                .await
                .unwrap();
            assert!(!rows.is_empty(), "{name}: no conf");
            for row in rows {
                let bytes: Vec<u8> = row.get(0);
                assert_eq!(bytes[..2], [0x80, 5], "{name}: not a protocol-5 pickle");
                let json = contrail::remap::pickle_to_json(&bytes)
                    .unwrap_or_else(|e| panic!("{name}: conf does not unpickle: {e}"));
                assert!(json.starts_with('{'), "{name}: {json}");
            }
        } else {
            assert_eq!(conf_type, "jsonb", "{name}");
            let not_objects = count(
                &client,
                "SELECT count(*) FROM dag_run WHERE jsonb_typeof(conf) <> 'object'",
            )
            .await;
            assert_eq!(not_objects, 0, "{name}");
            // 3.x task instance ids are UUIDv7; run_after is always there.
            let not_v7 = count(
                &client,
                "SELECT count(*) FROM task_instance WHERE substr(id::text, 15, 1) <> '7'",
            )
            .await;
            assert_eq!(not_v7, 0, "{name}: task_instance.id not UUIDv7");
        }

        // xcom.value: bytes in 2.x (JSON text, and pickles on 1.10), jsonb in 3.x.
        if conf_type == "bytea" {
            let pickles = count(
                &client,
                "SELECT count(*) FROM xcom WHERE get_byte(value, 0) = 128",
            )
            .await;
            let legacy = has_column(&client, "xcom", "id").await;
            assert_eq!(
                pickles > 0,
                legacy,
                "{name}: pickled xcom values only on 1.10"
            );
            let json = count(
                &client,
                "SELECT count(*) FROM xcom WHERE get_byte(value, 0) <> 128 \
                 AND jsonb_typeof(convert_from(value, 'UTF8')::jsonb) IS NOT NULL",
            )
            .await;
            let bytes = count(
                &client,
                "SELECT count(*) FROM xcom WHERE get_byte(value, 0) <> 128",
            )
            .await;
            assert_eq!(
                json, bytes,
                "{name}: xcom values that are neither pickle nor JSON"
            );
            assert!(json > 0, "{name}");
        }

        // Secrets are real Fernet tokens of the given key.
        let fernet = fernet::Fernet::new(FERNET_KEY).unwrap();
        let row = client
            .query_one(
                "SELECT val FROM variable WHERE key = 'seuil_alerte' AND is_encrypted",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: encrypted variable: {e}"));
        let token: String = row.get(0);
        assert_eq!(fernet.decrypt(&token).unwrap(), b"0.95", "{name}");
        let plain = count(
            &client,
            "SELECT count(*) FROM variable WHERE NOT is_encrypted",
        )
        .await;
        assert!(plain > 0, "{name}: no plain variables");
    }
}

/// A digest of a table's content, in a stable order.
async fn digest(client: &Client, table: &str) -> String {
    client
        .query_one(
            &format!("SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM \"{table}\" t"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_history_other_seed_another() {
    for fixture in ["airflow-2.0.2", "airflow-2.10.5", "airflow-3.2.2"] {
        let (a, first) = generate_into(fixture, options(7, 600)).await;
        let (b, second) = generate_into(fixture, options(7, 600)).await;
        let (c, _) = generate_into(fixture, options(8, 600)).await;
        assert_eq!(first.tables, second.tables, "{fixture}");
        let (a, b, c) = (
            cluster().client(&a).await,
            cluster().client(&b).await,
            cluster().client(&c).await,
        );
        for table in first.tables.iter().map(|t| t.table.as_str()) {
            // Fernet tokens carry a random IV and the encryption time: compare all else.
            if matches!(table, "variable" | "connection") {
                continue;
            }
            assert_eq!(
                digest(&a, table).await,
                digest(&b, table).await,
                "{fixture}: {table}"
            );
        }
        assert_ne!(
            digest(&a, "dag_run").await,
            digest(&c, "dag_run").await,
            "{fixture}"
        );
        assert_ne!(
            digest(&a, "task_instance").await,
            digest(&c, "task_instance").await,
            "{fixture}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_database_that_has_history() {
    let (db, _) = generate_into("airflow-2.10.5", options(1, 100)).await;
    let url = DatabaseUrl::parse(&cluster().url(&db)).unwrap();
    let error = generate::run(&url, options(1, 100))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("already has rows"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_continue_after_generated_ids() {
    let (db, _) = generate_into("airflow-2.7.3", options(3, 300)).await;
    let client = cluster().client(&db).await;
    for table in [
        "dag_run",
        "log",
        "job",
        "task_fail",
        "slot_pool",
        "variable",
    ] {
        let next: i64 = client
            .query_one(
                &format!("SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let max = count(&client, &format!("SELECT max(id)::bigint FROM {table}")).await;
        assert_eq!(next, max + 1, "{table}");
    }
}

#[test]
fn cli_prints_counts_as_json_and_as_a_table() {
    let db = cluster().db_from_fixture("airflow-3.0.6");
    let url = cluster().url(&db);
    let out = contrail(
        &[
            "generate",
            "--db",
            &url,
            "--task-instances",
            "200",
            "--seed",
            "5",
            "--output",
            "json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["airflow_version"], "3.0");
    assert_eq!(summary["seed"], 5);
    let tables = summary["tables"].as_array().unwrap();
    assert!(
        tables
            .iter()
            .any(|t| t["table"] == "task_instance" && t["rows"].as_u64() > Some(100))
    );

    let db = cluster().db_from_fixture("airflow-1.10.12");
    let out = contrail(
        &[
            "generate",
            "--task-instances",
            "200",
            "--start",
            "2023-06-01",
        ],
        &[("DATABASE_URL", &cluster().url(&db))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Airflow schema 1.10.12"), "{text}");
    assert!(text.contains("task_instance"), "{text}");
    assert!(text.contains("orphaned"), "{text}");

    let out = contrail(&["generate", "--db", &url, "--start", "yesterday"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}

/// `(dag_id, id, queued_at)` of every dag_run in physical (ctid) order.
async fn runs_in_physical_order(client: &Client) -> Vec<(String, i32, i64)> {
    client
        .query(
            "SELECT dag_id, id, (extract(epoch FROM queued_at) * 1e6)::bigint FROM dag_run \
             ORDER BY ctid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_inserted_in_creation_order_or_dag_by_dag() {
    let (db, _) = generate_into("airflow-2.10.5", options(5, 2_000)).await;
    let client = cluster().client(&db).await;
    let runs = runs_in_physical_order(&client).await;
    assert!(runs.len() > 50, "{} runs", runs.len());
    // As the scheduler inserts them: by creation time across DAGs, with serial ids in that order.
    assert!(
        runs.windows(2).all(|w| w[0].2 <= w[1].2),
        "not in queued_at order"
    );
    assert!(
        runs.iter().zip(1..).all(|(run, id)| run.1 == id),
        "ids do not follow insertion order"
    );
    let dags: std::collections::BTreeSet<_> = runs.iter().map(|r| r.0.clone()).collect();
    let switches =
        |runs: &[(String, i32, i64)]| runs.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(switches(&runs) > 2 * dags.len(), "DAGs are not interleaved");
    // The table's task instances follow their runs (COPY's page filling leaves a few rows
    // out of place).
    let back = count(
        &client,
        "SELECT count(*) FROM (SELECT r.queued_at < lag(r.queued_at) OVER (ORDER BY t.ctid) AS back \
         FROM task_instance t JOIN dag_run r USING (dag_id, run_id)) o WHERE back",
    )
    .await;
    let tis = count(&client, "SELECT count(*) FROM task_instance").await;
    assert!(
        back * 100 < tis,
        "{back} of {tis} task instances out of their runs' order"
    );

    let (db, _) = generate_into(
        "airflow-2.10.5",
        options(5, 2_000).with_insertion_order(generate::InsertionOrder::Dag),
    )
    .await;
    let by_dag = runs_in_physical_order(&cluster().client(&db).await).await;
    assert_eq!(by_dag.len(), runs.len());
    // Each DAG's runs together: one switch per DAG boundary.
    assert_eq!(switches(&by_dag), dags.len() - 1);
}
