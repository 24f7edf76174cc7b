//! The two runs, `copy` and `archive`: preflight, plan, then two reading lanes feeding one
//! writer per stream.
//!
//! Reading is where the quotas bite, and the two read APIs have different costs: GetLogEvents
//! (25 TPS) reads one stream and needs one extra call per stream to see its token repeat;
//! FilterLogEvents (10 TPS) reads up to 100 streams in one page sequence with no per-stream
//! overhead. So the "get lane" takes streams one at a time from the front of the queue, and the
//! "filter lane" takes groups from the back, sized from the events per stream seen so far (many
//! small streams per call; one big stream at a time), and only while the get lane alone would
//! take longer to finish the rest than the filter lane needs for its group. Both lanes run at
//! once, each at its own quota.
//!
//! Resuming never duplicates events: streams the checkpoint records as finished are skipped,
//! and for every other stream whose target already exists, the events already there are counted
//! and that many are left out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::archive::{ArchiveSource, ArchiveWriter, StreamKey, archive_exists};
use super::aws::AwsLogsClient;
use super::checkpoint::Checkpoint;
use super::client::{ApiError, ApiErrorKind, LogEvent, LogsClient};
use super::limiter::{Api, Limits};
use super::options::{
    ArchiveOptions, Common, CopyOptions, DEFAULT_AGE_MARGIN_MS, DEFAULT_ARCHIVE_FILE_ROWS,
    OldEvents,
};
use super::plan::{ArchiveSummary, CopySummary, Planned, Planner, StreamReport, list_streams};
use super::reader::{GroupReader, MAX_FILTER_STREAMS, ReadContext, StreamReader};
use super::select::TryIndex;
use super::template::LogTemplate;
use super::writer::{Chunk, Job, Mode, Shared, Totals, write_stream};
use crate::error::{Error, Result};
use crate::store;

/// PutLogEvents refuses events older than this (14 days), in ms.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// Events per page the lanes plan with until they have seen real pages.
const PAGE_EVENTS: f64 = 10_000.0;
/// Chunks queued per stream between its reader and its writer.
const CHANNEL_CHUNKS: usize = 2;

