//! Copies rows of several batches into one batch, in a given `(batch, row)` order: the copy a
//! sorted file pays for every value when a flush writes a day's rows in key order.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanBufferBuilder, PrimitiveArray,
    RecordBatch, RecordBatchOptions, StringArray, new_null_array,
};
use arrow::buffer::{Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::{concat, interleave};
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType,
};
use arrow::error::ArrowError;

/// The rows of `batches` at `order` (`(batch, row)` pairs), as one batch.
///
/// Gathers column by column over the whole order, which is about twice as fast as gathering
/// every column of a few hundred rows at a time: one column of a flush fits in the CPU's cache,
/// the whole flush does not, and rows stored near each other (one DAG run's task instances) are
/// written near each other. String columns are copied row by row with the next rows' offsets
/// and bytes fetched ahead (`strings_by_row`); other columns by arrow's `interleave`. Each input
/// column is released once gathered, so memory holds about one copy of the rows, not two.
///
/// # Errors
/// When `batches` is empty or of different schemas, or an index is out of range.
pub fn gather_batches(
    batches: Vec<RecordBatch>,
    order: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let schema = checked_schema(&batches, order)?;
    let mut columns: Vec<Vec<ArrayRef>> = (0..schema.fields().len())
        .map(|c| batches.iter().map(|b| b.column(c).clone()).collect())
        .collect();
    drop(batches);
    let gathered = columns
        .iter_mut()
        .map(|arrays| {
            let inputs: Vec<&dyn Array> = arrays.iter().map(AsRef::as_ref).collect();
            let column =
                match no_values(&inputs, order.len()).or_else(|| strings_by_row(&inputs, order)) {
                    Some(column) => Ok(column),
                    None => interleave(&inputs, order),
                };
            arrays.clear();
            column
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema,
        gathered,
        &RecordBatchOptions::new().with_row_count(Some(order.len())),
    )
}

/// The rows of `batches` at `order`, as one batch, for a merge's output: rows that come in
/// stretches of one batch's consecutive rows (a run whose keys come before every other run's,
/// as runs holding different DAGs do) are copied stretch by stretch, and a single stretch is a
/// slice, copied not at all. String and number columns are always copied stretch by stretch
/// (`strings_by_stretch`, `numbers_by_stretch`): even stretches of a few rows (one DAG run's
/// task instances) make one copy each cheaper than a copy per value.
///
/// # Errors
/// When `batches` is empty or of different schemas, or an index is out of range.
pub fn gather_rows(
    batches: &[RecordBatch],
    order: &[(usize, usize)],
) -> Result<RecordBatch, ArrowError> {
    let schema = checked_schema(batches, order)?;
    let stretches = stretches(order);
    if let [(b, start, len)] = stretches[..] {
        return Ok(batches[b].slice(start, len));
    }
    let by_stretch = stretches.len() * MIN_STRETCH_ROWS <= order.len();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            if let Some(nulls) = no_values(&arrays, order.len()) {
                return Ok(nulls);
            }
            let copied = strings_by_stretch(&arrays, &stretches, order.len())
                .or_else(|| numbers_by_stretch(&arrays, &stretches, order.len()));
            if let Some(column) = copied {
                Ok(column)
            } else if by_stretch {
                let slices: Vec<ArrayRef> = stretches
                    .iter()
                    .map(|&(b, start, len)| arrays[b].slice(start, len))
                    .collect();
                let slices: Vec<&dyn Array> = slices.iter().map(AsRef::as_ref).collect();
                concat(&slices)
            } else {
                interleave(&arrays, order)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(order.len())),
    )
}

/// How many rows ahead [`strings_by_row`] asks the CPU to fetch a row's offsets; its value
/// is asked for half as far ahead, once its offsets have arrived.
const READ_AHEAD: usize = 16;

