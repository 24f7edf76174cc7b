//! Reading tables as canonical columns: the source query plan and the binary COPY decoder
//! against every real Airflow schema.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use contrail::catalog::Catalog;
use contrail::catalog::detect;
use contrail::source::query::{self, Output, ReadPlan};
use contrail::source::{DatabaseUrl, connect, read};

use crate::util::fixtures::ddl_fixtures;
use crate::util::pg::cluster;

async fn read_all(url: &str, plan: &ReadPlan) -> Vec<RecordBatch> {
    let client = connect(&DatabaseUrl::parse(url).unwrap()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let decoder_plan = plan.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        let mut batches = Vec::new();
        read::decode_chunks(&decoder_plan, rx, 1000, |b| {
            batches.push(b);
            Ok(())
        })
        .map(|_| batches)
    });
    read::copy_out(&client, &plan.table, &plan.copy_statement(None), tx)
        .await
        .unwrap();
    decoder.await.unwrap().unwrap()
}

async fn plans_for(db: &str) -> Vec<ReadPlan> {
    let catalog = Catalog::builtin().unwrap();
    let client = cluster().client(db).await;
    let revisions = detect::read_revisions(&client, "public", db).await.unwrap();
    let version = detect::version_for_revisions(catalog, &revisions).unwrap();
    let live = detect::introspect(&client, "public").await.unwrap();
    let schema = catalog.schema(version);
    catalog
        .canonical()
        .iter()
        .filter_map(|canonical| {
            let table = schema.table(&canonical.name)?;
            Some(query::plan(canonical, version, table, &live, "public").unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_of_every_version_reads() {
    for fixture in ddl_fixtures() {
        let db = cluster().db_from_fixture(&fixture.name);
        let plans = plans_for(&db).await;
        assert!(
            plans.len() >= 10,
            "{}: only {} tables",
            fixture.name,
            plans.len()
        );
        for plan in plans {
            assert!(
                plan.missing_columns.is_empty(),
                "{} {}: {:?}",
                fixture.name,
                plan.table,
                plan.missing_columns
            );
            let batches = read_all(&cluster().url(&db), &plan).await;
            assert_eq!(
                batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                0,
                "{}",
                plan.table
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_10_history_reads_as_canonical_rows() {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    let history = std::fs::read_to_string(
        crate::util::repo_root().join("tests/fixtures/history-2.10-small.sql"),
    )
    .unwrap();
    cluster().psql(&db, &history);
    let plans = plans_for(&db).await;
    let plan = |name: &str| plans.iter().find(|p| p.table == name).unwrap().clone();

    let dag_run = plan("dag_run");
    let batches = read_all(&cluster().url(&db), &dag_run).await;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 4);
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let dag_ids = column("dag_id");
    let dag_ids = dag_ids.as_string::<i32>();
    assert!(dag_ids.iter().any(|d| d == Some("report_ünïcode")));
    let logical = column("logical_date");
    let logical = logical.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        logical.value(0),
        1_709_251_200_000_000,
        "2024-03-01T00:00:00Z"
    );
    let run_after = column("run_after");
    let run_after = run_after.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        run_after.value(0),
        1_709_337_600_000_000,
        "data_interval_end 2024-03-02"
    );
    let raw_conf = column("__raw_conf");
    assert_eq!(
        raw_conf.null_count(),
        0,
        "pickled conf is read as raw bytes"
    );
    let filename = column("log_filename_template");
    assert!(filename.as_string::<i32>().value(0).contains("attempt="));

    let ti = plan("task_instance");
    let batches = read_all(&cluster().url(&db), &ti).await;
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 7);
    let map_index = batch
        .column(batch.schema().index_of("map_index").unwrap())
        .as_primitive::<Int32Type>()
        .clone();
    assert!(map_index.iter().any(|m| m == Some(1)));
    let logical = batch
        .column(batch.schema().index_of("logical_date").unwrap())
        .clone();
    assert_eq!(
        logical.null_count(),
        0,
        "every task instance found its run's logical date"
    );
    assert_eq!(
        ti.orphan_flag
            .map(|i| batch.column(i).as_boolean().true_count()),
        Some(0)
    );

    // Columns 2.10 lacks (3.x's uuid `id`, `dag_version_id`) are not asked of the server: the
    // canonical batch gets them as NULL columns of their type.
    let names: Vec<&str> = ti
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    for absent in ["id", "dag_version_id"] {
        let at = names.iter().position(|n| *n == absent).unwrap();
        assert_eq!(ti.outputs[at], Output::Null, "{absent}");
    }
    assert!(
        ti.select.iter().all(|s| !s.starts_with("NULL")),
        "{:?}",
        ti.select
    );
    let canonical = contrail::remap::assemble(&ti, &batch).unwrap();
    assert_eq!(canonical.num_rows(), 7);
    let id = canonical.column(canonical.schema().index_of("id").unwrap());
    assert_eq!(id.null_count(), 7);
    assert_eq!(
        id.data_type(),
        canonical
            .schema()
            .field_with_name("id")
            .unwrap()
            .data_type()
    );
}
