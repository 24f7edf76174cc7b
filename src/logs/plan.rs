//! Which streams a run takes and what each becomes: listing, selection, renaming, the old-event
//! check, and the summaries the commands print.

use std::collections::BTreeMap;

use serde::Serialize;

use super::archive::ArchiveOutput;
use super::client::{ApiError, StreamInfo};
use super::limiter::Api;
use super::options::{OldEvents, Selection};
use super::reader::ReadContext;
use super::select::TryIndex;
use super::template::{LogTemplate, TaskTry};

/// Latest an event may be stamped after its ingestion (AWS accepts 2 hours in the future).
const FUTURE_MS: i64 = 2 * 3600 * 1000;

/// One source stream and what the run did (or, in a dry run, would do) with it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    /// The source stream.
    pub stream: String,
    /// The target stream (copy only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the name changed.
    pub renamed: bool,
    /// Why the name was kept although a target template was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<String>,
    /// The try's state from the dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Events read.
    pub events: u64,
    /// Events written (copy) or archived (archive).
    pub written: u64,
    /// Events too old for PutLogEvents (archived or skipped as asked).
    pub old_events: u64,
    /// Events CloudWatch (or contrail, for oversized ones) rejected.
    pub rejected: u64,
    /// Events already in the target from an interrupted run, not written again.
    pub already_copied: u64,
    /// Set when a checkpoint said the stream was finished and it was not read.
    pub finished_earlier: bool,
    /// The error that stopped this stream, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `contrail logs copy` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopySummary {
    /// Nothing was written.
    pub dry_run: bool,
    /// The source group.
    pub from_group: String,
    /// The target group.
    pub to_group: String,
    /// The AWS region.
    pub region: String,
    /// Whether the target group was created.
    pub created_target: bool,
    /// The target template streams were renamed to, if any.
    pub target_template: Option<LogTemplate>,
    /// Streams in the source group.
    pub streams_listed: u64,
    /// Streams selected.
    pub streams_selected: u64,
    /// Streams renamed.
    pub streams_renamed: u64,
    /// Streams copied under their own name although a target template was asked for.
    pub streams_unmatched: u64,
    /// Streams a checkpoint said were finished.
    pub streams_finished_earlier: u64,
    /// Streams that failed.
    pub streams_failed: u64,
    /// Events read.
    pub events_read: u64,
    /// Events written (in a dry run: that would be written).
    pub events_written: u64,
    /// Message bytes written.
    pub bytes_written: u64,
    /// Events rejected by CloudWatch or too large to send.
    pub events_rejected: u64,
    /// Events older than 14 days or the target's retention.
    pub old_events: u64,
    /// What was done with them.
    pub old_events_action: OldEvents,
    /// Streams holding old events, found before copying.
    pub streams_with_old_events: u64,
    /// Events found in the target from an interrupted run and not written again.
    pub events_already_copied: u64,
    /// The archive of old events, if one was written.
    pub archive: Option<ArchiveOutput>,
    /// Throttled calls (retried).
    pub throttles: u64,
    /// Calls per API.
    pub calls: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Every selected stream.
    pub streams: Vec<StreamReport>,
}

/// What `contrail logs archive` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveSummary {
    /// Nothing was written.
    pub dry_run: bool,
    /// The group.
    pub group: String,
    /// The AWS region.
    pub region: String,
    /// Where the archive went.
    pub destination: String,
    /// Streams in the group.
    pub streams_listed: u64,
    /// Streams selected.
    pub streams_selected: u64,
    /// Events read (and archived, unless a dry run).
    pub events_read: u64,
    /// The archive written.
    pub archive: Option<ArchiveOutput>,
    /// Throttled calls (retried).
    pub throttles: u64,
    /// Calls per API.
    pub calls: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Every selected stream.
    pub streams: Vec<StreamReport>,
}

/// A selected stream and what it becomes.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) info: StreamInfo,
    pub(crate) try_: Option<TaskTry>,
    pub(crate) target: String,
    pub(crate) renamed: bool,
    pub(crate) unmatched: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) has_old: bool,
}

