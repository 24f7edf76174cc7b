//! File sizing: however a day's rows arrive and however small the memory budget, the rows are
//! exactly those of an export with room to spare, every row group is sorted, and a day has few
//! files. Rows that arrive scattered are merged into one sorted file per day (several, in
//! order, past the size limit); a range writes the rows of the days it reads in stretches
//! straight into files of their own.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use contrail::dataset::manifest::FileEntry;
use contrail::export::{self, ExportOptions, TableSelection};
use contrail::generate::{GenerateOptions, InsertionOrder};
use contrail::source::DatabaseUrl;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::export::only_manifest;
use crate::export_versions::{dataset_rows, generated_with};
use crate::util::fixtures::ddl_fixtures;

type Key = (String, String, String, i32);

/// Rows as `dataset_rows` reads them back.
type Rows = Vec<Vec<Option<String>>>;

/// The sort keys of task instances in one file, in file order.
fn file_keys(path: &Path) -> Vec<Key> {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    reader
        .flat_map(|batch| batch_keys(&batch.unwrap()))
        .collect()
}

/// The sort keys of the task instances in `batch`.
fn batch_keys(batch: &RecordBatch) -> Vec<Key> {
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
    (0..batch.num_rows())
        .map(|row| {
            (
                dag.value(row).to_owned(),
                run.value(row).to_owned(),
                task.value(row).to_owned(),
                map_index.value(row),
            )
        })
        .collect()
}

/// The sort keys of task instances in each row group of one file.
fn row_group_keys(path: &Path) -> Vec<Vec<Key>> {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let metadata = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .unwrap()
        .metadata()
        .clone();
    let schema = metadata.file_metadata().schema_descr();
    for group in metadata.row_groups() {
        // Each row group declares the order it is in.
        let sorted_by: Vec<_> = group
            .sorting_columns()
            .unwrap()
            .iter()
            .map(|c| {
                assert!(!c.descending && c.nulls_first);
                schema.column(c.column_idx as usize).name().to_owned()
            })
            .collect();
        assert_eq!(sorted_by, ["dag_id", "run_id", "task_id", "map_index"]);
    }
    (0..metadata.num_row_groups())
        .map(|group| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .unwrap()
                .with_row_groups(vec![group])
                .build()
                .unwrap();
            reader
                .flat_map(|batch| batch_keys(&batch.unwrap()))
                .collect()
        })
        .collect()
}

/// Exports task instances of `url` with a 1 MiB budget per job and small decode batches, so
/// every day arrives in many pieces from both jobs.
async fn export_small(url: &DatabaseUrl, max_file_bytes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url.clone(), dir.path().to_str().unwrap())
        .with_tables(task_instances())
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

fn task_instances() -> TableSelection {
    TableSelection {
        only: Some(vec!["task_instance".to_owned()]),
        ..TableSelection::default()
    }
}

/// A generated 2.10 history of 12,000 task instances over 6 days, inserted in `order`, and
/// its task instances as an export with the default budget writes them.
async fn history(order: InsertionOrder) -> (String, DatabaseUrl, Rows) {
    let fixture = ddl_fixtures()
        .into_iter()
        .find(|f| f.name == "airflow-2.10.5")
        .unwrap();
    let options = GenerateOptions::default()
        .with_seed(7)
        .with_task_instances(12_000)
        .with_days(6)
        .with_insertion_order(order);
    let (db, url) = generated_with(&fixture, options).await;
    let roomy = tempfile::tempdir().unwrap();
    let options = ExportOptions::new(url.clone(), roomy.path().to_str().unwrap())
        .with_tables(task_instances());
    export::run(options).await.unwrap();
    let expected = dataset_rows(roomy.path(), "task_instance");
    assert!(
        expected.len() >= 10_000,
        "{} task instances",
        expected.len()
    );
    (db, url, expected)
}

/// Every row group of every file of the export in `dir` is sorted; the files, by day (six or
/// more).
fn files_by_day(dir: &Path) -> BTreeMap<Option<String>, Vec<FileEntry>> {
    let manifest = only_manifest(dir);
    let mut days: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for file in &manifest.tables["task_instance"].files {
        let groups = row_group_keys(&dir.join(&file.key));
        for keys in &groups {
            assert!(
                keys.is_sorted(),
                "a row group of {} is not sorted",
                file.key
            );
        }
        let rows: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(rows as u64, file.rows, "{}", file.key);
        days.entry(file.partition.clone())
            .or_default()
            .push(file.clone());
    }
    assert!(days.len() >= 6, "{:?}", days.keys());
    days
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_days_become_one_sorted_file_each_or_ordered_files_past_the_size_limit() {
    // Inserted DAG by DAG, so that every stretch of the table holds rows of every day.
    let (_db, url, expected) = history(InsertionOrder::Dag).await;

    let whole = export_small(&url, usize::MAX).await;
    let days = files_by_day(whole.path());
    let last = days.keys().next_back().cloned().unwrap();
    for (day, files) in &days {
        // Every flush holds every day; each range writes the last one, still arriving,
        // straight into one file that every flush's rows of it join.
        if *day == last {
            assert!(files.len() <= 3, "{day:?}: {} files", files.len());
        } else {
            assert_eq!(files.len(), 1, "{day:?}: one merged file");
            let keys = file_keys(&whole.path().join(&files[0].key));
            assert!(keys.is_sorted(), "{} is not sorted", files[0].key);
        }
    }
    assert_eq!(dataset_rows(whole.path(), "task_instance"), expected);

    let split = export_small(&url, 32 * 1024).await;
    let days = files_by_day(split.path());
    let merged: Vec<_> = days.iter().filter(|(day, _)| **day != last).collect();
    let files: usize = merged.iter().map(|(_, files)| files.len()).sum();
    assert!(files > 2 * merged.len(), "{files} files");
    for (day, files) in merged {
        // Keys name files in the order they were written; together a day's files are sorted.
        let keys: Vec<Key> = files
            .iter()
            .flat_map(|f| file_keys(&split.path().join(&f.key)))
            .collect();
        assert!(keys.is_sorted(), "the files of {day:?} are not in order");
    }
    assert_eq!(dataset_rows(split.path(), "task_instance"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_read_in_stretches_are_written_straight_into_few_files_with_sorted_row_groups() {
    // Inserted as the runs happened, as Airflow does: a range reads its days one stretch
    // after another, a day over one or two flushes at this budget.
    let (_db, url, expected) = history(InsertionOrder::Time).await;
    let dir = export_small(&url, usize::MAX).await;
    let days = files_by_day(dir.path());
    for (day, files) in &days {
        // A file per range that read the day (each flush's last day stays open for the next
        // flush's rows), and one merged from its stray rows.
        assert!(files.len() <= 3, "{day:?}: {} files", files.len());
    }
    let files: usize = days.values().map(Vec::len).sum();
    assert!(
        files <= 2 * days.len(),
        "{files} files for {} days",
        days.len()
    );
    assert_eq!(dataset_rows(dir.path(), "task_instance"), expected);
}
