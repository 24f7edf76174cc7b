//! Writing runs: the files they share, and what removing a run frees.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;

use super::read::RunReader;
use super::{Merge, SPILL_BATCH_BYTES, SPILL_BATCH_ROWS, SpillError, WRITE_BUFFER_BYTES, kept};
use crate::dataset::sorted::slice_memory_size;

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
    at: Placement,
}

/// Where a run lies in its file, and the sizes of the IPC messages it is made of.
#[derive(Debug)]
struct Placement {
    offset: u64,
    bytes: u64,
    rows: usize,
    /// The size of the stream's schema message, which the reader skips: it knows the schema.
    schema_bytes: u64,
    /// The size of each batch's message (prefix, metadata and body), in order.
    batch_bytes: Vec<u32>,
    /// The columns left out of the run's batches, in order: NULL in every row of the run.
    dropped: Vec<usize>,
}

impl Run {
    /// Rows in the run.
    pub fn rows(&self) -> usize {
        self.at.rows
    }

    /// The file holding the run.
    pub(super) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Opens the run for reading (see [`RunReader`]).
    ///
    /// # Errors
    /// When the file cannot be opened, or its size is not the size written: a file cut short
    /// or replaced is an error, not garbage.
    pub(super) fn open(&self, schema: &SchemaRef) -> Result<RunReader, SpillError> {
        let path = &self.file.path;
        let failed = |e: std::io::Error| SpillError::reading(path)(ArrowError::from(e));
        let mut file = File::open(path).map_err(failed)?;
        let bytes = file.metadata().map_err(failed)?.len();
        if bytes != self.file.bytes {
            return Err(failed(std::io::Error::other(format!(
                "the file has {bytes} bytes, {} were written",
                self.file.bytes
            ))));
        }
        file.seek(SeekFrom::Start(self.at.offset + self.at.schema_bytes))
            .map_err(failed)?;
        let batches = self.at.batch_bytes.clone();
        // SAFETY: the run was written by this process (`FileWriter::run`) from valid arrays of
        // `schema` without the columns `dropped`, as messages of these sizes, and its file's
        // size is the size written. Its bytes are still those written: other runs of the file
        // are removed by punching holes in their own ranges only (`punch_hole`).
        unsafe { RunReader::try_new(file, schema, &self.at.dropped, batches) }
            .map_err(SpillError::reading(path))
    }

    /// Frees the run's disk space: its file's space when it was the file's last run, else the
    /// blocks of its range (on Linux, where a file can have holes punched in it).
    pub fn remove(self) {
        if Arc::strong_count(&self.file) > 1 {
            punch_hole(&self.file.path, self.at.offset, self.at.bytes);
        }
    }
}

