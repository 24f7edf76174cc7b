//! The order files are written in: sort keys in arrow's row format, the sort of a day's row
//! positions by them, and what a batch (or a slice of one) costs in memory.
//!
//! The partitioner sorts positions, not rows: each day's `(batch, row)` pairs are ordered by
//! their keys, and the rows are then gathered once, column by column
//! ([`crate::dataset::gather`]).

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::row::{Row, RowConverter, Rows, SortField};
use hashbrown::HashMap;

/// Bytes of the buffers' parts that `batch`'s rows use: less than its buffers' size when it is
/// a slice of a larger batch.
pub fn slice_memory_size(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// Converts the sort columns of batches into keys in arrow's row format, which compare as
/// bytes: one memcmp per pair instead of a comparator per column.
#[derive(Debug)]
pub(crate) struct SortKeys {
    converter: RowConverter,
    columns: Vec<usize>,
}

impl SortKeys {
    /// Keys of the columns at `sort_columns` of `schema`; `None` without sort columns.
    ///
    /// # Errors
    /// A sort column that cannot be ordered.
    pub(crate) fn try_new(
        schema: &Schema,
        sort_columns: &[usize],
    ) -> Result<Option<Self>, ArrowError> {
        if sort_columns.is_empty() {
            return Ok(None);
        }
        let fields = sort_columns
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Ok(Some(Self {
            converter: RowConverter::new(fields)?,
            columns: sort_columns.to_vec(),
        }))
    }

    /// The keys of `batch`'s rows.
    ///
    /// # Errors
    /// Only on Arrow errors (a batch of another schema).
    pub(crate) fn of(&self, batch: &RecordBatch) -> Result<Rows, ArrowError> {
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        self.converter.convert_columns(&columns)
    }

    /// The keys of `batch`'s first and last rows, in that order (one row twice when it has
    /// one): all a merge compares of a batch whose rows go out together.
    ///
    /// # Errors
    /// Only on Arrow errors (a batch of another schema).
    pub(crate) fn of_ends(&self, batch: &RecordBatch) -> Result<Rows, ArrowError> {
        let last = u32::try_from(batch.num_rows().saturating_sub(1))
            .map_err(|_| ArrowError::InvalidArgumentError("a batch of 2^32 rows".into()))?;
        let ends = UInt32Array::from(vec![0, last]);
        let columns = self
            .columns
            .iter()
            .map(|&i| take(batch.column(i), &ends, None))
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        self.converter.convert_columns(&columns)
    }
}

/// The sort keys of the batches a flush sorts, one [`Rows`] per batch, split in two when there
/// are three sort columns or more: the leading columns, which rows share in groups (a DAG run's
/// task instances share `dag_id, run_id`), and the last two (`task_id, map_index`).
///
/// Split, a day's rows are sorted by group and then by the rest: each distinct group's key is
/// compared in a sort of the groups only, and rows compare a group rank, not keys that differ
/// late (the run ids of one DAG share their first twenty bytes). Keys in arrow's row format are
/// prefix-free, so ordering by group then rest is ordering by the whole key, as a merge of the
/// runs does ([`SortKeys`]).
#[derive(Debug)]
pub(crate) struct FlushKeys {
    groups: Vec<Rows>,
    rest: Option<Vec<Rows>>,
}

impl FlushKeys {
    /// The keys of the columns at `sort_columns` of each of `batches`; `None` without sort
    /// columns or batches.
    ///
    /// # Errors
    /// A sort column that cannot be ordered.
    pub(crate) fn try_new(
        batches: &[RecordBatch],
        sort_columns: &[usize],
    ) -> Result<Option<Self>, ArrowError> {
        let Some(first) = batches.first() else {
            return Ok(None);
        };
        let split = if sort_columns.len() >= 3 {
            sort_columns.len() - 2
        } else {
            sort_columns.len()
        };
        let (group_columns, rest_columns) = sort_columns.split_at(split);
        let Some(groups) = SortKeys::try_new(&first.schema(), group_columns)? else {
            return Ok(None);
        };
        let of_each = |keys: &SortKeys| {
            batches
                .iter()
                .map(|batch| keys.of(batch))
                .collect::<Result<Vec<_>, _>>()
        };
        let rest = match SortKeys::try_new(&first.schema(), rest_columns)? {
            Some(keys) => Some(of_each(&keys)?),
            None => None,
        };
        Ok(Some(Self {
            groups: of_each(&groups)?,
            rest,
        }))
    }

    /// Sorts `order` (`(batch, row)` pairs) by key, stably; a no-op when already sorted.
    pub(crate) fn sort(&self, order: &mut [(usize, usize)]) {
        let Some(rest) = &self.rest else {
            return sort_order(&self.groups, order);
        };
        let group = |&(b, r): &(usize, usize)| self.groups[b].row(r);
        let tail = |&(b, r): &(usize, usize)| rest[b].row(r);
        let key = |p: &(usize, usize)| (group(p), tail(p));
        if order.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
            return;
        }
        // Number the distinct groups as they come (rows of one group mostly come together),
        // then rank the numbers in key order.
        let mut numbers: HashMap<Row<'_>, u32> = HashMap::new();
        let mut distinct: Vec<Row<'_>> = Vec::new();
        let mut previous: Option<(Row<'_>, u32)> = None;
        let numbered: Vec<u32> = order
            .iter()
            .map(|position| {
                let key = group(position);
                if let Some((last, number)) = previous
                    && last == key
                {
                    return number;
                }
                let number = *numbers.entry(key).or_insert_with(|| {
                    distinct.push(key);
                    (distinct.len() - 1) as u32
                });
                previous = Some((key, number));
                number
            })
            .collect();
        let mut by_key: Vec<u32> = (0..distinct.len() as u32).collect();
        by_key.sort_unstable_by(|&a, &b| distinct[a as usize].cmp(&distinct[b as usize]));
        let mut rank = vec![0u32; distinct.len()];
        for (r, &number) in by_key.iter().enumerate() {
            rank[number as usize] = r as u32;
        }
        // Each position moves with its group's rank and the first twelve bytes of the rest of
        // its key as one number; only rows of one group whose rest begins alike compare more.
        let mut ranked: Vec<(u128, (usize, usize))> = order
            .iter()
            .zip(&numbered)
            .map(|(position, &number)| {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&rank[number as usize].to_be_bytes());
                let tail = tail(position);
                let n = tail.as_ref().len().min(12);
                bytes[4..4 + n].copy_from_slice(&tail.as_ref()[..n]);
                (u128::from_be_bytes(bytes), *position)
            })
            .collect();
        ranked.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then_with(|| tail(a).cmp(&tail(b))));
        for (slot, (_, position)) in order.iter_mut().zip(ranked) {
            *slot = position;
        }
    }
}

