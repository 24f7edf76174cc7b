//! Splits canonical batches into day partitions and buffers them within a memory budget.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::error::ArrowError;

use crate::dataset::layout::day_of_micros;
use crate::dataset::sorted::SortedRows;

/// Buffers rows per partition; hands back partitions to write when over budget.
#[derive(Debug)]
pub struct Partitioner {
    /// Indexes of the timestamp columns whose first non-NULL value gives the day; empty for
    /// unpartitioned tables.
    time_columns: Vec<usize>,
    /// Indexes of the columns files are sorted by.
    sort_columns: Vec<usize>,
    budget: usize,
    buffered: usize,
    buffers: BTreeMap<Option<String>, Vec<RecordBatch>>,
}

/// Rows of one partition, sorted, ready to write.
#[derive(Debug)]
pub struct Flushed {
    /// The day (`YYYY-MM-DD`), or `None` for rows with no time; unpartitioned tables use
    /// [`Partitioner::is_partitioned`] to tell.
    pub day: Option<String>,
    /// The rows, in the order of the table's sort columns.
    pub rows: SortedRows,
}

impl Partitioner {
    /// A partitioner holding at most about `budget` bytes of Arrow data.
    pub fn new(time_columns: Vec<usize>, sort_columns: Vec<usize>, budget: usize) -> Self {
        Self {
            time_columns,
            sort_columns,
            budget,
            buffered: 0,
            buffers: BTreeMap::new(),
        }
    }

    /// Whether rows go to `date=` folders.
    pub fn is_partitioned(&self) -> bool {
        !self.time_columns.is_empty()
    }

    /// Adds a batch; returns the partitions that must be written to get back under budget
    /// (largest first).
    ///
    /// # Errors
    /// Only on Arrow errors, which would be bugs (mismatched schemas).
    pub fn push(&mut self, batch: RecordBatch) -> Result<Vec<Flushed>, ArrowError> {
        for (day, part) in self.split(&batch)? {
            self.buffered += part.get_array_memory_size();
            self.buffers.entry(day).or_default().push(part);
        }
        let mut out = Vec::new();
        while self.buffered > self.budget {
            let Some(largest) = self
                .buffers
                .iter()
                .max_by_key(|(_, batches)| batches.iter().map(RecordBatch::num_rows).sum::<usize>())
                .map(|(day, _)| day.clone())
            else {
                break;
            };
            out.push(self.take(largest)?);
        }
        Ok(out)
    }

    /// Everything still buffered, by day.
    ///
    /// # Errors
    /// Only on Arrow errors.
    pub fn finish(&mut self) -> Result<Vec<Flushed>, ArrowError> {
        let days: Vec<_> = self.buffers.keys().cloned().collect();
        days.into_iter().map(|day| self.take(day)).collect()
    }

    fn take(&mut self, day: Option<String>) -> Result<Flushed, ArrowError> {
        let batches = self.buffers.remove(&day).unwrap_or_default();
        let size: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        self.buffered = self.buffered.saturating_sub(size);
        Ok(Flushed {
            day,
            rows: SortedRows::sort(batches, &self.sort_columns)?,
        })
    }

    /// Splits a batch by day of the first non-NULL partition column.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(Option<String>, RecordBatch)>, ArrowError> {
        if self.time_columns.is_empty() {
            return Ok(vec![(None, batch.clone())]);
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
        let mut rows: BTreeMap<Option<i64>, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let micros = columns
                .iter()
                .find(|c| c.is_valid(row))
                .map(|c| c.value(row));
            let day = micros.map(|m| m.div_euclid(86_400_000_000));
            rows.entry(day).or_default().push(row as u32);
        }
        if rows.len() == 1 {
            let (day, _) = rows.into_iter().next().unwrap_or_default();
            return Ok(vec![(
                day.map(|d| day_of_micros(d * 86_400_000_000)),
                batch.clone(),
            )]);
        }
        rows.into_iter()
            .map(|(day, indices)| {
                let part = take_record_batch(batch, &UInt32Array::from(indices))?;
                Ok((day.map(|d| day_of_micros(d * 86_400_000_000)), part))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    const DAY: i64 = 86_400_000_000;

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
            let batch = f.rows.to_batch().unwrap();
            let a = batch
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
    fn over_budget_the_largest_partition_is_flushed() {
        let mut p = Partitioner::new(vec![0], vec![], 1);
        let flushed = p
            .push(batch(&[
                (Some(0), None, "a", 1),
                (Some(0), None, "b", 2),
                (Some(DAY), None, "c", 3),
            ]))
            .unwrap();
        assert!(!flushed.is_empty());
        assert_eq!(flushed[0].day.as_deref(), Some("1970-01-01"));
        assert_eq!(flushed[0].rows.num_rows(), 2);
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