/// How streams are chosen and named.
pub(crate) struct Planner<'a> {
    pub(crate) selection: &'a Selection,
    pub(crate) index: Option<&'a TryIndex>,
    pub(crate) source_template: Option<LogTemplate>,
    pub(crate) target_template: Option<LogTemplate>,
    /// Events before this time (ms) are too old to put.
    pub(crate) old_before: Option<i64>,
}

impl Planner<'_> {
    /// The stream name prefix that selects the chosen DAGs, when only one DAG is asked for.
    pub(crate) fn prefix(&self) -> Option<String> {
        if self.selection.dag_ids.len() != 1 || !self.selection.dag_prefixes.is_empty() {
            return None;
        }
        let dag = &self.selection.dag_ids[0];
        match self.source_template {
            Some(LogTemplate::Modern) => Some(format!("dag_id={dag}/")),
            Some(LogTemplate::Legacy) => Some(format!("{dag}/")),
            None => None,
        }
    }

    /// The stream as planned, or `None` when the selection leaves it out.
    pub(crate) fn plan(&self, info: StreamInfo) -> Option<Planned> {
        let selection = self.selection;
        let since = selection.since.map(|t| t.timestamp_millis());
        let until = selection.until.map(|t| t.timestamp_millis());
        let newest = info.last_ingestion.max(info.last_event)?;
        if since.is_some_and(|s| newest.saturating_add(FUTURE_MS) < s) {
            return None;
        }
        if let (Some(u), Some(first)) = (until, info.first_event)
            && first >= u
        {
            return None;
        }
        let parsed = match self.source_template {
            Some(template) => template.parse(&info.name),
            None => LogTemplate::detect(&info.name).map(|(_, t)| t),
        };
        let filtered = !selection.dag_ids.is_empty()
            || !selection.dag_prefixes.is_empty()
            || !selection.states.is_empty();
        let mut try_ = match parsed {
            Some(t) => t,
            None if filtered => return None,
            None => {
                return Some(Planned {
                    target: info.name.clone(),
                    has_old: self.is_old(&info),
                    unmatched: self
                        .target_template
                        .map(|_| "not a task log name of the source template".to_owned()),
                    info,
                    try_: None,
                    renamed: false,
                    state: None,
                });
            }
        };
        let dag_chosen = (selection.dag_ids.is_empty() && selection.dag_prefixes.is_empty())
            || selection.dag_ids.contains(&try_.dag_id)
            || selection
                .dag_prefixes
                .iter()
                .any(|p| try_.dag_id.starts_with(p.as_str()));
        if !dag_chosen {
            return None;
        }
        let known = self.index.is_some_and(|index| index.complete(&mut try_));
        let state = self
            .index
            .and_then(|index| index.state(&try_))
            .map(str::to_owned);
        if !selection.states.is_empty()
            && !state
                .as_ref()
                .is_some_and(|s| selection.states.iter().any(|w| w == s))
        {
            return None;
        }
        let (target, unmatched) = match self.target_template {
            None => (info.name.clone(), None),
            Some(template) => match template.render(&try_) {
                Some(name) => (name, None),
                None => (
                    info.name.clone(),
                    Some(self.why_unmatched(template, &try_, known)),
                ),
            },
        };
        Some(Planned {
            renamed: target != info.name,
            has_old: self.is_old(&info),
            target,
            unmatched,
            state,
            try_: Some(try_),
            info,
        })
    }

    /// Whether the stream may hold events in the window that are too old to put.
    fn is_old(&self, info: &StreamInfo) -> bool {
        let (Some(cut), Some(first)) = (self.old_before, info.first_event) else {
            return false;
        };
        let since = self.selection.since.map(|t| t.timestamp_millis());
        let until = self.selection.until.map(|t| t.timestamp_millis());
        first < cut && since.is_none_or(|s| s < cut) && until.is_none_or(|u| first < u)
    }

    fn why_unmatched(&self, template: LogTemplate, try_: &TaskTry, known: bool) -> String {
        match template {
            LogTemplate::Legacy if try_.map_index >= 0 => {
                "the Airflow <= 2.2 template cannot express a map index".to_owned()
            }
            LogTemplate::Legacy => "no logical date for its run (pass --dataset)".to_owned(),
            LogTemplate::Modern if self.index.is_some() && !known => {
                "its run is not in the dataset".to_owned()
            }
            LogTemplate::Modern => "no run id for its logical date (pass --dataset)".to_owned(),
        }
    }
}

