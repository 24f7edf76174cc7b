//! The write side of one stream: events arrive in time order from a reader; old events go to
//! the archive (or are counted and left out), the rest are batched within PutLogEvents' limits
//! and put into the target stream, created on first use. Every rejected event is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::archive::{ArchiveWriter, StreamKey};
use super::batch::{Batch, Batcher};
use super::checkpoint::{Checkpoint, Finished};
use super::client::{ApiErrorKind, LogEvent, LogsClient};
use super::limiter::{Api, Limits};
use super::options::{LogsProgress, OldEvents};
use super::plan::StreamReport;

/// What a run's writers do with events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Put into the target group.
    Copy,
    /// Write everything to the archive.
    Archive,
    /// Count only.
    DryRun,
}

/// Run-wide totals, updated by every writer.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) read: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) old: AtomicU64,
    pub(crate) already: AtomicU64,
}

/// What every writer of a run shares.
pub(crate) struct Shared {
    pub(crate) client: Arc<dyn LogsClient>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) mode: Mode,
    pub(crate) to_group: String,
    /// Events before this time (ms) are too old to put.
    pub(crate) old_before: Option<i64>,
    pub(crate) old_events: OldEvents,
    pub(crate) archive: Option<Arc<tokio::sync::Mutex<ArchiveWriter>>>,
    pub(crate) checkpoint: Option<Arc<Mutex<Checkpoint>>>,
    pub(crate) totals: Totals,
    pub(crate) progress: Arc<dyn LogsProgress>,
}

/// Events from the reader, or why reading stopped.
pub(crate) type Chunk = Result<Vec<LogEvent>, String>;

/// One stream to write.
pub(crate) struct Job {
    pub(crate) key: Arc<StreamKey>,
    pub(crate) report: StreamReport,
    pub(crate) target: String,
    pub(crate) target_exists: bool,
    /// Events to leave out because an interrupted run already put them.
    pub(crate) skip: u64,
    /// False when only the old events are wanted (their archive was lost).
    pub(crate) put: bool,
}

