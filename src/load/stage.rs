//! Staging: one table's dataset files, checked against the manifest, decoded and binary-COPied
//! into a temporary table of canonical columns.
//!
//! Files are read one at a time; a blocking thread decodes each into batches, adds the values
//! only Rust can make (pickled confs for old targets, fresh task-instance UUIDs, re-encrypted
//! secrets) and encodes rows into large COPY chunks that a bounded channel hands to the
//! connection. Memory is one file plus the channel, whatever the table's size.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimestampMicrosecondType};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::catalog::detect::quote_ident;
use crate::catalog::{COPY_HEADER, COPY_TRAILER};
use crate::dataset::manifest::FileEntry;
use crate::dataset::read::fetch_checked;
use crate::error::{Error, Result};
use crate::load::ImportProgress;
use crate::load::encode::encode_rows;
use crate::load::mapping::{CONF_PICKLE, NEW_UUID, TableMapping};
use crate::load::secrets::FernetKeys;
use crate::remap::json_to_pickle;
use crate::store::Store;

/// COPY data gathered before it is handed to the connection.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the encoding thread and the connection.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Name of the staging table of `table`.
pub(crate) fn stage_name(table: &str) -> String {
    format!("contrail_stage_{table}")
}

/// Creates the staging table of `mapping` (a temporary table, private to this session).
///
/// # Errors
/// [`Error::Query`] when PostgreSQL refuses it.
pub(crate) async fn create(client: &Client, mapping: &TableMapping) -> Result<String> {
    let name = stage_name(&mapping.table);
    let columns = mapping
        .stage
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.ty))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "DROP TABLE IF EXISTS {q}; CREATE TEMPORARY TABLE {q} ({columns})",
        q = quote_ident(&name)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(Error::query(&mapping.table))?;
    Ok(name)
}

/// What staging needs besides the mapping.
pub(crate) struct StageInput {
    /// The dataset's store.
    pub(crate) store: Arc<dyn Store>,
    /// The table's files, from the manifest.
    pub(crate) files: Vec<FileEntry>,
    /// Keys for encrypted values.
    pub(crate) keys: FernetKeys,
    /// Rows per decoded batch.
    pub(crate) batch_rows: usize,
    /// Where progress goes.
    pub(crate) progress: Arc<dyn ImportProgress>,
}

/// Copies every file of the table into its staging table; returns the rows staged.
///
/// # Errors
/// [`Error::Store`] / [`Error::Dataset`] for a missing, corrupt or mismatching file;
/// [`Error::Import`] for a value that cannot be staged; [`Error::Query`] when COPY fails.
pub(crate) async fn copy_files(
    client: &Client,
    mapping: &TableMapping,
    stage: &str,
    input: StageInput,
) -> Result<u64> {
    let columns: Vec<(String, crate::catalog::PgType)> = mapping
        .stage
        .iter()
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    let names = columns
        .iter()
        .map(|(n, _)| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    let statement = format!(
        "COPY {} ({names}) FROM STDIN (FORMAT binary)",
        quote_ident(stage)
    );
    let table = mapping.table.clone();
    let sink = client
        .copy_in::<_, Bytes>(&statement)
        .await
        .map_err(Error::query(&table))?;
    futures_util::pin_mut!(sink);

    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let producer = tokio::spawn(produce(table.clone(), columns, input, tx));
    sink.send(Bytes::from_static(COPY_HEADER))
        .await
        .map_err(Error::query(&table))?;
    while let Some(chunk) = rx.recv().await {
        sink.send(chunk).await.map_err(Error::query(&table))?;
    }
    // The producer's outcome decides whether the COPY may complete: a failed file must not
    // leave a staging table that looks whole.
    let rows = producer.await.map_err(|e| Error::Import {
        table: table.clone(),
        message: format!("the staging task failed: {e}"),
    })??;
    sink.send(Bytes::from_static(COPY_TRAILER))
        .await
        .map_err(Error::query(&table))?;
    let copied = sink.finish().await.map_err(Error::query(&table))?;
    if copied != rows {
        return Err(Error::Import {
            table,
            message: format!("PostgreSQL took {copied} rows of the {rows} sent to staging"),
        });
    }
    Ok(rows)
}

/// Reads, checks, decodes and encodes the files in order, sending COPY chunks to `tx`.
async fn produce(
    table: String,
    columns: Vec<(String, crate::catalog::PgType)>,
    input: StageInput,
    tx: mpsc::Sender<Bytes>,
) -> Result<u64> {
    let columns = Arc::new(columns);
    let mut rows = 0u64;
    for file in &input.files {
        let checked = fetch_checked(input.store.as_ref(), file).await?;
        let key = file.key.clone();
        let (name, columns, keys, tx, progress) = (
            table.clone(),
            columns.clone(),
            input.keys.clone(),
            tx.clone(),
            input.progress.clone(),
        );
        let batch_rows = input.batch_rows;
        rows += tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut rows = 0u64;
            let mut out = BytesMut::with_capacity(CHUNK_BYTES * 2);
            for batch in checked.batches(&key, batch_rows)? {
                let batch = prepare(&name, batch?, &columns, &keys)?;
                encode_rows(&batch, &columns, &mut out).map_err(|e| Error::Import {
                    table: name.clone(),
                    message: format!("column {} of {key}: {}", e.column, e.message),
                })?;
                rows += batch.num_rows() as u64;
                progress.rows(&name, batch.num_rows() as u64);
                if out.len() >= CHUNK_BYTES && tx.blocking_send(out.split().freeze()).is_err() {
                    return Ok(rows);
                }
            }
            if !out.is_empty() {
                let _ = tx.blocking_send(out.freeze());
            }
            Ok(rows)
        })
        .await
        .map_err(|e| Error::Import {
            table: table.clone(),
            message: format!("decoding {}: {e}", file.key),
        })??;
    }
    Ok(rows)
}

