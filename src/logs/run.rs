//! What `copy` and `archive` share (connecting, checking groups, loading the dataset, naming
//! archives) and the `archive` run itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::archive::{ArchiveSource, ArchiveWriter, StreamKey};
use super::aws::AwsLogsClient;
use super::checkpoint::Checkpoint;
use super::client::{ApiError, ApiErrorKind, LogsClient};
use super::lanes::run_lanes;
use super::limiter::{Api, Limits};
use super::options::{ArchiveOptions, Common, DEFAULT_ARCHIVE_FILE_ROWS, OldEvents};
use super::plan::{ArchiveSummary, Planned, Planner, StreamReport, list_streams};
use super::reader::ReadContext;
use super::select::TryIndex;
use super::template::LogTemplate;
use super::writer::{Job, Mode, Shared, Totals};
use crate::error::{Error, Result};
use crate::store;

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
        source_template: source_template(&options.common),
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

pub(super) async fn connect(common: &Common) -> Result<Arc<dyn LogsClient>> {
    match &common.client {
        Some(client) => Ok(client.clone()),
        None => Ok(Arc::new(
            AwsLogsClient::connect(common.endpoint_url.as_deref()).await?,
        )),
    }
}

pub(super) async fn describe(
    client: &Arc<dyn LogsClient>,
    limits: &Limits,
    group: &str,
) -> Result<Option<super::client::GroupInfo>> {
    limits
        .call(Api::Groups, || client.describe_group(group))
        .await
        .map_err(|e| api_failure(group, "describing the log group", e))
}

pub(super) async fn load_index(common: &Common) -> Result<Option<TryIndex>> {
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
pub(super) fn source_template(common: &Common) -> Option<LogTemplate> {
    common.source_template
}

pub(super) fn read_context(
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

pub(super) fn job_for(plan: &Planned, group: &str) -> Job {
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

pub(super) fn missing_group(group: &str, region: &str, flag: &str) -> Error {
    Error::Logs {
        target: group.to_owned(),
        message: format!(
            "the log group does not exist in {region}; check {flag} and AWS_REGION (MWAA names \
             task log groups airflow-<environment>-Task)"
        ),
    }
}

pub(super) fn api_failure(target: &str, what: &str, error: ApiError) -> Error {
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

pub(super) fn calls(limits: &Limits) -> std::collections::BTreeMap<String, u64> {
    limits
        .calls()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(api, n)| (api.to_owned(), n))
        .collect()
}

/// `20240301T000000Z-1a2b3c`: sortable by time, unique across concurrent runs.
pub(super) fn archive_id(time: chrono::DateTime<Utc>) -> String {
    format!(
        "{}-{:06x}",
        time.format("%Y%m%dT%H%M%SZ"),
        (super::limiter::unit_random() * f64::from(0xff_ffff)) as u32
    )
}

pub(super) async fn save_periodically(
    checkpoint: Arc<Mutex<Checkpoint>>,
    path: std::path::PathBuf,
) {
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
