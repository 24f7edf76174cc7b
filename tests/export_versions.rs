//! Export of generated history from every real Airflow schema: every table's row count in the
//! Parquet files equals the source, and every column read straight from a source column has the
//! same values, as PostgreSQL renders them.

use arrow::array::{Array, RecordBatch};
use contrail::catalog::{Catalog, WireType};
use contrail::export::{self, ExportOptions, TableSelection};
use contrail::generate::{self, GenerateOptions};
use contrail::source::DatabaseUrl;
use contrail::source::query::{self, Output};

use crate::export::{parquet_rows, read_table, source_rows};
use crate::util::fixtures::{DdlFixture, Method, ddl_fixtures};
use crate::util::pg::cluster;

/// The fixtures made by a version's own `airflow db migrate` (not upgraded ones).
fn fresh_fixtures() -> Vec<DdlFixture> {
    ddl_fixtures()
        .into_iter()
        .filter(|f| f.method != Method::Upgraded)
        .collect()
}

/// A database of `fixture`'s schema holding generated history.
pub(crate) async fn generated(
    fixture: &DdlFixture,
    seed: u64,
    task_instances: u64,
    days: u32,
) -> (String, DatabaseUrl) {
    let options = GenerateOptions::default()
        .with_seed(seed)
        .with_task_instances(task_instances)
        .with_days(days);
    generated_with(fixture, options).await
}

