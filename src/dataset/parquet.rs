//! Parquet encoding as analysts' engines want it: zstd, dictionary encoding, page statistics
//! (except on opaque bytes), microsecond UTC timestamps, plain UTF-8 strings, no unsigned
//! integers (the canonical schema guarantees the last three).

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::dataset::dictionary;

/// zstd level. 1, as pyarrow and Arrow C++ default to: on task instances level 3 makes files
/// about 5% smaller for about 10% more export CPU time (zstd is a fifth of it), and exports are
/// bound by CPU. Raise it with `--zstd-level` for archives kept long.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Rows the writer encodes per step, each column at a time (parquet's default is 1024). Each
/// step costs a fixed amount per column (levels, page statistics, a check of the page's size),
/// and the merge hands the writer batches of the decoder's size: one step per batch. A page may
/// overshoot its size limit by one step's values: a few hundred KiB for the widest column,
/// beside 1 MiB pages.
const WRITE_BATCH_ROWS: usize = crate::source::read::DEFAULT_BATCH_ROWS;

/// Rows per row group. Smaller than Parquet's default of 1M: a streamed file's writer holds
/// much more than its encoded row group while it is open (measured at 5M task instances, two
/// merges at once: peak RSS 188 MiB at 64k rows, about 220 MiB at 128k, 178 MiB at 24k), and
/// 64k rows keep files within 2% of the size 128k gives.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 64 * 1024;

/// The Parquet declaration that every row group is sorted by the columns at `columns` of
/// `schema`, in that order, ascending, NULLs first (the order of arrow's row format, which
/// the export sorts by); `None` when there are none, or when a nested column would make field
/// and leaf positions differ.
pub fn sorting_columns(schema: &Schema, columns: &[usize]) -> Option<Vec<SortingColumn>> {
    let flat = schema.fields().iter().all(|f| !f.data_type().is_nested());
    if !flat || columns.is_empty() {
        return None;
    }
    columns
        .iter()
        .map(|&column| {
            Some(SortingColumn {
                column_idx: i32::try_from(column).ok()?,
                descending: false,
                nulls_first: true,
            })
        })
        .collect()
}

/// Encoding settings.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    zstd_level: i32,
    row_group_rows: usize,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            zstd_level: DEFAULT_ZSTD_LEVEL,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

impl ParquetOptions {
    /// zstd compression level (1–22). Default [`DEFAULT_ZSTD_LEVEL`].
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Maximum rows per row group. Default [`DEFAULT_ROW_GROUP_ROWS`].
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// The writer properties for files of `schema`, with `metadata` as file key-value metadata.
    ///
    /// Dictionary encoding is on for strings, bytes, integers and booleans, where values repeat
    /// (DAG ids, states, hosts, run ids, map indexes). It is off for timestamps and floats: start
    /// and end times and durations are nearly unique per row, so a dictionary only costs a hash
    /// per value and a second page to compress, and zstd already shrinks the repeats of a sorted
    /// logical date.
    ///
    /// Every column has page statistics except binary ones (pickled executor configs, XCom
    /// values kept as bytes): no query filters on their bytes, and their min and max cost a
    /// comparison of whole values per row.
    ///
    /// # Errors
    /// An out-of-range zstd level.
    pub fn properties(
        &self,
        schema: &Schema,
        metadata: Vec<(String, String)>,
    ) -> Result<WriterProperties, ParquetError> {
        self.build(schema, |_| false, metadata)
    }

    /// As [`properties`](Self::properties), for a file whose rows begin with `first_rows`:
    /// columns whose values there are mostly distinct ([`dictionary::mostly_distinct`]: ids,
    /// process ids, Celery task ids) are written without a dictionary.
    ///
    /// # Errors
    /// An out-of-range zstd level.
    pub fn properties_for(
        &self,
        first_rows: &RecordBatch,
        metadata: Vec<(String, String)>,
    ) -> Result<WriterProperties, ParquetError> {
        self.properties_with_plain(
            &first_rows.schema(),
            &dictionary::plain_columns(first_rows),
            metadata,
        )
    }

