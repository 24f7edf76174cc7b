//! What a copy or an archive run is asked to do: groups, selection, templates, quotas, and where
//! progress goes.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::client::LogsClient;
use super::limiter::Quotas;
use super::template::LogTemplate;
use crate::dataset::parquet::ParquetOptions;
use crate::store::StoreOptions;

/// Default number of streams in flight (being read or written) at once.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Events within this long of the 14-day (or retention) limit count as old already, so that
/// they are not rejected while the copy runs: one hour, in milliseconds.
pub const DEFAULT_AGE_MARGIN_MS: i64 = 3600 * 1000;
/// Rows per archive file before it is written out (per day partition).
pub const DEFAULT_ARCHIVE_FILE_ROWS: usize = 1_000_000;

/// Which task-log streams to take.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only these DAGs (exact ids).
    pub dag_ids: Vec<String>,
    /// Only DAGs whose id starts with one of these.
    pub dag_prefixes: Vec<String>,
    /// Only task tries in one of these states (needs `dataset`).
    pub states: Vec<String>,
    /// An exported dataset (directory or `s3://…`) whose task_instance and
    /// task_instance_history give run ids, logical dates, map indexes, tries and states.
    pub dataset: Option<String>,
}

/// What to do with events too old for PutLogEvents (14 days, or the target's retention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OldEvents {
    /// Stop before copying anything and say how many there are (the default).
    #[default]
    Refuse,
    /// Write them to the Parquet archive (no age limit) and copy the rest.
    Archive,
    /// Leave them out, counted in the summary.
    Skip,
}

/// Receives progress while logs are copied or archived. Called from many tasks.
pub trait LogsProgress: Send + Sync {
    /// `streams` streams are selected.
    fn planned(&self, streams: u64);
    /// `events` events of `bytes` bytes were written (or archived, or counted in a dry run).
    fn events(&self, events: u64, bytes: u64);
    /// A stream is finished; `throttles` calls were throttled so far in this run.
    fn stream_done(&self, throttles: u64);
}

/// A progress sink that ignores everything.
#[derive(Debug, Default)]
pub struct NoLogsProgress;

impl LogsProgress for NoLogsProgress {
    fn planned(&self, _: u64) {}
    fn events(&self, _: u64, _: u64) {}
    fn stream_done(&self, _: u64) {}
}

/// Settings both commands share.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) selection: Selection,
    pub(crate) source_template: Option<LogTemplate>,
    pub(crate) concurrency: usize,
    pub(crate) quotas: Quotas,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) store: StoreOptions,
    pub(crate) parquet: ParquetOptions,
    pub(crate) dry_run: bool,
    pub(crate) client: Option<Arc<dyn LogsClient>>,
    pub(crate) progress: Arc<dyn LogsProgress>,
    pub(crate) now: Option<DateTime<Utc>>,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            selection: Selection::default(),
            source_template: None,
            concurrency: DEFAULT_CONCURRENCY,
            quotas: Quotas::default(),
            endpoint_url: None,
            store: StoreOptions::default(),
            parquet: ParquetOptions::default(),
            dry_run: false,
            client: None,
            progress: Arc::new(NoLogsProgress),
            now: None,
        }
    }
}