/// Copies task-log streams from one group to another.
///
/// # Errors
/// [`Error::Logs`] for a missing group, no region or credentials, old events without an
/// `--old-events` choice, or streams that failed (the checkpoint keeps what finished).
pub async fn copy(options: CopyOptions) -> Result<CopySummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    let now = options.common.now.unwrap_or(started_at).timestamp_millis();
    let client = connect(&options.common).await?;
    let limits = Arc::new(Limits::new(options.common.quotas.clone()));
    let region = client.region().to_owned();
    let from = options.from_group.clone();
    let to = options.to_group.clone();
    let dry_run = options.common.dry_run;

    describe(&client, &limits, &from)
        .await?
        .ok_or_else(|| missing_group(&from, &region, "--from-group"))?;
    let mut created_target = false;
    let target = describe(&client, &limits, &to).await?;
    let retention = match &target {
        Some(group) => group.retention_days,
        None if !options.create_target => {
            return Err(Error::Logs {
                target: to.clone(),
                message: format!(
                    "the target log group does not exist in {region}; create it (or pass \
                     --create-target), or check --to-group and AWS_REGION"
                ),
            });
        }
        None => {
            if !dry_run {
                limits
                    .call(Api::Groups, || client.create_group(&to))
                    .await
                    .or_else(|e| match e.kind {
                        ApiErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| api_failure(&to, "creating the log group", e))?;
                created_target = true;
            }
            None
        }
    };
    let max_age = retention
        .map(|days| i64::from(days) * 24 * 3600 * 1000)
        .unwrap_or(MAX_AGE_MS)
        .min(MAX_AGE_MS);
    let old_before = now - max_age + DEFAULT_AGE_MARGIN_MS;

    let index = load_index(&options.common).await?;
    let source_template = source_template(&options.common, index.as_ref());
    let planner = Planner {
        selection: &options.common.selection,
        index: index.as_ref(),
        source_template,
        target_template: options.target_template,
        old_before: Some(old_before),
    };
    let ctx = read_context(&client, &limits, &from, &options.common);
    let listed = list_streams(&ctx, planner.prefix().as_deref())
        .await
        .map_err(|e| api_failure(&from, "listing streams", e))?;
    let streams_listed = listed.len() as u64;
    let planned: Vec<Planned> = listed.into_iter().filter_map(|s| planner.plan(s)).collect();
    let with_old = planned.iter().filter(|p| p.has_old).count() as u64;
    if with_old > 0 && options.old_events == OldEvents::Refuse && !dry_run {
        return Err(Error::Logs {
            target: from.clone(),
            message: format!(
                "{with_old} of the {} selected streams hold events older than {} days (the \
                 target's limit), which PutLogEvents rejects. Pass --old-events archive to write \
                 them to Parquet (with --archive-to DEST or --dataset), or --old-events skip to \
                 leave them out; --dry-run counts them",
                planned.len(),
                max_age / (24 * 3600 * 1000)
            ),
        });
    }

    // The archive of old events, and the checkpoint.
    let archive_store = match (&options.old_events, dry_run) {
        (OldEvents::Archive, false) => {
            let destination = options
                .archive_to
                .clone()
                .or_else(|| options.common.selection.dataset.clone())
                .ok_or_else(|| Error::Logs {
                    target: from.clone(),
                    message: "--old-events archive needs a destination: pass --archive-to DEST \
                              or --dataset"
                        .to_owned(),
                })?;
            let store = store::open(&destination, options.common.store.clone()).await?;
            store.check().await?;
            Some(store)
        }
        _ => None,
    };
    let mut checkpoint = match &options.checkpoint {
        Some(path) => Some(Checkpoint::load(path, &from, &to)?),
        None => None,
    };

    // What the target already holds: finished streams, and partial ones from an interruption.
    let existing: HashSet<String> = if target.is_some() {
        let target_ctx = read_context(&client, &limits, &to, &options.common);
        list_streams(&target_ctx, None)
            .await
            .map_err(|e| api_failure(&to, "listing streams", e))?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        HashSet::new()
    };
    let mut jobs = Vec::with_capacity(planned.len());
    let mut finished_earlier = Vec::new();
    for plan in planned {
        let mut job = job_for(&plan, &from);
        if let Some(done) = checkpoint
            .as_mut()
            .and_then(|c| c.streams.get(&plan.info.name).cloned())
        {
            let archive_lost = match (&done.archived_in, &archive_store) {
                (Some(id), Some(store)) => !archive_exists(store.as_ref(), id).await?,
                (Some(_), None) => false,
                (None, _) => false,
            };
            if !archive_lost {
                job.report.finished_earlier = true;
                job.report.written = done.events;
                finished_earlier.push(job.report);
                continue;
            }
            job.put = false;
        }
        job.target_exists = existing.contains(&job.target);
        if job.target_exists && job.put && !dry_run {
            let target_ctx = read_context(&client, &limits, &to, &options.common);
            let mut reader = StreamReader::new(
                ReadContext {
                    start: None,
                    end: None,
                    ..target_ctx
                },
                job.target.clone(),
            );
            let mut count = 0u64;
            while let Some(page) = reader
                .next_page()
                .await
                .map_err(|e| api_failure(&format!("{to}/{}", job.target), "reading", e))?
            {
                count += page.len() as u64;
            }
            job.skip = count;
        }
        jobs.push((plan, job));
    }

    let archive = archive_store.map(|store| {
        Arc::new(tokio::sync::Mutex::new(ArchiveWriter::new(
            store,
            archive_id(started_at),
            options.common.parquet.clone(),
            DEFAULT_ARCHIVE_FILE_ROWS,
        )))
    });
    let checkpoint = checkpoint.map(|c| Arc::new(Mutex::new(c)));
    let shared = Arc::new(Shared {
        client: client.clone(),
        limits: limits.clone(),
        mode: if dry_run { Mode::DryRun } else { Mode::Copy },
        to_group: to.clone(),
        old_before: Some(old_before),
        old_events: options.old_events,
        archive: archive.clone(),
        checkpoint: checkpoint.clone(),
        totals: Totals::default(),
        progress: options.common.progress.clone(),
    });
    let saver = checkpoint
        .clone()
        .zip(options.checkpoint.clone())
        .map(|(c, path)| tokio::spawn(save_periodically(c, path)));

    let streams_selected = (jobs.len() + finished_earlier.len()) as u64;
    options.common.progress.planned(jobs.len() as u64);
    let renamed = jobs.iter().filter(|(p, _)| p.renamed).count() as u64
        + finished_earlier.iter().filter(|r| r.renamed).count() as u64;
    let unmatched = jobs.iter().filter(|(p, _)| p.unmatched.is_some()).count() as u64;
    let mut reports = run_lanes(&ctx, &shared, jobs, options.common.concurrency).await;

    if let Some(saver) = saver {
        saver.abort();
    }
    let failed: Vec<&StreamReport> = reports.iter().filter(|r| r.error.is_some()).collect();
    let failed_count = failed.len() as u64;
    let first_failure = failed
        .first()
        .map(|r| format!("{}: {}", r.stream, r.error.clone().unwrap_or_default()));
    let archive_out = match archive {
        Some(archive) if failed_count == 0 => Some(
            archive
                .lock()
                .await
                .finish(ArchiveSource {
                    region: region.clone(),
                    group: from.clone(),
                    airflow_version: index.as_ref().and_then(|i| i.airflow_version.clone()),
                    started_at,
                    since: options.common.selection.since,
                    until: options.common.selection.until,
                })
                .await?,
        ),
        _ => None,
    };
    // The checkpoint is saved once the archive it names is complete.
    if let (Some(checkpoint), Some(path)) = (&checkpoint, &options.checkpoint) {
        let snapshot = checkpoint.lock().unwrap_or_else(|p| p.into_inner()).clone();
        snapshot.save(path)?;
    }
    if let Some(first) = first_failure {
        return Err(Error::Logs {
            target: from.clone(),
            message: format!(
                "{failed_count} streams failed (first: {first}); the others finished. Re-run the \
                 same command{} to continue without duplicating events",
                if options.checkpoint.is_some() {
                    ""
                } else {
                    " (with --checkpoint FILE, finished streams are not read again)"
                }
            ),
        });
    }
    let totals = &shared.totals;
    reports.extend(finished_earlier);
    reports.sort_by(|a, b| a.stream.cmp(&b.stream));
    Ok(CopySummary {
        dry_run,
        from_group: from,
        to_group: to,
        region,
        created_target,
        target_template: options.target_template,
        streams_listed,
        streams_selected,
        streams_renamed: renamed,
        streams_unmatched: unmatched,
        streams_finished_earlier: reports.iter().filter(|r| r.finished_earlier).count() as u64,
        streams_failed: 0,
        events_read: totals.read.load(Ordering::Relaxed),
        events_written: totals.written.load(Ordering::Relaxed),
        bytes_written: totals.bytes.load(Ordering::Relaxed),
        events_rejected: totals.rejected.load(Ordering::Relaxed),
        old_events: totals.old.load(Ordering::Relaxed),
        old_events_action: options.old_events,
        streams_with_old_events: with_old,
        events_already_copied: totals.already.load(Ordering::Relaxed),
        archive: archive_out,
        throttles: limits.throttles(),
        calls: calls(&limits),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        streams: reports,
    })
}

