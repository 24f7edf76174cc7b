//! Binary COPY decoded straight into Arrow builders: no per-row values, no `FromSql`.
//!
//! [`copy`] splits the byte stream into tuples; [`BatchDecoder`] appends each field to the
//! column's builder, converting PostgreSQL's wire format to the canonical Arrow type.
//! The per-type conversions live in one file per type family.

pub mod copy;
mod numeric;
mod temporal;
mod text;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, RecordBatch, StringArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Schema, TimeUnit};

use crate::catalog::WireType;

/// A value that could not be decoded. The message never contains the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The Arrow builder a column decodes into.
#[derive(Debug)]
enum Builder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    /// Text is gathered as bytes and checked to be UTF-8 once per batch, when finished: one
    /// pass over all the values is cheaper than one check per value.
    Utf8(BinaryBuilder),
    Binary(BinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    /// A builder for `capacity` rows and, for strings and bytes, `bytes` of values.
    fn for_type(ty: &DataType, capacity: usize, bytes: usize) -> Option<Builder> {
        Some(match ty {
            DataType::Int16 => Builder::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Builder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Builder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Utf8 => Builder::Utf8(BinaryBuilder::with_capacity(capacity, bytes)),
            DataType::Binary => Builder::Binary(BinaryBuilder::with_capacity(capacity, bytes)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            _ => return None,
        })
    }

    /// Bytes of string or binary values appended so far (0 for fixed-width types).
    fn value_bytes(&self) -> usize {
        match self {
            Builder::Utf8(b) => b.values_slice().len(),
            Builder::Binary(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, DecodeError> {
        Ok(match self {
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(
                StringArray::try_from_binary(b.finish())
                    .map_err(|_| DecodeError::new("text is not valid UTF-8"))?,
            ),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        })
    }
}

/// Whether a wire type can be decoded into an Arrow type.
pub fn supports(wire: WireType, ty: &DataType) -> bool {
    use WireType as W;
    matches!(
        (wire, ty),
        (
            W::Int2 | W::Int4 | W::Int8,
            DataType::Int16 | DataType::Int32 | DataType::Int64
        ) | (
            W::Int2 | W::Int4 | W::Int8 | W::Float4 | W::Float8,
            DataType::Float64
        ) | (W::Bool, DataType::Boolean)
            | (W::Text | W::Jsonb | W::Uuid, DataType::Utf8)
            | (W::Bytea, DataType::Binary)
            | (W::Timestamp, DataType::Timestamp(TimeUnit::Microsecond, _))
    )
}

/// Decodes one column's wire values into its builder.
#[derive(Debug)]
struct ColumnDecoder {
    wire: WireType,
    builder: Builder,
    nullable: bool,
}

impl ColumnDecoder {
    /// Appends the column's values of a run of rows: the type is matched once per run, not
    /// once per value.
    fn append<'a>(
        &mut self,
        values: impl Iterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), DecodeError> {
        let nullable = self.nullable;
        match (&mut self.builder, self.wire) {
            (Builder::Int16(b), w) => {
                each(b, values, nullable, Int16Builder::append_null, |b, v| {
                    let n = numeric::int(w, v)?;
                    b.append_value(n.try_into().map_err(|_| numeric::range("int16"))?);
                    Ok(())
                })
            }
            (Builder::Int32(b), w) => {
                each(b, values, nullable, Int32Builder::append_null, |b, v| {
                    let n = numeric::int(w, v)?;
                    b.append_value(n.try_into().map_err(|_| numeric::range("int32"))?);
                    Ok(())
                })
            }
            (Builder::Int64(b), w) => {
                each(b, values, nullable, Int64Builder::append_null, |b, v| {
                    b.append_value(numeric::int(w, v)?);
                    Ok(())
                })
            }
            (Builder::Float64(b), w) => {
                each(b, values, nullable, Float64Builder::append_null, |b, v| {
                    b.append_value(numeric::float(w, v)?);
                    Ok(())
                })
            }
            (Builder::Boolean(b), _) => {
                each(b, values, nullable, BooleanBuilder::append_null, |b, v| {
                    b.append_value(numeric::boolean(v)?);
                    Ok(())
                })
            }
            (Builder::Utf8(b), WireType::Uuid) => {
                each(b, values, nullable, BinaryBuilder::append_null, |b, v| {
                    b.append_value(text::uuid(v)?);
                    Ok(())
                })
            }
            (Builder::Utf8(b), WireType::Jsonb) => {
                each(b, values, nullable, BinaryBuilder::append_null, |b, v| {
                    b.append_value(text::jsonb(v)?);
                    Ok(())
                })
            }
            (Builder::Utf8(b) | Builder::Binary(b), _) => {
                each(b, values, nullable, BinaryBuilder::append_null, |b, v| {
                    b.append_value(v);
                    Ok(())
                })
            }
            (Builder::Timestamp(b), _) => each(
                b,
                values,
                nullable,
                TimestampMicrosecondBuilder::append_null,
                |b, v| {
                    b.append_value(temporal::timestamp_micros(v)?);
                    Ok(())
                },
            ),
        }
    }
}

/// Appends each of `values` to `builder`: a value with `value`, a NULL with `null`, or an error
/// when the column cannot hold one.
fn each<'a, B>(
    builder: &mut B,
    values: impl Iterator<Item = Option<&'a [u8]>>,
    nullable: bool,
    null: fn(&mut B),
    mut value: impl FnMut(&mut B, &'a [u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    for field in values {
        match field {
            Some(bytes) => value(builder, bytes)?,
            None if nullable => null(builder),
            None => return Err(DecodeError::new("NULL in a column that cannot be NULL")),
        }
    }
    Ok(())
}

/// Accumulates decoded rows into a [`RecordBatch`] of a fixed schema.
#[derive(Debug)]
pub struct BatchDecoder {
    schema: Arc<Schema>,
    columns: Vec<ColumnDecoder>,
    rows: usize,
    capacity: usize,
}

impl BatchDecoder {
    /// A decoder for columns arriving as `wires`, producing `schema`. Non-nullable fields
    /// reject NULLs.
    ///
    /// # Errors
    /// When a wire type cannot be decoded into its field's type; the message names the field.
    pub fn try_new(
        schema: Arc<Schema>,
        wires: &[WireType],
        capacity: usize,
    ) -> Result<Self, DecodeError> {
        if schema.fields().len() != wires.len() {
            return Err(DecodeError::new(format!(
                "{} wire types for {} fields",
                wires.len(),
                schema.fields().len()
            )));
        }
        let columns = schema
            .fields()
            .iter()
            .zip(wires)
            .map(|(field, wire)| {
                let builder = Builder::for_type(field.data_type(), capacity, capacity * 16)
                    .filter(|_| supports(*wire, field.data_type()))
                    .ok_or_else(|| {
                        DecodeError::new(format!(
                            "column {} cannot be decoded from {wire:?} into {}",
                            field.name(),
                            field.data_type()
                        ))
                    })?;
                Ok(ColumnDecoder {
                    wire: *wire,
                    builder,
                    nullable: field.is_nullable(),
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(Self {
            schema,
            columns,
            rows: 0,
            capacity,
        })
    }

    /// Number of columns a row must have.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends rows: `fields` holds one or more rows of [`width`](Self::width) fields each,
    /// one row after another. They are decoded column by column.
    ///
    /// # Errors
    /// A malformed value; the message names the column but never shows the value.
    pub fn append(&mut self, fields: &[Option<&[u8]>]) -> Result<(), DecodeError> {
        let width = self.columns.len();
        if width == 0 || !fields.len().is_multiple_of(width) {
            return Err(DecodeError::new(format!(
                "{} fields are not rows of {width}",
                fields.len()
            )));
        }
        for (index, column) in self.columns.iter_mut().enumerate() {
            let values = fields[index..].iter().step_by(width).copied();
            column.append(values).map_err(|e| {
                DecodeError::new(format!("column {}: {e}", self.schema.field(index).name()))
            })?;
        }
        self.rows += fields.len() / width;
        Ok(())
    }

    /// The rows so far as a batch; the decoder starts over empty.
    ///
    /// # Errors
    /// Only if Arrow rejects the columns, which would be a bug.
    pub fn finish(&mut self) -> Result<RecordBatch, DecodeError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            // Arrow's finish leaves an empty builder that would grow again by doubling (a copy
            // and fresh pages each time); size the next one like this batch instead.
            let bytes = column.builder.value_bytes();
            arrays.push(column.builder.finish()?);
            let next = bytes + bytes / 8;
            if let Some(builder) = Builder::for_type(field.data_type(), self.capacity, next) {
                column.builder = builder;
            }
        }
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| DecodeError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn text_decoder() -> BatchDecoder {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        BatchDecoder::try_new(schema, &[WireType::Text], 4).unwrap()
    }

    #[test]
    fn rows_appended_together_decode_column_by_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, false),
            Field::new("t", DataType::Utf8, true),
        ]));
        let mut decoder =
            BatchDecoder::try_new(schema, &[WireType::Int4, WireType::Text], 4).unwrap();
        let (one, two) = (1i32.to_be_bytes(), 2i32.to_be_bytes());
        decoder
            .append(&[Some(&one), Some(b"a"), Some(&two), None])
            .unwrap();
        decoder.append(&[Some(&one), Some(b"")]).unwrap();
        assert_eq!(decoder.rows(), 3);
        let batch = decoder.finish().unwrap();
        let n = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(n.values().to_vec(), [1, 2, 1]);
        let t = batch.column(1).as_string::<i32>();
        assert_eq!((t.value(0), t.is_null(1), t.value(2)), ("a", true, ""));

        let error = decoder
            .append(&[Some(&one), None, None, Some(b"x")])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "column n: NULL in a column that cannot be NULL"
        );
        let error = decoder.append(&[Some(&one), None, None]).unwrap_err();
        assert!(error.to_string().contains("not rows of 2"), "{error}");
    }

    #[test]
    fn text_is_checked_to_be_utf8_when_the_batch_is_finished() {
        let mut decoder = text_decoder();
        for value in [Some("dag_ü".as_bytes()), None, Some(b"".as_slice())] {
            decoder.append(&[value]).unwrap();
        }
        let batch = decoder.finish().unwrap();
        let column = batch.column(0).as_string::<i32>();
        assert_eq!(column.value(0), "dag_ü");
        assert!(column.is_null(1));
        assert!(column.is_valid(2) && column.value(2).is_empty());

        let mut decoder = text_decoder();
        decoder.append(&[Some(b"ok".as_slice())]).unwrap();
        decoder.append(&[Some(&[0x66, 0xff, 0x6f])]).unwrap();
        let error = decoder.finish().unwrap_err();
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");
    }
}
