//! `contrail export` end to end: real PostgreSQL with real Airflow schemas, files read back with
//! the parquet crate and compared value by value with what PostgreSQL returns for the same rows.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use contrail::dataset::manifest::Manifest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::util::contrail;
use crate::util::pg::cluster;

/// The manifest of the only export in `dir`.
pub(crate) fn only_manifest(dir: &Path) -> Manifest {
    let manifests: Vec<_> = std::fs::read_dir(dir.join("_contrail/exports"))
        .expect("a manifest folder")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap()
}

/// Every batch of `table` in the files the manifest lists, checking sizes and checksums.
pub(crate) fn read_table(dir: &Path, manifest: &Manifest, table: &str) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for file in &manifest.tables[table].files {
        let bytes = std::fs::read(dir.join(&file.key)).unwrap();
        assert_eq!(bytes.len() as u64, file.bytes, "{}", file.key);
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let file_batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(
            file_batches
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>() as u64,
            file.rows,
            "{}",
            file.key
        );
        batches.extend(file_batches);
    }
    batches
}

/// A value as PostgreSQL's text output would spell it (session time zone UTC).
pub(crate) fn pg_text(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::Binary => {
            let bytes = array.as_binary::<i32>().value(row);
            format!(
                "\\x{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        }
        DataType::Timestamp(_, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let time = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            let mut text = time.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            while text.ends_with('0') {
                text.pop();
            }
            if text.ends_with('.') {
                text.pop();
            }
            format!("{text}+00")
        }
        other => panic!("unexpected type {other}"),
    })
}

