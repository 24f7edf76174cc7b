//! `contrail import` across Airflow versions: generated history exported from one real schema
//! and imported into another; the target, exported again, holds the same canonical content;
//! foreign keys hold; a second import inserts nothing; a dry run changes nothing.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::RecordBatch;
use contrail::catalog::{Catalog, SchemaVersion, Source};
use contrail::dataset::manifest::Manifest;
use contrail::export::{self, ExportOptions, TableSelection};
use contrail::generate::{self, FernetKey, GenerateOptions};
use contrail::load::{self, FernetKeys, ImportOptions, ImportSummary};
use contrail::source::DatabaseUrl;

use crate::export::{only_manifest, pg_text, read_table};
use crate::util::pg::cluster;

/// Tables whose canonical content must survive the trip exactly.
const COMPARED: &[&str] = &[
    "dag_run",
    "task_instance",
    "xcom",
    "log",
    "variable",
    "slot_pool",
];

/// Columns that are environment-local: ids and references, remapped by design.
const LOCAL: &[&str] = &[
    "id",
    "dag_run_id",
    "ti_id",
    "task_instance_id",
    "job_id",
    "queued_by_job_id",
    "creating_job_id",
    "scheduled_by_job_id",
    "log_template_id",
    "trigger_id",
    "backfill_id",
    "dag_version_id",
    "created_dag_version_id",
    "user_id",
];

pub(crate) const SOURCE_KEY: &str = "Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg=";
pub(crate) const TARGET_KEY: &str = "dGFyZ2V0a2V5dGFyZ2V0a2V5dGFyZ2V0a2V5MTIzNDU=";

/// Generates history in a new database of `fixture` and exports it; returns the dataset.
pub(crate) async fn exported(fixture: &str, seed: u64, task_instances: u64) -> tempfile::TempDir {
    let db = cluster().db_from_fixture(fixture);
    let url = DatabaseUrl::parse(&cluster().url(&db)).unwrap();
    let options = GenerateOptions::default()
        .with_seed(seed)
        .with_task_instances(task_instances)
        .with_days(4)
        .with_fernet_key(Some(FernetKey::try_new(SOURCE_KEY).unwrap()));
    generate::run(&url, options)
        .await
        .unwrap_or_else(|e| panic!("generate {fixture}: {e}"));
    export_db(&db).await
}

pub(crate) async fn export_db(db: &str) -> tempfile::TempDir {
    let url = DatabaseUrl::parse(&cluster().url(db)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url, dir.path().to_str().unwrap())
        .with_tables(TableSelection {
            include_connections: true,
            ..TableSelection::default()
        })
        .with_allow_plaintext_secrets(true);
    export::run(options)
        .await
        .unwrap_or_else(|e| panic!("export {db}: {e}"));
    dir
}

/// A new target database of `fixture`, seeded as `airflow db migrate` seeds one.
pub(crate) fn target(fixture: &str) -> String {
    let db = cluster().db_from_fixture(fixture);
    let deferred = cluster().psql_value(
        &db,
        "SELECT count(*) FROM information_schema.columns
          WHERE table_name = 'slot_pool' AND column_name = 'include_deferred'",
    );
    let sql = if deferred == "1" {
        "INSERT INTO slot_pool (pool, slots, description, include_deferred) VALUES ('default_pool', 128, 'Default pool', false)"
    } else {
        "INSERT INTO slot_pool (pool, slots, description) VALUES ('default_pool', 128, 'Default pool')"
    };
    cluster().psql(&db, sql);
    db
}

pub(crate) fn import_options(dir: &Path, db: &str) -> ImportOptions {
    let url = DatabaseUrl::parse(&cluster().url(db)).unwrap();
    ImportOptions::new(url, dir.to_str().unwrap())
        .with_keys(FernetKeys::new(Some(SOURCE_KEY), Some(TARGET_KEY), false).unwrap())
}

pub(crate) async fn import(dir: &Path, db: &str) -> ImportSummary {
    load::run(&import_options(dir, db))
        .await
        .unwrap_or_else(|e| panic!("import into {db}: {e}"))
}