/// Sorts `order` (`(batch, row)` pairs) by `keys`, stably; a no-op when already sorted.
///
/// The sort moves each position with its key's first eight bytes as a number: comparisons of
/// keys that differ there (different DAGs, mostly) are one integer comparison, not a lookup of
/// two keys and a `memcmp`.
fn sort_order(keys: &[Rows], order: &mut [(usize, usize)]) {
    let key = |&(b, r): &(usize, usize)| keys[b].row(r);
    if order.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        return;
    }
    let mut prefixed: Vec<(u64, (usize, usize))> = order
        .iter()
        .map(|position| (prefix(key(position).as_ref()), *position))
        .collect();
    prefixed.sort_by(|(pa, a), (pb, b)| pa.cmp(pb).then_with(|| key(a).cmp(&key(b))));
    for (slot, (_, position)) in order.iter_mut().zip(prefixed) {
        *slot = position;
    }
}

/// The first eight bytes of `key` as a big-endian number, zero-padded: ordered as the keys'
/// first eight bytes are, so equal prefixes leave the order to the whole keys.
fn prefix(key: &[u8]) -> u64 {
    let mut bytes = [0; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::generate::rng::Rng;

    /// A batch of `(k: Utf8, n: Int32)` rows.
    pub(crate) fn batch(rows: &[(Option<&str>, i32)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_ends_of_a_batch_are_its_first_and_last_rows_keys() {
        let rows = batch(&[(Some("b"), 1), (None, 2), (Some("a"), 3)]);
        let keys = SortKeys::try_new(&rows.schema(), &[0]).unwrap().unwrap();
        let (all, ends) = (keys.of(&rows).unwrap(), keys.of_ends(&rows).unwrap());
        assert_eq!(ends.num_rows(), 2);
        assert_eq!(ends.row(0), all.row(0));
        assert_eq!(ends.row(1), all.row(2));
        let one = keys.of_ends(&rows.slice(1, 1)).unwrap();
        assert_eq!((one.row(0), one.row(1)), (all.row(1), all.row(1)));
    }

    #[test]
    fn positions_of_several_batches_sort_together_nulls_first_ties_in_arrival_order() {
        let batches = [
            batch(&[(Some("b"), 1), (None, 2)]),
            batch(&[(Some("a"), 3), (Some("b"), 4)]),
        ];
        let keys = FlushKeys::try_new(&batches, &[0]).unwrap().unwrap();
        let mut order = vec![(0, 0), (0, 1), (1, 0), (1, 1)];
        keys.sort(&mut order);
        assert_eq!(order, [(0, 1), (1, 0), (0, 0), (1, 1)]);
        assert!(FlushKeys::try_new(&batches, &[]).unwrap().is_none());
    }

    #[test]
    fn keys_sharing_their_first_bytes_sort_by_the_rest_and_ties_keep_arrival_order() {
        let names = [
            "finance_close_047",
            "finance",
            "finance_close_012",
            "finance_close_047",
            "fin",
            "zeta",
            "finance_close_012",
            "a",
        ];
        let rows: Vec<(Option<&str>, i32)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (Some(*n), i as i32))
            .collect();
        let batches = [batch(&rows[..4]), batch(&rows[4..])];
        let keys = FlushKeys::try_new(&batches, &[0]).unwrap().unwrap();
        let mut order: Vec<(usize, usize)> =
            (0..2).flat_map(|b| (0..4).map(move |r| (b, r))).collect();
        keys.sort(&mut order);
        let sorted: Vec<usize> = order.iter().map(|&(b, r)| b * 4 + r).collect();
        assert_eq!(sorted, [7, 4, 1, 2, 6, 0, 3, 5]);
    }

    /// A task instance's sort columns: `(dag, run, task, n)`.
    type RunRow = (Option<String>, Option<String>, String, i32);

    /// A batch of `(dag: Utf8, run: Utf8, task: Utf8, n: Int32)` rows.
    fn run_rows(rows: &[RunRow]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("dag", DataType::Utf8, true),
            Field::new("run", DataType::Utf8, true),
            Field::new("task", DataType::Utf8, false),
            Field::new("n", DataType::Int32, false),
        ]));
        let strings = |f: &dyn Fn(&RunRow) -> Option<String>| {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        RecordBatch::try_new(
            schema,
            vec![
                strings(&|r| r.0.clone()),
                strings(&|r| r.1.clone()),
                strings(&|r| Some(r.2.clone())),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rows_sorted_by_group_then_the_rest_are_sorted_by_the_whole_key_ties_in_arrival_order() {
        // Groups (dag, run) with NULLs, long values sharing long prefixes, and rows of one group
        // both together and apart; tasks and numbers that tie.
        let mut rng = Rng::new(7, &[]);
        let mut next = |n: u64| rng.range(0, n as i64) as u64;
        let dags = [
            None,
            Some("finance_close_012"),
            Some("finance_close_0"),
            Some("a"),
        ];
        let runs = [
            None,
            Some("scheduled__2024-01-01T06:00:00+00:00"),
            Some("scheduled__2024-01-01T06:00:00+00:00x"),
            Some("scheduled__2024-01-01T07:00:00+00:00"),
            Some(""),
        ];
        let mut rows = Vec::new();
        while rows.len() < 600 {
            let (dag, run) = (dags[next(4) as usize], runs[next(5) as usize]);
            for _ in 0..=next(4) {
                rows.push((
                    dag.map(str::to_owned),
                    run.map(str::to_owned),
                    ["extract", "extract_all", "load"][next(3) as usize].to_owned(),
                    next(3) as i32,
                ));
            }
        }
        let batches: Vec<RecordBatch> = rows.chunks(97).map(run_rows).collect();
        let mut order: Vec<(usize, usize)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
            .collect();
        // Arrival order is not batch order: the last batch's rows come first.
        order.rotate_right(batches.last().unwrap().num_rows());
        let whole = SortKeys::try_new(&batches[0].schema(), &[0, 1, 2, 3])
            .unwrap()
            .unwrap();
        let whole: Vec<Rows> = batches.iter().map(|b| whole.of(b).unwrap()).collect();
        let mut expected = order.clone();
        expected.sort_by(|&(ba, ra), &(bb, rb)| whole[ba].row(ra).cmp(&whole[bb].row(rb)));

        let keys = FlushKeys::try_new(&batches, &[0, 1, 2, 3])
            .unwrap()
            .unwrap();
        assert!(keys.rest.is_some());
        keys.sort(&mut order);
        assert_eq!(order, expected);
        // Sorted already: left as it is.
        keys.sort(&mut order);
        assert_eq!(order, expected);
    }

    #[test]
    fn a_slice_costs_its_own_rows_not_its_parent() {
        let rows: Vec<(Option<&str>, i32)> = (0..1000).map(|i| (Some("value"), i)).collect();
        let whole = batch(&rows);
        let tenth = whole.slice(0, 100);
        let (all, part) = (slice_memory_size(&whole), slice_memory_size(&tenth));
        assert!(part * 9 < all && part * 11 > all, "{part} of {all}");
    }
}