/// A database of `fixture`'s schema filled by the generator with `options`.
pub(crate) async fn generated_with(
    fixture: &DdlFixture,
    options: GenerateOptions,
) -> (String, DatabaseUrl) {
    let db = cluster().db_from_fixture(&fixture.name);
    let url = DatabaseUrl::parse(&cluster().url(&db)).unwrap();
    generate::run(&url, options)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
    (db, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_history_of_every_version_round_trips() {
    let catalog = Catalog::builtin().unwrap();
    for fixture in fresh_fixtures() {
        let (db, url) = generated(&fixture, 11, 150, 5).await;

        let dir = tempfile::tempdir().unwrap();
        let selection = TableSelection {
            include_connections: true,
            ..TableSelection::default()
        };
        let export_options = ExportOptions::new(url.clone(), dir.path().to_str().unwrap())
            .with_tables(selection)
            .with_allow_plaintext_secrets(true)
            .with_jobs(2);
        let summary = export::run(export_options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        let manifest = crate::export::only_manifest(dir.path());
        assert_eq!(summary.tables.len(), manifest.tables.len());

        let (client, version, live) = cluster().inspect(&db).await;
        let mut compared_columns = 0;
        for (table, entry) in &manifest.tables {
            let source_count: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                entry.rows as i64, source_count,
                "{}: {table} rows",
                fixture.name
            );
            let batches = read_table(dir.path(), &manifest, table);
            assert_eq!(
                batches.iter().map(RecordBatch::num_rows).sum::<usize>() as i64,
                source_count
            );

            let canonical = catalog
                .canonical()
                .iter()
                .find(|c| &c.name == table)
                .unwrap();
            let plan = query::plan(
                canonical,
                version,
                catalog.schema(version).table(table).unwrap(),
                &live,
                "public",
            )
            .unwrap();
            let mut pairs = Vec::new();
            for (column, output) in canonical.columns.iter().zip(&plan.outputs) {
                let Output::Column(index) = output else {
                    continue;
                };
                let select = &plan.select[*index];
                let plain = select.starts_with("t.\"")
                    && select.ends_with('"')
                    && select.matches('"').count() == 2;
                if !plain {
                    continue;
                }
                let expr = if plan.wires[*index] == WireType::Timestamp {
                    format!("{select}::timestamptz")
                } else {
                    select.clone()
                };
                pairs.push((expr, column.name.clone()));
            }
            compared_columns += pairs.len();
            let expected = source_rows(&db, table, &pairs).await;
            let names: Vec<String> = pairs.iter().map(|(_, c)| c.clone()).collect();
            let actual = parquet_rows(&batches, &names);
            assert!(
                actual == expected,
                "{}: {table}: Parquet values differ from PostgreSQL's",
                fixture.name
            );

            // Payloads: every stored payload is either decoded to JSON or kept as bytes.
            for (json, raw, source) in [
                ("conf", "conf_raw", "conf"),
                ("value", "value_raw", "value"),
            ] {
                let (Some(json_index), Some(raw_index)) = (
                    canonical.columns.iter().position(|c| c.name == json),
                    canonical.columns.iter().position(|c| c.name == raw),
                ) else {
                    continue;
                };
                let stored: i64 = client
                    .query_one(&format!("SELECT count({source}) FROM {table}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                let kept: usize = batches
                    .iter()
                    .map(|b| {
                        (0..b.num_rows())
                            .filter(|&r| {
                                b.column(json_index).is_valid(r) || b.column(raw_index).is_valid(r)
                            })
                            .count()
                    })
                    .sum();
                assert_eq!(
                    kept as i64, stored,
                    "{}: {table}.{source} payloads",
                    fixture.name
                );
            }
        }
        assert!(
            compared_columns > 80,
            "{}: only {compared_columns} columns compared",
            fixture.name
        );
    }
}

/// A task instance of a run that does not exist (its foreign key bypassed, as in databases
/// repaired by hand). Only for versions whose task instances name their run by `run_id`.
const ORPHAN_TASK_INSTANCE: &str = "
SET session_replication_role = replica;
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_name = 'task_instance' AND column_name = 'run_id') THEN
    CREATE TEMP TABLE orphan AS SELECT * FROM task_instance LIMIT 1;
    UPDATE orphan SET run_id = 'manual__no_such_run';
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'task_instance' AND column_name = 'id') THEN
      EXECUTE 'UPDATE orphan SET id = gen_random_uuid()';
    END IF;
    INSERT INTO task_instance SELECT * FROM orphan;
  END IF;
END $$;";

/// Every row of `table` in the dataset at `dir`, as text, sorted.
pub(crate) fn dataset_rows(dir: &std::path::Path, table: &str) -> Vec<Vec<Option<String>>> {
    let manifest = crate::export::only_manifest(dir);
    let batches = read_table(dir, &manifest, table);
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let columns: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    parquet_rows(&batches, &columns)
}

/// Exports every table of `url` to a new directory with a run index of `memory` bytes.
async fn export_with(
    url: &DatabaseUrl,
    memory: usize,
) -> (tempfile::TempDir, export::ExportSummary) {
    let dir = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url.clone(), dir.path().to_str().unwrap())
        .with_run_index_memory(memory)
        .with_jobs(2);
    let summary = export::run(options).await.unwrap();
    (dir, summary)
}

/// Runs looked up in contrail's index and runs joined by PostgreSQL give the same dataset,
/// orphans (task instances without a run) included, for every version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_index_and_postgresqls_join_export_the_same_rows() {
    for fixture in fresh_fixtures() {
        let (db, url) = generated(&fixture, 5, 120, 4).await;
        cluster().psql(&db, ORPHAN_TASK_INSTANCE);

        let (indexed, indexed_summary) = export_with(&url, 16 * 1024 * 1024).await;
        let (joined, joined_summary) = export_with(&url, 0).await;
        let manifest = crate::export::only_manifest(indexed.path());
        let orphans = |summary: &export::ExportSummary| {
            summary
                .tables
                .iter()
                .find(|t| t.table == "task_instance")
                .map(|t| t.orphan_rows)
        };
        assert_eq!(
            orphans(&indexed_summary),
            orphans(&joined_summary),
            "{}",
            fixture.name
        );
        assert!(
            orphans(&indexed_summary).unwrap_or(0) > 0,
            "{}: no orphan task instance",
            fixture.name
        );
        let indexed_tables = |summary: &export::ExportSummary| -> Vec<String> {
            summary
                .tables
                .iter()
                .filter(|t| t.runs_indexed)
                .map(|t| t.table.clone())
                .collect()
        };
        assert_eq!(indexed_tables(&joined_summary), Vec::<String>::new());
        // Since 2.2 task instances name their run by run_id: the index serves them.
        let names_runs = cluster().psql_value(
            &db,
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'task_instance' AND column_name = 'run_id'",
        ) == "1";
        assert_eq!(
            indexed_tables(&indexed_summary).contains(&"task_instance".to_owned()),
            names_runs,
            "{}: {:?}",
            fixture.name,
            indexed_tables(&indexed_summary)
        );
        for table in manifest.tables.keys() {
            let (a, b) = (
                dataset_rows(indexed.path(), table),
                dataset_rows(joined.path(), table),
            );
            assert_eq!(a.len(), b.len(), "{}: {table} rows", fixture.name);
            assert!(
                a == b,
                "{}: {table} differs between the two joins",
                fixture.name
            );
        }
    }
}
