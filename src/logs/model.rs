//! An in-memory CloudWatch Logs that behaves as AWS documents it, for the benchmark (and, with
//! its limits lifted, for unit tests): per-API TPS quotas with a one-second burst, pages of at
//! most 10,000 events and 1 MiB, a 20–50 ms latency per call, the PutLogEvents rules (which it
//! refuses, as AWS does, with InvalidParameterException) and the 14-day rejection.
//!
//! Streams can be generated (a count of events, a start time and a step, messages made on
//! read) so that millions of events cost no memory; written streams may keep only counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::batch::{EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS};
use super::client::{
    ApiError, ApiErrorKind, ApiResult, EventPage, FilterPage, GroupInfo, LogEvent, LogsClient,
    PutOutcome, RejectedInfo, StreamInfo, StreamPage,
};
use super::limiter::{Api, Quotas, unit_random};

/// Events older than this are rejected by PutLogEvents (14 days, in ms).
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// Events further in the future than this are rejected (2 hours, in ms).
const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;

/// The model's settings.
#[derive(Debug, Clone)]
pub struct QuotaModelOptions {
    quotas: Option<Quotas>,
    /// The service's burst, in seconds of each quota.
    burst_seconds: f64,
    latency: (Duration, Duration),
    page_events: usize,
    page_bytes: usize,
    keep_messages: bool,
    empty_pages: usize,
}

impl Default for QuotaModelOptions {
    fn default() -> Self {
        Self {
            quotas: Some(Quotas::default()),
            burst_seconds: 1.0,
            latency: (Duration::from_millis(20), Duration::from_millis(50)),
            page_events: MAX_BATCH_EVENTS,
            page_bytes: MAX_BATCH_BYTES,
            keep_messages: true,
            empty_pages: 0,
        }
    }
}

impl QuotaModelOptions {
    /// No quotas, no latency: a plain in-memory service for tests.
    pub fn unlimited() -> Self {
        Self {
            quotas: None,
            latency: (Duration::ZERO, Duration::ZERO),
            ..Self::default()
        }
    }

    /// Quotas and latencies as AWS's, with time running `factor` times faster: every quota
    /// multiplied and every latency divided by it. Default factor 1.
    pub fn with_time_scale(mut self, factor: f64) -> Self {
        let factor = factor.max(0.001);
        self.quotas = self.quotas.map(|q| q.scaled(factor));
        self.burst_seconds /= factor;
        self.latency = (
            self.latency.0.div_f64(factor),
            self.latency.1.div_f64(factor),
        );
        self
    }

    /// Sets the page limits of GetLogEvents and FilterLogEvents; default 10,000 events and
    /// 1 MiB (message bytes plus 26 per event).
    pub fn with_page_limits(mut self, events: usize, bytes: usize) -> Self {
        self.page_events = events.max(1);
        self.page_bytes = bytes.max(1);
        self
    }

    /// Whether written streams keep their events (default) or only count them.
    pub fn with_keep_messages(mut self, keep: bool) -> Self {
        self.keep_messages = keep;
        self
    }

    /// Makes GetLogEvents return `n` empty pages before every page with events (AWS may).
    pub fn with_empty_pages(mut self, n: usize) -> Self {
        self.empty_pages = n;
        self
    }
}

/// A stream of the model.
#[derive(Debug, Clone)]
pub enum ModelStream {
    /// Events kept in memory.
    Stored(Vec<LogEvent>),
    /// `events` events, the i-th at `first + i * step` ms, each message `message_bytes` long.
    Generated {
        /// Number of events.
        events: usize,
        /// Time of the first event, ms.
        first: i64,
        /// Milliseconds between events.
        step: i64,
        /// Bytes per message.
        message_bytes: usize,
    },
}

impl ModelStream {
    fn len(&self) -> usize {
        match self {
            ModelStream::Stored(events) => events.len(),
            ModelStream::Generated { events, .. } => *events,
        }
    }

    fn event(&self, index: usize) -> Option<LogEvent> {
        match self {
            ModelStream::Stored(events) => events.get(index).cloned(),
            ModelStream::Generated {
                events,
                first,
                step,
                message_bytes,
            } => (index < *events).then(|| {
                let timestamp = first + step * index as i64;
                let message = format!("{index:x>message_bytes$}");
                LogEvent {
                    timestamp,
                    ingestion_time: timestamp,
                    message,
                }
            }),
        }
    }

    fn timestamp(&self, index: usize) -> i64 {
        match self {
            ModelStream::Stored(events) => {
                events.get(index).map(|e| e.timestamp).unwrap_or(i64::MAX)
            }
            ModelStream::Generated { first, step, .. } => first + step * index as i64,
        }
    }