/// A string column of `arrays` at `order`, row by row, asking the CPU to fetch rows a little
/// ahead of their copy: a flush takes rows from all over its buffer, so each value's offsets
/// and bytes are cache misses, and waiting for them one after the other is most of a gather's
/// time. `None` for other types, or when the values would not fit `i32` offsets.
fn strings_by_row(arrays: &[&dyn Array], order: &[(usize, usize)]) -> Option<ArrayRef> {
    let strings = as_strings(arrays)?;
    // A flush takes every row once: the inputs' bytes are what it needs.
    let held: usize = strings
        .iter()
        .map(|s| {
            let offsets = s.value_offsets();
            (offsets[offsets.len() - 1] - offsets[0]) as usize
        })
        .sum();
    // Arrow's aligned buffers, allocated as `interleave` allocates them: with plain `Vec`s
    // here, 4 of 39 exports of 5M rows peaked 20-35 MiB higher (in their merges, after every
    // flush), none of 57 with these or with `interleave`.
    let mut values = MutableBuffer::new(held);
    let mut offsets = MutableBuffer::new((order.len() + 1) * size_of::<i32>());
    offsets.push(0i32);
    for (i, &(b, row)) in order.iter().enumerate() {
        if let Some(&(b, row)) = order.get(i + READ_AHEAD) {
            prefetch(strings[b].value_offsets()[row..].as_ptr());
        }
        if let Some(&(b, row)) = order.get(i + READ_AHEAD / 2) {
            let start = strings[b].value_offsets()[row] as usize;
            prefetch(strings[b].value_data()[start..].as_ptr());
        }
        values.extend_from_slice(strings[b].value(row).as_bytes());
        offsets.push(i32::try_from(values.len()).ok()?);
    }
    let nulls = nulls_by_row(&strings, order);
    // SAFETY: the offsets start at 0, never decrease and end at `values.len()`, and every
    // value is a whole value of a valid `StringArray`, so UTF-8; `nulls` has one bit per row.
    Some(unsafe { strings_unchecked(offsets.into(), values.into(), nulls) })
}

/// `arrays` as string arrays; `None` when any is of another type.
fn as_strings<'a>(arrays: &[&'a dyn Array]) -> Option<Vec<&'a StringArray>> {
    arrays
        .iter()
        .map(|a| a.as_any().downcast_ref::<StringArray>())
        .collect()
}

/// A string array of `offsets` (`i32`s) into `values`, not checked.
///
/// # Safety
/// The offsets must start at 0, never decrease and end at the length of `values`, the values
/// between two offsets must be UTF-8, and `nulls`, if any, must have one bit per value.
unsafe fn strings_unchecked(
    offsets: Buffer,
    values: Buffer,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    // SAFETY: as the caller promised.
    let array = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
            values,
            nulls,
        )
    };
    Arc::new(array)
}

/// The NULLs of the rows at `order` of `arrays`; `None` when no array has a NULL.
fn nulls_by_row(arrays: &[&StringArray], order: &[(usize, usize)]) -> Option<NullBuffer> {
    if arrays.iter().all(|a| a.null_count() == 0) {
        return None;
    }
    let mut valid = BooleanBufferBuilder::new(order.len());
    for &(b, row) in order {
        valid.append(arrays[b].is_valid(row));
    }
    Some(NullBuffer::new(valid.finish()))
}

/// Asks the CPU to bring the cache line at `at` closer; does nothing where that is not known.
#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// A string column of `arrays` gathered stretch by stretch: each stretch's values in one copy
/// and its offsets shifted in one pass, where a row-by-row gather copies every value on its own
/// (a merge's stretches are a DAG run's task instances, a handful of rows). `None` for other
/// types, or when the values would not fit `i32` offsets.
fn strings_by_stretch(
    arrays: &[&dyn Array],
    stretches: &[(usize, usize, usize)],
    rows: usize,
) -> Option<ArrayRef> {
    let strings = as_strings(arrays)?;
    let bytes: usize = stretches
        .iter()
        .map(|&(b, start, len)| {
            let offsets = strings[b].value_offsets();
            (offsets[start + len] - offsets[start]) as usize
        })
        .sum();
    i32::try_from(bytes).ok()?;
    let mut values = Vec::with_capacity(bytes);
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    for &(b, start, len) in stretches {
        let array = strings[b];
        let from = array.value_offsets();
        let (first, last) = (from[start], from[start + len]);
        values.extend_from_slice(&array.value_data()[first as usize..last as usize]);
        let shift = offsets[offsets.len() - 1] - first;
        offsets.extend(from[start + 1..=start + len].iter().map(|o| o + shift));
    }
    let nulls: Vec<Option<&NullBuffer>> = strings.iter().map(|s| s.nulls()).collect();
    let nulls = nulls_by_stretch(&nulls, stretches, rows);
    // SAFETY: the offsets start at 0, never decrease and end at `values.len()` (each stretch's
    // offsets are its own, shifted by where its values were put), and every value is a whole
    // value of a valid `StringArray`, so UTF-8; `nulls` has one bit per row.
    Some(unsafe { strings_unchecked(Buffer::from(offsets), values.into(), nulls) })
}

