//! CSV encoding for people who want it: one RFC 4180 file per table (CRLF line ends, a header
//! row, fields quoted only when needed), in the canonical columns.
//!
//! NULL is an empty unquoted field and the empty string is `""`, as PostgreSQL's
//! `COPY … (FORMAT csv)` writes and reads them, so the two stay distinct. The `csv` crate cannot
//! express this (its quote style applies to every field alike: it would quote both or neither),
//! so the few lines of quoting are here. Binary values are `\x` and lower-case hex, timestamps
//! RFC 3339 in UTC with microseconds, JSON payloads their text, booleans `true`/`false`.

use std::io::Write;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType,
};

use crate::dataset::parquet::{FileStats, HashingWriter};

/// Writes canonical batches as one CSV file into a sink, counting and hashing its bytes.
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::{RecordBatch, StringArray};
/// use arrow::datatypes::{DataType, Field, Schema};
/// use contrail::dataset::csv::CsvWriter;
///
/// let schema = Arc::new(Schema::new(vec![Field::new("note", DataType::Utf8, true)]));
/// let batch = RecordBatch::try_new(
///     schema.clone(),
///     vec![Arc::new(StringArray::from(vec![Some(""), None, Some("a,b")]))],
/// )?;
/// let mut writer = CsvWriter::try_new(Vec::new(), &schema)?;
/// writer.write(&batch)?;
/// let (stats, bytes) = writer.finish()?;
/// assert_eq!(bytes, b"note\r\n\"\"\r\n\r\n\"a,b\"\r\n");
/// assert_eq!(stats.rows, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CsvWriter<W: Write> {
    sink: HashingWriter<W>,
    rows: u64,
    line: Vec<u8>,
}

impl<W: Write> CsvWriter<W> {
    /// Writes the header of `schema` into `sink`.
    ///
    /// # Errors
    /// [`std::io::ErrorKind::InvalidInput`] naming a column whose type has no CSV spelling here
    /// (the canonical model uses none), or the sink's error.
    pub fn try_new(sink: W, schema: &Schema) -> std::io::Result<Self> {
        if let Some(field) = schema.fields().iter().find(|f| !supported(f.data_type())) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "column {} has type {}, which CSV export does not support",
                    field.name(),
                    field.data_type()
                ),
            ));
        }
        let mut writer = CsvWriter {
            sink: HashingWriter::new(sink),
            rows: 0,
            line: Vec::new(),
        };
        for (i, field) in schema.fields().iter().enumerate() {
            if i > 0 {
                writer.line.push(b',');
            }
            push_text(&mut writer.line, field.name());
        }
        writer.line.extend_from_slice(b"\r\n");
        writer.sink.write_all(&writer.line)?;
        Ok(writer)
    }

    /// Appends the rows of `batch`, whose schema must be the one given to [`Self::try_new`].
    ///
    /// # Errors
    /// The sink's error.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        for row in 0..batch.num_rows() {
            self.line.clear();
            for (i, column) in batch.columns().iter().enumerate() {
                if i > 0 {
                    self.line.push(b',');
                }
                push_value(&mut self.line, column.as_ref(), row);
            }
            self.line.extend_from_slice(b"\r\n");
            self.sink.write_all(&self.line)?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Flushes and returns the file's stats and the sink.
    ///
    /// # Errors
    /// The sink's error.
    pub fn finish(mut self) -> std::io::Result<(FileStats, W)> {
        self.sink.flush()?;
        Ok(self.sink.into_stats(self.rows))
    }
}

fn supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float64
            | DataType::Boolean
            | DataType::Utf8
            | DataType::Binary
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}

/// Appends the CSV spelling of `array[row]`; nothing for NULL.
fn push_value(line: &mut Vec<u8>, array: &dyn Array, row: usize) {
    if array.is_null(row) {
        return;
    }
    match array.data_type() {
        DataType::Int16 => push_display(line, array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => push_display(line, array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => push_display(line, array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            // PostgreSQL's spellings, so `COPY … FROM` reads them back.
            let value = array.as_primitive::<Float64Type>().value(row);
            match value {
                v if v.is_nan() => line.extend_from_slice(b"NaN"),
                v if v == f64::INFINITY => line.extend_from_slice(b"Infinity"),
                v if v == f64::NEG_INFINITY => line.extend_from_slice(b"-Infinity"),
                v => push_display(line, v),
            }
        }
        DataType::Boolean => {
            let value = array.as_boolean().value(row);
            line.extend_from_slice(if value { b"true" } else { b"false" });
        }
        DataType::Utf8 => push_text(line, array.as_string::<i32>().value(row)),
        DataType::Binary => {
            line.extend_from_slice(b"\\x");
            for byte in array.as_binary::<i32>().value(row) {
                push_display(line, format_args!("{byte:02x}"));
            }
        }
        DataType::Timestamp(_, _) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            match chrono::DateTime::from_timestamp_micros(micros) {
                Some(time) => push_display(line, time.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
                // Outside chrono's range (±262,000 years): the raw number beats nothing.
                None => push_display(line, micros),
            }
        }
        // `try_new` refused every other type.
        _ => {}
    }
}

fn push_display(line: &mut Vec<u8>, value: impl std::fmt::Display) {
    // Writing into a Vec cannot fail.
    let _ = write!(line, "{value}");
}

/// Appends a text field, quoted when empty (to differ from NULL) or when it holds a comma, a
/// quote or a line break; quotes inside are doubled.
fn push_text(line: &mut Vec<u8>, text: &str) {
    let needs_quotes = text.is_empty() || text.contains([',', '"', '\r', '\n']);
    if !needs_quotes {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    line.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' {
            line.push(b'"');
        }
        line.push(byte);
    }
    line.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;

    use super::*;

    #[test]
    fn rows_are_rfc_4180_with_null_distinct_from_empty() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("x", DataType::Float64, true),
            Field::new("raw", DataType::Binary, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(-2), None])),
                Arc::new(StringArray::from(vec![
                    Some(""),
                    Some("say \"hi\",\r\nbye"),
                    None,
                ])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
                Arc::new(Float64Array::from(vec![Some(0.1), Some(f64::NAN), None])),
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x80\x05"[..]),
                    Some(&b""[..]),
                    None,
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_709_251_200_000_001),
                        Some(0),
                        None,
                    ])
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let mut writer = CsvWriter::try_new(Vec::new(), &schema).unwrap();
        writer.write(&batch).unwrap();
        let (stats, bytes) = writer.finish().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            "id,text,ok,x,raw,at\r\n\
             1,\"\",true,0.1,\\x8005,2024-03-01T00:00:00.000001Z\r\n\
             -2,\"say \"\"hi\"\",\r\nbye\",false,NaN,\\x,1970-01-01T00:00:00.000000Z\r\n\
             ,,,,,\r\n"
        );
        assert_eq!(stats.rows, 3);
        assert_eq!(stats.bytes, bytes.len() as u64);
    }

    #[test]
    fn unsupported_types_are_refused_up_front() {
        let schema = Schema::new(vec![Field::new("d", DataType::Date32, true)]);
        let error = CsvWriter::try_new(Vec::new(), &schema).unwrap_err();
        assert!(
            error.to_string().contains("column d has type Date32"),
            "{error}"
        );
    }
}
