//! What an exported dataset says about task tries: run ids and logical dates (to rename streams
//! between templates) and the state of every try (to select by state).
//!
//! It reads the canonical `task_instance` (latest try of each task instance) and
//! `task_instance_history` (earlier tries, Airflow 2.10+) files that the dataset's manifests
//! list, older exports first so newer rows win.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::template::{TaskTry, sanitize};
use crate::dataset::layout::MANIFEST_DIR;
use crate::dataset::manifest::Manifest;
use crate::error::{Error, Result};
use crate::store::{self, StoreOptions};

/// The columns read, all in the canonical model of both tables.
const COLUMNS: [&str; 7] = [
    "dag_id",
    "task_id",
    "run_id",
    "map_index",
    "logical_date",
    "state",
    "try_number",
];

/// A task instance: (dag_id, task_id, run_id, map_index).
type InstanceKey = (String, String, String, i32);

/// Run ids, logical dates and try states from an exported dataset.
#[derive(Debug, Default)]
pub(crate) struct TryIndex {
    /// The Airflow version of the newest export.
    pub(crate) airflow_version: Option<String>,
    /// (dag_id, run_id with `:` as `_`) → (run_id, logical date µs).
    runs: HashMap<(String, String), (String, Option<i64>)>,
    /// (dag_id, logical date µs) → run_id.
    by_date: HashMap<(String, i64), String>,
    /// Latest try and its state per task instance.
    latest: HashMap<InstanceKey, (i32, Option<String>)>,
    /// State of earlier tries (task_instance_history).
    history: HashMap<(InstanceKey, i32), Option<String>>,
}

struct Row {
    dag_id: String,
    task_id: String,
    run_id: Option<String>,
    map_index: i32,
    logical_date: Option<i64>,
    state: Option<String>,
    try_number: Option<i32>,
}

impl TryIndex {
    /// Reads the dataset at `url`.
    ///
    /// # Errors
    /// [`Error::Logs`] when it holds no export with task instances; store and Parquet errors.
    pub(crate) async fn load(url: &str, options: StoreOptions) -> Result<TryIndex> {
        let store = store::open(url, options).await?;
        let mut manifests = Vec::new();
        for object in store.list(&format!("{MANIFEST_DIR}/")).await? {
            if !object.key.ends_with(".json") {
                continue;
            }
            let body = store.get(&object.key).await?;
            let manifest: Manifest = serde_json::from_slice(&body).map_err(|e| Error::Logs {
                target: format!("{url}/{}", object.key),
                message: format!("not a contrail manifest: {e}"),
            })?;
            manifests.push(manifest);
        }
        manifests.sort_by(|a, b| a.snapshot_time.cmp(&b.snapshot_time));
        if !manifests
            .iter()
            .any(|m| m.tables.contains_key("task_instance"))
        {
            return Err(Error::Logs {
                target: url.to_owned(),
                message: "no export with task_instance here: export the source environment's \
                          metadata first (contrail export --to …) and pass that destination as \
                          --dataset"
                    .to_owned(),
            });
        }
        let mut index = TryIndex {
            airflow_version: manifests.last().map(|m| m.source.airflow_version.clone()),
            ..TryIndex::default()
        };
        for manifest in &manifests {
            for (table, history) in [("task_instance_history", true), ("task_instance", false)] {
                let Some(entry) = manifest.tables.get(table) else {
                    continue;
                };
                for file in &entry.files {
                    let bytes = store.get(&file.key).await?;
                    let rows = decode(bytes).map_err(|e| Error::Logs {
                        target: format!("{url}/{}", file.key),
                        message: format!("cannot read the Parquet file: {e}"),
                    })?;
                    for row in rows {
                        index.add(row, history);
                    }
                }
            }
        }
        Ok(index)
    }

    fn add(&mut self, row: Row, history: bool) {
        let Some(run_id) = row.run_id else {
            return;
        };
        self.runs.insert(
            (row.dag_id.clone(), sanitize(&run_id)),
            (run_id.clone(), row.logical_date),
        );
        if let Some(date) = row.logical_date {
            self.by_date
                .insert((row.dag_id.clone(), date), run_id.clone());
        }
        let key = (row.dag_id, row.task_id, run_id, row.map_index);
        let Some(try_number) = row.try_number else {
            return;
        };
        if history {
            self.history.insert((key, try_number), row.state);
        } else {
            self.latest.insert(key, (try_number, row.state));
        }
    }

