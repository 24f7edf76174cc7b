//! Sorted runs spilled to local disk and merged back into one sorted stream per partition, so
//! that a day's rows land in one large sorted file however scattered they arrive.
//!
//! A job's memory budget holds only a slice of a big table, and rows of one day arrive spread
//! over every range of the table. Each time the partitioner flushes, each day's sorted rows are
//! written here as one *run*: an Arrow IPC stream, uncompressed, since it is written and read
//! once; a flush's runs share one file. When every range of the table has been read, the runs
//! of each day are merged ([`Merge`]), as many at a time as a memory budget allows
//! ([`fan_in`]), holding one small batch per run.
//!
//! This module owns the temporary files only; what becomes of the merged rows is the caller's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::row::Rows;

use crate::dataset::gather::gather_rows;
use crate::dataset::sorted::{SortKeys, slice_memory_size};

/// Target size of the batches a run is written in. Rows of a run are read back one batch at a
/// time, so this (with [`READ_BUFFER_BYTES`]) is the memory a merge holds per run: small, so
/// that many runs merge in one pass.
const SPILL_BATCH_BYTES: usize = 128 * 1024;

/// Read buffer per run being merged. Smaller than a batch's body, which is read past it
/// straight into its own buffer; a merge of a day's 60-odd runs (5M task instances in DAG
/// order) holds one per run, so 64 KiB cost about 6 MiB of peak RSS for no fewer reads.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Write buffer of a run: it gathers each batch's small message header, and is smaller than a
/// batch's body, which the buffer then passes straight to the file instead of copying it.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// How many runs one merge may take within `memory` bytes. A run holds up to two batches at a
/// time (the one being merged, and the one rows still point into until the next output batch)
/// and a read buffer. More runs of one partition are first merged in groups into longer runs
/// ([`Spill::reduce`]), so merge memory stays bounded however large the table.
pub fn fan_in(memory: usize) -> usize {
    (memory / (2 * SPILL_BATCH_BYTES + READ_BUFFER_BYTES)).clamp(4, 1024)
}

/// Bounds on the rows per spilled batch, whatever the rows' width.
const SPILL_BATCH_ROWS: std::ops::RangeInclusive<usize> = 64..=8192;

/// A failure reading or writing a spill file.
#[derive(Debug, thiserror::Error)]
#[error("{action} the temporary file {}: {source}", path.display())]
pub struct SpillError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: ArrowError,
}

impl SpillError {
    fn writing(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| Self {
            action: "writing",
            path: path.to_owned(),
            source,
        }
    }

    fn reading(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| Self {
            action: "reading",
            path: path.to_owned(),
            source,
        }
    }
}

/// A file of runs, one after another; deleted when the last of its runs is dropped.
#[derive(Debug)]
struct RunFile {
    path: PathBuf,
    /// The file's size when it was written: a file of any other size is not read.
    bytes: u64,
}

