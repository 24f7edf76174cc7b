//! Log events as Parquet in a dataset: `logs/date=YYYY-MM-DD/part-<archive_id>-<n>.parquet`,
//! one row per event, with the task try each stream belongs to, and a manifest
//! (`_contrail/logs/<archive_id>.json`) written last, in the same format as an export's.
//!
//! Archive manifests live apart from export manifests so that `contrail export --incremental`,
//! which continues from the newest export manifest, never mistakes an archive for an export.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::client::LogEvent;
use super::template::TaskTry;
use crate::dataset::layout::{self, day_of_micros, partition_dir};
use crate::dataset::manifest::{
    FileEntry, MANIFEST_FORMAT, Manifest, SourceInfo, TableEntry, Window,
};
use crate::dataset::parquet::{ParquetOptions, write_file};
use crate::error::{Error, Result};
use crate::store::Store;

/// The archive's folder (its "table") in the dataset.
pub const ARCHIVE_TABLE: &str = "logs";
/// Folder of archive manifests, relative to the dataset root.
pub const LOGS_MANIFEST_DIR: &str = "_contrail/logs";
/// Version of the archive's columns.
pub const ARCHIVE_SCHEMA_VERSION: u32 = 1;

/// The archive's columns: log group, stream, the task try (NULL when the stream name is not a
/// task log), event time and ingestion time (µs, UTC), message.
pub fn archive_schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("log_group", DataType::Utf8, false),
        Field::new("log_stream", DataType::Utf8, false),
        Field::new("dag_id", DataType::Utf8, true),
        Field::new("run_id", DataType::Utf8, true),
        Field::new("task_id", DataType::Utf8, true),
        Field::new("map_index", DataType::Int32, true),
        Field::new("try_number", DataType::Int32, true),
        Field::new("timestamp", time.clone(), false),
        Field::new("ingestion_time", time, true),
        Field::new("message", DataType::Utf8, false),
    ]))
}

/// Events of one stream, with what the stream name says.
#[derive(Debug, Clone)]
pub(crate) struct StreamKey {
    pub(crate) group: Arc<str>,
    pub(crate) stream: Arc<str>,
    pub(crate) try_: Option<Arc<TaskTry>>,
}

/// What an archive run produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ArchiveOutput {
    /// Identifier of the archive; part of every file name.
    pub archive_id: String,
    /// The manifest's key, relative to the destination.
    pub manifest: String,
    /// Rows (events) written.
    pub rows: u64,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Buffers events per day and writes them as Parquet files.
pub(crate) struct ArchiveWriter {
    store: Arc<dyn Store>,
    archive_id: String,
    parquet: ParquetOptions,
    file_rows: usize,
    days: BTreeMap<String, Vec<(Arc<StreamKey>, LogEvent)>>,
    files: Vec<FileEntry>,
    next_file: usize,
}

