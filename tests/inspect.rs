//! `contrail inspect` against databases with real Airflow schemas, through the binary, as a user
//! runs it.

use serde_json::Value;

use crate::util::contrail;
use crate::util::pg::cluster;

/// Adds `runs` dag runs with `tis_per_run` task instances each, in the shape of `version`.
fn add_history(db: &str, version: &str, runs: usize, tis_per_run: usize) {
    let pg = cluster();
    let airflow3 = version.starts_with('3');
    for r in 0..runs {
        let run_id = format!("scheduled__2024-01-{:02}T00:00:00+00:00", r + 1);
        let date = format!("2024-01-{:02} 00:00:00+00", r + 1);
        let run = if airflow3 {
            format!(
                "INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, run_type, state, clear_number) \
                 VALUES ('d', '{run_id}', '{date}', '{date}', 'scheduled', 'success', 0)"
            )
        } else {
            format!(
                "INSERT INTO dag_run (dag_id, run_id, execution_date, run_type, state, clear_number) \
                 VALUES ('d', '{run_id}', '{date}', 'scheduled', 'success', 0)"
            )
        };
        pg.psql(db, &run);
        for t in 0..tis_per_run {
            let ti = if airflow3 {
                format!(
                    "INSERT INTO task_instance (id, dag_id, task_id, run_id, try_number, pool, pool_slots, state, start_date) \
                     VALUES (gen_random_uuid(), 'd', 't{t}', '{run_id}', 1, 'default_pool', 1, 'success', '{date}')"
                )
            } else {
                format!(
                    "INSERT INTO task_instance (dag_id, task_id, run_id, try_number, pool, pool_slots, state, start_date) \
                     VALUES ('d', 't{t}', '{run_id}', 1, 'default_pool', 1, 'success', '{date}')"
                )
            };
            pg.psql(db, &ti);
        }
    }
}

fn inspect_json(db: &str) -> Value {
    let out = contrail(
        &["inspect", "--db", &cluster().url(db), "--output", "json"],
        &[],
    );
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --output json prints JSON")
}

fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["table"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

#[test]
fn detects_version_and_counts_rows_exactly() {
    for (fixture, version) in [
        ("airflow-2.10.5", "2.10"),
        ("airflow-2.11.0", "2.10"),
        ("airflow-3.0.6", "3.0"),
        ("airflow-3.2.2", "3.2"),
    ] {
        let db = cluster().db_from_fixture(fixture);
        add_history(&db, version, 3, 4);
        let report = inspect_json(&db);
        assert_eq!(report["airflow_version"], version, "{fixture}");
        let dag_run = table(&report, "dag_run");
        assert_eq!(dag_run["rows"], 3, "{fixture}");
        assert_eq!(dag_run["rows_exact"], true, "{fixture}");
        assert_eq!(
            dag_run["min_time"], "2024-01-01T00:00:00.000000Z",
            "{fixture}"
        );
        assert_eq!(
            dag_run["max_time"], "2024-01-03T00:00:00.000000Z",
            "{fixture}"
        );
        assert_eq!(table(&report, "task_instance")["rows"], 12, "{fixture}");
        assert_eq!(
            report["drift"].as_array().map(Vec::len),
            Some(0),
            "{fixture}: {:#}",
            report["drift"]
        );
    }
}

#[test]
fn human_output_names_version_tables_and_warnings() {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    add_history(&db, "2.10", 1, 1);
    cluster().psql(&db, "INSERT INTO variable (key, val, is_encrypted) VALUES ('secret', 'gAAAAABciphertext', true)");
    let out = contrail(&["inspect", "--db", &cluster().url(&db)], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Airflow schema 2.10"), "{text}");
    assert!(text.contains("dag_run"), "{text}");
    assert!(text.contains("encrypted_variables"), "{text}");
    assert!(
        !text.contains("gAAAAABciphertext"),
        "secret value leaked: {text}"
    );
}

#[test]
fn reads_airflows_own_connection_variable() {
    let db = cluster().db_from_fixture("airflow-3.2.2");
    let sqlalchemy = cluster()
        .url(&db)
        .replace("postgresql://", "postgresql+psycopg2://");
    let out = contrail(
        &["inspect", "--output", "json"],
        &[("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", &sqlalchemy)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["airflow_version"], "3.2");
}

#[test]
fn unknown_revision_fails_naming_it_and_the_known_versions() {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    cluster().psql(
        &db,
        "UPDATE alembic_version SET version_num = '0badc0ffee00'",
    );
    let out = contrail(&["inspect", "--db", &cluster().url(&db)], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0badc0ffee00"), "{err}");
    assert!(err.contains("1.10.12") && err.contains("3.2"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn assumed_version_overrides_an_unknown_revision() {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    cluster().psql(
        &db,
        "UPDATE alembic_version SET version_num = '0badc0ffee00'",
    );
    let out = contrail(
        &[
            "inspect",
            "--db",
            &cluster().url(&db),
            "--assume-version",
            "2.10.5",
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
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["airflow_version"], "2.10");
    assert_eq!(report["version_assumed"], true);
}

#[test]
fn a_database_that_is_not_airflow_is_refused() {
    let db = cluster().empty_db("not_airflow");
    let out = contrail(&["inspect", "--db", &cluster().url(&db)], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not look like an Airflow metadata database"),
        "{err}"
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("postgresql://airflow:hunter2@127.0.0.1:{port}/airflow");
    let out = contrail(&["inspect", "--db", &url], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not connect"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn no_database_given_says_how_to_give_one() {
    let out = contrail(&["inspect"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--db") && err.contains("DATABASE_URL"),
        "{err}"
    );
}

#[test]
fn warns_about_what_matters_for_a_migration() {
    // Airflow 1.10: task instances keyed by execution_date, one without a dag run; a pickled XCom.
    let db = cluster().db_from_fixture("airflow-1.10.12");
    let pg = cluster();
    pg.psql(&db, "INSERT INTO dag_run (dag_id, execution_date, run_id, state) VALUES ('d', '2020-01-01', 'scheduled__2020-01-01T00:00:00+00:00', 'success')");
    pg.psql(&db, "INSERT INTO task_instance (task_id, dag_id, execution_date, state, pool) VALUES ('t', 'd', '2020-01-01', 'success', 'default_pool'), ('t', 'd', '2020-01-02', 'running', 'default_pool')");
    pg.psql(&db, "INSERT INTO xcom (key, value, timestamp, execution_date, task_id, dag_id) VALUES ('k', '\\x80047d942e', now(), '2020-01-01', 't', 'd')");
    let report = inspect_json(&db);
    assert_eq!(report["airflow_version"], "1.10.12");
    let warnings = report["warnings"].as_array().unwrap();
    let find = |table: &str, kind: &str| {
        warnings
            .iter()
            .find(|w| w["table"] == table && w["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} warning on {table} in {warnings:#?}"))["rows"]
            .clone()
    };
    assert_eq!(find("task_instance", "no_dag_run"), 1);
    assert_eq!(find("task_instance", "in_flight"), 1);
    assert_eq!(find("xcom", "pickled_xcom"), 1);
}

#[test]
fn reports_drift_of_a_database_upgraded_to_airflow_3() {
    let db = cluster().db_from_fixture("airflow-2.10.5-upgraded-to-3.0.6");
    let report = inspect_json(&db);
    assert_eq!(report["airflow_version"], "3.0");
    let drift = report["drift"].as_array().unwrap();
    assert!(
        drift
            .iter()
            .any(|d| d["table"] == "sla_miss" && d["kind"] == "extra_table"),
        "{drift:#?}"
    );
}
