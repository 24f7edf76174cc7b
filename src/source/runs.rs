//! Every DAG run of the snapshot in memory, by `(dag_id, run_id)`: the client-side replacement
//! for joining `dag_run` to every task instance.
//!
//! Since Airflow 2.2 a task instance names its run by `(dag_id, run_id)` and the logical date
//! lives only in `dag_run`. A `LEFT JOIN dag_run` in the `COPY` query makes PostgreSQL hash two
//! strings and build a joined tuple per row, which costs about half again the table's raw `COPY`
//! time. Runs are far fewer than task instances, so they are read once per export into a compact
//! index and looked up as rows are decoded. The index keeps no strings: a run is known by a
//! 96-bit fingerprint of its key (a 64-bit hash, which also places it in the hash table, and 32
//! bits of a second hash with its own random seeds), 26 bytes per run with its date. Two
//! runs with one fingerprint (about 1 in 10^17 for a million runs) make the index refuse to
//! serve, so a lookup never confuses two runs. The index has a memory budget: a `dag_run` table
//! too big for it is left to PostgreSQL's join, so memory stays bounded by configuration.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use arrow::array::BooleanBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use arrow::error::ArrowError;
use foldhash::SharedSeed;
use foldhash::quality::SeedableRandomState;
use hashbrown::{DefaultHashBuilder, HashTable};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::catalog::WireType;
use crate::catalog::detect::quote_ident;
use crate::error::{Error, Result};
use crate::source::query::RunLookup;
use crate::source::read;

/// Default memory for the run index: about 900,000 runs. With the default job buffers it keeps
/// a two-job export under 200 MB; a bigger `dag_run` is joined by PostgreSQL instead, which
/// costs time, not memory.
pub const DEFAULT_RUN_INDEX_MEMORY: usize = 24 * 1024 * 1024;

/// The runs of one snapshot and one `dag_run` timestamp column.
#[derive(Debug)]
pub struct RunIndex {
    column: String,
    /// Each run's key hashed by `hasher` (the hash table's hash).
    hashes: Vec<u64>,
    /// Each run's key hashed by `checker`, low 32 bits.
    checks: Vec<u32>,
    dates: Vec<i64>,
    dates_valid: BooleanBufferBuilder,
    /// Run numbers (indexes into the vectors above) by `hashes`.
    slots: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// foldhash (quality) with its own random shared and per-hasher seeds, not `hasher`'s.
    checker: SeedableRandomState,
    /// Whether two runs had the same fingerprint (or `dag_run` held a key twice).
    ambiguous: bool,
}

impl RunIndex {
    /// An empty index of `column` (the run's logical date column).
    pub fn new(column: &str) -> Self {
        Self {
            column: column.to_owned(),
            hashes: Vec::new(),
            checks: Vec::new(),
            dates: Vec::new(),
            dates_valid: BooleanBufferBuilder::new(0),
            slots: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            checker: own_seeds(),
            ambiguous: false,
        }
    }

