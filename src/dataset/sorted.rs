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
use arrow::row::{RowConverter, Rows, SortField};

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

/// The keys of the columns at `sort_columns` of each batch ([`SortKeys`]); `None` without sort
/// columns.
///
/// # Errors
/// A sort column that cannot be ordered.
pub(crate) fn sort_keys(
    batches: &[RecordBatch],
    sort_columns: &[usize],
) -> Result<Option<Vec<Rows>>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let Some(keys) = SortKeys::try_new(&first.schema(), sort_columns)? else {
        return Ok(None);
    };
    batches
        .iter()
        .map(|batch| keys.of(batch))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Sorts `order` (`(batch, row)` pairs) by `keys`, stably; a no-op when already sorted.
///
/// The sort moves each position with its key's first eight bytes as a number: comparisons of
/// keys that differ there (different DAGs, mostly) are one integer comparison, not a lookup of
/// two keys and a `memcmp`.
pub(crate) fn sort_order(keys: &[Rows], order: &mut [(usize, usize)]) {
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
        let keys = sort_keys(&batches, &[0]).unwrap().unwrap();
        let mut order = vec![(0, 0), (0, 1), (1, 0), (1, 1)];
        sort_order(&keys, &mut order);
        assert_eq!(order, [(0, 1), (1, 0), (0, 0), (1, 1)]);
        assert!(sort_keys(&batches, &[]).unwrap().is_none());
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
        let keys = sort_keys(&batches, &[0]).unwrap().unwrap();
        let mut order: Vec<(usize, usize)> =
            (0..2).flat_map(|b| (0..4).map(move |r| (b, r))).collect();
        sort_order(&keys, &mut order);
        let sorted: Vec<usize> = order.iter().map(|&(b, r)| b * 4 + r).collect();
        assert_eq!(sorted, [7, 4, 1, 2, 6, 0, 3, 5]);
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