/// Archives the events of a group's task-log streams to Parquet.
///
/// # Errors
/// [`Error::Logs`] for a missing group, no region or credentials, or streams that failed (no
/// manifest is written then); store errors.
pub async fn archive(options: ArchiveOptions) -> Result<ArchiveSummary> {
    let started = Instant::now();
    let started_at = Utc::now();
    let client = connect(&options.common).await?;
    let limits = Arc::new(Limits::new(options.common.quotas.clone()));
    let region = client.region().to_owned();
    let group = options.group.clone();
    let dry_run = options.common.dry_run;
    describe(&client, &limits, &group)
        .await?
        .ok_or_else(|| missing_group(&group, &region, "--group"))?;
    let store = store::open(&options.destination, options.common.store.clone()).await?;
    if !dry_run {
        store.check().await?;
    }
    let index = load_index(&options.common).await?;
    let planner = Planner {
        selection: &options.common.selection,
        index: index.as_ref(),
        source_template: source_template(&options.common, index.as_ref()),
        target_template: None,
        old_before: None,
    };
    let ctx = read_context(&client, &limits, &group, &options.common);
    let listed = list_streams(&ctx, planner.prefix().as_deref())
        .await
        .map_err(|e| api_failure(&group, "listing streams", e))?;
    let streams_listed = listed.len() as u64;
    let jobs: Vec<(Planned, Job)> = listed
        .into_iter()
        .filter_map(|s| planner.plan(s))
        .map(|p| {
            let job = job_for(&p, &group);
            (p, job)
        })
        .collect();
    let archive = Arc::new(tokio::sync::Mutex::new(ArchiveWriter::new(
        store.clone(),
        archive_id(started_at),
        options.common.parquet.clone(),
        DEFAULT_ARCHIVE_FILE_ROWS,
    )));
    let shared = Arc::new(Shared {
        client: client.clone(),
        limits: limits.clone(),
        mode: if dry_run { Mode::DryRun } else { Mode::Archive },
        to_group: String::new(),
        old_before: None,
        old_events: OldEvents::Skip,
        archive: (!dry_run).then(|| archive.clone()),
        checkpoint: None,
        totals: Totals::default(),
        progress: options.common.progress.clone(),
    });
    let streams_selected = jobs.len() as u64;
    options.common.progress.planned(streams_selected);
    let mut reports = run_lanes(&ctx, &shared, jobs, options.common.concurrency).await;
    reports.sort_by(|a, b| a.stream.cmp(&b.stream));
    if let Some(failed) = reports.iter().find(|r| r.error.is_some()) {
        return Err(Error::Logs {
            target: group,
            message: format!(
                "{} streams could not be read (first: {}: {}); no manifest was written, re-run \
                 the archive",
                reports.iter().filter(|r| r.error.is_some()).count(),
                failed.stream,
                failed.error.clone().unwrap_or_default()
            ),
        });
    }
    let output = if dry_run {
        None
    } else {
        Some(
            archive
                .lock()
                .await
                .finish(ArchiveSource {
                    region: region.clone(),
                    group: group.clone(),
                    airflow_version: index.as_ref().and_then(|i| i.airflow_version.clone()),
                    started_at,
                    since: options.common.selection.since,
                    until: options.common.selection.until,
                })
                .await?,
        )
    };
    Ok(ArchiveSummary {
        dry_run,
        group,
        region,
        destination: store.url().to_owned(),
        streams_listed,
        streams_selected,
        events_read: reports.iter().map(|r| r.events).sum(),
        archive: output,
        throttles: limits.throttles(),
        calls: calls(&limits),
        elapsed_seconds: started.elapsed().as_secs_f64(),
        streams: reports,
    })
}