    /// An empty index with room for `runs` runs, so that a table of known size is held without
    /// the slack of growing vectors.
    pub fn with_capacity(column: &str, runs: usize) -> Self {
        let mut index = Self::new(column);
        index.hashes.reserve_exact(runs);
        index.checks.reserve_exact(runs);
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
        let runs = estimate(client, schema).await?;
        if runs * BYTES_PER_RUN > budget {
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
            let mut index = RunIndex::with_capacity(&column_name, runs);
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
                Ok(_) if index.ambiguous => {
                    tracing::warn!(
                        runs = index.len(),
                        "Two DAG runs have the same fingerprint in the run index (or dag_run \
                         holds a key twice); PostgreSQL joins dag_run instead."
                    );
                    Ok(None)
                }
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
        self.hashes.len()
    }

    /// Whether the index holds no run.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether two runs could not be told apart, so that the index must not be used.
    pub fn is_ambiguous(&self) -> bool {
        self.ambiguous
    }

    /// Bytes held, counting reserved capacity.
    pub fn memory(&self) -> usize {
        self.hashes.capacity() * 8
            + self.checks.capacity() * 4
            + self.dates.capacity() * 8
            + self.dates_valid.capacity() / 8
            + self.slots.capacity() * 5 * 8 / 7
    }

    /// Adds one run. Runs with a NULL `dag_id` or `run_id` cannot be referenced and are not
    /// added. A key whose fingerprint is already held makes the index ambiguous.
    pub fn insert(&mut self, dag_id: &str, run_id: &str, date: Option<i64>) {
        let (hash, check) = self.fingerprint(dag_id, run_id);
        if self.find(hash, check).is_some() {
            self.ambiguous = true;
            return;
        }
        let slot = self.hashes.len() as u32;
        self.hashes.push(hash);
        self.checks.push(check);
        self.dates.push(date.unwrap_or_default());
        self.dates_valid.append(date.is_some());
        let hashes = &self.hashes;
        self.slots
            .insert_unique(hash, slot, |&s| hashes[s as usize]);
    }

    /// The run's date (`Some(None)` when the run exists with a NULL date); `None` when no run
    /// has this key.
    pub fn get(&self, dag_id: &str, run_id: &str) -> Option<Option<i64>> {
        self.slot(dag_id, run_id, None).map(|slot| self.date(slot))
    }

    /// The run number of `(dag_id, run_id)`, trying the run after `last` (the run found last)
    /// before the hash table: task instances stored in the order they were created name runs
    /// in the order `dag_run` holds them, and the next run's fingerprint lies beside the last
    /// one's, where a probe of the table costs a few cache misses on an index of a million
    /// runs. Fingerprints are unique in an index that serves, so either way finds the same run.
    fn slot(&self, dag_id: &str, run_id: &str, last: Option<usize>) -> Option<usize> {
        let (hash, check) = self.fingerprint(dag_id, run_id);
        if let Some(next) = last.map(|slot| slot + 1)
            && self.hashes.get(next) == Some(&hash)
            && self.checks[next] == check
        {
            return Some(next);
        }
        self.find(hash, check)
    }

    /// The date of run number `slot`.
    fn date(&self, slot: usize) -> Option<i64> {
        self.dates_valid.get_bit(slot).then(|| self.dates[slot])
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
        // A run's task instances are created together, so rows of one run mostly lie side by
        // side (about three rows in four follow a row of their run, in time order): comparing
        // the key with the previous row's saves hashing it twice and a probe into the index.
        let mut previous: Option<(&str, &str, Option<Option<i64>>)> = None;
        let mut last = None;
        for row in 0..rows {
            let date = if dag_ids.is_null(row) || run_ids.is_null(row) {
                None
            } else {
                let (dag_id, run_id) = (dag_ids.value(row), run_ids.value(row));
                match previous {
                    Some((d, r, date)) if d == dag_id && r == run_id => date,
                    _ => {
                        let slot = self.slot(dag_id, run_id, last);
                        last = slot.or(last);
                        let date = slot.map(|slot| self.date(slot));
                        previous = Some((dag_id, run_id, date));
                        date
                    }
                }
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

    fn fingerprint(&self, dag_id: &str, run_id: &str) -> (u64, u32) {
        let key = (dag_id.as_bytes(), run_id.as_bytes());
        (self.hasher.hash_one(key), self.checker.hash_one(key) as u32)
    }

    fn find(&self, hash: u64, check: u32) -> Option<usize> {
        self.slots
            .find(hash, |&s| {
                self.hashes[s as usize] == hash && self.checks[s as usize] == check
            })
            .map(|&s| s as usize)
    }
}

/// A foldhash with seeds of its own. `hasher` (hashbrown's default) uses the process's global
/// foldhash seed, as every default hasher does; the check must not, or keys colliding in one
/// could collide in the other. The seeds are drawn from std's random keys: the shared one once
/// per process, the per-hasher one per index.
fn own_seeds() -> SeedableRandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(RandomState::new().hash_one(1u8)));
    SeedableRandomState::with_seed(RandomState::new().hash_one(2u8), shared)
}

/// Bytes per run: hash, check, date, hash slot and control byte at the table's maximum load,
/// and a validity bit rounded up.
const BYTES_PER_RUN: usize = 8 + 4 + 8 + 5 * 8 / 7 + 1;

/// The planner's estimate of `dag_run`'s rows (zero when the table was never analyzed).
async fn estimate(client: &Client, schema: &str) -> Result<usize> {
    let row = client
        .query_opt(
            "SELECT greatest(c.reltuples, 0)::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'dag_run'",
            &[&schema],
        )
        .await
        .map_err(Error::query("dag_run statistics"))?;
    Ok(row.map_or(0, |row| row.get::<_, f64>(0) as usize))
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

    /// Keys in columns 0 and 1, the run's `column` into 2 ([`filled_schema`]).
    fn lookup(column: &str) -> RunLookup {
        RunLookup {
            column: column.to_owned(),
            dag_id: 0,
            run_id: 1,
            fills: vec![2],
            schema: filled_schema(),
        }
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
        assert_eq!(index.len(), 3);
        assert!(!index.is_ambiguous());
        assert_eq!(index.get("etl", "scheduled__2024-03-05"), Some(Some(5)));
        assert_eq!(index.get("report", "scheduled__2024-03-05"), Some(Some(7)));
        assert_eq!(index.get("etl", "manual__x"), Some(None));
        assert_eq!(index.get("etl", "manual__"), None);
        assert_eq!(index.get("et", "lscheduled__2024-03-05"), None);
        assert_eq!(index.get("nope", "manual__x"), None);
    }

    #[test]
    fn a_key_held_twice_makes_the_index_ambiguous() {
        let mut index = RunIndex::new("execution_date");
        index.insert("etl", "scheduled__2024-03-05", Some(5));
        // `dag_run` has the key unique: a repeat is what a fingerprint collision looks like.
        index.insert("etl", "scheduled__2024-03-05", Some(99));
        assert!(index.is_ambiguous());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_million_runs_fit_the_default_budget_and_are_told_apart() {
        let runs = 900_000;
        let mut index = RunIndex::with_capacity("logical_date", runs);
        for i in 0..runs {
            let run_id = format!("scheduled__2024-01-01T00:00:00+00:00_{i}");
            index.insert(&format!("dag_{}", i % 1_000), &run_id, Some(i as i64));
        }
        assert_eq!(index.len(), runs);
        assert!(!index.is_ambiguous());
        assert!(
            index.memory() <= DEFAULT_RUN_INDEX_MEMORY,
            "{}",
            index.memory()
        );
        for i in (0..runs).step_by(997) {
            let run_id = format!("scheduled__2024-01-01T00:00:00+00:00_{i}");
            assert_eq!(
                index.get(&format!("dag_{}", i % 1_000), &run_id),
                Some(Some(i as i64))
            );
            // The same run id under another DAG is another run.
            assert_eq!(
                index.get(&format!("dag_{}", (i + 1) % 1_000), &run_id),
                None
            );
        }
    }

    #[test]
    fn the_run_after_the_last_one_found_is_tried_first_and_only_taken_when_it_matches() {
        let mut index = RunIndex::new("logical_date");
        for run in 0..10 {
            index.insert("etl", &format!("r{run}"), Some(run));
        }
        // The next run, a run further on, one before, one past the end, and a key no run has.
        assert_eq!(index.slot("etl", "r2", Some(1)), Some(2));
        assert_eq!(index.slot("etl", "r5", Some(2)), Some(5));
        assert_eq!(index.slot("etl", "r1", Some(5)), Some(1));
        assert_eq!(index.slot("etl", "r0", Some(9)), Some(0));
        assert_eq!(index.slot("etl", "r10", Some(9)), None);
        assert_eq!(index.slot("report", "r3", Some(2)), None);

        // In `fill`, a row whose run is missing leaves the last run found as the hint.
        let lookup = lookup("logical_date");
        let keys = ["r3", "r4", "r4", "x", "r5", "r9", "r0", "r1", "r7", "r6"];
        let rows: Vec<_> = keys.iter().map(|k| (Some("etl"), Some(*k))).collect();
        let filled = index.fill(&lookup, Some(3), &batch(&rows)).unwrap();
        let dates = filled.column(2).as_primitive::<TimestampMicrosecondType>();
        let expected: Vec<_> = keys.iter().map(|k| index.get("etl", k).flatten()).collect();
        assert_eq!(dates.iter().collect::<Vec<_>>(), expected);
        assert_eq!(expected[3], None);
        assert_eq!(expected[4], Some(5));
    }

    #[test]
    fn fill_sets_dates_and_flags_rows_without_a_run() {
        let mut index = RunIndex::new("execution_date");
        index.insert("etl", "r1", Some(1_709_596_800_000_000));
        index.insert("etl", "r2", None);
        let lookup = lookup("execution_date");
        let filled = index
            .fill(
                &lookup,
                Some(3),
                &batch(&[
                    (Some("etl"), Some("r1")),
                    (Some("etl"), Some("r2")),
                    (Some("etl"), Some("r3")),
                    (None, Some("r1")),
                    // Rows of one run side by side, and keys that differ from the previous
                    // row's in one part only, or where the parts split.
                    (Some("etl"), Some("r1")),
                    (Some("etl"), Some("r1")),
                    (Some("report"), Some("r1")),
                    (Some("et"), Some("lr1")),
                    (Some("etl"), Some("r3")),
                    (Some("etl"), Some("r3")),
                    (Some("etl"), Some("r1")),
                    (Some("etl"), None),
                    (Some("etl"), Some("r1")),
                ]),
            )
            .unwrap();
        let dates = filled.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(dates.timezone(), Some("UTC"));
        let r1 = Some(1_709_596_800_000_000);
        assert_eq!(
            dates.iter().collect::<Vec<_>>(),
            [
                r1, None, None, None, r1, r1, None, None, None, None, r1, None, r1
            ]
        );
        let orphans: Vec<_> = filled
            .column(3)
            .as_boolean()
            .iter()
            .map(Option::unwrap)
            .collect();
        assert_eq!(
            orphans,
            [
                false, false, true, true, false, false, true, true, true, true, false, true, false
            ]
        );
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