/// Adds the columns only Rust can compute and re-encrypts secrets.
fn prepare(
    table: &str,
    batch: RecordBatch,
    columns: &[(String, crate::catalog::PgType)],
    keys: &FernetKeys,
) -> Result<RecordBatch> {
    let batch = keys.carry_batch(table, batch)?;
    let wants = |name: &str| columns.iter().any(|(n, _)| n == name);
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    if wants(CONF_PICKLE) {
        fields.push(Field::new(CONF_PICKLE, DataType::Binary, true));
        arrays.push(Arc::new(pickled_conf(table, &batch)?));
    }
    if wants(NEW_UUID) {
        fields.push(Field::new(NEW_UUID, DataType::Utf8, true));
        arrays.push(Arc::new(new_uuids(&batch)));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| Error::Import {
        table: table.to_owned(),
        message: format!("preparing a batch for staging: {e}"),
    })
}

/// `conf` as Airflow 2 stores it: the original pickle when the dataset kept it undecoded,
/// else the JSON value pickled (protocol 4, plain dicts, lists and scalars).
fn pickled_conf(table: &str, batch: &RecordBatch) -> Result<BinaryArray> {
    let json = batch
        .column_by_name("conf")
        .and_then(|c| c.as_string_opt::<i32>().cloned());
    let raw = batch
        .column_by_name("conf_raw")
        .and_then(|c| c.as_binary_opt::<i32>().cloned());
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if let Some(raw) = raw.as_ref().filter(|r| r.is_valid(row)) {
            out.push(Some(raw.value(row).to_vec()));
            continue;
        }
        let Some(json) = json.as_ref().filter(|j| j.is_valid(row)) else {
            out.push(None);
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_str(json.value(row)).map_err(|e| Error::Import {
                table: table.to_owned(),
                message: format!("a conf value in the dataset is not JSON ({e}); re-export"),
            })?;
        out.push(Some(json_to_pickle(&value)));
    }
    Ok(BinaryArray::from_iter(out))
}

/// A UUIDv7 per row, timed as Airflow 3.0's migration seeds task-instance ids: the try's
/// queued time, else its start, else now.
fn new_uuids(batch: &RecordBatch) -> StringArray {
    let times: Vec<_> = ["queued_dttm", "start_date"]
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .filter_map(|c| c.as_primitive_opt::<TimestampMicrosecondType>().cloned())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            let micros = times.iter().find(|t| t.is_valid(row)).map(|t| t.value(row));
            let uuid = match micros.and_then(|m| u64::try_from(m).ok()) {
                Some(m) => uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    m / 1_000_000,
                    u32::try_from((m % 1_000_000) * 1000).unwrap_or(0),
                )),
                None => uuid::Uuid::now_v7(),
            };
            Some(uuid.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::TimestampMicrosecondArray;

    use super::*;

    #[test]
    fn uuids_are_v7_timed_by_the_try() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "start_date",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_700_000_000_123_000), None])
                    .with_timezone("UTC"),
            )],
        )
        .unwrap();
        let ids = new_uuids(&batch);
        let first = uuid::Uuid::parse_str(ids.value(0)).unwrap();
        assert_eq!(first.get_version_num(), 7);
        let (secs, _) = first.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_700_000_000);
        assert_ne!(ids.value(0), ids.value(1));
    }
}
