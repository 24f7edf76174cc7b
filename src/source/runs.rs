//! Every DAG run of the snapshot in memory, by `(dag_id, run_id)`: the client-side replacement
//! for joining `dag_run` to every task instance.
//!
//! Since Airflow 2.2 a task instance names its run by `(dag_id, run_id)` and the logical date
//! lives only in `dag_run`. A `LEFT JOIN dag_run` in the `COPY` query makes PostgreSQL hash two
//! strings and build a joined tuple per row, which costs about half again the table's raw `COPY`
//! time. Runs are far fewer than task instances, so they are read once per export into a compact
//! index (run ids in one byte arena, a hash table of `u32` slots) and looked up as rows are
//! decoded. The index has a memory budget: a `dag_run` table too big for it is left to
//! PostgreSQL's join, so memory stays bounded by configuration.

use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use arrow::error::ArrowError;
use hashbrown::{DefaultHashBuilder, HashTable};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::catalog::WireType;
use crate::catalog::detect::quote_ident;
use crate::error::{Error, Result};
use crate::source::query::RunLookup;
use crate::source::read;

/// Default memory for the run index: about 400,000 runs with typical run ids (60 bytes each).
/// With the default job buffers it keeps a two-job export under 200 MB; a bigger `dag_run` is
/// joined by PostgreSQL instead, which costs time, not memory.
pub const DEFAULT_RUN_INDEX_MEMORY: usize = 24 * 1024 * 1024;

