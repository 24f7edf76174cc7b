//! Groups canonical rows by day partition and buffers them within a memory budget.
//!
//! Rows are not copied into per-day batches as they arrive: the partitioner keeps the batches
//! and, per day, the positions of that day's rows. A flush sorts each day's positions, gathers
//! every row once, day after day in key order, column by column ([`gather_batches`]), and hands
//! out each day as a slice of that one batch.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::error::ArrowError;

use crate::dataset::gather::gather_batches;
use crate::dataset::layout::day_of_micros;
use crate::dataset::sorted;

const DAY_MICROS: i64 = 86_400_000_000;

/// Buffers rows by partition; hands every partition back, sorted, when over budget.
#[derive(Debug)]
pub struct Partitioner {
    /// Indexes of the timestamp columns whose first non-NULL value gives the day; empty for
    /// unpartitioned tables.
    time_columns: Vec<usize>,
    /// Indexes of the columns files are sorted by.
    sort_columns: Vec<usize>,
    budget: usize,
    buffered: usize,
    batches: Vec<RecordBatch>,
    /// The `(batch, row)` positions of each day's rows (day number since the epoch, `None` for
    /// rows with no time), in arrival order.
    days: BTreeMap<Option<i64>, Vec<(usize, usize)>>,
}

/// Rows of one partition, sorted, ready to write.
#[derive(Debug)]
pub struct Flushed {
    /// The day (`YYYY-MM-DD`), or `None` for rows with no time; unpartitioned tables use
    /// [`Partitioner::is_partitioned`] to tell.
    pub day: Option<String>,
    /// The rows, in the order of the table's sort columns: a slice of the batch the whole flush
    /// was gathered into, so [`sorted::slice_memory_size`] tells what it holds.
    pub rows: RecordBatch,
}

impl Partitioner {
    /// A partitioner holding at most about `budget` bytes of Arrow data.
    pub fn new(time_columns: Vec<usize>, sort_columns: Vec<usize>, budget: usize) -> Self {
        Self {
            time_columns,
            sort_columns,
            budget,
            buffered: 0,
            batches: Vec::new(),
            days: BTreeMap::new(),
        }
    }

    /// Whether rows go to `date=` folders.
    pub fn is_partitioned(&self) -> bool {
        !self.time_columns.is_empty()
    }