/// Generates the `with_*` setters both option types share.
macro_rules! common_setters {
    () => {
        /// Which streams and events to take. Default: all.
        pub fn with_selection(mut self, selection: Selection) -> Self {
            self.common.selection = selection;
            self
        }

        /// The template of the source stream names. Default `None`: recognise each name.
        pub fn with_source_template(mut self, template: Option<LogTemplate>) -> Self {
            self.common.source_template = template;
            self
        }

        /// Streams in flight at once, at least 1. Default [`DEFAULT_CONCURRENCY`].
        pub fn with_concurrency(mut self, streams: usize) -> Self {
            self.common.concurrency = streams.max(1);
            self
        }

        /// Calls per second per API and the retry policy. Default: AWS's documented quotas.
        pub fn with_quotas(mut self, quotas: Quotas) -> Self {
            self.common.quotas = quotas;
            self
        }

        /// Sends CloudWatch Logs requests to `url`. Default: the standard AWS endpoint lookup
        /// (`AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`, `AWS_ENDPOINT_URL`, the profile).
        pub fn with_endpoint_url(mut self, url: Option<String>) -> Self {
            self.common.endpoint_url = url;
            self
        }

        /// How to open the dataset and archive stores. Default [`StoreOptions::default`].
        pub fn with_store(mut self, store: StoreOptions) -> Self {
            self.common.store = store;
            self
        }

        /// Lists the streams and counts their events; writes nothing. Default false.
        pub fn with_dry_run(mut self, dry_run: bool) -> Self {
            self.common.dry_run = dry_run;
            self
        }

        /// Uses `client` instead of connecting to AWS (the benchmark's quota model). Default:
        /// [`AwsLogsClient`](super::AwsLogsClient).
        pub fn with_client(mut self, client: Arc<dyn LogsClient>) -> Self {
            self.common.client = Some(client);
            self
        }

        /// Where progress goes. Default: nowhere.
        pub fn with_progress(mut self, progress: Arc<dyn LogsProgress>) -> Self {
            self.common.progress = progress;
            self
        }

        /// The time that ages are measured from. Default: the clock.
        pub fn with_now(mut self, now: DateTime<Utc>) -> Self {
            self.common.now = Some(now);
            self
        }
    };
}

/// `contrail logs copy`: from one group to another.
#[derive(Clone)]
pub struct CopyOptions {
    pub(crate) common: Common,
    pub(crate) from_group: String,
    pub(crate) to_group: String,
    pub(crate) target_template: Option<LogTemplate>,
    pub(crate) old_events: OldEvents,
    pub(crate) archive_to: Option<String>,
    pub(crate) checkpoint: Option<PathBuf>,
    pub(crate) create_target: bool,
}

impl CopyOptions {
    /// Copy the task logs of group `from` into group `to`.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        Self {
            common: Common::default(),
            from_group: from.into(),
            to_group: to.into(),
            target_template: None,
            old_events: OldEvents::default(),
            archive_to: None,
            checkpoint: None,
            create_target: false,
        }
    }

    common_setters!();

    /// The template the target environment's Airflow reads. Default `None`: keep every name.
    pub fn with_target_template(mut self, template: Option<LogTemplate>) -> Self {
        self.target_template = template;
        self
    }

    /// What to do with events PutLogEvents would reject for age. Default [`OldEvents::Refuse`].
    pub fn with_old_events(mut self, old: OldEvents) -> Self {
        self.old_events = old;
        self
    }

    /// Where `OldEvents::Archive` writes (a directory or `s3://…`). Default: the selection's
    /// dataset.
    pub fn with_archive_to(mut self, destination: Option<String>) -> Self {
        self.archive_to = destination;
        self
    }

    /// The checkpoint file: finished streams are recorded there and skipped by the next run.
    /// Default: none (a re-run still never duplicates events; see the module docs).
    pub fn with_checkpoint(mut self, path: Option<PathBuf>) -> Self {
        self.checkpoint = path;
        self
    }

    /// Creates the target group when it does not exist. Default false: that is an error.
    pub fn with_create_target(mut self, create: bool) -> Self {
        self.create_target = create;
        self
    }
}

/// `contrail logs archive`: a group's events to Parquet.
#[derive(Clone)]
pub struct ArchiveOptions {
    pub(crate) common: Common,
    pub(crate) group: String,
    pub(crate) destination: String,
}

impl ArchiveOptions {
    /// Archive the task logs of `group` to `destination` (a directory or `s3://bucket/prefix`).
    pub fn new(group: impl Into<String>, destination: impl Into<String>) -> Self {
        Self {
            common: Common::default(),
            group: group.into(),
            destination: destination.into(),
        }
    }

    common_setters!();
}