/// The runs of one snapshot and one `dag_run` timestamp column.
#[derive(Debug)]
pub struct RunIndex {
    column: String,
    dag_names: Vec<Box<str>>,
    dag_numbers: HashTable<u32>,
    /// Run ids back to back; run `i` is `run_ids[ends[i - 1]..ends[i]]`.
    run_ids: Vec<u8>,
    ends: Vec<u32>,
    dags: Vec<u32>,
    dates: Vec<i64>,
    dates_valid: BooleanBufferBuilder,
    slots: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl RunIndex {
    /// An empty index of `column` (the run's logical date column).
    pub fn new(column: &str) -> Self {
        Self {
            column: column.to_owned(),
            dag_names: Vec::new(),
            dag_numbers: HashTable::new(),
            run_ids: Vec::new(),
            ends: Vec::new(),
            dags: Vec::new(),
            dates: Vec::new(),
            dates_valid: BooleanBufferBuilder::new(0),
            slots: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// An empty index with room for `runs` runs whose run ids take `run_id_bytes` in all, so
    /// that a table of known size is held without the slack of growing vectors.
    pub fn with_capacity(column: &str, runs: usize, run_id_bytes: usize) -> Self {
        let mut index = Self::new(column);
        index.run_ids.reserve_exact(run_id_bytes);
        index.ends.reserve_exact(runs);
        index.dags.reserve_exact(runs);
        index.dates.reserve_exact(runs);
        index.dates_valid = BooleanBufferBuilder::new(runs);
        index.slots.reserve(runs, |_| 0);
        index
    }

    /// Reads every run of `dag_run` through `client` (inside the export's snapshot). Returns
    /// `None` without reading when the planner's statistics say the runs cannot fit in `budget`
    /// bytes, or as soon as the index would take more.
    ///
    /// # Errors
    /// [`Error::Query`] / [`Error::ConnectionLost`] when reading `dag_run` fails.
    pub async fn load(
        client: &Client,
        schema: &str,
        column: &str,
        budget: usize,
    ) -> Result<Option<Self>> {
        let (runs, run_id_bytes) = estimate(client, schema).await?;
        if runs * BYTES_PER_RUN + run_id_bytes > budget {
            return Ok(None);
        }
        let statement = format!(
            "COPY (SELECT dag_id::text, run_id::text, {} FROM {}.{}) \
             TO STDOUT (FORMAT binary)",
            quote_ident(column),
            quote_ident(schema),
            quote_ident("dag_run"),
        );
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let decoded = Arc::new(Schema::new(vec![
            Field::new("dag_id", DataType::Utf8, true),
            Field::new("run_id", DataType::Utf8, true),
            Field::new(column, ts, true),
        ]));
        let (tx, rx) = mpsc::channel(read::DEFAULT_CHUNKS_IN_FLIGHT);
        let column_name = column.to_owned();
        let builder = tokio::task::spawn_blocking(move || {
            let mut index = RunIndex::with_capacity(&column_name, runs, run_id_bytes);
            let mut over_budget = false;
            let decoded = read::decode_stream(
                "dag_run",
                decoded,
                &[WireType::Text, WireType::Text, WireType::Timestamp],
                rx,
                read::DEFAULT_BATCH_ROWS,
                |batch| {
                    index.insert_batch(&batch);
                    over_budget = index.memory() > budget;
                    if over_budget {
                        // Stops decoding; the dropped receiver ends the COPY.
                        return Err(Error::Export {
                            message: "the dag_run index is over its memory budget".to_owned(),
                        });
                    }
                    Ok(())
                },
            );
            match decoded {
                Ok(_) => Ok(Some(index)),
                Err(_) if over_budget => Ok(None),
                Err(error) => Err(error),
            }
        });
        let copied = read::copy_out(client, "dag_run", &statement, tx).await;
        let index = builder.await.map_err(|e| Error::Export {
            message: format!("the dag_run index thread failed: {e}"),
        })?;
        copied?;
        index
    }

    /// The `dag_run` column this index holds.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Number of runs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the index holds no run.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held, counting reserved capacity.
    pub fn memory(&self) -> usize {
        self.run_ids.capacity()
            + self.ends.capacity() * 4
            + self.dags.capacity() * 4
            + self.dates.capacity() * 8
            + self.dates_valid.capacity() / 8
            + self.slots.capacity() * 5 * 8 / 7
            + self.dag_numbers.capacity() * 5 * 8 / 7
            + self.dag_names.iter().map(|n| n.len() + 16).sum::<usize>()
    }

    /// Adds one run. Runs with a NULL `dag_id` or `run_id` cannot be referenced and are not
    /// added; a later duplicate of a key is ignored (`dag_run` has it unique).
    pub fn insert(&mut self, dag_id: &str, run_id: &str, date: Option<i64>) {
        let hash = self.hash(dag_id, run_id);
        if self.find(hash, dag_id, run_id).is_some() {
            return;
        }
        let dag = self.dag_number(dag_id);
        let slot = self.ends.len() as u32;
        self.run_ids.extend_from_slice(run_id.as_bytes());
        self.ends.push(self.run_ids.len() as u32);
        self.dags.push(dag);
        self.dates.push(date.unwrap_or_default());
        self.dates_valid.append(date.is_some());
        let Self {
            slots,
            hasher,
            dag_names,
            dags,
            run_ids,
            ends,
            ..
        } = self;
        slots.insert_unique(hash, slot, |&s| {
            hash_key(
                hasher,
                &dag_names[dags[s as usize] as usize],
                run_id_of(run_ids, ends, s),
            )
        });
    }

    /// The run's date (`Some(None)` when the run exists with a NULL date); `None` when no run
    /// has this key.
    pub fn get(&self, dag_id: &str, run_id: &str) -> Option<Option<i64>> {
        let slot = self.find(self.hash(dag_id, run_id), dag_id, run_id)?;
        Some(self.dates_valid.get_bit(slot).then(|| self.dates[slot]))
    }

    /// `batch` (as decoded) followed by the placeholders of `lookup`: each row's run date, and
    /// the orphan flag column (when given) telling whether the row's run is missing.
    ///
    /// # Errors
    /// When the key columns are not text, which would be a bug in the plan.
    pub fn fill(
        &self,
        lookup: &RunLookup,
        orphan_flag: Option<usize>,
        batch: &RecordBatch,
    ) -> std::result::Result<RecordBatch, ArrowError> {
        let text = |index: usize| {
            batch.column(index).as_string_opt::<i32>().ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!("run key column {index} is not text"))
            })
        };
        let (dag_ids, run_ids) = (text(lookup.dag_id)?, text(lookup.run_id)?);
        let rows = batch.num_rows();
        let mut dates = Vec::with_capacity(rows);
        let mut valid = BooleanBufferBuilder::new(rows);
        let mut found = BooleanBufferBuilder::new(rows);
        for row in 0..rows {
            let date = if dag_ids.is_null(row) || run_ids.is_null(row) {
                None
            } else {
                self.get(dag_ids.value(row), run_ids.value(row))
            };
            found.append(date.is_some());
            let date = date.flatten();
            valid.append(date.is_some());
            dates.push(date.unwrap_or_default());
        }
        let valid = valid.finish();
        let dates: ArrayRef = Arc::new(
            TimestampMicrosecondArray::new(dates.into(), Some(NullBuffer::new(valid)))
                .with_timezone("UTC"),
        );
        let orphans: ArrayRef = Arc::new(BooleanArray::new(!&found.finish(), None));
        let mut columns = batch.columns().to_vec();
        for (index, field) in lookup.schema.fields().iter().enumerate() {
            if index < batch.num_columns() {
                continue;
            }
            let column = if lookup.fills.contains(&index) {
                match field.data_type() {
                    DataType::Timestamp(TimeUnit::Microsecond, _) => {
                        arrow::compute::cast(&dates, field.data_type())?
                    }
                    other => {
                        return Err(ArrowError::InvalidArgumentError(format!(
                            "run date placeholder {index} is {other}, not a timestamp"
                        )));
                    }
                }
            } else if orphan_flag == Some(index) {
                orphans.clone()
            } else {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "placeholder {index} is neither a run date nor the orphan flag"
                )));
            };
            columns.push(column);
        }
        RecordBatch::try_new(lookup.schema.clone(), columns)
    }

    fn insert_batch(&mut self, batch: &RecordBatch) {
        let (Some(dag_ids), Some(run_ids)) = (
            batch.column(0).as_string_opt::<i32>(),
            batch.column(1).as_string_opt::<i32>(),
        ) else {
            return;
        };
        let Some(dates) = batch
            .column(2)
            .as_primitive_opt::<TimestampMicrosecondType>()
        else {
            return;
        };
        for row in 0..batch.num_rows() {
            if dag_ids.is_null(row) || run_ids.is_null(row) {
                continue;
            }
            let date = dates.is_valid(row).then(|| dates.value(row));
            self.insert(dag_ids.value(row), run_ids.value(row), date);
        }
    }

    fn hash(&self, dag_id: &str, run_id: &str) -> u64 {
        hash_key(&self.hasher, dag_id, run_id.as_bytes())
    }

    fn find(&self, hash: u64, dag_id: &str, run_id: &str) -> Option<usize> {
        self.slots
            .find(hash, |&s| {
                run_id_of(&self.run_ids, &self.ends, s) == run_id.as_bytes()
                    && &*self.dag_names[self.dags[s as usize] as usize] == dag_id
            })
            .map(|&s| s as usize)
    }

    fn dag_number(&mut self, dag_id: &str) -> u32 {
        let hash = self.hasher.hash_one(dag_id);
        let names = &self.dag_names;
        if let Some(&number) = self
            .dag_numbers
            .find(hash, |&n| &*names[n as usize] == dag_id)
        {
            return number;
        }
        let number = self.dag_names.len() as u32;
        self.dag_names.push(dag_id.into());
        let Self {
            dag_numbers,
            dag_names,
            hasher,
            ..
        } = self;
        dag_numbers.insert_unique(hash, number, |&n| hasher.hash_one(&*dag_names[n as usize]));
        number
    }
}

