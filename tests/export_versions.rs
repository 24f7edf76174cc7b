//! Export of generated history from every real Airflow schema: every table's row count in the
//! Parquet files equals the source, and every column read straight from a source column has the
//! same values, as PostgreSQL renders them.

use arrow::array::{Array, RecordBatch};
use contrail::catalog::{Catalog, WireType, detect};
use contrail::export::{self, ExportOptions, TableSelection};
use contrail::generate::{self, GenerateOptions};
use contrail::source::DatabaseUrl;
use contrail::source::query::{self, Output};

use crate::export::{parquet_rows, read_table, source_rows};
use crate::util::fixtures::{Method, ddl_fixtures};
use crate::util::pg::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_history_of_every_version_round_trips() {
    let catalog = Catalog::builtin().unwrap();
    for fixture in ddl_fixtures()
        .into_iter()
        .filter(|f| f.method != Method::Upgraded)
    {
        let db = cluster().db_from_fixture(&fixture.name);
        let url = DatabaseUrl::parse(&cluster().url(&db)).unwrap();
        let options = GenerateOptions::default()
            .with_seed(11)
            .with_task_instances(150)
            .with_days(5);
        generate::run(&url, options)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.name));

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

        let client = cluster().client(&db).await;
        let revisions = detect::read_revisions(&client, "public", &db)
            .await
            .unwrap();
        let version = detect::version_for_revisions(catalog, &revisions).unwrap();
        let live = detect::introspect(&client, "public").await.unwrap();
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