    /// Fills in the run id and logical date of `try_` from the dataset; false when its run is
    /// not there.
    pub(crate) fn complete(&self, try_: &mut TaskTry) -> bool {
        if let Some(run) = &try_.run_id
            && let Some((real, date)) = self.runs.get(&(try_.dag_id.clone(), sanitize(run)))
        {
            try_.run_id = Some(real.clone());
            try_.logical_date = try_.logical_date.or(*date);
            return true;
        }
        if let Some(date) = try_.logical_date
            && let Some(run) = self.by_date.get(&(try_.dag_id.clone(), date))
        {
            try_.run_id = Some(run.clone());
            return true;
        }
        false
    }

    /// The state of the try, if the dataset knows it: its history row, or the task instance
    /// when it is the latest try.
    pub(crate) fn state(&self, try_: &TaskTry) -> Option<&str> {
        let key = (
            try_.dag_id.clone(),
            try_.task_id.clone(),
            try_.run_id.clone()?,
            try_.map_index,
        );
        if let Some(state) = self.history.get(&(key.clone(), try_.try_number)) {
            return state.as_deref();
        }
        match self.latest.get(&key) {
            Some((latest, state)) if *latest == try_.try_number => state.as_deref(),
            _ => None,
        }
    }
}

fn decode(bytes: bytes::Bytes) -> std::result::Result<Vec<Row>, parquet::errors::ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.parquet_schema();
    let wanted: Vec<usize> = (0..schema.num_columns())
        .filter(|i| COLUMNS.contains(&schema.column(*i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, wanted);
    let reader = builder.with_projection(mask).build()?;
    let mut rows = Vec::new();
    for batch in reader {
        rows.extend(batch_rows(&batch?));
    }
    Ok(rows)
}

fn batch_rows(batch: &RecordBatch) -> Vec<Row> {
    let text = |name: &str, i: usize| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i).to_owned())
    };
    let int = |name: &str, i: usize| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i))
    };
    let time = |name: &str, i: usize| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .filter(|c| c.is_valid(i))
            .map(|c| c.value(i))
    };
    (0..batch.num_rows())
        .filter_map(|i| {
            Some(Row {
                dag_id: text("dag_id", i)?,
                task_id: text("task_id", i)?,
                run_id: text("run_id", i),
                map_index: int("map_index", i).unwrap_or(-1),
                logical_date: time("logical_date", i),
                state: text("state", i),
                try_number: int("try_number", i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, task: &str, try_number: i32, state: &str) -> Row {
        Row {
            dag_id: "etl".into(),
            task_id: task.into(),
            run_id: Some(run.into()),
            map_index: -1,
            logical_date: Some(1_709_251_200_000_000),
            state: Some(state.into()),
            try_number: Some(try_number),
        }
    }

    #[test]
    fn runs_are_found_by_sanitized_id_or_date_and_tries_get_their_state() {
        let mut index = TryIndex::default();
        let run = "scheduled__2024-03-01T00:00:00+00:00";
        index.add(row(run, "extract", 3, "failed"), false);
        index.add(row(run, "extract", 1, "up_for_retry"), true);

        let mut legacy = TaskTry {
            dag_id: "etl".into(),
            task_id: "extract".into(),
            run_id: None,
            logical_date: Some(1_709_251_200_000_000),
            map_index: -1,
            try_number: 1,
        };
        assert!(index.complete(&mut legacy));
        assert_eq!(legacy.run_id.as_deref(), Some(run));
        assert_eq!(index.state(&legacy), Some("up_for_retry"));

        let mut modern = TaskTry {
            run_id: Some(sanitize(run)),
            logical_date: None,
            try_number: 3,
            ..legacy.clone()
        };
        assert!(index.complete(&mut modern));
        assert_eq!(modern.run_id.as_deref(), Some(run));
        assert_eq!(modern.logical_date, Some(1_709_251_200_000_000));
        assert_eq!(index.state(&modern), Some("failed"));
        // Try 2 has no history row and is not the latest: unknown.
        let second = TaskTry {
            try_number: 2,
            ..modern
        };
        assert_eq!(index.state(&second), None);
        let mut unknown = TaskTry {
            dag_id: "other".into(),
            ..legacy
        };
        assert!(!index.complete(&mut unknown));
    }
}