/// A column of fixed-width numbers (integers, floats, timestamps) of `arrays` gathered stretch by
/// stretch, as [`strings_by_stretch`] does strings; `None` for other types.
fn numbers_by_stretch(
    arrays: &[&dyn Array],
    stretches: &[(usize, usize, usize)],
    rows: usize,
) -> Option<ArrayRef> {
    match arrays.first()?.data_type() {
        DataType::Int16 => primitives_by_stretch::<Int16Type>(arrays, stretches, rows),
        DataType::Int32 => primitives_by_stretch::<Int32Type>(arrays, stretches, rows),
        DataType::Int64 => primitives_by_stretch::<Int64Type>(arrays, stretches, rows),
        DataType::Float64 => primitives_by_stretch::<Float64Type>(arrays, stretches, rows),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            primitives_by_stretch::<TimestampMicrosecondType>(arrays, stretches, rows)
        }
        _ => None,
    }
}

fn primitives_by_stretch<T: ArrowPrimitiveType>(
    arrays: &[&dyn Array],
    stretches: &[(usize, usize, usize)],
    rows: usize,
) -> Option<ArrayRef> {
    let numbers: Vec<&PrimitiveArray<T>> = arrays
        .iter()
        .map(|a| a.as_primitive_opt::<T>())
        .collect::<Option<_>>()?;
    let mut values = Vec::with_capacity(rows);
    for &(b, start, len) in stretches {
        values.extend_from_slice(&numbers[b].values()[start..start + len]);
    }
    let nulls: Vec<Option<&NullBuffer>> = numbers.iter().map(|n| n.nulls()).collect();
    let nulls = nulls_by_stretch(&nulls, stretches, rows);
    let array = PrimitiveArray::<T>::try_new(ScalarBuffer::from(values), nulls)
        .ok()?
        .with_data_type(numbers[0].data_type().clone());
    Some(Arc::new(array))
}

/// The NULLs of `rows` rows gathered stretch by stretch from arrays whose NULLs are `nulls`;
/// `None` when no array has a NULL.
fn nulls_by_stretch(
    nulls: &[Option<&NullBuffer>],
    stretches: &[(usize, usize, usize)],
    rows: usize,
) -> Option<NullBuffer> {
    if nulls.iter().flatten().all(|n| n.null_count() == 0) {
        return None;
    }
    let mut valid = BooleanBufferBuilder::new(rows);
    for &(b, start, len) in stretches {
        match nulls[b] {
            Some(nulls) => valid.append_buffer(&nulls.inner().slice(start, len)),
            None => valid.append_n(len, true),
        }
    }
    Some(NullBuffer::new(valid.finish()))
}

/// Average stretch length from which copying stretch by stretch beats a row-by-row gather.
const MIN_STRETCH_ROWS: usize = 32;

/// `order` as `(batch, first row, rows)` stretches of consecutive rows of one batch.
fn stretches(order: &[(usize, usize)]) -> Vec<(usize, usize, usize)> {
    let mut stretches: Vec<(usize, usize, usize)> = Vec::new();
    for &(b, row) in order {
        match stretches.last_mut() {
            Some((last, start, len)) if *last == b && *start + *len == row => *len += 1,
            _ => stretches.push((b, row, 1)),
        }
    }
    stretches
}

/// The schema of `batches`, once every `(batch, row)` of `order` is known to be in them.
fn checked_schema(
    batches: &[RecordBatch],
    order: &[(usize, usize)],
) -> Result<SchemaRef, ArrowError> {
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| ArrowError::InvalidArgumentError("no batches to gather from".into()))?;
    match order
        .iter()
        .find(|&&(b, row)| batches.get(b).is_none_or(|batch| row >= batch.num_rows()))
    {
        Some(&(b, row)) => Err(out_of_range(b, row)),
        None => Ok(schema),
    }
}

/// `rows` NULLs of the type of `arrays`, when no input has a value (a column the source version
/// does not have): such a column costs nothing per row.
fn no_values(arrays: &[&dyn Array], rows: usize) -> Option<ArrayRef> {
    let first = arrays.first()?;
    (*first.data_type() != DataType::Null && arrays.iter().all(|a| a.null_count() == a.len()))
        .then(|| new_null_array(first.data_type(), rows))
}

