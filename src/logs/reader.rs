//! Reading events: one stream forward with GetLogEvents, or many streams at once with
//! FilterLogEvents, each paced by its API's shared limiter.
//!
//! GetLogEvents may return empty pages before the end of a stream, so a stream is finished only
//! when the forward token comes back equal to the one sent. Tokens expire (after 24 hours in
//! AWS); an expired token restarts the read at the time of the last event seen, skipping the
//! events of that millisecond already delivered, so nothing is lost or repeated.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::{ApiError, ApiErrorKind, LogEvent, LogsClient};
use super::limiter::{Api, Limits};

/// Most streams one FilterLogEvents call may name.
pub const MAX_FILTER_STREAMS: usize = 100;

/// How many times in a row an expired token may restart a read before it is an error.
const MAX_RESTARTS: u32 = 5;

/// What every reader of a run shares: the client, the limiters, the group and the time window.
#[derive(Clone)]
pub(crate) struct ReadContext {
    pub(crate) client: Arc<dyn LogsClient>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) group: String,
    /// Inclusive lower bound, ms.
    pub(crate) start: Option<i64>,
    /// Exclusive upper bound, ms.
    pub(crate) end: Option<i64>,
}

impl ReadContext {
    fn in_window(&self, timestamp: i64) -> bool {
        self.start.is_none_or(|s| timestamp >= s) && self.end.is_none_or(|e| timestamp < e)
    }
}

/// Where a read stands: the last timestamp delivered and how many events of that millisecond
/// were delivered, so that a restart from that millisecond skips exactly those.
#[derive(Debug, Default, Clone)]
struct Position {
    last: Option<i64>,
    at_last: usize,
    /// Events of `last` to skip after a restart.
    skip: usize,
}

impl Position {
    /// Whether `event` is new, recording it if so.
    fn admit(&mut self, timestamp: i64) -> bool {
        if self.skip > 0 && Some(timestamp) == self.last {
            self.skip -= 1;
            return false;
        }
        self.skip = 0;
        if Some(timestamp) == self.last {
            self.at_last += 1;
        } else {
            self.last = Some(timestamp);
            self.at_last = 1;
        }
        true
    }

    fn restart(&mut self) {
        self.skip = self.at_last;
    }
}

/// Reads one stream, page by page, with GetLogEvents.
pub(crate) struct StreamReader {
    ctx: ReadContext,
    stream: String,
    token: Option<String>,
    position: Position,
    /// The start time of the requests: the window's, or where a restart resumed.
    read_start: Option<i64>,
    restarts: u32,
    done: bool,
    /// Calls made.
    pub(crate) calls: u64,
}

impl StreamReader {
    pub(crate) fn new(ctx: ReadContext, stream: String) -> Self {
        let read_start = ctx.start;
        Self {
            ctx,
            stream,
            token: None,
            position: Position::default(),
            read_start,
            restarts: 0,
            done: false,
            calls: 0,
        }
    }

    /// The next events, oldest first; `None` once the forward token repeats.
    ///
    /// # Errors
    /// The API error once retries (and token restarts) are exhausted.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<LogEvent>>, ApiError> {
        while !self.done {
            let sent = self.token.clone();
            let start = self.read_start;
            self.calls += 1;
            let result = self
                .ctx
                .limits
                .call(Api::GetEvents, || {
                    self.ctx.client.get_events(
                        &self.ctx.group,
                        &self.stream,
                        sent.clone(),
                        start,
                        self.ctx.end,
                    )
                })
                .await;
            let page = match result {
                Ok(page) => page,
                Err(error) if error.kind == ApiErrorKind::ExpiredToken && sent.is_some() => {
                    self.restart(error)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            self.restarts = 0;
            match (&sent, &page.next_forward_token) {
                (Some(sent), Some(next)) if sent == next => self.done = true,
                (_, None) => self.done = true,
                _ => {}
            }
            self.token = page.next_forward_token;
            let events: Vec<LogEvent> = page
                .events
                .into_iter()
                .filter(|e| self.ctx.in_window(e.timestamp) && self.position.admit(e.timestamp))
                .collect();
            if !events.is_empty() {
                return Ok(Some(events));
            }
        }
        Ok(None)
    }

    fn restart(&mut self, error: ApiError) -> Result<(), ApiError> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(error);
        }
        tracing::info!(stream = %self.stream, error = %error, "Restarting a read after an expired token.");
        self.token = None;
        self.read_start = self.position.last.or(self.ctx.start);
        self.position.restart();
        Ok(())
    }
}

