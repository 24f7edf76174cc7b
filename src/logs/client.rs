//! The CloudWatch Logs calls the copier makes, as a trait, and the values they exchange.
//!
//! The trait exists because the copier runs against three services: AWS itself (through
//! [`AwsLogsClient`](super::AwsLogsClient)), the benchmark's quota model, and the unit tests'
//! fault-injecting fake. Every method is one API call: no retries, no pacing (the caller's
//! limiter and retry loop do that), so a fake can count calls exactly.

use futures_util::future::BoxFuture;

/// One log event as CloudWatch stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// When CloudWatch received it, milliseconds since the Unix epoch (0 when unknown).
    pub ingestion_time: i64,
    /// The message.
    pub message: String,
}

/// A log group's properties that matter for copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Retention in days; `None` means events never expire.
    pub retention_days: Option<i32>,
}

/// One log stream as DescribeLogStreams lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's name.
    pub name: String,
    /// Creation time (ms since the epoch).
    pub creation_time: i64,
    /// Time of the first event (ms), if any event was ever written.
    pub first_event: Option<i64>,
    /// Time of the last event (ms); eventually consistent in AWS (usually within an hour).
    pub last_event: Option<i64>,
    /// Time of the last ingestion (ms).
    pub last_ingestion: Option<i64>,
}

/// One page of DescribeLogStreams.
#[derive(Debug, Clone, Default)]
pub struct StreamPage {
    /// The streams of this page.
    pub streams: Vec<StreamInfo>,
    /// The token of the next page; `None` after the last one.
    pub next_token: Option<String>,
}

/// One page of GetLogEvents.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// The events, oldest first; may be empty before the end of the stream.
    pub events: Vec<LogEvent>,
    /// The forward token; equal to the token sent once the end is reached.
    pub next_forward_token: Option<String>,
}

/// One page of FilterLogEvents: events of several streams, each tagged with its stream.
#[derive(Debug, Clone, Default)]
pub struct FilterPage {
    /// `(stream, event)`, by time.
    pub events: Vec<(String, LogEvent)>,
    /// The token of the next page; `None` after the last one.
    pub next_token: Option<String>,
}

/// What PutLogEvents rejected, as index bounds into the batch sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectedInfo {
    /// Events from this index on are more than 2 hours in the future.
    pub too_new_start_index: Option<i32>,
    /// Events up to and excluding this index are older than 14 days.
    pub too_old_end_index: Option<i32>,
    /// Events up to and excluding this index are older than the group's retention.
    pub expired_end_index: Option<i32>,
}

impl RejectedInfo {
    /// How many of a batch of `len` events were rejected.
    pub fn rejected(&self, len: usize) -> usize {
        let len = len as i64;
        let old = i64::from(
            self.too_old_end_index
                .unwrap_or(0)
                .max(self.expired_end_index.unwrap_or(0)),
        )
        .clamp(0, len);
        let new_from = i64::from(self.too_new_start_index.unwrap_or(len as i32)).clamp(old, len);
        (old + (len - new_from)) as usize
    }
}

/// The result of PutLogEvents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Events CloudWatch refused individually, if any.
    pub rejected: Option<RejectedInfo>,
}

/// The kinds of API failure the copier branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// ThrottlingException or a rate exceeded: slow down and retry.
    Throttled,
    /// ServiceUnavailableException, a 5xx or a dropped connection: retry.
    Unavailable,
    /// ResourceNotFoundException: the group or stream does not exist.
    NotFound,
    /// ResourceAlreadyExistsException: creating what exists.
    AlreadyExists,
    /// A pagination token the service no longer accepts (they expire after 24 hours).
    ExpiredToken,
    /// InvalidParameterException and other requests the service refuses as malformed.
    Invalid,
    /// Missing or refused credentials, or access denied.
    Auth,
    /// Anything else.
    Other,
}

/// A failed API call: what kind of failure, and the service's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ApiErrorKind,
    /// The service's message, with its error code.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether the call may succeed if repeated later: throttling and unavailability.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Throttled | ApiErrorKind::Unavailable
        )
    }
}

/// Result of one API call.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// The CloudWatch Logs operations the copier uses, one method per API call.
///
/// Implementations MUST make exactly one call per method (no retries, no pacing) and MUST map
/// failures to the [`ApiErrorKind`] that describes them: throttling to `Throttled`, a rejected
/// pagination token to `ExpiredToken`, a missing group or stream to `NotFound`.
pub trait LogsClient: Send + Sync {
    /// The region (or a name of the service) for messages.
    fn region(&self) -> &str;

    /// The group named exactly `name`, or `None` when it does not exist (DescribeLogGroups).
    fn describe_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<Option<GroupInfo>>>;

    /// Creates group `name` (CreateLogGroup).
    fn create_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<()>>;

    /// One page of the streams of `group` whose names start with `prefix`, by name
    /// (DescribeLogStreams, up to 50 a page).
    fn describe_streams<'a>(
        &'a self,
        group: &'a str,
        prefix: Option<&'a str>,
        token: Option<String>,
    ) -> BoxFuture<'a, ApiResult<StreamPage>>;

    /// One forward page of `stream` from its head (GetLogEvents with startFromHead), in
    /// `[start, end)` milliseconds when given.
    fn get_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<EventPage>>;

    /// One page of the events of `streams` (at most 100) of `group`, in `[start, end]`
    /// milliseconds when given (FilterLogEvents; its end bound is inclusive).
    fn filter_events<'a>(
        &'a self,
        group: &'a str,
        streams: &'a [String],
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<FilterPage>>;

    /// Creates `stream` in `group` (CreateLogStream).
    fn create_stream<'a>(&'a self, group: &'a str, stream: &'a str)
    -> BoxFuture<'a, ApiResult<()>>;

    /// Writes `events` (chronological, within PutLogEvents' limits) to `stream`.
    fn put_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, ApiResult<PutOutcome>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_counts_both_ends() {
        let info = RejectedInfo {
            too_old_end_index: Some(3),
            expired_end_index: Some(2),
            too_new_start_index: Some(8),
        };
        assert_eq!(info.rejected(10), 5);
        assert_eq!(RejectedInfo::default().rejected(10), 0);
        let all_new = RejectedInfo {
            too_new_start_index: Some(0),
            ..Default::default()
        };
        assert_eq!(all_new.rejected(4), 4);
        // Indexes past the batch are clamped.
        let odd = RejectedInfo {
            too_old_end_index: Some(50),
            ..Default::default()
        };
        assert_eq!(odd.rejected(4), 4);
    }
}