    /// Index of the first event at or after `time`.
    fn seek(&self, time: i64) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.timestamp(mid) < time {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[derive(Debug, Default)]
struct WrittenStream {
    events: Vec<LogEvent>,
    count: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Group {
    retention_days: Option<i32>,
    created: BTreeMap<String, i64>,
    source: HashMap<String, ModelStream>,
    written: HashMap<String, WrittenStream>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The in-memory service.
#[derive(Debug)]
pub struct QuotaModel {
    options: QuotaModelOptions,
    groups: Mutex<HashMap<String, Group>>,
    buckets: Mutex<HashMap<Api, Bucket>>,
    calls: Mutex<HashMap<Api, (u64, u64)>>,
}

impl QuotaModel {
    /// An empty service.
    pub fn new(options: QuotaModelOptions) -> Self {
        Self {
            options,
            groups: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Adds group `name` with `retention_days` (`None`: never expire).
    pub fn add_group(&self, name: &str, retention_days: Option<i32>) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.entry(name.to_owned()).or_default().retention_days = retention_days;
    }

    /// Adds (or replaces) stream `name` of `group` (created if needed) holding `stream`.
    pub fn add_stream(&self, group: &str, name: &str, stream: ModelStream) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let group = groups.entry(group.to_owned()).or_default();
        group.created.insert(name.to_owned(), 0);
        group.source.insert(name.to_owned(), stream);
    }

    /// The events written to `stream` of `group` by PutLogEvents (empty when messages are not
    /// kept), in time order.
    pub fn written(&self, group: &str, stream: &str) -> Vec<LogEvent> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let mut events = groups
            .get(group)
            .and_then(|g| g.written.get(stream))
            .map(|w| w.events.clone())
            .unwrap_or_default();
        events.sort_by_key(|e| e.timestamp);
        events
    }

    /// Events and bytes written to every stream of `group`.
    pub fn written_totals(&self, group: &str) -> (u64, u64) {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .get(group)
            .map(|g| {
                g.written
                    .values()
                    .fold((0, 0), |(e, b), w| (e + w.count, b + w.bytes))
            })
            .unwrap_or_default()
    }

    /// Names of the streams of `group` that exist, sorted.
    pub fn stream_names(&self, group: &str) -> Vec<String> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .get(group)
            .map(|g| g.created.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls answered and calls throttled, per API name.
    pub fn calls(&self) -> BTreeMap<&'static str, (u64, u64)> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls
            .iter()
            .map(|(api, counts)| (api.name(), *counts))
            .collect()
    }

    /// Waits half the latency, applies the quota, waits the rest.
    async fn enter(&self, api: Api) -> ApiResult<()> {
        let (low, high) = self.options.latency;
        let latency = low + (high.saturating_sub(low)).mul_f64(unit_random());
        if !latency.is_zero() {
            tokio::time::sleep(latency / 2).await;
        }
        let admitted = match &self.options.quotas {
            None => true,
            Some(quotas) => {
                let tps = quotas.tps(api);
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let capacity = (tps * self.options.burst_seconds).max(1.0);
                let bucket = buckets.entry(api).or_insert(Bucket {
                    tokens: capacity,
                    last: now,
                });
                let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
                bucket.last = now;
                bucket.tokens = (bucket.tokens + elapsed * tps).min(capacity);
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let entry = calls.entry(api).or_default();
            if admitted {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency - latency / 2).await;
        }
        if admitted {
            Ok(())
        } else {
            Err(ApiError::new(
                ApiErrorKind::Throttled,
                format!("ThrottlingException: Rate exceeded for {}", api.name()),
            ))
        }
    }

    fn page(&self, stream: &ModelStream, from: usize, to: usize) -> (Vec<LogEvent>, usize) {
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while index < to && events.len() < self.options.page_events {
            let Some(event) = stream.event(index) else {
                break;
            };
            let size = event.message.len() + EVENT_OVERHEAD_BYTES;
            if !events.is_empty() && bytes + size > self.options.page_bytes {
                break;
            }
            bytes += size;
            events.push(event);
            index += 1;
        }
        (events, index)
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!("ResourceNotFoundException: The specified {what} does not exist."),
    )
}

fn parse_token(token: &str, prefix: &str) -> ApiResult<usize> {
    token
        .strip_prefix(prefix)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorKind::ExpiredToken,
                "InvalidParameterException: The specified nextToken is invalid.",
            )
        })
}

impl LogsClient for QuotaModel {
    fn region(&self) -> &str {
        "model"
    }