async fn connect(common: &Common) -> Result<Arc<dyn LogsClient>> {
    match &common.client {
        Some(client) => Ok(client.clone()),
        None => Ok(Arc::new(
            AwsLogsClient::connect(common.endpoint_url.as_deref()).await?,
        )),
    }
}

async fn describe(
    client: &Arc<dyn LogsClient>,
    limits: &Limits,
    group: &str,
) -> Result<Option<super::client::GroupInfo>> {
    limits
        .call(Api::Groups, || client.describe_group(group))
        .await
        .map_err(|e| api_failure(group, "describing the log group", e))
}

async fn load_index(common: &Common) -> Result<Option<TryIndex>> {
    if !common.selection.states.is_empty() && common.selection.dataset.is_none() {
        return Err(Error::Logs {
            target: "--state".to_owned(),
            message: "selecting by state needs the exported metadata: pass --dataset SRC (a \
                      contrail export of the source environment)"
                .to_owned(),
        });
    }
    match &common.selection.dataset {
        Some(url) => Ok(Some(TryIndex::load(url, common.store.clone()).await?)),
        None => Ok(None),
    }
}

/// The template the user named; without one, each stream name is recognised on its own (the
/// two templates cannot be confused, and an upgraded environment's group holds both).
fn source_template(common: &Common, _index: Option<&TryIndex>) -> Option<LogTemplate> {
    common.source_template
}