/// Bytes per run besides its run id: end offset, DAG number, date, hash slot and control byte
/// at the table's maximum load.
const BYTES_PER_RUN: usize = 4 + 4 + 8 + 5 * 8 / 7 + 1;

/// The planner's estimate of `dag_run`'s rows and of the bytes of all their run ids (zero when
/// the table was never analyzed).
async fn estimate(client: &Client, schema: &str) -> Result<(usize, usize)> {
    let row = client
        .query_opt(
            "SELECT greatest(c.reltuples, 0)::float8, \
                    coalesce((SELECT s.avg_width FROM pg_stats s WHERE s.schemaname = $1 \
                              AND s.tablename = 'dag_run' AND s.attname = 'run_id'), 0)::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'dag_run'",
            &[&schema],
        )
        .await
        .map_err(Error::query("dag_run statistics"))?;
    let Some(row) = row else {
        return Ok((0, 0));
    };
    let (runs, width): (f64, f64) = (row.get(0), row.get(1));
    Ok((runs as usize, (runs * width) as usize))
}

/// The run id of `slot` in the arena.
fn run_id_of<'a>(run_ids: &'a [u8], ends: &[u32], slot: u32) -> &'a [u8] {
    let slot = slot as usize;
    let start = slot
        .checked_sub(1)
        .map_or(0, |previous| ends[previous] as usize);
    &run_ids[start..ends[slot] as usize]
}