/// Row counts of every table the catalog knows, as the target has them.
pub(crate) fn counts(db: &str) -> BTreeMap<String, String> {
    let catalog = Catalog::builtin().unwrap();
    catalog
        .canonical()
        .iter()
        .filter_map(|c| {
            let exists = cluster().psql_value(
                db,
                &format!(
                    "SELECT count(*) FROM pg_tables WHERE tablename = '{}'",
                    c.name
                ),
            );
            (exists == "1").then(|| {
                let n = cluster().psql_value(db, &format!("SELECT count(*) FROM {}", c.name));
                (c.name.clone(), n)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_moves_forward_across_versions() {
    let pairs = [
        ("airflow-1.10.12", "airflow-2.0.2"),
        ("airflow-1.10.12", "airflow-2.10.5"),
        ("airflow-2.2.2", "airflow-2.6.3"),
        ("airflow-2.4.3", "airflow-3.0.6"),
        ("airflow-2.9.2", "airflow-2.10.5"),
        ("airflow-2.10.5", "airflow-2.10.5"),
        ("airflow-2.10.5", "airflow-3.2.2"),
        ("airflow-3.0.6", "airflow-3.2.2"),
        ("airflow-3.2.2", "airflow-3.2.2"),
    ];
    for (seed, (source, target_fixture)) in pairs.into_iter().enumerate() {
        let label = format!("{source} -> {target_fixture}");
        let dataset = exported(source, 40 + seed as u64, 160).await;
        let manifest = only_manifest(dataset.path());

        // A dry run does everything and changes nothing.
        let db = target(target_fixture);
        let before = counts(&db);
        let dry = load::run(&import_options(dataset.path(), &db).with_dry_run(true))
            .await
            .unwrap_or_else(|e| panic!("{label}: dry run: {e}"));
        assert!(
            dry.tables.iter().any(|t| t.inserted > 0),
            "{label}: dry run inserted nothing"
        );
        assert_eq!(
            counts(&db),
            before,
            "{label}: the dry run changed the target"
        );

        let summary = import(dataset.path(), &db).await;
        let verification = summary.verification.as_ref().unwrap();
        for check in &verification.tables {
            assert!(check.ok(), "{label}: {check:?}");
            assert_eq!(
                check.dataset_checksum, check.target_checksum,
                "{label}: {check:?}"
            );
        }
        for outcome in &summary.tables {
            if COMPARED.contains(&outcome.table.as_str()) && outcome.table != "slot_pool" {
                assert_eq!(
                    outcome.inserted + outcome.left_out.iter().map(|(_, n)| n).sum::<u64>(),
                    outcome.rows,
                    "{label}: {outcome:?}"
                );
            }
        }

        // References point at the target's own rows.
        let orphan_xcoms = cluster().psql_value(
            &db,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'xcom' AND column_name = 'dag_run_id'",
        );
        if orphan_xcoms == "1" {
            let bad = cluster().psql_value(
                &db,
                "SELECT count(*) FROM xcom x LEFT JOIN dag_run d ON d.id = x.dag_run_id
                  WHERE d.id IS NULL OR d.dag_id <> x.dag_id OR d.run_id <> x.run_id",
            );
            assert_eq!(
                bad, "0",
                "{label}: xcom.dag_run_id does not match the target's dag_run"
            );
        }

        // The target, exported again, holds the dataset's canonical content.
        let again = export_db(&db).await;
        let reexported = only_manifest(again.path());
        compare_content(&label, dataset.path(), &manifest, again.path(), &reexported);

        // Importing the same dataset again inserts nothing.
        let second = import(dataset.path(), &db).await;
        for outcome in &second.tables {
            assert_eq!(
                outcome.inserted, 0,
                "{label}: re-import of {}",
                outcome.table
            );
        }
        let after_first = counts(&db);
        let third = import(dataset.path(), &db).await;
        assert!(third.tables.iter().all(|t| t.inserted == 0), "{label}");
        assert_eq!(
            counts(&db),
            after_first,
            "{label}: re-import changed counts"
        );
    }
}

/// Canonical rows of the compared tables, keyed by natural key, with the columns both
/// versions carry; in-flight states as the import documents them (failed, no deferral state).
fn compare_content(label: &str, a: &Path, am: &Manifest, b: &Path, bm: &Manifest) {
    let catalog = Catalog::builtin().unwrap();
    let source = catalog.version(&am.source.airflow_version).unwrap();
    let target = catalog.version(&bm.source.airflow_version).unwrap();
    for &table in COMPARED {
        let (Some(_), Some(_)) = (am.tables.get(table), bm.tables.get(table)) else {
            continue;
        };
        let canonical = catalog
            .canonical()
            .iter()
            .find(|c| c.name == table)
            .unwrap();
        let carried = |version: &SchemaVersion, column: &str| {
            let schema = catalog.schema(version).table(table).unwrap();
            let column = canonical.column(column).unwrap();
            !matches!(canonical.source_of(column, version, schema), Source::Null)
        };
        let columns: Vec<String> = canonical
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|c| !LOCAL.contains(&c.as_str()))
            .filter(|c| carried(source, c) && carried(target, c))
            .collect();
        let mut expected = rows(canonical, &read_table(a, am, table), &columns, true);
        let actual = rows(canonical, &read_table(b, bm, table), &columns, false);
        if table == "slot_pool" || table == "variable" {
            // The target's own rows (default_pool) and re-encrypted values: compare by key,
            // values only where not ciphertext.
            expected.retain(|k, _| actual.contains_key(k));
        }
        if table == "task_instance" || table == "xcom" {
            // Rows whose run the source never had are left out, and reported.
            expected.retain(|k, _| actual.contains_key(k));
        }
        assert_eq!(
            expected.len(),
            actual.len(),
            "{label}: {table}: row count (columns {columns:?})"
        );
        assert!(
            !expected.is_empty() && columns.len() >= 3,
            "{label}: {table}: nothing compared"
        );
        for (key, row) in &expected {
            let other = actual
                .get(key)
                .unwrap_or_else(|| panic!("{label}: {table}: {key} missing"));
            for ((column, x), y) in columns.iter().zip(row).zip(other) {
                if table == "variable" && column == "val" {
                    continue;
                }
                assert_eq!(x, y, "{label}: {table} {key}: {column}");
            }
        }
    }
}

fn rows(
    canonical: &contrail::catalog::CanonicalTable,
    batches: &[RecordBatch],
    columns: &[String],
    apply_import_rules: bool,
) -> BTreeMap<String, Vec<Option<String>>> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let value = |name: &str, row: usize| {
            let index = batch.schema().index_of(name).unwrap();
            pg_text(batch.column(index).as_ref(), row)
        };
        for row in 0..batch.num_rows() {
            let key = canonical
                .natural_key
                .iter()
                .map(|k| value(k, row).unwrap_or_else(|| "∅".to_owned()))
                .collect::<Vec<_>>()
                .join("|");
            let state = columns
                .iter()
                .any(|c| c == "state")
                .then(|| value("state", row))
                .flatten();
            let in_flight = apply_import_rules
                && match canonical.name.as_str() {
                    "dag_run" => matches!(state.as_deref(), Some("running" | "queued")),
                    "task_instance" => matches!(
                        state.as_deref(),
                        Some(
                            "running"
                                | "queued"
                                | "scheduled"
                                | "deferred"
                                | "up_for_reschedule"
                                | "up_for_retry"
                                | "restarting"
                        )
                    ),
                    _ => false,
                };
            let values = columns
                .iter()
                .map(|c| {
                    let v = value(c, row);
                    let v = match (in_flight, c.as_str()) {
                        (true, "state") => Some("failed".to_owned()),
                        (true, "next_method" | "next_kwargs" | "trigger_timeout") => None,
                        _ => v,
                    };
                    let json = canonical
                        .column(c)
                        .is_some_and(|col| col.ty == contrail::catalog::CanonicalType::Json);
                    if json { v.map(|t| normal_json(&t)) } else { v }
                })
                .collect();
            out.insert(key, values);
        }
    }
    out
}

/// JSON text with object keys sorted, so `jsonb`'s reordering compares equal.
fn normal_json(text: &str) -> String {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    serde_json::from_str(text)
        .map(|v| sort(v).to_string())
        .unwrap_or_else(|_| text.to_owned())
}