fn read_context(
    client: &Arc<dyn LogsClient>,
    limits: &Arc<Limits>,
    group: &str,
    common: &Common,
) -> ReadContext {
    ReadContext {
        client: client.clone(),
        limits: limits.clone(),
        group: group.to_owned(),
        start: common.selection.since.map(|t| t.timestamp_millis()),
        end: common.selection.until.map(|t| t.timestamp_millis()),
    }
}

fn job_for(plan: &Planned, group: &str) -> Job {
    Job {
        key: Arc::new(StreamKey {
            group: group.into(),
            stream: plan.info.name.as_str().into(),
            try_: plan.try_.clone().map(Arc::new),
        }),
        report: StreamReport {
            stream: plan.info.name.clone(),
            target: Some(plan.target.clone()),
            renamed: plan.renamed,
            unmatched: plan.unmatched.clone(),
            state: plan.state.clone(),
            ..StreamReport::default()
        },
        target: plan.target.clone(),
        target_exists: false,
        skip: 0,
        put: true,
    }
}

fn missing_group(group: &str, region: &str, flag: &str) -> Error {
    Error::Logs {
        target: group.to_owned(),
        message: format!(
            "the log group does not exist in {region}; check {flag} and AWS_REGION (MWAA names \
             task log groups airflow-<environment>-Task)"
        ),
    }
}

fn api_failure(target: &str, what: &str, error: ApiError) -> Error {
    let advice = match error.kind {
        ApiErrorKind::Auth => "; check the AWS credentials and their logs:* permissions",
        ApiErrorKind::Throttled | ApiErrorKind::Unavailable => {
            "; the service kept refusing after every retry, try again later or lower the quotas"
        }
        _ => "",
    };
    Error::Logs {
        target: target.to_owned(),
        message: format!("{what} failed: {error}{advice}"),
    }
}

fn calls(limits: &Limits) -> std::collections::BTreeMap<String, u64> {
    limits
        .calls()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(api, n)| (api.to_owned(), n))
        .collect()
}

/// `20240301T000000Z-1a2b3c`: sortable by time, unique across concurrent runs.
fn archive_id(time: chrono::DateTime<Utc>) -> String {
    format!(
        "{}-{:06x}",
        time.format("%Y%m%dT%H%M%SZ"),
        (super::limiter::unit_random() * f64::from(0xff_ffff)) as u32
    )
}

async fn save_periodically(checkpoint: Arc<Mutex<Checkpoint>>, path: std::path::PathBuf) {
    let mut saved = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let snapshot = {
            let c = checkpoint.lock().unwrap_or_else(|p| p.into_inner());
            (c.streams.len() != saved).then(|| c.clone())
        };
        if let Some(snapshot) = snapshot {
            saved = snapshot.streams.len();
            if let Err(error) = snapshot.save(&path) {
                tracing::warn!(error = %error, "Could not save the checkpoint.");
            }
        }
    }
}

/// Events per stream seen so far, to size filter groups and decide what each lane takes.
#[derive(Default)]
struct Estimate {
    streams: u64,
    events: u64,
    /// Events read so far by streams still being read by the get lane.
    inflight: HashMap<usize, u64>,
}

