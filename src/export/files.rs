//! Parquet files of one task: each encoded on the task's thread and uploaded on the runtime,
//! a few uploads in flight while the next file is encoded.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dataset::layout;
use crate::dataset::manifest::FileEntry;
use crate::dataset::parquet as pq;
use crate::error::{Error, Result};
use crate::export::task::TableJob;
use crate::export::upload::{self, CHUNKS_IN_FLIGHT, ChannelWriter};
use crate::store::ObjectInfo;

/// Files of one task that may be uploading while the next is encoded.
const UPLOADS_IN_FLIGHT: usize = 2;

/// Writes a task's Parquet files, keeping a few uploads in flight.
pub(super) struct FileSink<'a> {
    job: &'a TableJob,
    handle: &'a Handle,
    pending: VecDeque<(FileEntry, JoinHandle<Result<ObjectInfo>>)>,
    done: Vec<FileEntry>,
}

/// A Parquet file being written and uploaded.
pub(super) struct OpenFile {
    key: String,
    day: Option<String>,
    writer: pq::BatchWriter<ChannelWriter>,
    uploading: JoinHandle<Result<ObjectInfo>>,
}

impl OpenFile {
    /// The partition the file belongs to.
    pub(super) fn day(&self) -> Option<&str> {
        self.day.as_deref()
    }

    /// Ends the row group in progress: rows written next start a new one.
    pub(super) fn end_row_group(&mut self) -> Result<()> {
        self.writer.end_row_group().map_err(|e| Error::Export {
            message: format!("encoding {}: {e}", self.key),
        })
    }

    /// Appends `batch`.
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| Error::Export {
            message: format!("encoding {}: {e}", self.key),
        })
    }
}

impl<'a> FileSink<'a> {
    /// A sink for `job`'s files, uploading on `handle`'s runtime.
    pub(super) fn new(job: &'a TableJob, handle: &'a Handle) -> Self {
        Self {
            job,
            handle,
            pending: VecDeque::new(),
            done: Vec::new(),
        }
    }

    /// The table's job.
    pub(super) fn job(&self) -> &'a TableJob {
        self.job
    }

    /// Starts a new file of partition `day`, whose rows begin with `first_rows`, and its upload.
    fn open(&mut self, day: Option<&str>, first_rows: &RecordBatch) -> Result<OpenFile> {
        let job = self.job;
        let n = job.file_counter.fetch_add(1, Ordering::SeqCst);
        let partition =
            (!job.plan.partition_columns.is_empty()).then(|| layout::partition_dir(day));
        let key = layout::data_key(
            &job.plan.table,
            partition.as_deref(),
            &job.export_id,
            n,
            "parquet",
        );
        let properties = job
            .parquet
            .properties_with_plain(
                &first_rows.schema(),
                &job.plain_columns(first_rows),
                vec![
                    ("contrail.table".to_owned(), job.plan.table.clone()),
                    (
                        "contrail.canonical_version".to_owned(),
                        job.canonical_version.to_string(),
                    ),
                    (
                        "contrail.source_version".to_owned(),
                        job.source_version.clone(),
                    ),
                    ("contrail.export_id".to_owned(), job.export_id.clone()),
                ],
            )
            .map_err(|e| Error::Export {
                message: format!("Parquet settings: {e}"),
            })?
            .into_builder()
            .set_sorting_columns(pq::sorting_columns(
                &job.plan.output_schema,
                &job.column_indexes(&job.plan.sort_columns),
            ))
            .build();
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let uploading = self
            .handle
            .spawn(upload::upload(job.store.clone(), key.clone(), rx));
        let writer = pq::BatchWriter::try_new(
            ChannelWriter::new(tx),
            job.plan.output_schema.clone(),
            properties,
            job.memory_budget / 4,
        );
        let writer = match writer {
            Ok(writer) => writer,
            Err(error) => {
                let error = Error::Export {
                    message: format!("encoding {key}: {error}"),
                };
                return Err(self.upload_error(uploading).unwrap_or(error));
            }
        };
        Ok(OpenFile {
            key,
            day: day.map(str::to_owned),
            writer,
            uploading,
        })
    }

    /// Appends `batch` of partition `day` to `file`, starting a new file when there is none,
    /// and closes the file once it reaches the job's size limit (the next rows start another).
    pub(super) fn write(
        &mut self,
        file: &mut Option<OpenFile>,
        day: Option<&str>,
        batch: &RecordBatch,
    ) -> Result<()> {
        let open = match file {
            Some(open) => open,
            None => file.insert(self.open(day, batch)?),
        };
        open.write(batch)?;
        if open.writer.size() >= self.job.max_file_bytes
            && let Some(full) = file.take()
        {
            self.close(full)?;
        }
        Ok(())
    }

    /// Finishes `file` and queues its upload, keeping a few uploads in flight.
    pub(super) fn close(&mut self, file: OpenFile) -> Result<()> {
        let OpenFile {
            key,
            day,
            writer,
            uploading,
        } = file;
        let finished = writer
            .finish()
            .map_err(|e| Error::Export {
                message: format!("encoding {key}: {e}"),
            })
            .and_then(|(stats, channel)| {
                channel
                    .complete()
                    .map(|()| stats)
                    .map_err(|e| Error::Export {
                        message: format!("writing {key}: {e}"),
                    })
            });
        let stats = match finished {
            Ok(stats) => stats,
            Err(error) => return Err(self.upload_error(uploading).unwrap_or(error)),
        };
        let entry = FileEntry {
            key,
            partition: day,
            rows: stats.rows,
            bytes: stats.bytes,
            sha256: stats.sha256,
        };
        self.pending.push_back((entry, uploading));
        while self.pending.len() > UPLOADS_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    /// Drops an unfinished file: its upload sees the channel close early and aborts.
    pub(super) fn discard(&mut self, file: OpenFile) {
        let OpenFile {
            writer, uploading, ..
        } = file;
        drop(writer);
        let _ = self.handle.block_on(uploading);
    }

    /// The store's error, when the upload failed first: it explains more than the encoder's
    /// "the upload stopped".
    fn upload_error(&self, uploading: JoinHandle<Result<ObjectInfo>>) -> Option<Error> {
        self.handle
            .block_on(uploading)
            .ok()
            .and_then(Result::err)
            .filter(|error| error.store_kind().is_some())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some((entry, uploading)) = self.pending.pop_front() {
            let info = self
                .handle
                .block_on(uploading)
                .map_err(|e| Error::Export {
                    message: format!("uploading {}: {e}", entry.key),
                })??;
            check_size(&entry, &info)?;
            self.done.push(entry);
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Vec<FileEntry>> {
        while !self.pending.is_empty() {
            if let Err(error) = self.wait_oldest() {
                // None of the other uploads may land after the export removed its files.
                self.abandon();
                return Err(error);
            }
        }
        Ok(std::mem::take(&mut self.done))
    }

    /// Waits for uploads still running so that none outlives a failed task.
    pub(super) fn abandon(mut self) {
        for (_, uploading) in self.pending.drain(..) {
            let _ = self.handle.block_on(uploading);
        }
    }
}

/// The store must hold exactly the bytes that were encoded.
pub(super) fn check_size(entry: &FileEntry, info: &ObjectInfo) -> Result<()> {
    if info.size == entry.bytes {
        return Ok(());
    }
    Err(Error::Export {
        message: format!(
            "{} has {} bytes in the store, {} were written",
            entry.key, info.size, entry.bytes
        ),
    })
}