/// Rows of `columns` from the Parquet batches, as text, sorted.
pub(crate) fn parquet_rows(
    batches: &[RecordBatch],
    columns: &[String],
) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            rows.push(
                columns
                    .iter()
                    .map(|c| {
                        pg_text(
                            batch.column(batch.schema().index_of(c).unwrap()).as_ref(),
                            row,
                        )
                    })
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

/// The same rows straight from PostgreSQL through its text protocol (an independent decoder).
pub(crate) async fn source_rows(
    db: &str,
    table: &str,
    columns: &[(String, String)],
) -> Vec<Vec<Option<String>>> {
    let client = cluster().client(db).await;
    client
        .batch_execute("SET TimeZone = 'UTC'; SET extra_float_digits = 1")
        .await
        .unwrap();
    let select = columns
        .iter()
        .map(|(expr, _)| format!("({expr})::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let messages = client
        .simple_query(&format!("SELECT {select} FROM {table} t"))
        .await
        .unwrap();
    let mut rows: Vec<Vec<Option<String>>> = messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..columns.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

pub(crate) fn export_to(db: &str, dir: &Path, extra: &[&str]) -> Value {
    let url = cluster().url(db);
    let mut args = vec![
        "export",
        "--db",
        &url,
        "--to",
        dir.to_str().unwrap(),
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = contrail(&args, &[]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A new Airflow 2.10 database holding the small history of `tests/fixtures/history-2.10-small.sql`.
pub(crate) fn demo_db() -> String {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    let history = std::fs::read_to_string(
        crate::util::repo_root().join("tests/fixtures/history-2.10-small.sql"),
    )
    .unwrap();
    cluster().psql(&db, &history);
    db
}

/// Adds `rows` audit log rows on `day`, a millisecond apart, each with `hex_chars` of
/// incompressible-looking hex in `extra` (values over 2 KiB are TOASTed, so the table's main
/// relation stays small and is read as one range).
pub(crate) fn add_log_rows(db: &str, rows: usize, hex_chars: usize, day: &str) {
    let md5s = hex_chars.div_ceil(32).max(1);
    cluster().psql(
        db,
        &format!(
            "INSERT INTO log (dttm, dag_id, task_id, map_index, event, execution_date, run_id, \
                              owner, extra, try_number) \
             SELECT '{day} 00:00:00+00'::timestamptz + i * interval '1 ms', 'bulk_' || (i % 7), \
                    'task_' || (i % 13), -1, 'bulk', '{day} 00:00:00+00', 'scheduled__{day}', \
                    'airflow', left((SELECT string_agg(md5(i || '-' || j), '') \
                                     FROM generate_series(1, {md5s}) j), {hex_chars}), 1 \
             FROM generate_series(1, {rows}) i"
        ),
    );
}

/// Exact row counts of every table in `tables`.
pub(crate) fn source_counts(db: &str, tables: &[&str]) -> BTreeMap<String, u64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = cluster().client(db).await;
        let mut out = BTreeMap::new();
        for table in tables {
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            out.insert((*table).to_owned(), count as u64);
        }
        out
    })
}

/// pyarrow reads every non-empty table of `manifest` under `root` with hive partitioning and no
/// options: the rows the manifest promises, microsecond UTC timestamps, plain strings.
pub(crate) fn assert_pyarrow_reads(root: &str, manifest: &Manifest, env: &[(&str, String)]) {
    let tables: Vec<&str> = manifest
        .tables
        .iter()
        .filter(|(_, t)| t.rows > 0)
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(tables.len() > 5, "{tables:?}");
    let read = crate::util::pyarrow::read_dataset(root, &tables, env);
    for table in tables {
        let entry = &read[table];
        assert_eq!(entry["rows"], manifest.tables[table].rows, "{table}");
        for (column, ty) in entry["fields"].as_object().unwrap() {
            let ty = ty.as_str().unwrap();
            assert!(!ty.starts_with("large_"), "{table}.{column} is {ty}");
            if ty.starts_with("timestamp") {
                assert_eq!(ty, "timestamp[us, tz=UTC]", "{table}.{column}");
            }
        }
        assert_eq!(
            entry["fields"]["dag_id"].as_str().unwrap_or("string"),
            "string"
        );
    }
}

#[test]
fn a_2_10_history_round_trips_through_parquet() {
    let db = demo_db();
    let dir = tempfile::tempdir().unwrap();
    let summary = export_to(&db, dir.path(), &[]);
    let manifest = only_manifest(dir.path());
    assert_eq!(manifest.source.airflow_version, "2.10");
    assert_eq!(
        summary["tables"].as_array().unwrap().len(),
        manifest.tables.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    // Direct columns: every value equals PostgreSQL's own text rendering of the source column.
    let cases: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        (
            "dag_run",
            vec![
                ("id", "id"),
                ("dag_id", "dag_id"),
                ("run_id", "run_id"),
                ("logical_date", "execution_date"),
                ("state", "state"),
                ("external_trigger", "external_trigger"),
                ("queued_at", "queued_at"),
                ("data_interval_end", "data_interval_end"),
                ("clear_number", "clear_number"),
            ],
        ),
        (
            "task_instance",
            vec![
                ("dag_id", "dag_id"),
                ("task_id", "task_id"),
                ("run_id", "run_id"),
                ("map_index", "map_index"),
                ("duration", "duration"),
                ("state", "state"),
                ("try_number", "try_number"),
                ("hostname", "hostname"),
                ("queued_dttm", "queued_dttm"),
                ("executor_config", "executor_config"),
            ],
        ),
        (
            "log",
            vec![
                ("id", "id"),
                ("dttm", "dttm"),
                ("extra", "extra"),
                ("logical_date", "execution_date"),
                ("try_number", "try_number"),
            ],
        ),
        (
            "variable",
            vec![
                ("key", "key"),
                ("val", "val"),
                ("is_encrypted", "is_encrypted"),
            ],
        ),
        (
            "slot_pool",
            vec![
                ("pool", "pool"),
                ("slots", "slots"),
                ("include_deferred", "include_deferred"),
            ],
        ),
    ]);
    for (table, pairs) in cases {
        let canonical: Vec<String> = pairs.iter().map(|(c, _)| (*c).to_owned()).collect();
        let source: Vec<(String, String)> = pairs
            .iter()
            .map(|(c, s)| (format!("t.{s}"), (*c).to_owned()))
            .collect();
        let expected = rt.block_on(source_rows(&db, table, &source));
        let actual = parquet_rows(&read_table(dir.path(), &manifest, table), &canonical);
        assert!(!expected.is_empty(), "{table} has rows");
        assert_eq!(actual, expected, "{table}");
    }

    // Payloads: pickled confs became JSON, JSON XComs kept, the pickled XCom decoded.
    let runs = read_table(dir.path(), &manifest, "dag_run");
    let confs = parquet_rows(
        &runs,
        &[
            "dag_id".to_owned(),
            "conf".to_owned(),
            "conf_raw".to_owned(),
        ],
    );
    assert!(
        confs.contains(&vec![
            Some("report_ünïcode".into()),
            Some(r#"{"source":"demo","retries":2}"#.into()),
            None
        ]),
        "{confs:?}"
    );
    assert!(
        confs.contains(&vec![Some("etl_daily".into()), Some("{}".into()), None]),
        "{confs:?}"
    );
    let xcoms = parquet_rows(
        &read_table(dir.path(), &manifest, "xcom"),
        &[
            "map_index".to_owned(),
            "value".to_owned(),
            "dag_run_id".to_owned(),
        ],
    );
    assert_eq!(
        xcoms[0][1].as_deref(),
        Some(r#"{"rows": 1250, "path": "s3://lake/raw/2024-03-01"}"#)
    );
    assert_eq!(xcoms[1][1].as_deref(), Some(r#"{"rows":3}"#));

    // Layout: Hive partitions by run day, files sorted, run_type derived.
    assert!(
        manifest.tables["dag_run"]
            .files
            .iter()
            .any(|f| f.key.starts_with("dag_run/date=2024-03-02/"))
    );
    assert!(
        manifest.tables["variable"]
            .files
            .iter()
            .all(|f| f.partition.is_none() && !f.key.contains("date="))
    );

    // An analyst's reader agrees, with no options.
    assert_pyarrow_reads(dir.path().to_str().unwrap(), &manifest, &[]);
}

#[test]
fn dry_run_plans_and_writes_nothing() {
    let db = cluster().db_from_fixture("airflow-3.2.2");
    let dir = tempfile::tempdir().unwrap();
    let summary = export_to(&db, dir.path(), &["--dry-run"]);
    assert_eq!(summary["dry_run"], true);
    assert!(
        summary["plan"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "task_instance")
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