    /// As [`properties`](Self::properties), with no dictionary for the columns where `plain`
    /// (one flag per column of `schema`, as [`dictionary::plain_columns`] gives) is true.
    ///
    /// # Errors
    /// An out-of-range zstd level.
    pub fn properties_with_plain(
        &self,
        schema: &Schema,
        plain: &[bool],
        metadata: Vec<(String, String)>,
    ) -> Result<WriterProperties, ParquetError> {
        self.build(schema, |i| plain.get(i).copied().unwrap_or(false), metadata)
    }

    /// Properties for `schema` with no dictionary for columns where `plain(index)` holds.
    fn build(
        &self,
        schema: &Schema,
        plain: impl Fn(usize) -> bool,
        metadata: Vec<(String, String)>,
    ) -> Result<WriterProperties, ParquetError> {
        let mut builder = WriterProperties::builder();
        for (index, field) in schema.fields().iter().enumerate() {
            let never = matches!(
                field.data_type(),
                DataType::Timestamp(_, _) | DataType::Float64 | DataType::Float32
            );
            if never || plain(index) {
                builder = builder
                    .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
            if matches!(field.data_type(), DataType::Binary | DataType::LargeBinary) {
                builder = builder.set_column_statistics_enabled(
                    ColumnPath::from(field.name().as_str()),
                    EnabledStatistics::None,
                );
            }
        }
        Ok(builder
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(self.zstd_level)?))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_write_batch_size(WRITE_BATCH_ROWS)
            .set_created_by(format!("contrail {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build())
    }
}

/// Size, row count and SHA-256 of a written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStats {
    /// Rows in the file.
    pub rows: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// A writer that counts and hashes everything passing through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    bytes: u64,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            bytes: 0,
            hasher: Sha256::new(),
        }
    }

    /// The wrapped writer, bytes written and their SHA-256.
    pub fn finish(self) -> (W, u64, String) {
        let digest = self.hasher.finalize();
        (self.inner, self.bytes, hex(&digest))
    }

    /// The stats of a file of `rows` rows that was written through this, and the wrapped writer.
    pub fn into_stats(self, rows: u64) -> (FileStats, W) {
        let (sink, bytes, sha256) = self.finish();
        (
            FileStats {
                rows,
                bytes,
                sha256,
            },
            sink,
        )
    }
}

/// Lower-case hex of `bytes` (how manifests write SHA-256 digests).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // All or nothing, so the hash always covers exactly what the sink received.
        self.inner.write_all(buf)?;
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A Parquet file written batch by batch, for rows that arrive as a stream (a merge). A row
/// group is cut at the properties' row limit or when its encoded pages held in memory reach
/// `row_group_bytes`, whichever comes first.
pub struct BatchWriter<W: Write + Send> {
    writer: ArrowWriter<HashingWriter<W>>,
    rows: u64,
    row_group_bytes: usize,
}

impl<W: Write + Send> BatchWriter<W> {
    /// A file of `schema` rows written into `sink`.
    ///
    /// # Errors
    /// A schema Parquet cannot hold, or an I/O error writing the header.
    pub fn try_new(
        sink: W,
        schema: SchemaRef,
        properties: WriterProperties,
        row_group_bytes: usize,
    ) -> Result<Self, ParquetError> {
        Ok(Self {
            writer: ArrowWriter::try_new(HashingWriter::new(sink), schema, Some(properties))?,
            rows: 0,
            row_group_bytes: row_group_bytes.max(1),
        })
    }

    /// Appends `batch`.
    ///
    /// # Errors
    /// Parquet or I/O errors from the sink.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// Ends the row group in progress, if any: rows written next start a new one.
    ///
    /// # Errors
    /// Parquet or I/O errors from the sink.
    pub fn end_row_group(&mut self) -> Result<(), ParquetError> {
        self.writer.flush()
    }