/// Reads up to [`MAX_FILTER_STREAMS`] streams at once with FilterLogEvents.
pub(crate) struct GroupReader {
    ctx: ReadContext,
    streams: Vec<String>,
    token: Option<String>,
    positions: HashMap<String, Position>,
    restart_from: Option<i64>,
    restarted: bool,
    restarts: u32,
    done: bool,
    /// Calls made.
    pub(crate) calls: u64,
}

impl GroupReader {
    pub(crate) fn new(ctx: ReadContext, streams: Vec<String>) -> Self {
        Self {
            ctx,
            streams,
            token: None,
            positions: HashMap::new(),
            restart_from: None,
            restarted: false,
            restarts: 0,
            done: false,
            calls: 0,
        }
    }

    /// The next `(stream, event)` pairs; `None` after the last page.
    ///
    /// # Errors
    /// The API error once retries (and token restarts) are exhausted.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<(String, LogEvent)>>, ApiError> {
        while !self.done {
            let sent = self.token.clone();
            let start = self.restart_from.or(self.ctx.start);
            // FilterLogEvents' end bound is inclusive; ours is exclusive.
            let end = self.ctx.end.map(|e| e - 1);
            self.calls += 1;
            let result = self
                .ctx
                .limits
                .call(Api::FilterEvents, || {
                    self.ctx.client.filter_events(
                        &self.ctx.group,
                        &self.streams,
                        sent.clone(),
                        start,
                        end,
                    )
                })
                .await;
            let page = match result {
                Ok(page) => page,
                Err(error) if error.kind == ApiErrorKind::ExpiredToken && sent.is_some() => {
                    self.restarts += 1;
                    if self.restarts > MAX_RESTARTS {
                        return Err(error);
                    }
                    // Restart at the earliest last-seen time of any stream (from the window's
                    // start while some stream has delivered nothing): every stream then skips
                    // what it already delivered.
                    let all_seen = self.streams.iter().all(|s| self.positions.contains_key(s));
                    self.restart_from = if all_seen {
                        self.positions.values().filter_map(|p| p.last).min()
                    } else {
                        None
                    };
                    self.restarted = true;
                    self.token = None;
                    for position in self.positions.values_mut() {
                        position.restart();
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            self.restarts = 0;
            self.done = page.next_token.is_none();
            self.token = page.next_token;
            let restarted = self.restarted;
            let mut events = Vec::with_capacity(page.events.len());
            for (stream, event) in page.events {
                if !self.ctx.in_window(event.timestamp) {
                    continue;
                }
                let position = self.positions.entry(stream.clone()).or_default();
                // After a restart, events before this stream's last one were all delivered.
                if restarted && position.last.is_some_and(|l| event.timestamp < l) {
                    continue;
                }
                if position.admit(event.timestamp) {
                    events.push((stream, event));
                }
            }
            if !events.is_empty() {
                return Ok(Some(events));
            }
        }
        Ok(None)
    }
}

/// Every event of `stream` in `group` (in `[start, end)` ms when given), oldest first, read
/// with GetLogEvents through `client` at its default quotas.
///
/// # Errors
/// The API error once retries are exhausted.
pub async fn read_stream(
    client: Arc<dyn LogsClient>,
    group: &str,
    stream: &str,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<Vec<LogEvent>, ApiError> {
    let ctx = ReadContext {
        client,
        limits: Arc::new(Limits::new(super::limiter::Quotas::default())),
        group: group.to_owned(),
        start,
        end,
    };
    let mut reader = StreamReader::new(ctx, stream.to_owned());
    let mut out = Vec::new();
    while let Some(page) = reader.next_page().await? {
        out.extend(page);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
