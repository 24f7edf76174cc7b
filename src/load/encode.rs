//! Arrow batches to PostgreSQL's binary COPY format, for the staging tables.
//!
//! Rows are written straight from the Arrow arrays into one growing buffer that the caller
//! hands to `COPY … FROM STDIN (FORMAT binary)` in large chunks: no per-value `ToSql`, no
//! intermediate rows.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use bytes::{BufMut, BytesMut};

use crate::catalog::{PG_EPOCH_MICROS, PgType};

/// A column that cannot be encoded as the staging type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncodeError {
    /// Column name.
    pub(crate) column: String,
    /// What is wrong.
    pub(crate) message: String,
}

/// One column, downcast once per batch.
enum Column<'a> {
    I16(&'a arrow::array::PrimitiveArray<Int16Type>),
    I32(&'a arrow::array::PrimitiveArray<Int32Type>),
    I64(&'a arrow::array::PrimitiveArray<Int64Type>),
    F64(&'a arrow::array::PrimitiveArray<Float64Type>),
    Bool(&'a arrow::array::BooleanArray),
    Text(&'a arrow::array::StringArray),
    Uuid(&'a arrow::array::StringArray),
    Bytes(&'a arrow::array::BinaryArray),
    Time(&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>),
    Null,
}

impl<'a> Column<'a> {
    fn new(name: &str, array: Option<&'a ArrayRef>, ty: &PgType) -> Result<Self, EncodeError> {
        let Some(array) = array else {
            return Ok(Column::Null);
        };
        let mismatch = || EncodeError {
            column: name.to_owned(),
            message: format!("Arrow type {} cannot be staged as {ty}", array.data_type()),
        };
        Ok(match (array.data_type(), ty) {
            (DataType::Null, _) => Column::Null,
            (DataType::Int16, PgType::SmallInt) => Column::I16(array.as_primitive()),
            (DataType::Int32, PgType::Integer) => Column::I32(array.as_primitive()),
            (DataType::Int64, PgType::BigInt) => Column::I64(array.as_primitive()),
            (DataType::Float64, PgType::Double) => Column::F64(array.as_primitive()),
            (DataType::Boolean, PgType::Boolean) => Column::Bool(array.as_boolean()),
            (DataType::Utf8, PgType::Text) => Column::Text(array.as_string()),
            (DataType::Utf8, PgType::Uuid) => Column::Uuid(array.as_string()),
            (DataType::Binary, PgType::Bytea) => Column::Bytes(array.as_binary()),
            (DataType::Timestamp(TimeUnit::Microsecond, _), PgType::Timestamptz) => {
                Column::Time(array.as_primitive())
            }
            _ => return Err(mismatch()),
        })
    }

    fn write(&self, name: &str, row: usize, out: &mut BytesMut) -> Result<(), EncodeError> {
        fn null(out: &mut BytesMut) {
            out.put_i32(-1);
        }
        macro_rules! fixed {
            ($array:expr, $len:expr, $put:ident, $map:expr) => {{
                if $array.is_null(row) {
                    null(out);
                } else {
                    out.put_i32($len);
                    out.$put($map($array.value(row)));
                }
            }};
        }
        match self {
            Column::Null => null(out),
            Column::I16(a) => fixed!(a, 2, put_i16, |v| v),
            Column::I32(a) => fixed!(a, 4, put_i32, |v| v),
            Column::I64(a) => fixed!(a, 8, put_i64, |v| v),
            Column::F64(a) => fixed!(a, 8, put_f64, |v| v),
            Column::Bool(a) => fixed!(a, 1, put_u8, u8::from),
            Column::Time(a) => fixed!(a, 8, put_i64, |v: i64| v - PG_EPOCH_MICROS),
            Column::Text(a) => {
                if a.is_null(row) {
                    null(out);
                } else {
                    put_bytes(name, a.value(row).as_bytes(), out)?;
                }
            }
            Column::Bytes(a) => {
                if a.is_null(row) {
                    null(out);
                } else {
                    put_bytes(name, a.value(row), out)?;
                }
            }
            Column::Uuid(a) => {
                if a.is_null(row) {
                    null(out);
                } else {
                    let uuid = uuid::Uuid::parse_str(a.value(row)).map_err(|e| EncodeError {
                        column: name.to_owned(),
                        message: format!("not a UUID ({e})"),
                    })?;
                    out.put_i32(16);
                    out.put_slice(uuid.as_bytes());
                }
            }
        }
        Ok(())
    }
}

fn put_bytes(name: &str, bytes: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    let len = i32::try_from(bytes.len()).map_err(|_| EncodeError {
        column: name.to_owned(),
        message: format!(
            "a value of {} bytes is larger than PostgreSQL accepts",
            bytes.len()
        ),
    })?;
    out.put_i32(len);
    out.put_slice(bytes);
    Ok(())
}

/// Appends the rows of `batch` to `out`, columns in the order of `columns` (name and staging
/// type); a column the batch lacks is written as NULL.
///
/// # Errors
/// [`EncodeError`] naming a column whose Arrow type does not fit its staging type, or a value
/// PostgreSQL cannot take.
pub(crate) fn encode_rows(
    batch: &RecordBatch,
    columns: &[(String, PgType)],
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let arrays = columns
        .iter()
        .map(|(name, ty)| Column::new(name, batch.column_by_name(name), ty))
        .collect::<Result<Vec<_>, _>>()?;
    let width = i16::try_from(columns.len()).map_err(|_| EncodeError {
        column: String::new(),
        message: "too many columns".to_owned(),
    })?;
    for row in 0..batch.num_rows() {
        out.put_i16(width);
        for ((name, _), column) in columns.iter().zip(&arrays) {
            column.write(name, row, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Int32Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_are_framed_as_postgres_expects() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("t", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("x", DataType::Binary, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("u", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(7), None])),
                Arc::new(StringArray::from(vec![Some("é"), Some("")])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(BinaryArray::from(vec![Some(&b"\x80"[..]), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(PG_EPOCH_MICROS + 1), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("0191b1a0-0000-7000-8000-000000000001"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let columns: Vec<(String, PgType)> = vec![
            ("n".into(), PgType::Integer),
            ("t".into(), PgType::Text),
            ("b".into(), PgType::Boolean),
            ("x".into(), PgType::Bytea),
            ("at".into(), PgType::Timestamptz),
            ("u".into(), PgType::Uuid),
            ("absent".into(), PgType::Text),
        ];
        let mut out = BytesMut::new();
        encode_rows(&batch, &columns, &mut out).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]);
        expected.extend_from_slice(&[0, 0, 0, 1, 1]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0x80]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 16, 0x01, 0x91, 0xb1, 0xa0, 0, 0, 0x70, 0]);
        expected.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0]);
        for _ in 0..5 {
            expected.extend_from_slice(&(-1i32).to_be_bytes());
        }
        assert_eq!(&out[..], &expected[..]);
    }

    #[test]
    fn a_type_mismatch_names_the_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        let error =
            encode_rows(&batch, &[("n".into(), PgType::Text)], &mut BytesMut::new()).unwrap_err();
        assert_eq!(error.column, "n");
    }
}
