//! `contrail logs …` arguments as the user types them.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::cli::OutputFormat;

/// Exit codes of `contrail logs copy`, shown in its help.
pub(crate) const EXIT_CODES_HELP: &str = "Exit codes: 0 every selected event was copied (or \
archived, or skipped as asked); 3 the copy completed but CloudWatch rejected some events (the \
summary counts them); 2 error (nothing more was done; re-run to resume).";

/// `contrail logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// What to do with the logs.
    #[command(subcommand)]
    pub command: LogsCommand,
}

/// The `contrail logs` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Copy task-log streams from one CloudWatch Logs group to another, renaming them for the
    /// target's Airflow log filename template, in parallel within the account's API quotas.
    #[command(after_help = EXIT_CODES_HELP)]
    Copy(Box<LogsCopyArgs>),
    /// Write the events of a group's task-log streams to Parquet (logs/date=…/…) with a
    /// manifest, for analysts and for history older than CloudWatch keeps or accepts.
    Archive(Box<LogsArchiveArgs>),
}

/// Log filename templates of Airflow, as stream names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TemplateArg {
    /// Airflow 1.10 to 2.2: {dag_id}/{task_id}/{ts}/{try}.log
    Legacy,
    /// Airflow 2.3 and later: dag_id=…/run_id=…/task_id=…/[map_index=…/]attempt=….log
    Modern,
}

/// What to do with events older than PutLogEvents accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OldEventsArg {
    /// Write them to Parquet (--archive-to, default the --dataset) and copy the rest.
    Archive,
    /// Leave them out, counted in the summary.
    Skip,
}

/// Which streams and events.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Only events at or after this time: 2024-03-01, 2024-03-01T12:00:00Z, or an age like 3d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only these DAGs (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "DAG_ID,...")]
    pub dag_id: Vec<String>,

    /// Only DAGs whose id starts with one of these (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "PREFIX,...")]
    pub dag_prefix: Vec<String>,

    /// Only task tries in these states, e.g. failed,up_for_retry (needs --dataset).
    #[arg(long, value_delimiter = ',', value_name = "STATE,...")]
    pub state: Vec<String>,

    /// The source environment's exported metadata (a contrail export: directory or
    /// s3://bucket/prefix): run ids, logical dates, map indexes, tries and states.
    #[arg(long, value_name = "SRC")]
    pub dataset: Option<String>,

    /// Template of the source stream names (default: recognised per stream; a group of an
    /// upgraded environment holds both).
    #[arg(long, value_enum, value_name = "TEMPLATE")]
    pub source_template: Option<TemplateArg>,
}

/// Pace and parallelism.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Streams in flight (being read or written) at once.
    #[arg(long, default_value_t = crate::logs::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,

    /// GetLogEvents calls per second for the account and region (AWS: 25, 10 in some regions).
    #[arg(long, value_name = "TPS", default_value_t = crate::logs::DEFAULT_GET_EVENTS_TPS)]
    pub get_tps: f64,

    /// FilterLogEvents calls per second (AWS: 10, 25 in us-east-1).
    #[arg(long, value_name = "TPS", default_value_t = crate::logs::DEFAULT_FILTER_EVENTS_TPS)]
    pub filter_tps: f64,

    /// DescribeLogStreams calls per second (AWS: 25).
    #[arg(long, value_name = "TPS", default_value_t = crate::logs::DEFAULT_DESCRIBE_STREAMS_TPS)]
    pub describe_tps: f64,

    /// CreateLogStream calls per second (AWS: 50).
    #[arg(long, value_name = "TPS", default_value_t = crate::logs::DEFAULT_CREATE_STREAM_TPS)]
    pub create_tps: f64,

    /// PutLogEvents calls per second (AWS: 5000).
    #[arg(long, value_name = "TPS", default_value_t = crate::logs::DEFAULT_PUT_EVENTS_TPS)]
    pub put_tps: f64,

    /// Attempts per call on throttling or unavailability, the first included.
    #[arg(long, default_value_t = crate::logs::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
}

/// `contrail logs copy`.
#[derive(Debug, Args)]
pub struct LogsCopyArgs {
    /// The source log group (MWAA: airflow-<old environment>-Task).
    #[arg(long, value_name = "GROUP")]
    pub from_group: String,

    /// The target log group (MWAA: airflow-<new environment>-Task).
    #[arg(long, value_name = "GROUP")]
    pub to_group: String,

    /// Which streams and events.
    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Rename streams to this template (what the target's Airflow UI looks for).
    #[arg(
        long,
        value_enum,
        value_name = "TEMPLATE",
        conflicts_with = "target_version"
    )]
    pub target_template: Option<TemplateArg>,

    /// Rename streams to the template of this Airflow version (e.g. 2.10.5).
    #[arg(long, value_name = "VERSION")]
    pub target_version: Option<String>,

    /// Events older than 14 days (or the target group's retention) are rejected by
    /// CloudWatch: archive them to Parquet or skip them. Without this, contrail stops before
    /// copying when it finds any.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub old_events: Option<OldEventsArg>,

    /// Where --old-events archive writes (directory or s3://bucket/prefix; default --dataset).
    #[arg(long, value_name = "DEST")]
    pub archive_to: Option<String>,

    /// Checkpoint file: finished streams are recorded and skipped when the command is re-run.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Create the target group if it does not exist.
    #[arg(long)]
    pub create_target: bool,

    /// List the streams, their new names and event counts; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Pace and parallelism.
    #[command(flatten)]
    pub quotas: QuotaArgs,
}

/// `contrail logs archive`.
#[derive(Debug, Args)]
pub struct LogsArchiveArgs {
    /// The log group.
    #[arg(long, value_name = "GROUP")]
    pub group: String,

    /// Destination: a directory or s3://bucket/prefix (e.g. the dataset of the metadata).
    #[arg(long, value_name = "DEST")]
    pub to: String,

    /// Which streams and events.
    #[command(flatten)]
    pub selection: SelectionArgs,

    /// List the streams and count their events; write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Pace and parallelism.
    #[command(flatten)]
    pub quotas: QuotaArgs,
}