/// Consumes the events of one stream from `events` and returns its report (with `error` set
/// if it failed).
pub(crate) async fn write_stream(
    shared: Arc<Shared>,
    mut job: Job,
    mut events: mpsc::Receiver<Chunk>,
) -> StreamReport {
    let mut batcher = Batcher::default();
    let mut state = StreamState {
        created: job.target_exists,
        archived: false,
    };
    while let Some(chunk) = events.recv().await {
        let written = match chunk {
            Ok(chunk) => write_chunk(&shared, &mut job, &mut batcher, &mut state, chunk).await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            job.report.error = Some(error);
            // Drain so the reader is not blocked; the stream is reported as failed.
            while events.recv().await.is_some() {}
            return job.report;
        }
    }
    let last = batcher.finish();
    let oversize = batcher.take_oversize();
    let result = async {
        if let Some(batch) = last {
            put(&shared, &mut job, &mut state, batch).await?;
        }
        if !oversize.is_empty() {
            job.report.rejected += oversize.len() as u64;
            shared
                .totals
                .rejected
                .fetch_add(oversize.len() as u64, Ordering::Relaxed);
            tracing::warn!(stream = %job.report.stream, events = oversize.len(), "Events larger than PutLogEvents accepts were not copied.");
            archive(&shared, &job, &mut state, oversize).await?;
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(error) = result {
        job.report.error = Some(error);
        return job.report;
    }
    if shared.mode == Mode::Copy
        && let Some(checkpoint) = &shared.checkpoint
    {
        let archived_in = if state.archived {
            match &shared.archive {
                Some(archive) => Some(archive.lock().await.archive_id().to_owned()),
                None => None,
            }
        } else {
            None
        };
        let mut checkpoint = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
        checkpoint.streams.insert(
            job.report.stream.clone(),
            Finished {
                target: job.target.clone(),
                events: job.report.written + job.report.already_copied,
                archived_in,
            },
        );
    }
    shared.progress.stream_done(shared.limits.throttles());
    job.report
}

struct StreamState {
    created: bool,
    archived: bool,
}

async fn write_chunk(
    shared: &Shared,
    job: &mut Job,
    batcher: &mut Batcher,
    state: &mut StreamState,
    chunk: Vec<LogEvent>,
) -> Result<(), String> {
    let n = chunk.len() as u64;
    job.report.events += n;
    shared.totals.read.fetch_add(n, Ordering::Relaxed);
    match shared.mode {
        Mode::Archive => {
            let bytes = chunk.iter().map(|e| e.message.len() as u64).sum();
            archive(shared, job, state, chunk).await?;
            job.report.written += n;
            shared.totals.written.fetch_add(n, Ordering::Relaxed);
            shared.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
            shared.progress.events(n, bytes);
            return Ok(());
        }
        Mode::DryRun | Mode::Copy => {}
    }
    let mut old = Vec::new();
    for event in chunk {
        if shared.old_before.is_some_and(|cut| event.timestamp < cut) {
            old.push(event);
            continue;
        }
        if !job.put {
            continue;
        }
        if job.skip > 0 {
            job.skip -= 1;
            job.report.already_copied += 1;
            shared.totals.already.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if shared.mode == Mode::DryRun {
            job.report.written += 1;
            shared.totals.written.fetch_add(1, Ordering::Relaxed);
            shared
                .totals
                .bytes
                .fetch_add(event.message.len() as u64, Ordering::Relaxed);
            continue;
        }
        if let Some(batch) = batcher.push(event) {
            put(shared, job, state, batch).await?;
        }
    }
    if !old.is_empty() {
        let count = old.len() as u64;
        job.report.old_events += count;
        shared.totals.old.fetch_add(count, Ordering::Relaxed);
        match (shared.mode, shared.old_events) {
            (Mode::Copy, OldEvents::Archive) => archive(shared, job, state, old).await?,
            (Mode::Copy, OldEvents::Refuse) => {
                // The stream's metadata did not show them: count them as rejected, loudly.
                job.report.rejected += count;
                shared.totals.rejected.fetch_add(count, Ordering::Relaxed);
            }
            _ => {}
        }
    }
    Ok(())
}

async fn archive(
    shared: &Shared,
    job: &Job,
    state: &mut StreamState,
    events: Vec<LogEvent>,
) -> Result<(), String> {
    let Some(archive) = &shared.archive else {
        return Ok(());
    };
    state.archived = true;
    archive
        .lock()
        .await
        .add(&job.key, events)
        .await
        .map_err(|e| format!("archiving events of {}: {e}", job.report.stream))
}

async fn put(
    shared: &Shared,
    job: &mut Job,
    state: &mut StreamState,
    batch: Batch,
) -> Result<(), String> {
    let group = shared.to_group.as_str();
    let target = job.target.as_str();
    if !state.created {
        let created = shared
            .limits
            .call(Api::CreateStream, || {
                shared.client.create_stream(group, target)
            })
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.kind == ApiErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("creating stream {target} in {group}: {e}")),
        }
        state.created = true;
    }
    let outcome = shared
        .limits
        .call(Api::PutEvents, || {
            shared.client.put_events(group, target, &batch.events)
        })
        .await
        .map_err(|e| format!("PutLogEvents to {group}/{target}: {e}"))?;
    let rejected = outcome
        .rejected
        .map(|r| r.rejected(batch.events.len()))
        .unwrap_or(0) as u64;
    if rejected > 0 {
        tracing::warn!(stream = %target, rejected, info = ?outcome.rejected, "CloudWatch rejected events.");
    }
    let accepted = batch.events.len() as u64 - rejected;
    let bytes: u64 = batch.events.iter().map(|e| e.message.len() as u64).sum();
    job.report.written += accepted;
    job.report.rejected += rejected;
    shared.totals.written.fetch_add(accepted, Ordering::Relaxed);
    shared
        .totals
        .rejected
        .fetch_add(rejected, Ordering::Relaxed);
    shared.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    shared.progress.events(accepted, bytes);
    Ok(())
}