impl Drop for RunFile {
    fn drop(&mut self) {
        // Best effort: the directory goes when the [`Spill`] is dropped.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One spilled run: rows sorted by the table's sort columns, a byte range of a file that may
/// hold other runs.
#[derive(Debug)]
pub struct Run {
    file: Arc<RunFile>,
    offset: u64,
    bytes: u64,
    rows: usize,
}

impl Run {
    /// Rows in the run.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Frees the run's disk space: its file's space when it was the file's last run, else the
    /// blocks of its range (on Linux, where a file can have holes punched in it).
    pub fn remove(self) {
        if Arc::strong_count(&self.file) > 1 {
            punch_hole(&self.file.path, self.offset, self.bytes);
        }
    }
}

/// Frees the whole blocks of `bytes` bytes at `offset` in the file at `path`, keeping its size.
/// Best effort: the space is freed anyway when the file's last run is removed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn punch_hole(path: &Path, offset: u64, bytes: u64) {
    use std::os::fd::AsRawFd;

    const BLOCK: u64 = 4096;
    let (start, end) = (
        offset.next_multiple_of(BLOCK),
        (offset + bytes) / BLOCK * BLOCK,
    );
    let (Ok(start), Ok(length)) = (
        libc::off_t::try_from(start),
        libc::off_t::try_from(end.saturating_sub(start)),
    ) else {
        return;
    };
    if length == 0 {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    // SAFETY: `file` is an open descriptor for the call's whole duration; fallocate does not
    // touch memory of this process.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            start,
            length,
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn punch_hole(_path: &Path, _offset: u64, _bytes: u64) {}

/// The spilled runs of one table, by partition, in a temporary directory that is removed when
/// this is dropped.
#[derive(Debug)]
pub struct Spill {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    next: AtomicUsize,
    written: AtomicU64,
    runs: Mutex<BTreeMap<Option<String>, Vec<Run>>>,
}

impl Spill {
    /// A new, empty spill directory for rows of `schema`, inside `root`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn try_new(root: &Path, label: &str, schema: SchemaRef) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("contrail-{label}-"))
            .tempdir_in(root)?;
        Ok(Self {
            dir,
            schema,
            next: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            runs: Mutex::new(BTreeMap::new()),
        })
    }

    /// The directory holding the runs.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes each of `runs` (rows already sorted, and their partition) as a run, all in one
    /// new file: one file per flush rather than per day and flush, since creating files is
    /// what costs (the file system's inode allocation, slowest right after many deletions).
    ///
    /// # Errors
    /// When the file cannot be written (a full disk, most likely).
    pub fn write(
        &self,
        runs: impl IntoIterator<Item = (Option<String>, RecordBatch)>,
    ) -> Result<(), SpillError> {
        let mut days = Vec::new();
        let mut file: Option<FileWriter> = None;
        for (day, rows) in runs {
            let writer = match &mut file {
                Some(writer) => writer,
                None => file.insert(self.create()?),
            };
            writer.run(&self.schema, |emit| {
                let total = rows.num_rows();
                let batch_rows = spill_batch_rows(slice_memory_size(&rows), total);
                let mut start = 0;
                while start < total {
                    let end = (start + batch_rows).min(total);
                    emit(rows.slice(start, end - start))?;
                    start = end;
                }
                Ok(())
            })?;
            days.push(day);
        }
        let Some(file) = file else {
            return Ok(());
        };
        let written = self.finish(file)?;
        let mut by_day = self.lock();
        for (day, run) in days.into_iter().zip(written) {
            by_day.entry(day).or_default().push(run);
        }
        Ok(())
    }

    /// Bytes of every run written so far, merged ones included.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Takes every run written so far, by partition, each partition's runs in the order they
    /// were written.
    pub fn take(&self) -> BTreeMap<Option<String>, Vec<Run>> {
        std::mem::take(&mut *self.lock())
    }

    /// Merges groups of runs until at most `fan_in` are left, so that one [`Merge`] can take
    /// them all. The order of runs is kept, so equal keys keep their order.
    ///
    /// # Errors
    /// When a run cannot be read or the merged run cannot be written.
    pub fn reduce(
        &self,
        mut runs: Vec<Run>,
        sort_columns: &[usize],
        fan_in: usize,
    ) -> Result<Vec<Run>, SpillError> {
        let fan_in = fan_in.max(2);
        while runs.len() > fan_in {
            let group: Vec<Run> = runs.drain(..fan_in).collect();
            let mut merge = Merge::try_new(&group, self.schema.clone(), sort_columns, 8192)?;
            let mut file = self.create()?;
            file.run(&self.schema, |emit| {
                while let Some(batch) = merge.next_batch()? {
                    emit(batch)?;
                }
                Ok(())
            })?;
            let merged = self.finish(file)?;
            group.into_iter().for_each(Run::remove);
            runs.splice(0..0, merged);
        }
        Ok(runs)
    }

    /// Creates the next run file.
    fn create(&self) -> Result<FileWriter, SpillError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("runs-{n:06}.arrow"));
        let out = File::create(&path).map_err(|e| SpillError::writing(&path)(e.into()))?;
        Ok(FileWriter {
            // From here on, the file goes when this does, unless it is finished.
            file: RunFile { path, bytes: 0 },
            out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, out),
            runs: Vec::new(),
        })
    }

    /// Completes `file`: its runs, in the order written.
    fn finish(&self, mut file: FileWriter) -> Result<Vec<Run>, SpillError> {
        let failed = |e: std::io::Error| SpillError::writing(&file.file.path)(e.into());
        file.out.flush().map_err(failed)?;
        let bytes = file.out.get_ref().metadata().map_err(failed)?.len();
        let expected = file.runs.last().map_or(0, |&(offset, len, _)| offset + len);
        if bytes != expected {
            return Err(failed(std::io::Error::other(format!(
                "the file has {bytes} bytes, {expected} were written"
            ))));
        }
        self.written.fetch_add(bytes, Ordering::Relaxed);
        let FileWriter { mut file, runs, .. } = file;
        file.bytes = bytes;
        let file = Arc::new(file);
        Ok(runs
            .into_iter()
            .map(|(offset, bytes, rows)| Run {
                file: file.clone(),
                offset,
                bytes,
                rows,
            })
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Option<String>, Vec<Run>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A run file being written: each run a complete Arrow IPC stream, right after the previous.
struct FileWriter {
    file: RunFile,
    out: BufWriter<File>,
    /// `(offset, bytes, rows)` of each run written.
    runs: Vec<(u64, u64, usize)>,
}

impl FileWriter {
    /// Appends one run of the batches `fill` hands to its callback.
    fn run(
        &mut self,
        schema: &SchemaRef,
        fill: impl FnOnce(
            &mut dyn FnMut(RecordBatch) -> Result<(), SpillError>,
        ) -> Result<(), SpillError>,
    ) -> Result<(), SpillError> {
        let path = &self.file.path;
        let offset = self.runs.last().map_or(0, |&(offset, len, _)| offset + len);
        let mut rows = 0;
        let mut writer = StreamWriter::try_new(
            Counted {
                inner: &mut self.out,
                bytes: 0,
            },
            schema,
        )
        .map_err(SpillError::writing(path))?;
        fill(&mut |batch: RecordBatch| {
            rows += batch.num_rows();
            writer.write(&batch).map_err(SpillError::writing(path))
        })?;
        let bytes = writer
            .into_inner()
            .map_err(SpillError::writing(path))?
            .bytes;
        self.runs.push((offset, bytes, rows));
        Ok(())
    }
}

/// A writer that counts the bytes written through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rows per spilled batch so that a batch is about [`SPILL_BATCH_BYTES`].
fn spill_batch_rows(memory: usize, rows: usize) -> usize {
    let per_row = (memory / rows.max(1)).max(1);
    (SPILL_BATCH_BYTES / per_row).clamp(*SPILL_BATCH_ROWS.start(), *SPILL_BATCH_ROWS.end())
}

/// A run's byte range of its file, read through a buffer.
type RunReader = StreamReader<BufReader<std::io::Take<File>>>;

/// One run being read.
struct Input {
    reader: RunReader,
    path: PathBuf,
    /// The run's current batch: its index in [`Merge::staged`], its sort keys, the next row.
    slot: usize,
    keys: Option<Rows>,
    row: usize,
    len: usize,
}

/// Opens `run` for reading, without validating the arrays it holds.
///
/// Validation (offsets in bounds, strings UTF-8) is a pass over every value, a third of the
/// cost of reading a run. A run is this process's own file, written moments before from arrays
/// that were valid, in a directory only this process uses; the file's size is checked against
/// what was written, so a file cut short or replaced is an error, not garbage.
fn open(run: &Run) -> Result<RunReader, SpillError> {
    let path = &run.file.path;
    let failed = |e: std::io::Error| SpillError::reading(path)(ArrowError::from(e));
    let mut file = File::open(path).map_err(failed)?;
    let bytes = file.metadata().map_err(failed)?.len();
    if bytes != run.file.bytes {
        return Err(failed(std::io::Error::other(format!(
            "the file has {bytes} bytes, {} were written",
            run.file.bytes
        ))));
    }
    file.seek(SeekFrom::Start(run.offset)).map_err(failed)?;
    let range = BufReader::with_capacity(READ_BUFFER_BYTES, file.take(run.bytes));
    let reader = StreamReader::try_new(range, None).map_err(SpillError::reading(path))?;
    // SAFETY: the run was written by this process (`FileWriter::run`) from valid arrays of
    // `reader`'s schema, and its file's size is the size written; see above.
    Ok(unsafe { reader.with_skip_validation(true) })
}

/// Sorted runs merged into one sorted stream of batches. Equal keys come in run order.
pub struct Merge {
    schema: SchemaRef,
    keys: Option<SortKeys>,
    batch_rows: usize,
    inputs: Vec<Input>,
    /// Inputs with rows left, as a binary min-heap by (current key, input index).
    heap: Vec<usize>,
    /// Batches that rows of the next output batch come from.
    staged: Vec<RecordBatch>,
    /// `(staged batch, row)` of each row of the next output batch.
    order: Vec<(usize, usize)>,
}

impl Merge {
    /// Opens `runs` (each sorted by `sort_columns`) to be merged into batches of at most
    /// `batch_rows` rows.
    ///
    /// # Errors
    /// When a run cannot be opened or read, or a sort column cannot be ordered.
    pub fn try_new(
        runs: &[Run],
        schema: SchemaRef,
        sort_columns: &[usize],
        batch_rows: usize,
    ) -> Result<Self, SpillError> {
        let keys = SortKeys::try_new(&schema, sort_columns).map_err(SpillError::reading(
            runs.first()
                .map_or(Path::new(""), |r| r.file.path.as_path()),
        ))?;
        let mut merge = Self {
            schema,
            keys,
            batch_rows: batch_rows.max(1),
            inputs: Vec::with_capacity(runs.len()),
            heap: Vec::with_capacity(runs.len()),
            staged: Vec::new(),
            order: Vec::new(),
        };
        for run in runs {
            let reader = open(run)?;
            merge.inputs.push(Input {
                reader,
                path: run.file.path.clone(),
                slot: 0,
                keys: None,
                row: 0,
                len: 0,
            });
            let input = merge.inputs.len() - 1;
            if merge.load(input)? {
                merge.heap.push(input);
            }
        }
        for position in (0..merge.heap.len() / 2).rev() {
            merge.sift_down(position);
        }
        Ok(merge)
    }

    /// The next merged batch, or `None` when every run is used up.
    ///
    /// # Errors
    /// When a run cannot be read (a corrupt or truncated temporary file).
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, SpillError> {
        while self.order.len() < self.batch_rows {
            let Some(&top) = self.heap.first() else {
                break;
            };
            let take = self.rows_first(top).min(self.batch_rows - self.order.len());
            let input = &mut self.inputs[top];
            let slot = input.slot;
            self.order
                .extend((input.row..input.row + take).map(|row| (slot, row)));
            input.row += take;
            if input.row == input.len && !self.load(top)? {
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
            self.sift_down(0);
        }
        if self.order.is_empty() {
            return Ok(None);
        }
        self.emit().map(Some)
    }

    /// Gathers the rows in `order` into a batch and forgets batches no input still points at.
    fn emit(&mut self) -> Result<RecordBatch, SpillError> {
        // Gathering fails only on a bug (mismatched batches); name a run all the same.
        let path = self
            .inputs
            .first()
            .map_or(Path::new(""), |i| i.path.as_path());
        let batch = gather_rows(&self.staged, &self.order)
            .and_then(|batch| batch.with_schema(self.schema.clone()))
            .map_err(SpillError::reading(path))?;
        self.order.clear();
        let staged = std::mem::take(&mut self.staged);
        for &i in &self.heap {
            let input = &mut self.inputs[i];
            self.staged.push(staged[input.slot].clone());
            input.slot = self.staged.len() - 1;
        }
        Ok(batch)
    }

    /// Reads input `i`'s next non-empty batch; false when the run is used up.
    fn load(&mut self, i: usize) -> Result<bool, SpillError> {
        let input = &mut self.inputs[i];
        for batch in input.reader.by_ref() {
            let batch = batch.map_err(SpillError::reading(&input.path))?;
            if batch.num_rows() == 0 {
                continue;
            }
            input.keys = self
                .keys
                .as_ref()
                .map(|keys| keys.of(&batch))
                .transpose()
                .map_err(SpillError::reading(&input.path))?;
            input.row = 0;
            input.len = batch.num_rows();
            self.staged.push(batch);
            input.slot = self.staged.len() - 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// How many of the heap's top input's next rows (at least one) come before every other
    /// input's current row: all of them go out in one step. Runs that do not overlap (a day's
    /// runs often hold different DAGs) then cost a comparison or two per batch, not per row.
    fn rows_first(&self, top: usize) -> usize {
        let input = &self.inputs[top];
        let runner_up = match (self.heap.get(1), self.heap.get(2)) {
            (Some(&a), Some(&b)) => Some(if self.before(a, b) { a } else { b }),
            (a, b) => a.or(b).copied(),
        };
        let Some(other) = runner_up else {
            return input.len - input.row;
        };
        let first = |row: usize| self.row_before(top, row, other);
        if first(input.len - 1) {
            return input.len - input.row;
        }
        // Rows of a run are sorted: `first` holds up to some row and fails after it. It holds
        // at the current row (the heap's order) and fails at the last.
        let (mut low, mut high) = (input.row + 1, input.len - 1);
        if !first(low) {
            return 1;
        }
        while low < high {
            let middle = low + (high - low) / 2;
            if first(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low - input.row
    }

    /// Whether input `a`'s current row comes before input `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        self.row_before(a, self.inputs[a].row, b)
    }

    /// Whether row `row` of input `a`'s batch comes before input `b`'s current row (equal keys:
    /// the earlier run first).
    fn row_before(&self, a: usize, row: usize, b: usize) -> bool {
        let (x, y) = (&self.inputs[a], &self.inputs[b]);
        let keys = match (&x.keys, &y.keys) {
            (Some(kx), Some(ky)) => kx.row(row).cmp(&ky.row(y.row)),
            _ => std::cmp::Ordering::Equal,
        };
        keys.then(a.cmp(&b)).is_lt()
    }

    fn sift_down(&mut self, mut position: usize) {
        let n = self.heap.len();
        loop {
            let (left, right) = (2 * position + 1, 2 * position + 2);
            let mut smallest = position;
            if left < n && self.before(self.heap[left], self.heap[smallest]) {
                smallest = left;
            }
            if right < n && self.before(self.heap[right], self.heap[smallest]) {
                smallest = right;
            }
            if smallest == position {
                return;
            }
            self.heap.swap(position, smallest);
            position = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int32Type;

    use super::*;
    use crate::dataset::sorted::tests::batch;

    fn schema() -> SchemaRef {
        batch(&[]).schema()
    }

    /// Spills `rows` sorted by key (`None` first, ties in order), as the partitioner does.
    fn spill_sorted(spill: &Spill, day: &str, rows: &[(Option<&str>, i32)]) {
        let mut rows = rows.to_vec();
        rows.sort_by_key(|r| r.0);
        spill.write([(Some(day.to_owned()), batch(&rows))]).unwrap();
    }

    fn merged(spill: &Spill, runs: &[Run], batch_rows: usize) -> (Vec<Option<String>>, Vec<i32>) {
        let mut merge = Merge::try_new(runs, spill.schema.clone(), &[0], batch_rows).unwrap();
        let (mut keys, mut ns) = (Vec::new(), Vec::<i32>::new());
        while let Some(batch) = merge.next_batch().unwrap() {
            assert!(batch.num_rows() <= batch_rows);
            keys.extend(
                batch
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|k| k.map(str::to_owned)),
            );
            ns.extend(batch.column(1).as_primitive::<Int32Type>().values().iter());
        }
        (keys, ns)
    }

    #[test]
    fn runs_of_a_day_merge_into_one_sorted_stream_ties_in_run_order() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        spill_sorted(
            &spill,
            "2024-01-02",
            &[(Some("c"), 1), (Some("a"), 2), (None, 3)],
        );
        spill_sorted(&spill, "2024-01-01", &[(Some("z"), 9)]);
        spill_sorted(
            &spill,
            "2024-01-02",
            &[(Some("b"), 4), (Some("a"), 5), (Some("d"), 6)],
        );
        let mut runs = spill.take();
        assert!(spill.take().is_empty());
        let on_disk: u64 = std::fs::read_dir(spill.path())
            .unwrap()
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(spill.bytes_written(), on_disk);
        assert_eq!(runs.len(), 2);
        let day = runs.remove(&Some("2024-01-02".to_owned())).unwrap();
        assert_eq!(day.iter().map(Run::rows).sum::<usize>(), 6);
        let (keys, ns) = merged(&spill, &day, 4);
        assert_eq!(ns, [3, 2, 5, 4, 1, 6]);
        assert_eq!(keys[0], None);
        assert_eq!(keys[5].as_deref(), Some("d"));
    }

    #[test]
    fn one_write_puts_its_days_in_one_file_which_goes_with_its_last_run() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        // Each day big enough to span whole blocks, so removing one frees some.
        let day = |n: i32| -> Vec<(Option<String>, i32)> {
            (0..3000)
                .map(|i| (Some(format!("d{n}-{i:05}")), n * 10_000 + i))
                .collect()
        };
        let as_batch = |rows: &[(Option<String>, i32)]| {
            let refs: Vec<(Option<&str>, i32)> =
                rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
            batch(&refs)
        };
        let days: Vec<_> = (1..=3).map(day).collect();
        spill
            .write(
                days.iter()
                    .enumerate()
                    .map(|(i, rows)| (Some(format!("day{i}")), as_batch(rows))),
            )
            .unwrap();
        spill
            .write([(Some("day1".to_owned()), as_batch(&day(4)))])
            .unwrap();
        let files = || {
            let mut names: Vec<String> = std::fs::read_dir(spill.path())
                .unwrap()
                .map(|f| f.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(files(), ["runs-000000.arrow", "runs-000001.arrow"]);
        let mut runs = spill.take();
        // Each run reads back its own day's rows, from wherever it lies in its file.
        for (i, rows) in days.iter().enumerate() {
            let day = runs.remove(&Some(format!("day{i}"))).unwrap();
            let mut expected: Vec<i32> = rows.iter().map(|r| r.1).collect();
            if i == 1 {
                assert_eq!(day.len(), 2);
                expected.extend(day_values(4));
            }
            let (_, ns) = merged(&spill, &day, 1000);
            assert_eq!(ns, expected, "day{i}");
            let first = spill.path().join("runs-000000.arrow");
            let before = std::fs::metadata(&first).unwrap();
            day.into_iter().for_each(Run::remove);
            if i < 2 {
                // The file keeps its size (other runs are read by offset) until its last run
                // goes, but the removed run's blocks are freed.
                let after = std::fs::metadata(&first).unwrap();
                assert_eq!(after.len(), before.len());
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                {
                    use std::os::unix::fs::MetadataExt;
                    assert!(
                        after.blocks() < before.blocks(),
                        "{} blocks",
                        after.blocks()
                    );
                }
            }
        }
        assert!(files().is_empty(), "{:?}", files());
    }

    fn day_values(n: i32) -> impl Iterator<Item = i32> {
        (0..3000).map(move |i| n * 10_000 + i)
    }

    #[test]
    fn more_runs_than_the_fan_in_are_merged_in_groups_keeping_every_row() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        let mut expected = Vec::new();
        for run in 0..7 {
            let rows: Vec<(Option<String>, i32)> = (0..5)
                .map(|i| (Some(format!("k{:02}", (i * 7 + run) % 13)), run * 10 + i))
                .collect();
            let refs: Vec<(Option<&str>, i32)> =
                rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
            spill_sorted(&spill, "d", &refs);
            expected.extend(rows);
        }
        let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
        let runs = spill.reduce(runs, &[0], 3).unwrap();
        assert!(runs.len() <= 3, "{} runs left", runs.len());
        // Only the reduced runs are left on disk.
        assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), runs.len());
        let (keys, ns) = merged(&spill, &runs, 8);
        // Stable: equal keys in the order their runs were written.
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ns, expected.iter().map(|r| r.1).collect::<Vec<_>>());
        assert_eq!(keys, expected.into_iter().map(|r| r.0).collect::<Vec<_>>());
    }

    #[test]
    fn overlapping_and_disjoint_runs_with_ties_merge_like_a_stable_sort() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        let mut state = 0x2545_f491_u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % bound
        };
        let mut expected = Vec::new();
        for run in 0..6u64 {
            // Runs 0-2 share a small alphabet (many ties); runs 3-5 each own a disjoint range.
            let mut rows: Vec<(Option<String>, i32)> = (0..50)
                .map(|i| {
                    let key = if run < 3 { next(5) } else { 10 * run + next(8) };
                    (Some(format!("k{key:03}")), (run * 100 + i) as i32)
                })
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let refs: Vec<(Option<&str>, i32)> =
                rows.iter().map(|(k, n)| (k.as_deref(), *n)).collect();
            spill_sorted(&spill, "d", &refs);
            expected.extend(rows);
        }
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
        for batch_rows in [1, 7, 1000] {
            let (_, ns) = merged(&spill, &runs, batch_rows);
            assert_eq!(
                ns,
                expected.iter().map(|r| r.1).collect::<Vec<_>>(),
                "{batch_rows}"
            );
        }
    }

    #[test]
    fn without_sort_columns_runs_follow_each_other() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        for rows in [
            [(Some("b"), 1), (Some("a"), 2)],
            [(Some("c"), 3), (None, 4)],
        ] {
            spill.write([(None, batch(&rows))]).unwrap();
        }
        let runs = spill.take().remove(&None).unwrap();
        let mut merge = Merge::try_new(&runs, schema(), &[], 3).unwrap();
        let mut ns = Vec::<i32>::new();
        while let Some(batch) = merge.next_batch().unwrap() {
            ns.extend(batch.column(1).as_primitive::<Int32Type>().values().iter());
        }
        assert_eq!(ns, [1, 2, 3, 4]);
    }

    #[test]
    fn a_truncated_run_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let spill = Spill::try_new(root.path(), "t", schema()).unwrap();
        let rows: Vec<(Option<&str>, i32)> = (0..200).map(|i| (Some("k"), i)).collect();
        spill_sorted(&spill, "d", &rows);
        let runs = spill.take().remove(&Some("d".to_owned())).unwrap();
        let length = std::fs::metadata(&runs[0].file.path).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&runs[0].file.path)
            .unwrap();
        file.set_len(length / 2).unwrap();
        let error = Merge::try_new(&runs, schema(), &[0], 16)
            .and_then(|mut merge| while_rows(&mut merge))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("reading the temporary file"), "{message}");
        assert!(message.contains("runs-000000.arrow"), "{message}");
        assert!(
            message.contains(&format!("has {} bytes, {length} were written", length / 2)),
            "{message}"
        );
    }

    fn while_rows(merge: &mut Merge) -> Result<(), SpillError> {
        while merge.next_batch()?.is_some() {}
        Ok(())
    }

    #[test]
    fn spilled_batches_are_sized_by_bytes_within_bounds() {
        assert_eq!(spill_batch_rows(1024 * 1024 * 1024, 100_000), 64);
        assert_eq!(spill_batch_rows(1024, 1024), 8192);
        assert_eq!(spill_batch_rows(64 * 1024 * 1024, 256 * 1024), 512);
        assert_eq!(fan_in(32 * 1024 * 1024), 120);
        assert_eq!(fan_in(0), 4);
    }
}