impl ArchiveWriter {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        archive_id: String,
        parquet: ParquetOptions,
        file_rows: usize,
    ) -> Self {
        Self {
            store,
            archive_id,
            parquet,
            file_rows: file_rows.max(1),
            days: BTreeMap::new(),
            files: Vec::new(),
            next_file: 0,
        }
    }

    pub(crate) fn archive_id(&self) -> &str {
        &self.archive_id
    }

    /// Adds events of `key`; writes a day's file once it holds enough rows.
    pub(crate) async fn add(&mut self, key: &Arc<StreamKey>, events: Vec<LogEvent>) -> Result<()> {
        let mut full = Vec::new();
        for event in events {
            let day = day_of_micros(event.timestamp.saturating_mul(1000));
            let rows = self.days.entry(day.clone()).or_default();
            rows.push((key.clone(), event));
            if rows.len() >= self.file_rows {
                full.push(day);
            }
        }
        for day in full {
            if let Some(rows) = self.days.remove(&day) {
                self.write(&day, rows).await?;
            }
        }
        Ok(())
    }

    async fn write(&mut self, day: &str, mut rows: Vec<(Arc<StreamKey>, LogEvent)>) -> Result<()> {
        let key = layout::data_key(
            ARCHIVE_TABLE,
            Some(&partition_dir(Some(day))),
            &self.archive_id,
            self.next_file,
            "parquet",
        );
        self.next_file += 1;
        let parquet = self.parquet.clone();
        let archive_id = self.archive_id.clone();
        let encode_key = key.clone();
        let (stats, body) = tokio::task::spawn_blocking(move || {
            rows.sort_by(|(a, x), (b, y)| {
                sort_key(a)
                    .cmp(&sort_key(b))
                    .then(a.stream.cmp(&b.stream))
                    .then(x.timestamp.cmp(&y.timestamp))
            });
            let batch = to_batch(&rows)?;
            let properties = parquet
                .properties_for(
                    &batch,
                    vec![
                        ("contrail.table".into(), ARCHIVE_TABLE.into()),
                        ("contrail.archive_id".into(), archive_id),
                    ],
                )
                .map_err(|e| e.to_string())?;
            write_file(&batch, Vec::new(), properties).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|message| Error::Logs {
            target: encode_key.clone(),
            message: format!("encoding the archive file failed: {message}"),
        })?;
        self.store.put(&key, Bytes::from(body)).await?;
        self.files.push(FileEntry {
            key,
            partition: Some(partition_dir(Some(day))),
            rows: stats.rows,
            bytes: stats.bytes,
            sha256: stats.sha256,
        });
        Ok(())
    }

    /// Writes what is buffered, then the manifest; returns what was written.
    pub(crate) async fn finish(&mut self, source: ArchiveSource) -> Result<ArchiveOutput> {
        let days = std::mem::take(&mut self.days);
        for (day, rows) in days {
            self.write(&day, rows).await?;
        }
        self.files.sort_by(|a, b| a.key.cmp(&b.key));
        let rows = self.files.iter().map(|f| f.rows).sum();
        let bytes = self.files.iter().map(|f| f.bytes).sum();
        let files = self.files.len();
        let mut tables = BTreeMap::new();
        tables.insert(
            ARCHIVE_TABLE.to_owned(),
            TableEntry {
                rows,
                orphan_rows: 0,
                time_columns: vec!["timestamp".to_owned()],
                watermark: None,
                files: std::mem::take(&mut self.files),
            },
        );
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            export_id: self.archive_id.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            canonical_version: ARCHIVE_SCHEMA_VERSION,
            source: SourceInfo {
                airflow_version: source.airflow_version.unwrap_or_default(),
                alembic_revisions: Vec::new(),
                database: format!("cloudwatch-logs://{}/{}", source.region, source.group),
                server_version: String::new(),
            },
            snapshot_time: rfc3339(source.started_at),
            window: Window {
                since: source.since.map(rfc3339),
                until: source.until.map(rfc3339),
            },
            started_at: rfc3339(source.started_at),
            finished_at: rfc3339(Utc::now()),
            file_format: "parquet".to_owned(),
            tables,
        };
        let key = format!("{LOGS_MANIFEST_DIR}/{}.json", self.archive_id);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Logs {
            target: key.clone(),
            message: format!("cannot encode the manifest: {e}"),
        })?;
        self.store.put_if_absent(&key, Bytes::from(body)).await?;
        Ok(ArchiveOutput {
            archive_id: self.archive_id.clone(),
            manifest: key,
            rows,
            files,
            bytes,
        })
    }
}

/// What the manifest says about where the events came from.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveSource {
    pub(crate) region: String,
    pub(crate) group: String,
    pub(crate) airflow_version: Option<String>,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) until: Option<DateTime<Utc>>,
}

/// Whether the archive `archive_id` was completed (its manifest exists) in `store`.
pub(crate) async fn archive_exists(store: &dyn Store, archive_id: &str) -> Result<bool> {
    Ok(store
        .head(&format!("{LOGS_MANIFEST_DIR}/{archive_id}.json"))
        .await?
        .is_some())
}