/// Frees the disk blocks of the `bytes` bytes at `offset` in the file at `path`, keeping its
/// size: the kernel frees the blocks wholly inside the range and zeroes the rest of it, never a
/// byte outside it (`fallocate(2)`), so the file's other runs read as written. Best effort: the
/// space is freed anyway when the file's last run is removed; a file system that cannot punch
/// holes is logged once.
#[cfg(target_os = "linux")]
fn punch_hole(path: &Path, offset: u64, bytes: u64) {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::AtomicBool;

    static LOGGED: AtomicBool = AtomicBool::new(false);
    let (Ok(start), Ok(length)) = (libc::off_t::try_from(offset), libc::off_t::try_from(bytes))
    else {
        return;
    };
    let punched = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| {
            // SAFETY: `file` is an open descriptor for the whole call; fallocate reads and
            // writes no memory of this process.
            let done = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    start,
                    length,
                )
            };
            if done == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    if let Err(error) = punched
        && !LOGGED.swap(true, Ordering::Relaxed)
    {
        tracing::debug!(
            path = %path.display(),
            error = %error,
            "Could not free a merged run's disk space early; it is freed with its file."
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_path: &Path, _offset: u64, _bytes: u64) {}

/// Where the `width` neighbouring runs of `runs` holding the fewest rows begin (the first such
/// place on a tie).
fn fewest_rows(runs: &[Run], width: usize) -> usize {
    let rows: Vec<usize> = runs.iter().map(Run::rows).collect();
    let mut sum: usize = rows.iter().take(width).sum();
    let (mut best, mut best_sum) = (0, sum);
    for start in 1..=rows.len().saturating_sub(width) {
        sum = sum + rows[start + width - 1] - rows[start - 1];
        if sum < best_sum {
            (best, best_sum) = (start, sum);
        }
    }
    best
}

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
            let (rows, dropped) =
                without_null_columns(&rows).map_err(SpillError::writing(writer.path()))?;
            writer.run(&rows.schema(), dropped, |emit| {
                in_spill_batches(&rows, emit)
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

    /// Merges neighbouring runs until at most `leave` are left, so that the last [`Merge`]
    /// takes them all within its share of memory; one merge here takes at most `fan_in` runs.
    /// Each step merges just as many runs as it must, the neighbours holding the fewest rows,
    /// and puts the merged run in their place: rows are rewritten only as often as the memory
    /// bound needs, and runs keep their order, so equal keys keep theirs.
    ///
    /// # Errors
    /// When a run cannot be read or the merged run cannot be written.
    pub fn reduce(
        &self,
        mut runs: Vec<Run>,
        sort_columns: &[usize],
        fan_in: usize,
        leave: usize,
    ) -> Result<Vec<Run>, SpillError> {
        let (fan_in, leave) = (fan_in.max(2), leave.max(1));
        while runs.len() > leave {
            let width = (runs.len() - leave + 1).min(fan_in);
            let start = fewest_rows(&runs, width);
            let group: Vec<Run> = runs.drain(start..start + width).collect();
            let merged = self.merge_into_one(&group, sort_columns)?;
            group.into_iter().for_each(Run::remove);
            runs.splice(start..start, merged);
        }
        Ok(runs)
    }

    /// Merges `group` into one new run (in a file of its own).
    fn merge_into_one(
        &self,
        group: &[Run],
        sort_columns: &[usize],
    ) -> Result<Vec<Run>, SpillError> {
        let mut merge = Merge::try_new(group, self.schema.clone(), sort_columns, 8192)?;
        // A column NULL in every run of the group is NULL in every row merged.
        let dropped: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| group.iter().all(|run| run.at.dropped.contains(i)))
            .collect();
        let kept = kept(self.schema.fields().len(), &dropped);
        let mut file = self.create()?;
        let path = file.path().to_owned();
        let schema = Arc::new(
            self.schema
                .project(&kept)
                .map_err(SpillError::writing(&path))?,
        );
        file.run(&schema, dropped, |emit| {
            while let Some(batch) = merge.next_batch()? {
                let batch = batch.project(&kept).map_err(SpillError::writing(&path))?;
                in_spill_batches(&batch, emit)?;
            }
            Ok(())
        })?;
        self.finish(file)
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
        let expected = file.runs.last().map_or(0, |at| at.offset + at.bytes);
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
            .map(|at| Run {
                file: file.clone(),
                at,
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
    /// Where each run written lies.
    runs: Vec<Placement>,
}

impl FileWriter {
    fn path(&self) -> &Path {
        &self.file.path
    }

    /// Appends one run of the batches `fill` hands to its callback.
    fn run(
        &mut self,
        schema: &SchemaRef,
        dropped: Vec<usize>,
        fill: impl FnOnce(
            &mut dyn FnMut(RecordBatch) -> Result<(), SpillError>,
        ) -> Result<(), SpillError>,
    ) -> Result<(), SpillError> {
        let path = &self.file.path;
        let offset = self.runs.last().map_or(0, |at| at.offset + at.bytes);
        let mut rows = 0;
        let mut batch_bytes = Vec::new();
        let mut writer = StreamWriter::try_new(
            Counted {
                inner: &mut self.out,
                bytes: 0,
            },
            schema,
        )
        .map_err(SpillError::writing(path))?;
        let schema_bytes = writer.get_ref().bytes;
        fill(&mut |batch: RecordBatch| {
            let before = writer.get_ref().bytes;
            writer.write(&batch).map_err(SpillError::writing(path))?;
            let message = u32::try_from(writer.get_ref().bytes - before).map_err(|_| {
                SpillError::writing(path)(ArrowError::IpcError(
                    "a spilled batch of 4 GiB or more".into(),
                ))
            })?;
            batch_bytes.push(message);
            rows += batch.num_rows();
            Ok(())
        })?;
        let bytes = writer
            .into_inner()
            .map_err(SpillError::writing(path))?
            .bytes;
        self.runs.push(Placement {
            offset,
            bytes,
            rows,
            schema_bytes,
            batch_bytes,
            dropped,
        });
        Ok(())
    }
}

/// `rows` without its columns that are NULL in every row, and the indexes of those: they cost
/// nothing to leave out and to put back ([`RunReader`]), but a pass over memory and disk to
/// write and read back (4 bytes of offsets per row for a string, 8 of zeros for a timestamp).
/// Columns a source version lacks are such columns, and so are many an Airflow deployment
/// never fills (triggers, OpenTelemetry, executors other than Celery).
fn without_null_columns(rows: &RecordBatch) -> Result<(RecordBatch, Vec<usize>), ArrowError> {
    let all_null = |i: &usize| {
        let column = rows.column(*i);
        rows.num_rows() > 0 && column.null_count() == column.len()
    };
    let (dropped, kept): (Vec<usize>, Vec<usize>) = (0..rows.num_columns()).partition(all_null);
    if dropped.is_empty() {
        return Ok((rows.clone(), dropped));
    }
    Ok((rows.project(&kept)?, dropped))
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

/// Hands `rows` to `emit` in slices of about [`SPILL_BATCH_BYTES`], as [`super::fan_in`]
/// counts on.
fn in_spill_batches(
    rows: &RecordBatch,
    emit: &mut dyn FnMut(RecordBatch) -> Result<(), SpillError>,
) -> Result<(), SpillError> {
    let total = rows.num_rows();
    let batch_rows = spill_batch_rows(slice_memory_size(rows), total);
    let mut start = 0;
    while start < total {
        let end = (start + batch_rows).min(total);
        emit(rows.slice(start, end - start))?;
        start = end;
    }
    Ok(())
}

/// Rows per spilled batch so that a batch is about [`SPILL_BATCH_BYTES`].
pub(super) fn spill_batch_rows(memory: usize, rows: usize) -> usize {
    let per_row = (memory / rows.max(1)).max(1);
    (SPILL_BATCH_BYTES / per_row).clamp(*SPILL_BATCH_ROWS.start(), *SPILL_BATCH_ROWS.end())
}