    /// Adds a batch; over budget, returns every buffered partition, sorted, by day.
    ///
    /// # Errors
    /// Only on Arrow errors, which would be bugs (mismatched schemas).
    pub fn push(&mut self, batch: RecordBatch) -> Result<Vec<Flushed>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        self.assign_days(&batch, self.batches.len())?;
        self.buffered += batch.get_array_memory_size();
        self.batches.push(batch);
        if self.buffered > self.budget {
            self.flush()
        } else {
            Ok(Vec::new())
        }
    }

    /// Everything still buffered, by day.
    ///
    /// # Errors
    /// Only on Arrow errors.
    pub fn finish(&mut self) -> Result<Vec<Flushed>, ArrowError> {
        self.flush()
    }

    fn flush(&mut self) -> Result<Vec<Flushed>, ArrowError> {
        let batches = std::mem::take(&mut self.batches);
        let days = std::mem::take(&mut self.days);
        self.buffered = 0;
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let keys = sorted::FlushKeys::try_new(&batches, &self.sort_columns)?;
        // One order for every day, day after day, and where each day ends in it.
        let mut order = Vec::with_capacity(days.values().map(Vec::len).sum());
        let mut ends = Vec::with_capacity(days.len());
        for (day, mut rows) in days {
            if let Some(keys) = &keys {
                keys.sort(&mut rows);
            }
            order.extend_from_slice(&rows);
            ends.push((day, order.len()));
        }
        let all = gather_batches(batches, &order)?;
        drop(order);
        let mut start = 0;
        Ok(ends
            .into_iter()
            .map(|(day, end)| {
                let rows = all.slice(start, end - start);
                start = end;
                Flushed {
                    day: day.map(|d| day_of_micros(d * DAY_MICROS)),
                    rows,
                }
            })
            .collect())
    }

    /// Records the day of each row of `batch` (buffered as batch `index`): the day of its first
    /// non-NULL time column.
    fn assign_days(&mut self, batch: &RecordBatch, index: usize) -> Result<(), ArrowError> {
        if self.time_columns.is_empty() {
            self.days
                .entry(None)
                .or_default()
                .extend((0..batch.num_rows()).map(|row| (index, row)));
            return Ok(());
        }
        let columns: Vec<&TimestampMicrosecondArray> = self
            .time_columns
            .iter()
            .map(|&i| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or_else(|| {
                        ArrowError::InvalidArgumentError(format!(
                            "partition column {i} is not a timestamp"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let day_of_row: Vec<Option<i64>> = (0..batch.num_rows())
            .map(|row| {
                columns
                    .iter()
                    .find(|c| c.is_valid(row))
                    .map(|c| c.value(row).div_euclid(DAY_MICROS))
            })
            .collect();
        // Rows of one day usually come in stretches: look the day's list up once per stretch.
        let mut start = 0;
        for stretch in day_of_row.chunk_by(|a, b| a == b) {
            self.days
                .entry(stretch[0])
                .or_default()
                .extend((start..start + stretch.len()).map(|row| (index, row)));
            start += stretch.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};

    use super::*;

    const DAY: i64 = DAY_MICROS;

    fn batch(rows: &[(Option<i64>, Option<i64>, &str, i32)]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("logical_date", ts.clone(), true),
            Field::new("start_date", ts, true),
            Field::new("dag_id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_go_to_the_day_of_their_first_non_null_time_sorted() {
        let mut p = Partitioner::new(vec![0, 1], vec![2, 3], usize::MAX);
        assert!(
            p.push(batch(&[
                (Some(DAY), None, "b", 2),
                (None, Some(2 * DAY + 5), "a", 1),
                (Some(DAY + 1), Some(0), "a", 3),
                (None, None, "z", 4)
            ]))
            .unwrap()
            .is_empty()
        );
        let out = p.finish().unwrap();
        let days: Vec<_> = out.iter().map(|f| f.day.clone()).collect();
        assert_eq!(
            days,
            [
                None,
                Some("1970-01-02".to_owned()),
                Some("1970-01-03".to_owned())
            ]
        );
        let dag_ids = |f: &Flushed| {
            let a = f
                .rows
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(dag_ids(&out[1]), ["a", "b"]);
        assert_eq!(out.iter().map(|f| f.rows.num_rows()).sum::<usize>(), 4);
    }

    #[test]
    fn over_budget_every_partition_is_flushed_each_day_a_slice_of_one_sorted_copy() {
        let mut p = Partitioner::new(vec![0], vec![2], 1);
        let rows = batch(&[
            (Some(0), None, "b", 1),
            (Some(DAY), None, "c", 3),
            (Some(0), None, "a", 2),
        ]);
        let flushed = p.push(rows).unwrap();
        let days: Vec<_> = flushed.iter().map(|f| f.day.as_deref()).collect();
        assert_eq!(days, [Some("1970-01-01"), Some("1970-01-02")]);
        assert_eq!(flushed[0].rows.num_rows(), 2);
        assert_eq!(flushed[1].rows.num_rows(), 1);
        // Each day is charged the bytes of its own rows, not of the batch it is a slice of.
        let (two, one) = (
            sorted::slice_memory_size(&flushed[0].rows),
            sorted::slice_memory_size(&flushed[1].rows),
        );
        assert!(one > 0 && two > one && two < 2 * one + 8, "{two} {one}");
        assert_eq!(
            flushed[0]
                .rows
                .column(3)
                .as_primitive::<Int32Type>()
                .values(),
            &[2, 1]
        );
        assert!(p.finish().unwrap().is_empty());
    }

    #[test]
    fn unpartitioned_tables_keep_one_buffer() {
        let mut p = Partitioner::new(vec![], vec![3], usize::MAX);
        p.push(batch(&[(Some(0), None, "a", 2), (Some(DAY), None, "b", 1)]))
            .unwrap();
        let out = p.finish().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].day, None);
        assert!(!p.is_partitioned());
    }
}
