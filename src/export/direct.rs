//! Day slices a range task writes straight into files, rather than spilling them for the merge.
//!
//! Airflow inserts task instances as their runs happen, so a table's pages mostly follow time
//! and a range task sees its days one stretch after another: a flush holds the end of one day
//! and the start of the next. Such a slice is already sorted, and writing it straight into a
//! file of its day saves the spill's round trip (written to local disk, read back, merged),
//! which is most of what sorting costs. Rows that arrive scattered still go through the spill,
//! so that a day does not end up in one small file per flush.
//!
//! The rule, per range task: the flush's last day (whose rows are likely still arriving) is
//! kept in an open file that its slices in the next flush join; a slice of another day starts
//! a file when it is large (a quarter of the memory budget); any other slice is spilled, for
//! the day's merged file. A day gets at most eight files from one range (more only past
//! `--max-file-mib`), its later slices spilled, so rows that arrive scattered over few days do
//! not make a file per flush; rows inserted in time order give a day a file or two per range.
//! One file stays open between flushes, and at most one more is written during one, so a
//! range holds about the upload buffers of a merge. Each slice is written as row groups of its
//! own: every row group is sorted, though a file holding several slices is not sorted as a
//! whole. An unpartitioned table is one "day" that is every flush's last: each range writes it
//! as one file (more past `--max-file-mib`), sorted flush by flush.

use std::collections::HashMap;

use arrow::array::RecordBatch;

use crate::dataset::manifest::FileEntry;
use crate::dataset::partition::Flushed;
use crate::dataset::sorted::slice_memory_size;
use crate::error::Result;
use crate::export::files::{FileSink, OpenFile};

/// A slice of at least this share of the memory budget (1/n) starts a file of its day.
const LARGE_SHARE: usize = 4;

/// Files a range starts for one day; its later slices are spilled.
const FILES_PER_DAY: usize = 8;

/// The files a range task writes straight from its flushes.
pub(super) struct DirectFiles<'a> {
    files: FileSink<'a>,
    /// The file of the last flush's last day, which its next slices join.
    open: Option<OpenFile>,
    /// Files started per day by this range.
    started: HashMap<Option<String>, usize>,
    large: usize,
}

impl<'a> DirectFiles<'a> {
    /// Writes through `files`; a slice of `memory_budget / 4` bytes or more counts as large.
    pub(super) fn new(files: FileSink<'a>, memory_budget: usize) -> Self {
        Self {
            files,
            open: None,
            started: HashMap::new(),
            large: memory_budget / LARGE_SHARE,
        }
    }

    /// Writes the slices of one flush that belong in files and returns the others, to spill.
    ///
    /// # Errors
    /// Encoding or upload errors.
    pub(super) fn place(
        &mut self,
        flushed: Vec<Flushed>,
    ) -> Result<Vec<(Option<String>, RecordBatch)>> {
        // Most batches flush nothing; the open file waits for the next flush that does.
        if flushed.is_empty() {
            return Ok(Vec::new());
        }
        let last = flushed.len() - 1;
        let mut carried = self.open.take();
        let mut spilled = Vec::new();
        for (i, Flushed { day, rows }) in flushed.into_iter().enumerate() {
            let file = if carried.as_ref().is_some_and(|f| f.day() == day.as_deref()) {
                carried.take()
            } else {
                let started = self.started.entry(day.clone()).or_default();
                if *started < FILES_PER_DAY && (i == last || slice_memory_size(&rows) >= self.large)
                {
                    *started += 1;
                    None
                } else {
                    spilled.push((day, rows));
                    continue;
                }
            };
            let closed = match self.append(file, day.as_deref(), &rows) {
                Ok(Some(file)) if i == last => {
                    self.open = Some(file);
                    Ok(())
                }
                Ok(Some(file)) => self.files.close(file),
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            };
            if let Err(error) = closed {
                if let Some(file) = carried {
                    self.files.discard(file);
                }
                return Err(error);
            }
        }
        if let Some(file) = carried {
            self.files.close(file)?;
        }
        Ok(spilled)
    }

    /// Appends sorted `rows` of `day` as row groups of their own to `file` (or a new one), in
    /// the decoder's batch size; past the size limit a file is closed and the rest goes to
    /// another. Returns the file still open.
    fn append(
        &mut self,
        mut file: Option<OpenFile>,
        day: Option<&str>,
        rows: &RecordBatch,
    ) -> Result<Option<OpenFile>> {
        let written = self.write_slice(&mut file, day, rows);
        if let Err(error) = written {
            if let Some(file) = file {
                self.files.discard(file);
            }
            return Err(error);
        }
        Ok(file)
    }

    fn write_slice(
        &mut self,
        file: &mut Option<OpenFile>,
        day: Option<&str>,
        rows: &RecordBatch,
    ) -> Result<()> {
        let job = self.files.job();
        let mut start = 0;
        while start < rows.num_rows() {
            let batch = rows.slice(start, job.batch_rows.min(rows.num_rows() - start));
            start += batch.num_rows();
            self.files.write(file, day, &batch)?;
        }
        // The slice's last row group is written out now, not when the file is next written:
        // an open file holds no encoded pages or dictionaries between flushes.
        match file {
            Some(open) => open.end_row_group(),
            None => Ok(()),
        }
    }

    /// Closes the open file and waits for every upload: the files written.
    ///
    /// # Errors
    /// Encoding or upload errors.
    pub(super) fn finish(mut self) -> Result<Vec<FileEntry>> {
        if let Some(file) = self.open.take()
            && let Err(error) = self.files.close(file)
        {
            self.files.abandon();
            return Err(error);
        }
        self.files.finish()
    }

    /// Drops the open file (its upload aborts) and waits for the uploads still running.
    pub(super) fn abandon(mut self) {
        if let Some(file) = self.open.take() {
            self.files.discard(file);
        }
        self.files.abandon();
    }
}
