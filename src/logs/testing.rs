//! A fault-injecting CloudWatch Logs for unit tests: the quota model without limits, plus
//! errors queued per API and pagination tokens that expire on demand.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::client::{
    ApiError, ApiErrorKind, ApiResult, EventPage, FilterPage, GroupInfo, LogEvent, LogsClient,
    PutOutcome, StreamPage,
};
use super::limiter::Api;
use super::model::{QuotaModel, QuotaModelOptions};

/// The model, with faults on top.
pub(crate) struct Faulty {
    pub(crate) model: QuotaModel,
    faults: Mutex<HashMap<Api, VecDeque<ApiErrorKind>>>,
    /// Calls with a token left before the next token is refused as expired.
    expire_after: Mutex<Option<usize>>,
    pub(crate) calls: Mutex<HashMap<Api, usize>>,
    pub(crate) put_sizes: Mutex<Vec<usize>>,
}

impl Faulty {
    pub(crate) fn new(options: QuotaModelOptions) -> Self {
        Self {
            model: QuotaModel::new(options),
            faults: Mutex::new(HashMap::new()),
            expire_after: Mutex::new(None),
            calls: Mutex::new(HashMap::new()),
            put_sizes: Mutex::new(Vec::new()),
        }
    }

    /// The next calls of `api` fail with `kinds`, in order.
    pub(crate) fn fail(&self, api: Api, kinds: &[ApiErrorKind]) {
        self.faults
            .lock()
            .unwrap()
            .entry(api)
            .or_default()
            .extend(kinds);
    }

    /// After `calls` more calls that carry a token, the next one is refused as expired.
    pub(crate) fn expire_token_after(&self, calls: usize) {
        *self.expire_after.lock().unwrap() = Some(calls);
    }

    pub(crate) fn calls(&self, api: Api) -> usize {
        self.calls.lock().unwrap().get(&api).copied().unwrap_or(0)
    }

    fn enter(&self, api: Api, token: Option<&String>) -> ApiResult<()> {
        *self.calls.lock().unwrap().entry(api).or_default() += 1;
        if token.is_some() {
            let mut expire = self.expire_after.lock().unwrap();
            if let Some(left) = expire.as_mut() {
                if *left == 0 {
                    *expire = None;
                    return Err(ApiError::new(
                        ApiErrorKind::ExpiredToken,
                        "InvalidParameterException: The specified nextToken has expired.",
                    ));
                }
                *left -= 1;
            }
        }
        match self
            .faults
            .lock()
            .unwrap()
            .get_mut(&api)
            .and_then(VecDeque::pop_front)
        {
            Some(kind) => Err(ApiError::new(kind, format!("injected {kind:?}"))),
            None => Ok(()),
        }
    }
}

impl LogsClient for Faulty {
    fn region(&self) -> &str {
        "test"
    }

    fn describe_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<Option<GroupInfo>>> {
        Box::pin(async move {
            self.enter(Api::Groups, None)?;
            self.model.describe_group(name).await
        })
    }

    fn create_group<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.enter(Api::Groups, None)?;
            self.model.create_group(name).await
        })
    }

    fn describe_streams<'a>(
        &'a self,
        group: &'a str,
        prefix: Option<&'a str>,
        token: Option<String>,
    ) -> BoxFuture<'a, ApiResult<StreamPage>> {
        Box::pin(async move {
            self.enter(Api::DescribeStreams, None)?;
            self.model.describe_streams(group, prefix, token).await
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
            self.enter(Api::GetEvents, token.as_ref())?;
            self.model
                .get_events(group, stream, token, start, end)
                .await
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
            self.enter(Api::FilterEvents, token.as_ref())?;
            self.model
                .filter_events(group, streams, token, start, end)
                .await
        })
    }

    fn create_stream<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
    ) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            self.enter(Api::CreateStream, None)?;
            self.model.create_stream(group, stream).await
        })
    }

    fn put_events<'a>(
        &'a self,
        group: &'a str,
        stream: &'a str,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, ApiResult<PutOutcome>> {
        Box::pin(async move {
            self.enter(Api::PutEvents, None)?;
            self.put_sizes.lock().unwrap().push(events.len());
            self.model.put_events(group, stream, events).await
        })
    }
}

/// `n` events a second apart from `first` ms, with messages `"<prefix> <i>"`.
pub(crate) fn events(first: i64, n: usize, prefix: &str) -> Vec<LogEvent> {
    (0..n)
        .map(|i| LogEvent {
            timestamp: first + i as i64 * 1000,
            ingestion_time: first + i as i64 * 1000,
            message: format!("{prefix} {i}"),
        })
        .collect()
}
