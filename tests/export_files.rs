//! File sizing: however scattered a day's rows arrive and however small the memory budget, a
//! day becomes one sorted file (or several, in order, when it passes the size limit), and the
//! rows are exactly those of an export with room to spare.

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use contrail::export::{self, ExportOptions, TableSelection};
use contrail::generate::{GenerateOptions, InsertionOrder};
use contrail::source::DatabaseUrl;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::export::only_manifest;
use crate::export_versions::{dataset_rows, generated_with};
use crate::util::fixtures::ddl_fixtures;

type Key = (String, String, String, i32);

/// The sort keys of task instances in one file, in file order.
fn file_keys(path: &Path) -> Vec<Key> {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut keys = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (dag, run, task) = (text("dag_id"), text("run_id"), text("task_id"));
        let map_index = batch.column_by_name("map_index").unwrap();
        let map_index = map_index.as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            keys.push((
                dag.value(row).to_owned(),
                run.value(row).to_owned(),
                task.value(row).to_owned(),
                map_index.value(row),
            ));
        }
    }
    keys
}

/// Exports task instances of `url` with a 1 MiB budget per job and small decode batches, so
/// every day arrives in many pieces from both jobs.
async fn export_scattered(url: &DatabaseUrl, max_file_bytes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url.clone(), dir.path().to_str().unwrap())
        .with_tables(TableSelection {
            only: Some(vec!["task_instance".to_owned()]),
            ..TableSelection::default()
        })
        .with_jobs(2)
        .with_memory_per_job(1024 * 1024)
        .with_batch_rows(256)
        .with_spill_dir(Some(spill.path().to_owned()))
        .with_max_file_bytes(max_file_bytes);
    export::run(options).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(spill.path()).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_days_become_one_sorted_file_each_or_ordered_files_past_the_size_limit() {
    let fixture = ddl_fixtures()
        .into_iter()
        .find(|f| f.name == "airflow-2.10.5")
        .unwrap();
    // Inserted DAG by DAG, so that every stretch of the table holds rows of every day.
    let options = GenerateOptions::default()
        .with_seed(7)
        .with_task_instances(12_000)
        .with_days(6)
        .with_insertion_order(InsertionOrder::Dag);
    let (_db, url) = generated_with(&fixture, options).await;

    let roomy = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url.clone(), roomy.path().to_str().unwrap()).with_tables(
        TableSelection {
            only: Some(vec!["task_instance".to_owned()]),
            ..TableSelection::default()
        },
    );
    export::run(options).await.unwrap();
    let expected = dataset_rows(roomy.path(), "task_instance");
    assert!(
        expected.len() >= 10_000,
        "{} task instances",
        expected.len()
    );

    let whole = export_scattered(&url, usize::MAX).await;
    let manifest = only_manifest(whole.path());
    let files = &manifest.tables["task_instance"].files;
    let days: std::collections::BTreeSet<_> = files.iter().map(|f| &f.partition).collect();
    assert!(days.len() >= 6, "{days:?}");
    assert_eq!(files.len(), days.len(), "one file per day");
    for file in files {
        let keys = file_keys(&whole.path().join(&file.key));
        assert!(keys.is_sorted(), "{} is not sorted", file.key);
        assert_eq!(keys.len() as u64, file.rows);
    }
    assert_eq!(dataset_rows(whole.path(), "task_instance"), expected);

    let split = export_scattered(&url, 32 * 1024).await;
    let manifest = only_manifest(split.path());
    let files = &manifest.tables["task_instance"].files;
    assert!(files.len() > 2 * days.len(), "{} files", files.len());
    for day in &days {
        // Keys name files in the order they were written; together a day's files are sorted.
        let keys: Vec<Key> = files
            .iter()
            .filter(|f| &&f.partition == day)
            .flat_map(|f| file_keys(&split.path().join(&f.key)))
            .collect();
        assert!(keys.is_sorted(), "the files of {day:?} are not in order");
    }
    assert_eq!(dataset_rows(split.path(), "task_instance"), expected);
}