/// Every stream of the context's group whose name starts with `prefix`.
///
/// # Errors
/// The API error once retries are exhausted.
pub(crate) async fn list_streams(
    ctx: &ReadContext,
    prefix: Option<&str>,
) -> Result<Vec<StreamInfo>, ApiError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let sent = token.clone();
        let page = ctx
            .limits
            .call(Api::DescribeStreams, || {
                ctx.client
                    .describe_streams(&ctx.group, prefix, sent.clone())
            })
            .await?;
        out.extend(page.streams);
        match page.next_token {
            Some(next) if Some(&next) != token.as_ref() => token = Some(next),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const HOUR: i64 = 3600 * 1000;

    fn info(name: &str, first: i64, last: i64) -> StreamInfo {
        StreamInfo {
            name: name.to_owned(),
            creation_time: first,
            first_event: Some(first),
            last_event: Some(last),
            last_ingestion: Some(last),
        }
    }

    fn planner(selection: &Selection) -> Planner<'_> {
        Planner {
            selection,
            index: None,
            source_template: None,
            target_template: Some(LogTemplate::Modern),
            old_before: Some(100 * HOUR),
        }
    }

    #[test]
    fn dags_are_chosen_by_id_or_prefix_and_other_names_only_without_a_filter() {
        let modern = "dag_id=etl_a/run_id=r/task_id=t/attempt=1.log";
        let legacy = "etl_b/t/2024-03-01T00_00_00+00_00/1.log";
        let selection = Selection {
            dag_prefixes: vec!["etl_".into()],
            ..Selection::default()
        };
        let p = planner(&selection);
        assert!(p.plan(info(modern, 200 * HOUR, 201 * HOUR)).is_some());
        assert!(p.plan(info(legacy, 200 * HOUR, 201 * HOUR)).is_some());
        assert!(
            p.plan(info("scheduler.log", 200 * HOUR, 201 * HOUR))
                .is_none()
        );
        let selection = Selection {
            dag_ids: vec!["etl_b".into()],
            ..Selection::default()
        };
        let p = planner(&selection);
        assert!(p.plan(info(modern, 200 * HOUR, 201 * HOUR)).is_none());
        // Without a filter, a name of no template is copied as is and reported.
        let all = Selection::default();
        let kept = planner(&all)
            .plan(info("scheduler.log", 200 * HOUR, 201 * HOUR))
            .unwrap();
        assert_eq!(kept.target, "scheduler.log");
        assert!(kept.unmatched.is_some());
    }

    #[test]
    fn the_window_skips_streams_that_cannot_hold_events_in_it() {
        let selection = Selection {
            since: Utc.timestamp_millis_opt(300 * HOUR).single(),
            until: Utc.timestamp_millis_opt(400 * HOUR).single(),
            ..Selection::default()
        };
        let p = planner(&selection);
        let name = "dag_id=d/run_id=r/task_id=t/attempt=1.log";
        // Last ingestion more than 2 hours before `since`: nothing in the window.
        assert!(p.plan(info(name, 200 * HOUR, 297 * HOUR)).is_none());
        // Within 2 hours: an event may be stamped up to 2 hours after its ingestion.
        assert!(p.plan(info(name, 200 * HOUR, 299 * HOUR)).is_some());
        // First event at or after `until`.
        assert!(p.plan(info(name, 400 * HOUR, 401 * HOUR)).is_none());
    }

    #[test]
    fn old_events_are_flagged_from_the_first_event_and_the_window() {
        let all = Selection::default();
        let name = "dag_id=d/run_id=r/task_id=t/attempt=1.log";
        assert!(
            planner(&all)
                .plan(info(name, 99 * HOUR, 200 * HOUR))
                .unwrap()
                .has_old
        );
        assert!(
            !planner(&all)
                .plan(info(name, 101 * HOUR, 200 * HOUR))
                .unwrap()
                .has_old
        );
        // A window that starts after the cut-off leaves the old events out.
        let recent = Selection {
            since: Utc.timestamp_millis_opt(150 * HOUR).single(),
            ..Selection::default()
        };
        assert!(
            !planner(&recent)
                .plan(info(name, 99 * HOUR, 200 * HOUR))
                .unwrap()
                .has_old
        );
    }
}
