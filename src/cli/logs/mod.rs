//! `contrail logs copy` and `contrail logs archive`: arguments to [`CopyOptions`] and
//! [`ArchiveOptions`], the progress bar, and the summaries.

mod args;
mod progress;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::Utc;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_BORDERS_ONLY};

pub use args::{
    LogsArchiveArgs, LogsArgs, LogsCommand, LogsCopyArgs, OldEventsArg, QuotaArgs, SelectionArgs,
    TemplateArg,
};

use crate::cli::inspect::human_bytes;
use crate::cli::time::parse_time;
use crate::cli::{EXIT_PARTIAL, OutputFormat, print_summary};
use crate::logs::{
    Api, ArchiveOptions, ArchiveSummary, CopyOptions, CopySummary, LogTemplate, OldEvents, Quotas,
    Selection, StreamReport,
};
use progress::LogsBar;

/// Streams listed one by one in the human summary; `--output json` lists them all.
const LISTED_STREAMS: usize = 20;

pub(super) async fn run(args: LogsArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        LogsCommand::Copy(args) => copy(*args, quiet).await,
        LogsCommand::Archive(args) => archive(*args, quiet).await,
    }
}

async fn copy(args: LogsCopyArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let selection = selection(&args.selection)?;
    let target_template = match (&args.target_template, &args.target_version) {
        (Some(t), _) => Some(template(*t)),
        (None, Some(version)) => Some(LogTemplate::for_version(version)),
        (None, None) => None,
    };
    let old_events = match args.old_events {
        None => OldEvents::Refuse,
        Some(OldEventsArg::Archive) => OldEvents::Archive,
        Some(OldEventsArg::Skip) => OldEvents::Skip,
    };
    if args.archive_to.is_some() && old_events != OldEvents::Archive {
        bail!("--archive-to is where --old-events archive writes; pass --old-events archive too");
    }
    let bar = Arc::new(LogsBar::new(visible(quiet, args.output, args.dry_run)));
    let options = CopyOptions::new(args.from_group, args.to_group)
        .with_selection(selection)
        .with_source_template(args.selection.source_template.map(template))
        .with_target_template(target_template)
        .with_old_events(old_events)
        .with_archive_to(args.archive_to)
        .with_checkpoint(args.checkpoint)
        .with_create_target(args.create_target)
        .with_dry_run(args.dry_run)
        .with_concurrency(args.quotas.concurrency)
        .with_quotas(quotas(&args.quotas))
        .with_progress(bar.clone());
    let result = crate::logs::copy(options).await;
    bar.finish();
    let summary = result?;
    let code = print_summary(&summary, args.output, render_copy)?;
    if summary.events_rejected > 0 {
        return Ok(ExitCode::from(EXIT_PARTIAL));
    }
    Ok(code)
}

async fn archive(args: LogsArchiveArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let selection = selection(&args.selection)?;
    let bar = Arc::new(LogsBar::new(visible(quiet, args.output, args.dry_run)));
    let options = ArchiveOptions::new(args.group, args.to)
        .with_selection(selection)
        .with_source_template(args.selection.source_template.map(template))
        .with_dry_run(args.dry_run)
        .with_concurrency(args.quotas.concurrency)
        .with_quotas(quotas(&args.quotas))
        .with_progress(bar.clone());
    let result = crate::logs::archive(options).await;
    bar.finish();
    print_summary(&result?, args.output, render_archive)
}

fn visible(quiet: bool, output: OutputFormat, dry_run: bool) -> bool {
    !quiet && output == OutputFormat::Human && !dry_run && std::io::stderr().is_terminal()
}

fn template(arg: TemplateArg) -> LogTemplate {
    match arg {
        TemplateArg::Legacy => LogTemplate::Legacy,
        TemplateArg::Modern => LogTemplate::Modern,
    }
}

fn selection(args: &SelectionArgs) -> anyhow::Result<Selection> {
    let now = Utc::now();
    let time = |text: &Option<String>, flag: &str| {
        text.as_deref()
            .map(|t| parse_time(t, now))
            .transpose()
            .map_err(anyhow::Error::msg)
            .with_context(|| flag.to_owned())
    };
    let since = time(&args.since, "--since")?;
    let until = time(&args.until, "--until")?;
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        bail!("--since must be before --until");
    }
    if !args.state.is_empty() && args.dataset.is_none() {
        bail!(
            "--state needs --dataset: the states of task tries come from the source \
             environment's exported metadata (contrail export --to DEST, then --dataset DEST)"
        );
    }
    Ok(Selection {
        since,
        until,
        dag_ids: args.dag_id.clone(),
        dag_prefixes: args.dag_prefix.clone(),
        states: args.state.clone(),
        dataset: args.dataset.clone(),
    })
}