fn out_of_range(array: usize, row: usize) -> ArrowError {
    ArrowError::InvalidArgumentError(format!(
        "row {row} of array {array} is out of range for a gather"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Int64Type, Schema, TimeUnit};

    use super::*;

    fn batch(names: &[Option<&str>], numbers: &[Option<i64>]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let none: Vec<Option<i64>> = vec![None; names.len()];
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("n", DataType::Int64, true),
                Field::new("never", ts, true),
            ])),
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::from(numbers.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(none).with_timezone("UTC")),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_of_several_batches_come_out_in_the_order_given_column_by_column() {
        let a = batch(&[Some("a0"), None, Some("")], &[Some(0), Some(1), None]);
        let b = batch(&[Some("b0")], &[Some(10)]);
        let order = [(1, 0), (0, 2), (0, 0), (0, 1), (1, 0)];
        let out = gather_batches(vec![a, b], &order).expect("gather");
        assert_eq!(out.num_rows(), 5);
        let names: Vec<Option<&str>> = out.column(0).as_string::<i32>().iter().collect();
        assert_eq!(names, [Some("b0"), Some(""), Some("a0"), None, Some("b0")]);
        let numbers: Vec<Option<i64>> = out.column(1).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(numbers, [Some(10), None, Some(0), Some(1), Some(10)]);
        // A column no row has a value in keeps its type.
        assert_eq!(out.column(2).null_count(), 5);
        assert_eq!(out.schema().field(2).data_type(), out.column(2).data_type());
    }

    #[test]
    fn nothing_to_gather_from_or_a_row_out_of_range_is_an_error() {
        assert!(gather_batches(Vec::new(), &[]).is_err());
        let a = batch(&[Some("a")], &[None]);
        assert!(gather_batches(vec![a.clone()], &[(0, 1)]).is_err());
        assert!(gather_batches(vec![a.clone()], &[(1, 0)]).is_err());
        // A column with no value is made, not gathered, yet its indexes are checked all the same.
        let nulls = gather_batches(vec![a.clone()], &[(0, 0), (0, 0)]).expect("nulls");
        assert_eq!(nulls.column(2).null_count(), 2);
        assert!(gather_rows(std::slice::from_ref(&a), &[(0, 0), (0, 1)]).is_err());
    }

    #[test]
    fn strings_copied_stretch_by_stretch_are_the_rows_gathered_one_by_one() {
        // Inputs that are slices of larger batches, one with NULLs and empty strings, one
        // without NULLs; stretches of one to five rows, some rows twice.
        let text: Vec<String> = (0..30).map(|i| "é".repeat(i % 4)).collect();
        let names: Vec<Option<&str>> = text
            .iter()
            .enumerate()
            .map(|(i, t)| (i % 7 != 3).then_some(t.as_str()))
            .collect();
        let numbers: Vec<Option<i64>> = (0..30).map(Some).collect();
        let with_nulls = batch(&names, &numbers).slice(5, 20);
        let plain: Vec<Option<&str>> = text.iter().map(|t| Some(t.as_str())).collect();
        let without = batch(&plain, &numbers).slice(2, 25);
        let batches = [with_nulls, without];
        let order: Vec<(usize, usize)> = [(0, 0, 3), (1, 4, 5), (0, 3, 1), (1, 0, 2), (0, 10, 4)]
            .into_iter()
            .cycle()
            .take(12)
            .enumerate()
            .flat_map(|(i, (b, start, len))| {
                (start + i % 3..start + i % 3 + len).map(move |r| (b, r))
            })
            .collect();
        let out = gather_rows(&batches, &order).expect("gather");
        out.column(0)
            .to_data()
            .validate_full()
            .expect("valid strings");
        assert_eq!(out, interleaved(&batches, &order));
        assert!(out.column(0).null_count() > 0);
    }

    /// The rows of `batches` at `order` as arrow's `interleave` copies them, one by one.
    fn interleaved(batches: &[RecordBatch], order: &[(usize, usize)]) -> RecordBatch {
        let columns = (0..batches[0].num_columns())
            .map(|c| {
                let inputs: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                interleave(&inputs, order).expect("interleave")
            })
            .collect();
        RecordBatch::try_new(batches[0].schema(), columns).expect("reference batch")
    }

    #[test]
    fn a_flush_gathers_strings_row_by_row_as_arrow_interleaves_them() {
        // Sliced inputs, one with NULLs and empty strings, one with neither; rows from all over
        // both, some twice, some never, more than the read-ahead distance apart.
        let text: Vec<String> = (0..60)
            .map(|i| format!("{}{i}", "ü".repeat(i % 5)))
            .collect();
        let names: Vec<Option<&str>> = text
            .iter()
            .enumerate()
            .map(|(i, t)| match i % 6 {
                2 => None,
                4 => Some(""),
                _ => Some(t.as_str()),
            })
            .collect();
        let numbers: Vec<Option<i64>> = (0..60).map(|i| (i % 5 != 1).then_some(i)).collect();
        let plain: Vec<Option<&str>> = text.iter().map(|t| Some(t.as_str())).collect();
        let batches = [
            batch(&names, &numbers).slice(7, 40),
            batch(&plain, &numbers).slice(3, 50),
        ];
        let order: Vec<(usize, usize)> = (0..90)
            .map(|i: usize| (i % 2, (i * 37 + i / 9) % 40))
            .collect();
        let out = gather_batches(batches.to_vec(), &order).expect("gather");
        out.column(0)
            .to_data()
            .validate_full()
            .expect("valid strings");
        assert_eq!(out, interleaved(&batches, &order));
        assert!(out.column(0).null_count() > 0);

        // Without a NULL in any input, the column has no NULL buffer at all.
        let plain_only = [batches[1].clone(), batches[1].slice(10, 20)];
        let order: Vec<(usize, usize)> = (0..30).map(|i| (i % 2, (i * 7) % 20)).collect();
        let out = gather_batches(plain_only.to_vec(), &order).expect("gather");
        assert!(out.column(0).nulls().is_none());
        assert_eq!(out, interleaved(&plain_only, &order));
    }

    #[test]
    fn numbers_copied_stretch_by_stretch_keep_their_nulls_and_time_zone() {
        let times = |values: Vec<Option<i64>>| {
            let column = TimestampMicrosecondArray::from(values).with_timezone("UTC");
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(
                    "at",
                    column.data_type().clone(),
                    true,
                )])),
                vec![Arc::new(column)],
            )
            .expect("batch")
        };
        let batches = [
            times((0..10).map(|i| (i % 3 != 0).then_some(i)).collect()).slice(1, 8),
            times((100..110).map(Some).collect()),
        ];
        // Rows 2 and 5 of the slice are NULL.
        let order = [
            (0, 1),
            (0, 2),
            (1, 3),
            (1, 4),
            (1, 5),
            (0, 5),
            (0, 6),
            (1, 0),
        ];
        let out = gather_rows(&batches, &order).expect("gather");
        assert_eq!(
            out,
            gather_batches(batches.to_vec(), &order).expect("reference")
        );
        assert_eq!(out.schema().field(0).data_type(), out.column(0).data_type());
        assert_eq!(out.column(0).null_count(), 2);
    }

    #[test]
    fn a_merge_gathers_stretches_as_slices_and_single_rows_one_by_one() {
        let a = batch(
            &[Some("a0"), Some("a1"), None, Some("a3")],
            &[Some(0), Some(1), Some(2), None],
        );
        let b = batch(&[Some("b0"), Some("b1")], &[Some(10), Some(11)]);
        let batches = [a, b];
        let names = |out: &RecordBatch| -> Vec<Option<String>> {
            out.column(0)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect()
        };
        // One stretch: a slice of the batch.
        let one = gather_rows(&batches, &[(0, 1), (0, 2), (0, 3)]).expect("slice");
        assert_eq!(one.num_rows(), 3);
        assert_eq!(names(&one), [Some("a1".into()), None, Some("a3".into())]);
        // Stretches and single rows, every path the same rows in the same order.
        let order: Vec<(usize, usize)> = (0..40)
            .map(|_| (0, 0))
            .chain([(1, 0), (1, 1), (0, 1), (0, 2), (0, 3), (1, 1)])
            .collect();
        let stretched: Vec<(usize, usize)> = order[40..].to_vec();
        for order in [&order[..], &stretched[..]] {
            let out = gather_rows(&batches, order).expect("gather");
            let expected = gather_batches(batches.to_vec(), order).expect("reference");
            assert_eq!(out, expected);
        }
        // Long stretches: copied slice by slice.
        let text: Vec<String> = (0..64).map(|i| format!("v{i}")).collect();
        let names: Vec<Option<&str>> = text.iter().map(|t| Some(t.as_str())).collect();
        let numbers: Vec<Option<i64>> = (0..64).map(|i| (i % 5 != 0).then_some(i)).collect();
        let big = [batch(&names, &numbers), batch(&names[..40], &numbers[..40])];
        let order: Vec<(usize, usize)> = (0..40)
            .map(|r| (0, r))
            .chain((0..40).map(|r| (1, r)))
            .chain((40..64).map(|r| (0, r)))
            .collect();
        assert_eq!(stretches(&order).len(), 3);
        let out = gather_rows(&big, &order).expect("by stretch");
        assert_eq!(
            out,
            gather_batches(big.to_vec(), &order).expect("reference")
        );
        assert!(gather_rows(&batches, &[(2, 0)]).is_err());
        assert!(gather_rows(&batches, &[(1, 2)]).is_err());
        assert!(gather_rows(&[], &[]).is_err());
    }
}