    fn describe_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<Option<GroupInfo>>> {
        Box::pin(async move {
            self.enter(Api::Groups).await?;
            let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            Ok(groups.get(name).map(|g| GroupInfo {
                name: name.to_owned(),
                retention_days: g.retention_days,
            }))
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.enter(Api::Groups).await?;
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            if groups.contains_key(name) {
                return Err(ApiError::new(
                    ApiErrorKind::AlreadyExists,
                    "ResourceAlreadyExistsException: The specified log group already exists",
                ));
            }
            groups.insert(name.to_owned(), Group::default());
            Ok(())
        })
    }

    fn describe_streams<'a>(
        &'a self,
        group: &'a str,
        prefix: Option<&'a str>,
        token: Option<String>,
    ) -> BoxFuture<'a, ApiResult<StreamPage>> {
        Box::pin(async move {
            self.enter(Api::DescribeStreams).await?;
            let from = token
                .as_deref()
                .map(|t| parse_token(t, "d/"))
                .transpose()?
                .unwrap_or(0);
            let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let group = groups.get(group).ok_or_else(|| not_found("log group"))?;
            let names: Vec<&String> = group
                .created
                .keys()
                .filter(|n| prefix.is_none_or(|p| n.starts_with(p)))
                .collect();
            let page: Vec<StreamInfo> = names
                .iter()
                .skip(from)
                .take(50)
                .map(|name| {
                    let stream = group.source.get(*name);
                    let len = stream.map(ModelStream::len).unwrap_or(0);
                    let first = stream.filter(|_| len > 0).map(|s| s.timestamp(0));
                    let last = stream.filter(|_| len > 0).map(|s| s.timestamp(len - 1));
                    StreamInfo {
                        name: (*name).clone(),
                        creation_time: group.created.get(*name).copied().unwrap_or(0),
                        first_event: first,
                        last_event: last,
                        last_ingestion: last,
                    }
                })
                .collect();
            let next = from + page.len();
            Ok(StreamPage {
                streams: page,
                next_token: (next < names.len()).then(|| format!("d/{next}")),
            })
        })
    }

    fn get_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<EventPage>> {
        Box::pin(async move {
            self.enter(Api::GetEvents).await?;
            let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let group = groups.get(group).ok_or_else(|| not_found("log group"))?;
            let Some(source) = group.source.get(stream) else {
                return if group.created.contains_key(stream) {
                    Ok(EventPage {
                        events: Vec::new(),
                        next_forward_token: Some(token.unwrap_or_else(|| "f/0/0".to_owned())),
                    })
                } else {
                    Err(not_found("log stream"))
                };
            };
            let from_start = start.map(|s| source.seek(s)).unwrap_or(0);
            let to = end.map(|e| source.seek(e)).unwrap_or(source.len());
            // A token is `f/<next index>/<empty pages already given at it>`.
            let (from, empties) = match token.as_deref() {
                None => (from_start, 0),
                Some(t) => {
                    let rest = t.strip_prefix("f/").unwrap_or_default();
                    let (index, empties) = rest.split_once('/').unwrap_or((rest, "0"));
                    (
                        parse_token(&format!("f/{index}"), "f/")?,
                        empties.parse::<usize>().unwrap_or(0),
                    )
                }
            };
            if from >= to {
                // The end: the same token again.
                return Ok(EventPage {
                    events: Vec::new(),
                    next_forward_token: Some(token.unwrap_or_else(|| format!("f/{from}/0"))),
                });
            }
            if empties < self.options.empty_pages {
                return Ok(EventPage {
                    events: Vec::new(),
                    next_forward_token: Some(format!("f/{from}/{}", empties + 1)),
                });
            }
            let (events, next) = self.page(source, from, to);
            Ok(EventPage {
                events,
                next_forward_token: Some(format!("f/{next}/0")),
            })
        })
    }

    fn filter_events<'a>(
        &'a self,
        group: &'a str,
        streams: &'a [String],
        token: Option<String>,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BoxFuture<'a, ApiResult<FilterPage>> {
        Box::pin(async move {
            self.enter(Api::FilterEvents).await?;
            if streams.len() > 100 {
                return Err(ApiError::new(
                    ApiErrorKind::Invalid,
                    "InvalidParameterException: at most 100 log stream names",
                ));
            }
            let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let group = groups.get(group).ok_or_else(|| not_found("log group"))?;
            // A token is `s<stream position>/<event index>`; streams are read one after another.
            let (mut position, mut index) = match token.as_deref() {
                None => (0, None),
                Some(t) => {
                    let rest = t.strip_prefix('s').unwrap_or_default();
                    let (p, i) = rest.split_once('/').unwrap_or(("x", "x"));
                    (
                        parse_token(&format!("s{p}"), "s")?,
                        Some(parse_token(&format!("s{i}"), "s")?),
                    )
                }
            };
            let mut events = Vec::new();
            let mut bytes = 0;
            while position < streams.len() {
                let name = &streams[position];
                let Some(source) = group.source.get(name) else {
                    position += 1;
                    index = None;
                    continue;
                };
                let from = index.unwrap_or_else(|| start.map(|s| source.seek(s)).unwrap_or(0));
                // FilterLogEvents' end is inclusive.
                let to = end
                    .map(|e| source.seek(e.saturating_add(1)))
                    .unwrap_or(source.len());
                let mut i = from;
                while i < to && events.len() < self.options.page_events {
                    let Some(event) = source.event(i) else {
                        break;
                    };
                    let size = event.message.len() + EVENT_OVERHEAD_BYTES;
                    if !events.is_empty() && bytes + size > self.options.page_bytes {
                        break;
                    }
                    bytes += size;
                    events.push((name.clone(), event));
                    i += 1;
                }
                if i < to {
                    return Ok(FilterPage {
                        events,
                        next_token: Some(format!("s{position}/{i}")),
                    });
                }
                position += 1;
                index = None;
            }
            Ok(FilterPage {
                events,
                next_token: None,
            })
        })
    }

    fn create_stream<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.enter(Api::CreateStream).await?;
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let group = groups
                .get_mut(group)
                .ok_or_else(|| not_found("log group"))?;
            if group.created.contains_key(stream) {
                return Err(ApiError::new(
                    ApiErrorKind::AlreadyExists,
                    "ResourceAlreadyExistsException: The specified log stream already exists",
                ));
            }
            group
                .created
                .insert(stream.to_owned(), chrono::Utc::now().timestamp_millis());
            Ok(())
        })
    }

    fn put_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, ApiResult<PutOutcome>> {
        Box::pin(async move {
            self.enter(Api::PutEvents).await?;
            let invalid = |message: &str| {
                Err(ApiError::new(
                    ApiErrorKind::Invalid,
                    format!("InvalidParameterException: {message}"),
                ))
            };
            let bytes: usize = events
                .iter()
                .map(|e| e.message.len() + EVENT_OVERHEAD_BYTES)
                .sum();
            if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
                return invalid("a batch holds 1 to 10,000 events");
            }
            if bytes > MAX_BATCH_BYTES {
                return invalid("the batch is larger than 1,048,576 bytes");
            }
            if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
                return invalid(
                    "log events in a single PutLogEvents request must be in chronological order",
                );
            }
            if let (Some(first), Some(last)) = (events.first(), events.last())
                && last.timestamp - first.timestamp >= MAX_BATCH_SPAN_MS
            {
                return invalid("a batch of log events cannot span more than 24 hours");
            }
            let now = chrono::Utc::now().timestamp_millis();
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            let group = groups
                .get_mut(group)
                .ok_or_else(|| not_found("log group"))?;
            if !group.created.contains_key(stream) {
                return Err(not_found("log stream"));
            }
            let oldest = now - MAX_AGE_MS;
            let expired = group
                .retention_days
                .map(|d| now - i64::from(d) * 24 * 3600 * 1000);
            let too_old = events.iter().take_while(|e| e.timestamp < oldest).count();
            let expired_end = expired
                .map(|cut| events.iter().take_while(|e| e.timestamp < cut).count())
                .unwrap_or(0);
            let too_new_from = events
                .iter()
                .position(|e| e.timestamp > now + MAX_FUTURE_MS)
                .unwrap_or(events.len());
            let accepted_from = too_old.max(expired_end);
            let accepted = &events[accepted_from.min(too_new_from)..too_new_from];
            let written = group.written.entry(stream.to_owned()).or_default();
            written.count += accepted.len() as u64;
            written.bytes += accepted.iter().map(|e| e.message.len() as u64).sum::<u64>();
            if self.options.keep_messages {
                written.events.extend_from_slice(accepted);
                // What was written can be read back, in time order.
                let mut readable = written.events.clone();
                readable.sort_by_key(|e| e.timestamp);
                group
                    .source
                    .insert(stream.to_owned(), ModelStream::Stored(readable));
            }
            let rejected =
                (too_old > 0 || expired_end > 0 || too_new_from < events.len()).then(|| {
                    RejectedInfo {
                        too_new_start_index: (too_new_from < events.len())
                            .then_some(too_new_from as i32),
                        too_old_end_index: (too_old > 0).then_some(too_old as i32),
                        expired_end_index: (expired_end > 0).then_some(expired_end as i32),
                    }
                });
            Ok(PutOutcome { rejected })
        })
    }
}