fn quotas(args: &QuotaArgs) -> Quotas {
    Quotas::default()
        .with_tps(Api::GetEvents, args.get_tps)
        .with_tps(Api::FilterEvents, args.filter_tps)
        .with_tps(Api::DescribeStreams, args.describe_tps)
        .with_tps(Api::CreateStream, args.create_tps)
        .with_tps(Api::PutEvents, args.put_tps)
        .with_max_attempts(args.max_attempts)
}

fn render_copy(summary: &CopySummary) -> String {
    let verb = if summary.dry_run {
        "Would copy"
    } else {
        "Copied"
    };
    let mut out = format!(
        "{verb} {} -> {} ({}): {} of {} streams, {} events ({}) in {:.1} s\n",
        summary.from_group,
        summary.to_group,
        summary.region,
        summary.streams_selected,
        summary.streams_listed,
        summary.events_written,
        human_bytes(summary.bytes_written as i64),
        summary.elapsed_seconds
    );
    if summary.created_target {
        out.push_str(&format!("Created the group {}.\n", summary.to_group));
    }
    if let Some(template) = summary.target_template {
        out.push_str(&format!(
            "Renamed {} streams to the {template:?} template; {} kept their names (see \
             `unmatched` with --output json).\n",
            summary.streams_renamed, summary.streams_unmatched
        ));
    }
    if summary.streams_finished_earlier > 0 || summary.events_already_copied > 0 {
        out.push_str(&format!(
            "Resumed: {} streams finished earlier, {} events already in the target.\n",
            summary.streams_finished_earlier, summary.events_already_copied
        ));
    }
    if summary.old_events > 0 || summary.streams_with_old_events > 0 {
        let what = match (&summary.archive, summary.old_events_action, summary.dry_run) {
            (_, _, true) => "not copied in a real run without --old-events".to_owned(),
            (Some(archive), _, _) => format!(
                "archived ({} rows, manifest {})",
                archive.rows, archive.manifest
            ),
            (None, OldEvents::Skip, _) => "skipped".to_owned(),
            (None, _, _) => "rejected".to_owned(),
        };
        out.push_str(&format!(
            "Old events (older than CloudWatch accepts): {} in {} streams, {what}.\n",
            summary.old_events, summary.streams_with_old_events
        ));
    }
    out.push_str(&format!(
        "Rejected by CloudWatch: {}. Throttled calls (retried): {}.\n",
        summary.events_rejected, summary.throttles
    ));
    out.push_str(&streams_table(&summary.streams, true));
    out
}

fn render_archive(summary: &ArchiveSummary) -> String {
    let mut out = format!(
        "{} {} ({}) -> {}: {} of {} streams, {} events in {:.1} s\n",
        if summary.dry_run {
            "Would archive"
        } else {
            "Archived"
        },
        summary.group,
        summary.region,
        summary.destination,
        summary.streams_selected,
        summary.streams_listed,
        summary.events_read,
        summary.elapsed_seconds
    );
    if let Some(archive) = &summary.archive {
        out.push_str(&format!(
            "{} rows in {} files ({}). Manifest: {}\n",
            archive.rows,
            archive.files,
            human_bytes(archive.bytes as i64),
            archive.manifest
        ));
    }
    out.push_str(&streams_table(&summary.streams, false));
    out
}

fn streams_table(streams: &[StreamReport], copy: bool) -> String {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    if copy {
        table.set_header(["stream", "target", "events", "written", "old", "rejected"]);
    } else {
        table.set_header(["stream", "events"]);
    }
    for report in streams.iter().take(LISTED_STREAMS) {
        let number = |n: u64| Cell::new(n).set_alignment(CellAlignment::Right);
        if copy {
            let target = match (&report.target, report.renamed) {
                (Some(target), true) => target.clone(),
                _ => "(same)".to_owned(),
            };
            table.add_row(vec![
                Cell::new(&report.stream),
                Cell::new(target),
                number(report.events),
                number(report.written),
                number(report.old_events),
                number(report.rejected),
            ]);
        } else {
            table.add_row(vec![Cell::new(&report.stream), number(report.events)]);
        }
    }
    let mut out = format!("{table}\n");
    if streams.len() > LISTED_STREAMS {
        out.push_str(&format!(
            "… and {} more streams (--output json lists them all)\n",
            streams.len() - LISTED_STREAMS
        ));
    }
    out
}