impl Estimate {
    /// Mean events per finished stream; with none finished, a lower bound once a stream in
    /// flight is known to span pages.
    fn per_stream(&self) -> Option<f64> {
        if self.streams > 0 {
            return Some(self.events as f64 / self.streams as f64);
        }
        self.inflight
            .values()
            .copied()
            .max()
            .filter(|n| *n as f64 >= PAGE_EVENTS * 0.5)
            .map(|n| n as f64)
    }

    fn finished(&mut self, events: u64) {
        self.streams += 1;
        self.events += events;
    }
}

struct Queue {
    jobs: VecDeque<(usize, Job)>,
    estimate: Estimate,
}

/// Runs both lanes over `jobs` and returns every stream's report.
async fn run_lanes(
    ctx: &ReadContext,
    shared: &Arc<Shared>,
    jobs: Vec<(Planned, Job)>,
    concurrency: usize,
) -> Vec<StreamReport> {
    let queue = Arc::new(Mutex::new(Queue {
        jobs: jobs.into_iter().map(|(_, j)| j).enumerate().collect(),
        estimate: Estimate::default(),
    }));
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let writers = Arc::new(Mutex::new(JoinSet::new()));
    let quotas = &shared.limits;
    let get_tps = quotas.limiter(Api::GetEvents).rate();
    let filter_tps = quotas.limiter(Api::FilterEvents).rate();
    let get_workers = ((get_tps * 0.1).ceil() as usize).clamp(2, concurrency.max(2));
    let filter_workers = ((filter_tps * 0.1).ceil() as usize).clamp(1, concurrency.max(1));
    let mut lanes = JoinSet::new();
    for _ in 0..get_workers {
        lanes.spawn(get_lane(
            ctx.clone(),
            shared.clone(),
            queue.clone(),
            slots.clone(),
            writers.clone(),
        ));
    }
    for _ in 0..filter_workers {
        lanes.spawn(filter_lane(
            ctx.clone(),
            shared.clone(),
            queue.clone(),
            slots.clone(),
            writers.clone(),
            (get_tps, filter_tps),
            concurrency,
        ));
    }
    while lanes.join_next().await.is_some() {}
    let mut reports = Vec::new();
    let mut writers = std::mem::take(&mut *writers.lock().unwrap_or_else(|p| p.into_inner()));
    while let Some(result) = writers.join_next().await {
        match result {
            Ok(report) => reports.push(report),
            Err(error) => reports.push(StreamReport {
                stream: "?".to_owned(),
                error: Some(format!("a writer task failed: {error}")),
                ..StreamReport::default()
            }),
        }
    }
    reports
}

type Writers = Arc<Mutex<JoinSet<StreamReport>>>;

/// Starts the writer of `job` and returns the sender of its events.
fn start_writer(
    shared: &Arc<Shared>,
    writers: &Writers,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> mpsc::Sender<Chunk> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let shared = shared.clone();
    writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .spawn(async move {
            let report = write_stream(shared, job, rx).await;
            drop(permit);
            report
        });
    tx
}

/// Takes streams one at a time from the front and reads each with GetLogEvents.
async fn get_lane(
    ctx: ReadContext,
    shared: Arc<Shared>,
    queue: Arc<Mutex<Queue>>,
    slots: Arc<Semaphore>,
    writers: Writers,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some((id, job)) = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .pop_front()
        else {
            return;
        };
        let name = job.report.stream.clone();
        let tx = start_writer(&shared, &writers, job, permit);
        let mut reader = StreamReader::new(ctx.clone(), name.clone());
        let mut events = 0u64;
        loop {
            match reader.next_page().await {
                Ok(Some(page)) => {
                    events += page.len() as u64;
                    queue
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .estimate
                        .inflight
                        .insert(id, events);
                    if tx.send(Ok(page)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = tx
                        .send(Err(format!("reading {}/{name}: {error}", ctx.group)))
                        .await;
                    break;
                }
            }
        }
        drop(tx);
        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.estimate.inflight.remove(&id);
        queue.estimate.finished(events);
    }
}

