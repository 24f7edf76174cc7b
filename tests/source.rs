//! Reading tables as canonical columns: the source query plan and the binary COPY decoder
//! against every real Airflow schema.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use contrail::catalog::Catalog;
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

/// A database of Airflow 2.10's DDL holding the small hand-written history.
fn small_2_10_history() -> String {
    let db = cluster().db_from_fixture("airflow-2.10.5");
    let history = std::fs::read_to_string(
        crate::util::repo_root().join("tests/fixtures/history-2.10-small.sql"),
    )
    .unwrap();
    cluster().psql(&db, &history);
    db
}

async fn plans_for(db: &str) -> Vec<ReadPlan> {
    let catalog = Catalog::builtin().unwrap();
    let (_, version, live) = cluster().inspect(db).await;
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
    let db = small_2_10_history();
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

/// With the run index, task_instance's select list is the table's own columns in the table's
/// order and nothing else (PostgreSQL then sends stored rows without projecting them), and the
/// canonical rows are exactly those of the plan where PostgreSQL joins `dag_run`, orphans too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_index_plan_selects_stored_rows_as_they_are() {
    use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
    use contrail::source::runs::RunIndex;

    let db = small_2_10_history();
    cluster().psql(
        &db,
        // A run that does not exist: the foreign key bypassed, as in databases repaired by hand.
        "SET session_replication_role = replica; \
         INSERT INTO task_instance (task_id, dag_id, run_id, map_index, pool, pool_slots) \
         VALUES ('lost', 'etl_daily', 'manual__no_such_run', -1, 'default_pool', 1)",
    );
    let catalog = Catalog::builtin().unwrap();
    let (client, version, live) = cluster().inspect(&db).await;
    let canonical = catalog
        .canonical()
        .iter()
        .find(|c| c.name == "task_instance")
        .unwrap();
    let table = catalog.schema(version).table("task_instance").unwrap();
    let indexed = query::plan_with_run_lookup(canonical, version, table, &live, "public")
        .unwrap()
        .unwrap();
    let joined = query::plan(canonical, version, table, &live, "public").unwrap();

    let stored: Vec<String> = live.tables["task_instance"]
        .columns
        .iter()
        .map(|c| format!("t.\"{}\"", c.name))
        .collect();
    assert_eq!(indexed.select, stored);

    let lookup = indexed.run_lookup.as_ref().unwrap();
    let runs = RunIndex::load(&client, "public", &lookup.column, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    let url = cluster().url(&db);
    let canonical_rows = |plan: &ReadPlan, batches: Vec<RecordBatch>| {
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|b| match &plan.run_lookup {
                Some(lookup) => runs.fill(lookup, plan.orphan_flag, b).unwrap(),
                None => b.clone(),
            })
            .collect();
        let orphans: usize = batches
            .iter()
            .map(|b| {
                b.column(plan.orphan_flag.unwrap())
                    .as_boolean()
                    .true_count()
            })
            .sum();
        let rows: Vec<RecordBatch> = batches
            .iter()
            .map(|b| contrail::remap::assemble(plan, b).unwrap())
            .collect();
        let rows = arrow::compute::concat_batches(&plan.output_schema, &rows).unwrap();
        let keys: Vec<SortColumn> = ["dag_id", "run_id", "task_id", "map_index"]
            .iter()
            .map(|k| SortColumn {
                values: rows.column(rows.schema().index_of(k).unwrap()).clone(),
                options: None,
            })
            .collect();
        let order = lexsort_to_indices(&keys, None).unwrap();
        (take_record_batch(&rows, &order).unwrap(), orphans)
    };
    let (by_index, index_orphans) = canonical_rows(&indexed, read_all(&url, &indexed).await);
    let (by_join, join_orphans) = canonical_rows(&joined, read_all(&url, &joined).await);
    assert_eq!(by_index.num_rows(), 8);
    assert_eq!((index_orphans, join_orphans), (1, 1));
    assert_eq!(by_index, by_join);
    let logical = by_index.column(by_index.schema().index_of("logical_date").unwrap());
    assert_eq!(
        logical.null_count(),
        1,
        "only the orphan has no logical date"
    );
}
