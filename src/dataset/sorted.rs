//! Rows of one file in their write order, without copying them into one sorted batch first.
//!
//! Batches are kept as they came; sorting them yields only an order (batch, row), and each
//! column is gathered in that order slice by slice, as a writer asks for it. The partitioner
//! does not use this for its flushes: it gathers a whole flush column by column, which is
//! faster once the rows outgrow the CPU's cache (see [`crate::dataset::gather`]), and hands out
//! each day as one batch written as it is.

use std::ops::Range;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};

use crate::dataset::gather::gather;

/// Buffered batches and the order their rows are written in.
#[derive(Debug)]
pub struct SortedRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// `(batch, row)` per output row; `None` when there is one batch, written as it is.
    order: Option<Vec<(usize, usize)>>,
}

impl SortedRows {
    /// `batches` in the order they come, rows unchanged.
    ///
    /// # Errors
    /// When `batches` is empty.
    pub fn in_order(batches: Vec<RecordBatch>) -> Result<Self, ArrowError> {
        let schema = schema_of(&batches)?;
        let order = (batches.len() > 1).then(|| identity(&batches));
        Ok(Self {
            schema,
            batches,
            order,
        })
    }

    /// `batches` sorted ascending by the columns at `sort_columns` (NULLs first). Equal keys keep
    /// their arrival order, so the output is deterministic.
    ///
    /// # Errors
    /// When `batches` is empty, or a sort column cannot be ordered.
    pub fn sort(batches: Vec<RecordBatch>, sort_columns: &[usize]) -> Result<Self, ArrowError> {
        let mut order = identity(&batches);
        if let Some(keys) = sort_keys(&batches, sort_columns)? {
            sort_order(&keys, &mut order);
        }
        Self::from_order(batches, order)
    }

    /// The rows of `batches` at `order` (`(batch, row)` pairs), written in that order. Other
    /// rows of the batches are left out; the batches are shared, not copied.
    ///
    /// # Errors
    /// When `batches` is empty.
    pub fn from_order(
        batches: Vec<RecordBatch>,
        order: Vec<(usize, usize)>,
    ) -> Result<Self, ArrowError> {
        let schema = schema_of(&batches)?;
        // All of one batch, in its order: written as it is.
        let whole = batches.len() == 1
            && order.len() == batches[0].num_rows()
            && order
                .iter()
                .enumerate()
                .all(|(i, &(b, r))| b == 0 && r == i);
        Ok(Self {
            schema,
            batches,
            order: (!whole).then_some(order),
        })
    }

    /// The rows' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        match &self.order {
            Some(order) => order.len(),
            None => self.batches.iter().map(RecordBatch::num_rows).sum(),
        }
    }

    /// Column `index` of output rows `rows`, in write order.
    ///
    /// # Errors
    /// Only on Arrow errors (a column index out of range).
    pub fn column(&self, index: usize, rows: Range<usize>) -> Result<ArrayRef, ArrowError> {
        match (&self.order, self.batches.first()) {
            (Some(order), _) => {
                let arrays: Vec<&dyn Array> = self
                    .batches
                    .iter()
                    .map(|b| b.column(index).as_ref())
                    .collect();
                gather(&arrays, &order[rows])
            }
            (None, Some(batch)) => Ok(batch.column(index).slice(rows.start, rows.len())),
            (None, None) => Err(ArrowError::InvalidArgumentError("no rows".into())),
        }
    }

    /// All rows as one batch, in write order.
    ///
    /// # Errors
    /// Only on Arrow errors.
    pub fn to_batch(&self) -> Result<RecordBatch, ArrowError> {
        self.slice(0..self.num_rows())
    }

    /// Output rows `rows` as one batch, in write order.
    ///
    /// # Errors
    /// Only on Arrow errors (rows out of range).
    pub fn slice(&self, rows: Range<usize>) -> Result<RecordBatch, ArrowError> {
        let columns = (0..self.schema.fields().len())
            .map(|i| self.column(i, rows.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// Bytes of Arrow memory these rows take. Batches written as they are count what their
    /// rows use (a slice of a larger batch only its part); rows gathered from batches that
    /// hold other rows too count their share of those batches, pro rata by rows.
    pub fn memory_size(&self) -> usize {
        if self.order.is_none() {
            return self.batches.iter().map(slice_memory_size).sum();
        }
        let memory: usize = self
            .batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let rows: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        (memory as u128 * self.num_rows() as u128 / rows.max(1) as u128) as usize
    }
}

/// Bytes of the buffers' parts that `batch`'s rows use (less than its buffers' size when it is
/// a slice).
fn slice_memory_size(batch: &RecordBatch) -> usize {
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

fn schema_of(batches: &[RecordBatch]) -> Result<SchemaRef, ArrowError> {
    batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| ArrowError::InvalidArgumentError("no rows to write".into()))
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
pub(crate) fn sort_order(keys: &[Rows], order: &mut [(usize, usize)]) {
    let key = |&(b, r): &(usize, usize)| keys[b].row(r);
    if order.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
        return;
    }
    order.sort_by(|a, b| key(a).cmp(&key(b)));
}

fn identity(batches: &[RecordBatch]) -> Vec<(usize, usize)> {
    batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

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

    fn ns(rows: &SortedRows) -> Vec<i32> {
        let batch = rows.to_batch().unwrap();
        batch
            .column(1)
            .as_primitive::<Int32Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn rows_of_several_batches_sort_together_nulls_first_ties_in_arrival_order() {
        let rows = SortedRows::sort(
            vec![
                batch(&[(Some("b"), 1), (None, 2)]),
                batch(&[(Some("a"), 3), (Some("b"), 4)]),
            ],
            &[0],
        )
        .unwrap();
        assert_eq!(rows.num_rows(), 4);
        assert_eq!(ns(&rows), [2, 3, 1, 4]);
        let middle = rows.column(1, 1..3).unwrap();
        assert_eq!(middle.as_primitive::<Int32Type>().values(), &[3, 1]);
    }

    #[test]
    fn one_sorted_batch_is_written_without_a_copy() {
        let rows = SortedRows::sort(vec![batch(&[(Some("a"), 1), (Some("b"), 2)])], &[0]).unwrap();
        assert!(rows.order.is_none());
        assert_eq!(ns(&rows), [1, 2]);
        let in_order =
            SortedRows::in_order(vec![batch(&[(Some("z"), 1)]), batch(&[(Some("a"), 2)])]).unwrap();
        assert_eq!(ns(&in_order), [1, 2]);
        assert!(SortedRows::in_order(Vec::new()).is_err());
    }
}