/// Takes groups of streams from the back and reads each group with FilterLogEvents, while that
/// finishes sooner than leaving them to the get lane.
async fn filter_lane(
    ctx: ReadContext,
    shared: Arc<Shared>,
    queue: Arc<Mutex<Queue>>,
    slots: Arc<Semaphore>,
    writers: Writers,
    (get_tps, filter_tps): (f64, f64),
    concurrency: usize,
) {
    loop {
        // Wait until the get lane has shown how big streams are.
        let taken = loop {
            match take_group(&queue, (get_tps, filter_tps), concurrency) {
                Take::Done => return,
                Take::Wait => tokio::time::sleep(Duration::from_millis(2)).await,
                Take::Group(jobs) => break jobs,
            }
        };
        let mut senders: HashMap<String, (mpsc::Sender<Chunk>, u64)> = HashMap::new();
        let mut names = Vec::with_capacity(taken.len());
        // All of the group's slots at once: workers each holding part of theirs would wait
        // for each other forever.
        let Ok(mut permits) = slots.clone().acquire_many_owned(taken.len() as u32).await else {
            return;
        };
        for (_, job) in taken {
            let Some(permit) = permits.split(1) else {
                return;
            };
            let name = job.report.stream.clone();
            names.push(name.clone());
            let tx = start_writer(&shared, &writers, job, permit);
            senders.insert(name, (tx, 0));
        }
        let mut reader = GroupReader::new(ctx.clone(), names.clone());
        loop {
            match reader.next_page().await {
                Ok(Some(page)) => {
                    let mut by_stream: HashMap<String, Vec<LogEvent>> = HashMap::new();
                    for (stream, event) in page {
                        by_stream.entry(stream).or_default().push(event);
                    }
                    for (stream, events) in by_stream {
                        if let Some((tx, count)) = senders.get_mut(&stream) {
                            *count += events.len() as u64;
                            // A writer that stopped has reported its error already.
                            let _ = tx.send(Ok(events)).await;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    for (name, (tx, _)) in &senders {
                        let _ = tx
                            .send(Err(format!("reading {}/{name}: {error}", ctx.group)))
                            .await;
                    }
                    break;
                }
            }
        }
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        for (_, count) in senders.into_values() {
            q.estimate.finished(count);
        }
    }
}

enum Take {
    Done,
    Wait,
    Group(VecDeque<(usize, Job)>),
}

/// The filter lane's next group: as many streams as make about four pages, and only if the get
/// lane alone would take longer to read the rest than the filter lane needs for them.
fn take_group(queue: &Mutex<Queue>, (get_tps, filter_tps): (f64, f64), concurrency: usize) -> Take {
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.jobs.is_empty() {
        return Take::Done;
    }
    let Some(per_stream) = q.estimate.per_stream() else {
        return Take::Wait;
    };
    let size = if q.estimate.streams > 0 {
        ((4.0 * PAGE_EVENTS / per_stream.max(1.0)) as usize).clamp(1, MAX_FILTER_STREAMS)
    } else {
        1
    }
    .min(concurrency)
    .min(q.jobs.len());
    let pages_per_stream = (per_stream / PAGE_EVENTS).ceil().max(1.0);
    let filter_time = (size as f64 * per_stream / PAGE_EVENTS).ceil().max(1.0) / filter_tps;
    let inflight_pages: f64 = q
        .estimate
        .inflight
        .values()
        .map(|read| ((per_stream - *read as f64) / PAGE_EVENTS).max(0.0))
        .sum();
    let rest = (q.jobs.len() - size) as f64;
    let get_time = (rest * (pages_per_stream + 1.0) + inflight_pages) / get_tps;
    if filter_time > get_time {
        return Take::Done;
    }
    let at = q.jobs.len() - size;
    Take::Group(q.jobs.split_off(at))
}
