//! `copy`: preflight (groups, retention, old events), plan, reconcile with what the target
//! already holds, then the lanes, the archive of old events and the checkpoint.
//!
//! Resuming never duplicates events: streams the checkpoint records as finished are skipped,
//! and for every other stream whose target already exists, the events already there are counted
//! and that many are left out.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;

use super::archive::{ArchiveSource, ArchiveWriter, archive_exists};
use super::checkpoint::Checkpoint;
use super::client::ApiErrorKind;
use super::lanes::run_lanes;
use super::limiter::{Api, Limits};
use super::options::{CopyOptions, DEFAULT_AGE_MARGIN_MS, DEFAULT_ARCHIVE_FILE_ROWS, OldEvents};
use super::plan::{CopySummary, Planned, Planner, StreamReport, list_streams};
use super::reader::{ReadContext, StreamReader};
use super::run::{
    api_failure, archive_id, calls, connect, describe, job_for, load_index, missing_group,
    read_context, save_periodically, source_template,
};
use super::writer::{Mode, Shared, Totals};
use crate::error::{Error, Result};
use crate::store;

/// PutLogEvents refuses events older than this (14 days), in ms.
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;

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
    let source_template = source_template(&options.common);
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
