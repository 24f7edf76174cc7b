//! Time windows of `contrail export`: `--since`/`--until`/`--max-age-days` select rows by their
//! time, and `--incremental` continues from the watermark of the last manifest, so a series of
//! exports holds every row once.

use std::path::Path;

use contrail::dataset::manifest::Manifest;

use crate::export::{demo_db, export_to, parquet_rows, read_table, source_rows};
use crate::util::pg::cluster;

/// Every manifest in `dir`, oldest first.
fn all_manifests(dir: &Path) -> Vec<Manifest> {
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("_contrail/exports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut manifests: Vec<Manifest> = paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    manifests.sort_by(|a, b| a.snapshot_time.cmp(&b.snapshot_time));
    manifests
}

/// Rows of `columns` of `table` in every file of every manifest, as text, sorted, duplicates
/// kept.
fn exported(
    dir: &Path,
    manifests: &[Manifest],
    table: &str,
    columns: &[&str],
) -> Vec<Vec<Option<String>>> {
    let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    let mut rows: Vec<_> = manifests
        .iter()
        .flat_map(|m| parquet_rows(&read_table(dir, m, table), &columns))
        .collect();
    rows.sort();
    rows
}

/// The same columns straight from PostgreSQL (canonical and source names are the same here).
fn source(db: &str, table: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let pairs: Vec<(String, String)> = columns
        .iter()
        .map(|c| (format!("t.{c}"), (*c).to_owned()))
        .collect();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(source_rows(db, table, &pairs))
}

/// Log ids as PostgreSQL selects them with `condition`, sorted.
fn log_ids(db: &str, condition: &str) -> Vec<Vec<Option<String>>> {
    let ids = cluster().psql_value(
        db,
        &format!("SELECT string_agg(id::text, ',' ORDER BY id::text) FROM log WHERE {condition}"),
    );
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(|id| vec![Some(id.to_owned())])
        .collect()
}

#[test]
fn incremental_exports_append_every_row_once() {
    let db = demo_db();
    // A row with no time at all: older than any window's end, so in the first export only.
    cluster().psql(
        &db,
        "INSERT INTO log (dttm, dag_id, event) VALUES (NULL, 'etl_daily', 'untimed')",
    );
    let dir = tempfile::tempdir().unwrap();
    export_to(&db, dir.path(), &["--incremental"]);

    // Newer history, stamped after the first snapshot.
    cluster().psql(
        &db,
        "INSERT INTO dag_run (dag_id, execution_date, start_date, state, run_id, run_type, \
                              external_trigger, log_template_id) \
         VALUES ('etl_daily', now(), now(), 'running', 'manual__new', 'manual', true, 1); \
         INSERT INTO task_instance (task_id, dag_id, run_id, map_index, start_date, state, \
                                    try_number, max_tries, pool, pool_slots, updated_at) \
         VALUES ('extract', 'etl_daily', 'manual__new', -1, now(), 'running', 1, 2, 'etl', 1, \
                 now()); \
         INSERT INTO log (dttm, dag_id, event) \
         SELECT now(), 'etl_daily', 'new ' || i FROM generate_series(1, 5) i",
    );
    export_to(&db, dir.path(), &["--incremental"]);
    // Nothing new: a third export adds no rows of history.
    export_to(&db, dir.path(), &["--incremental"]);

    let manifests = all_manifests(dir.path());
    assert_eq!(manifests.len(), 3);
    // Each export ends at its snapshot, and the next one starts there.
    for pair in manifests.windows(2) {
        let mark = |m: &Manifest| m.tables["log"].watermark.clone().unwrap();
        assert!(mark(&pair[0]) < mark(&pair[1]));
        assert_eq!(mark(&pair[0]), pair[0].snapshot_time);
    }
    assert_eq!(manifests[1].tables["dag_run"].rows, 1);
    assert_eq!(manifests[1].tables["log"].rows, 5);
    assert_eq!(manifests[2].tables["log"].rows, 0);
    assert_eq!(manifests[2].tables["dag_run"].rows, 0);

    let cases: [(&str, &[&str]); 5] = [
        ("dag_run", &["dag_id", "run_id"]),
        (
            "task_instance",
            &["dag_id", "task_id", "run_id", "map_index"],
        ),
        (
            "task_instance_history",
            &["dag_id", "task_id", "run_id", "try_number"],
        ),
        ("log", &["id"]),
        ("xcom", &["dag_id", "task_id", "run_id", "map_index", "key"]),
    ];
    for (table, columns) in cases {
        assert_eq!(
            exported(dir.path(), &manifests, table, columns),
            source(&db, table, columns),
            "{table}"
        );
    }
}

#[test]
fn since_until_and_max_age_select_rows_by_their_first_time() {
    let db = demo_db();
    cluster().psql(
        &db,
        "INSERT INTO log (dttm, dag_id, event) VALUES (now() - interval '1 hour', 'etl_daily', 'recent')",
    );

    let dir = tempfile::tempdir().unwrap();
    export_to(
        &db,
        dir.path(),
        &["--since", "2024-03-02", "--until", "2024-03-03T00:19:00Z"],
    );
    let manifests = all_manifests(dir.path());
    assert_eq!(
        manifests[0].window.since.as_deref(),
        Some("2024-03-02T00:00:00.000000Z")
    );
    let time = "coalesce(dttm, execution_date)";
    assert_eq!(
        exported(dir.path(), &manifests, "log", &["id"]),
        log_ids(
            &db,
            &format!("{time} >= '2024-03-02' AND {time} < '2024-03-03T00:19:00Z'")
        )
    );
    let runs = exported(dir.path(), &manifests, "dag_run", &["run_id"]);
    assert_eq!(
        runs,
        [
            vec![Some("manual__2024-03-02T15:30:00+00:00".to_owned())],
            vec![Some("scheduled__2024-03-02T00:00:00+00:00".to_owned())],
            vec![Some("scheduled__2024-03-03T00:00:00+00:00".to_owned())]
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    export_to(&db, dir.path(), &["--max-age-days", "1"]);
    let manifests = all_manifests(dir.path());
    assert!(manifests[0].window.until.is_some());
    assert_eq!(
        exported(dir.path(), &manifests, "log", &["id"]),
        log_ids(&db, "event <> 'recent'")
    );
    assert!(!log_ids(&db, "event = 'recent'").is_empty());
}
