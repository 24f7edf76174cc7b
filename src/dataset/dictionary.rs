//! Which columns of a file are worth a Parquet dictionary, judged from the file's first rows.
//!
//! A dictionary pays where values repeat (DAG ids, states, run ids). On a column whose values
//! are nearly all distinct (`job_id`, `pid`, Celery's `external_executor_id`) it costs a hash
//! and a table insert per value and, within a 64k-row row group, never falls back to plain
//! encoding before the dictionary page has grown as large as the values themselves: the file
//! gets both. Which columns those are depends on the table and on the Airflow deployment, so
//! the writer looks at the rows instead of a list.

use std::hash::Hash;

use arrow::array::{Array, ArrowPrimitiveType, AsArray, GenericByteArray, RecordBatch};
use arrow::datatypes::{
    ByteArrayType, DataType, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use hashbrown::HashSet;

/// Rows of a sample looked at: enough to tell repeats from distinct values, cheap per file.
pub const SAMPLE_ROWS: usize = 8192;

/// Fewer non-NULL values than this say nothing either way: the column keeps its dictionary.
const MIN_VALUES: usize = 256;

/// For each column of `rows`, whether it is [`mostly_distinct`] in the first rows: the columns
/// to write without a dictionary.
pub fn plain_columns(rows: &RecordBatch) -> Vec<bool> {
    rows.columns()
        .iter()
        .map(|column| mostly_distinct(column))
        .collect()
}

/// Whether the values of `column` (its first [`SAMPLE_ROWS`] rows) are mostly distinct: more
/// than half of its non-NULL values differ from every other. Types without a dictionary
/// choice to make (timestamps and floats never get one) answer false.
pub fn mostly_distinct(column: &dyn Array) -> bool {
    let column = column.slice(0, column.len().min(SAMPLE_ROWS));
    let column = column.as_ref();
    match column.data_type() {
        DataType::Utf8 => bytes(column.as_string::<i32>()),
        DataType::LargeUtf8 => bytes(column.as_string::<i64>()),
        DataType::Binary => bytes(column.as_binary::<i32>()),
        DataType::LargeBinary => bytes(column.as_binary::<i64>()),
        DataType::Int8 => primitive::<Int8Type>(column),
        DataType::Int16 => primitive::<Int16Type>(column),
        DataType::Int32 => primitive::<Int32Type>(column),
        DataType::Int64 => primitive::<Int64Type>(column),
        DataType::UInt8 => primitive::<UInt8Type>(column),
        DataType::UInt16 => primitive::<UInt16Type>(column),
        DataType::UInt32 => primitive::<UInt32Type>(column),
        DataType::UInt64 => primitive::<UInt64Type>(column),
        _ => false,
    }
}

fn bytes<T: ByteArrayType>(array: &GenericByteArray<T>) -> bool {
    let valid = (0..array.len())
        .filter(|&i| array.is_valid(i))
        .map(|i| -> &[u8] { array.value(i).as_ref() });
    distinct_over_half(valid, array.len() - array.null_count())
}

fn primitive<T: ArrowPrimitiveType>(column: &dyn Array) -> bool
where
    T::Native: Hash + Eq,
{
    let array = column.as_primitive::<T>();
    let values = array.values();
    let valid = (0..array.len())
        .filter(|&i| array.is_valid(i))
        .map(|i| values[i]);
    distinct_over_half(valid, array.len() - array.null_count())
}

/// Whether more than half of the `count` values are distinct; stops counting once that is
/// settled either way.
fn distinct_over_half<V: Hash + Eq>(values: impl Iterator<Item = V>, count: usize) -> bool {
    if count < MIN_VALUES {
        return false;
    }
    let half = count / 2;
    let mut seen = HashSet::with_capacity(half + 1);
    for (i, value) in values.enumerate() {
        seen.insert(value);
        if seen.len() > half {
            return true;
        }
        // Even if every value left were new, the set could not pass half.
        if seen.len() + (count - i - 1) <= half {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Float64Array, Int32Array, StringArray};

    use super::*;

    #[test]
    fn unique_ids_are_distinct_repeating_names_are_not() {
        let ids = Int32Array::from_iter_values(0..5000);
        assert!(mostly_distinct(&ids));
        let uuids = StringArray::from_iter_values((0..3000).map(|i| format!("{i:08x}-celery")));
        assert!(mostly_distinct(&uuids));
        let states = StringArray::from_iter_values(
            (0..5000).map(|i| ["success", "failed", "up_for_retry"][i % 3]),
        );
        assert!(!mostly_distinct(&states));
        // Each run id for 24 task instances, as a DAG run's rows come.
        let runs = StringArray::from_iter_values((0..5000).map(|i| format!("manual__{}", i / 24)));
        assert!(!mostly_distinct(&runs));
    }

    #[test]
    fn nulls_small_samples_and_other_types_keep_the_dictionary() {
        let sparse: Int32Array = (0..5000)
            .map(|i| (i % 50 == 0).then_some(i))
            .collect::<Vec<_>>()
            .into();
        // 100 distinct values: too few to judge.
        assert!(!mostly_distinct(&sparse));
        let all_null = StringArray::from(vec![None::<&str>; 1000]);
        assert!(!mostly_distinct(&all_null));
        assert!(!mostly_distinct(&Float64Array::from_iter_values(
            (0..5000).map(f64::from)
        )));
        let pickles = BinaryArray::from_iter_values((0..4000u32).map(|i| i.to_le_bytes()));
        assert!(mostly_distinct(&pickles));
    }

    #[test]
    fn only_the_first_rows_are_looked_at() {
        // Repeats first, distinct values after the sample: judged by the sample.
        let column =
            Int32Array::from_iter_values((0..SAMPLE_ROWS as i32).map(|i| i % 10).chain(0..100_000));
        assert!(!mostly_distinct(&column));
        let column = column.slice(SAMPLE_ROWS, 50_000);
        assert!(mostly_distinct(&column));
    }
}
