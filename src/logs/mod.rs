//! CloudWatch Logs: copy task-log streams between groups (renaming them across Airflow's log
//! filename templates) and archive them to Parquet, within the account's API quotas.
//!
//! This module owns listing, reading, renaming, batching and writing log events, the shared
//! per-API rate limiters, the checkpoint and the archive. It does not know clap (that is
//! `cli`), and it reaches an exported dataset only through [`crate::dataset`] and
//! [`crate::store`].
//!
//! The copier talks to CloudWatch through the [`LogsClient`] trait: [`AwsLogsClient`] is the
//! real one (aws-sdk-cloudwatchlogs); [`QuotaModel`] is an in-memory service that enforces AWS's
//! documented quotas and latencies, for the benchmark.

mod archive;
mod aws;
mod batch;
mod checkpoint;
mod client;
mod copy;
mod lanes;
mod limiter;
mod model;
mod options;
mod plan;
mod reader;
mod run;
mod select;
mod template;
#[cfg(test)]
mod testing;
mod writer;

pub use archive::{
    ARCHIVE_SCHEMA_VERSION, ARCHIVE_TABLE, ArchiveOutput, LOGS_MANIFEST_DIR, archive_schema,
};
pub use aws::AwsLogsClient;
pub use batch::{
    Batch, Batcher, EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS,
    event_bytes,
};
pub use checkpoint::{CHECKPOINT_FORMAT, Checkpoint, Finished};
pub use client::{
    ApiError, ApiErrorKind, ApiResult, EventPage, FilterPage, GroupInfo, LogEvent, LogsClient,
    PutOutcome, RejectedInfo, StreamInfo, StreamPage,
};
pub use copy::copy;
pub use limiter::{Api, Quotas, RateLimiter};
pub use limiter::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_BURST_SECONDS, DEFAULT_CREATE_STREAM_TPS,
    DEFAULT_DESCRIBE_STREAMS_TPS, DEFAULT_FILTER_EVENTS_TPS, DEFAULT_GET_EVENTS_TPS,
    DEFAULT_GROUP_TPS, DEFAULT_MAX_ATTEMPTS, DEFAULT_PUT_EVENTS_TPS,
};
pub use model::{ModelStream, QuotaModel, QuotaModelOptions};
pub use options::{
    ArchiveOptions, CopyOptions, DEFAULT_AGE_MARGIN_MS, DEFAULT_ARCHIVE_FILE_ROWS,
    DEFAULT_CONCURRENCY, LogsProgress, NoLogsProgress, OldEvents, Selection,
};
pub use plan::{ArchiveSummary, CopySummary, StreamReport};
pub use reader::{MAX_FILTER_STREAMS, read_stream};
pub use run::archive;
pub use template::{LogTemplate, TaskTry, sanitize};

#[cfg(test)]
mod tests;