    /// Bytes of the file so far: written, plus encoded and not yet written.
    pub fn size(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Writes the footer and returns the file's stats and the sink.
    ///
    /// # Errors
    /// Parquet or I/O errors from the sink.
    pub fn finish(self) -> Result<(FileStats, W), ParquetError> {
        Ok(self.writer.into_inner()?.into_stats(self.rows))
    }
}

/// Encodes `batch` as one Parquet file into `sink` and returns its stats and the sink.
///
/// Column by column: each column of a row group is encoded and compressed and appended before
/// the next, so besides `batch` only one column chunk's pages are in memory at a time.
///
/// # Errors
/// Parquet or I/O errors from the sink.
pub fn write_file<W: Write + Send>(
    batch: &RecordBatch,
    sink: W,
    properties: WriterProperties,
) -> Result<(FileStats, W), ParquetError> {
    let schema = batch.schema();
    let group_rows = properties
        .max_row_group_row_count()
        .unwrap_or(DEFAULT_ROW_GROUP_ROWS)
        .max(1);
    // ArrowWriter sets up the file (schema conversion, the embedded Arrow schema readers use
    // for time zones); the row groups are written through its column writers.
    let (mut file, factory) =
        ArrowWriter::try_new(HashingWriter::new(sink), schema.clone(), Some(properties))?
            .into_serialized_writer()?;
    let total = batch.num_rows();
    let mut start = 0;
    for group in 0.. {
        if start >= total {
            break;
        }
        let end = (start + group_rows).min(total);
        let mut writers = factory.create_column_writers(group)?.into_iter();
        let mut row_group = file.next_row_group()?;
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let column = column.slice(start, end - start);
            for leaf in compute_leaves(field, &column)? {
                let mut writer = writers.next().ok_or_else(|| {
                    ParquetError::General(format!("no column writer for {}", field.name()))
                })?;
                writer.write(&leaf)?;
                writer.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
        start = end;
    }
    Ok(file.into_inner()?.into_stats(total as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, BinaryArray, Int32Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{LogicalType, TimeUnit as PqTimeUnit};

    use super::*;

    #[test]
    fn files_round_trip_with_analyst_friendly_types() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("dag_id", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("payload", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["dag_ü", ""])),
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_709_251_200_000_001), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(BinaryArray::from(vec![Some(&b"\x80\x04"[..]), None])),
            ],
        )
        .unwrap();
        let props = ParquetOptions::default()
            .properties(&schema, vec![("contrail.table".into(), "t".into())])
            .unwrap();
        let (stats, bytes) = write_file(&batch, Vec::new(), props).unwrap();
        assert_eq!(stats.rows, 2);
        assert_eq!(stats.bytes, bytes.len() as u64);
        assert_eq!(stats.sha256.len(), 64);

        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
        let meta = reader.metadata().clone();
        let column = meta.file_metadata().schema_descr().column(2);
        assert_eq!(
            column.logical_type_ref(),
            Some(&LogicalType::timestamp(true, PqTimeUnit::MICROS))
        );
        assert!(
            meta.row_group(0)
                .column(0)
                .compression()
                .to_string()
                .starts_with("ZSTD")
        );
        // Strings get a dictionary; nearly unique timestamps do not.
        assert!(
            meta.row_group(0)
                .column(0)
                .dictionary_page_offset()
                .is_some()
        );
        assert!(
            meta.row_group(0)
                .column(2)
                .dictionary_page_offset()
                .is_none()
        );
        // Page statistics everywhere but on opaque bytes.
        let group = meta.row_group(0);
        assert!(group.column(0).statistics().is_some());
        assert!(group.column(2).statistics().is_some());
        assert!(group.column(3).statistics().is_none());
        let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, [batch]);
    }

    #[test]
    fn a_streamed_file_cuts_row_groups_by_rows_and_by_encoded_bytes() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let batch = |from: i32| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int32Array::from_iter_values(from..from + 1000))],
            )
            .unwrap()
        };
        let groups = |row_group_rows: usize, row_group_bytes: usize| {
            let props = ParquetOptions::default()
                .with_row_group_rows(row_group_rows)
                .properties(&schema, Vec::new())
                .unwrap();
            let mut writer =
                BatchWriter::try_new(Vec::new(), schema.clone(), props, row_group_bytes).unwrap();
            for i in 0..5 {
                writer.write(&batch(i * 1000)).unwrap();
                assert!(writer.size() > 0);
            }
            let (stats, bytes) = writer.finish().unwrap();
            assert_eq!((stats.rows, stats.bytes), (5000, bytes.len() as u64));
            let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
            let count = reader.metadata().num_row_groups();
            let read: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
            let values: Vec<i32> = read
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_primitive::<arrow::datatypes::Int32Type>()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(values, (0..5000).collect::<Vec<_>>());
            count
        };
        assert_eq!(groups(2000, usize::MAX), 3);
        assert_eq!(groups(usize::MAX, 1), 5);
        assert_eq!(groups(usize::MAX, usize::MAX), 1);
    }
}