fn sort_key(key: &StreamKey) -> (Option<&str>, Option<&str>, Option<&str>, i32, i32) {
    match &key.try_ {
        Some(t) => (
            Some(t.dag_id.as_str()),
            t.run_id.as_deref(),
            Some(t.task_id.as_str()),
            t.map_index,
            t.try_number,
        ),
        None => (None, None, None, 0, 0),
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn to_batch(rows: &[(Arc<StreamKey>, LogEvent)]) -> std::result::Result<RecordBatch, String> {
    let n = rows.len();
    let mut group = StringBuilder::with_capacity(n, n * 16);
    let mut stream = StringBuilder::with_capacity(n, n * 64);
    let mut dag = StringBuilder::with_capacity(n, n * 16);
    let mut run = StringBuilder::with_capacity(n, n * 32);
    let mut task = StringBuilder::with_capacity(n, n * 16);
    let mut map_index = Int32Builder::with_capacity(n);
    let mut try_number = Int32Builder::with_capacity(n);
    let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut ingestion = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut message = StringBuilder::with_capacity(n, rows.iter().map(|r| r.1.message.len()).sum());
    for (key, event) in rows {
        group.append_value(&*key.group);
        stream.append_value(&*key.stream);
        match &key.try_ {
            Some(t) => {
                dag.append_value(&t.dag_id);
                run.append_option(t.run_id.as_deref());
                task.append_value(&t.task_id);
                map_index.append_value(t.map_index);
                try_number.append_value(t.try_number);
            }
            None => {
                dag.append_null();
                run.append_null();
                task.append_null();
                map_index.append_null();
                try_number.append_null();
            }
        }
        timestamp.append_value(event.timestamp.saturating_mul(1000));
        if event.ingestion_time > 0 {
            ingestion.append_value(event.ingestion_time.saturating_mul(1000));
        } else {
            ingestion.append_null();
        }
        message.append_value(&event.message);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(group.finish()),
        Arc::new(stream.finish()),
        Arc::new(dag.finish()),
        Arc::new(run.finish()),
        Arc::new(task.finish()),
        Arc::new(map_index.finish()),
        Arc::new(try_number.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(ingestion.finish()),
        Arc::new(message.finish()),
    ];
    RecordBatch::try_new(archive_schema(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::store::LocalStore;

    #[tokio::test]
    async fn events_land_in_day_partitions_with_a_manifest_last() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::new(dir.path().to_path_buf()));
        let mut writer =
            ArchiveWriter::new(store.clone(), "a1".into(), ParquetOptions::default(), 2);
        let key = Arc::new(StreamKey {
            group: "g".into(),
            stream: "d/t/2024-03-01T00_00_00+00_00/1.log".into(),
            try_: Some(Arc::new(TaskTry {
                dag_id: "d".into(),
                task_id: "t".into(),
                run_id: Some("r".into()),
                logical_date: None,
                map_index: -1,
                try_number: 1,
            })),
        });
        let day = 1_709_251_200_000; // 2024-03-01 in ms
        let events: Vec<LogEvent> = [day + 1, day + 2, day + 86_400_000]
            .iter()
            .map(|t| LogEvent {
                timestamp: *t,
                ingestion_time: *t + 5,
                message: format!("at {t}"),
            })
            .collect();
        writer.add(&key, events).await.unwrap();
        assert!(!archive_exists(store.as_ref(), "a1").await.unwrap());
        let out = writer
            .finish(ArchiveSource {
                region: "us-east-1".into(),
                group: "g".into(),
                airflow_version: None,
                started_at: Utc::now(),
                since: None,
                until: None,
            })
            .await
            .unwrap();
        assert_eq!((out.rows, out.files), (3, 2));
        assert!(archive_exists(store.as_ref(), "a1").await.unwrap());
        let first = std::fs::read(
            dir.path()
                .join("logs/date=2024-03-01/part-a1-00000.parquet"),
        )
        .unwrap();
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(Bytes::from(first))
                .unwrap()
                .build()
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].schema(), archive_schema());
        assert!(
            dir.path()
                .join("logs/date=2024-03-02/part-a1-00001.parquet")
                .exists()
        );
    }
}