fn hash_key(hasher: &DefaultHashBuilder, dag_id: &str, run_id: &[u8]) -> u64 {
    hasher.hash_one((dag_id.as_bytes(), run_id))
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use arrow::datatypes::SchemaRef;

    use super::*;

    /// The filled batch's schema: two decoded key columns, then the two placeholders.
    fn filled_schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("dag_id", DataType::Utf8, true),
            Field::new("run_id", DataType::Utf8, true),
            Field::new("logical_date", ts, true),
            Field::new("__orphan", DataType::Boolean, false),
        ]))
    }

    /// A decoded batch: the key columns only, as the server sends them.
    fn batch(rows: &[(Option<&str>, Option<&str>)]) -> RecordBatch {
        let schema = filled_schema();
        let keys = Arc::new(Schema::new(schema.fields()[..2].to_vec()));
        RecordBatch::try_new(
            keys,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn runs_are_found_by_both_parts_of_their_key() {
        let mut index = RunIndex::new("execution_date");
        index.insert("etl", "scheduled__2024-03-05", Some(5));
        index.insert("etl", "manual__x", None);
        index.insert("report", "scheduled__2024-03-05", Some(7));
        // `dag_run` has the key unique; a repeat changes nothing.
        index.insert("etl", "scheduled__2024-03-05", Some(99));
        assert_eq!(index.len(), 3);
        assert_eq!(index.get("etl", "scheduled__2024-03-05"), Some(Some(5)));
        assert_eq!(index.get("report", "scheduled__2024-03-05"), Some(Some(7)));
        assert_eq!(index.get("etl", "manual__x"), Some(None));
        assert_eq!(index.get("etl", "manual__"), None);
        assert_eq!(index.get("et", "lscheduled__2024-03-05"), None);
        assert_eq!(index.get("nope", "manual__x"), None);
    }

    #[test]
    fn fill_sets_dates_and_flags_rows_without_a_run() {
        let mut index = RunIndex::new("execution_date");
        index.insert("etl", "r1", Some(1_709_596_800_000_000));
        index.insert("etl", "r2", None);
        let lookup = RunLookup {
            column: "execution_date".to_owned(),
            dag_id: 0,
            run_id: 1,
            fills: vec![2],
            schema: filled_schema(),
        };
        let filled = index
            .fill(
                &lookup,
                Some(3),
                &batch(&[
                    (Some("etl"), Some("r1")),
                    (Some("etl"), Some("r2")),
                    (Some("etl"), Some("r3")),
                    (None, Some("r1")),
                ]),
            )
            .unwrap();
        let dates = filled.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(dates.value(0), 1_709_596_800_000_000);
        assert_eq!(dates.timezone(), Some("UTC"));
        assert!(dates.is_null(1) && dates.is_null(2) && dates.is_null(3));
        let orphans: Vec<_> = filled.column(3).as_boolean().iter().collect();
        assert_eq!(orphans, [Some(false), Some(false), Some(true), Some(true)]);
    }

    #[test]
    fn memory_grows_with_the_runs_held() {
        let mut index = RunIndex::new("logical_date");
        let empty = index.memory();
        for i in 0..10_000 {
            index.insert(
                &format!("dag_{}", i % 50),
                &format!("scheduled__{i}"),
                Some(i),
            );
        }
        assert_eq!(index.len(), 10_000);
        assert!(index.memory() > empty + 10_000 * 20, "{}", index.memory());
        assert!(index.memory() < 10_000 * 100, "{}", index.memory());
        assert_eq!(index.get("dag_7", "scheduled__57"), Some(Some(57)));
    }
}
