//! One rate limiter per CloudWatch Logs API, shared by every worker, and the one retry loop.
//!
//! Quotas are per account and region, so pacing must be global: each API gets a token bucket
//! refilled at its quota, that callers reserve a slot in before each call (reservations queue in
//! order, so no worker starves and nobody spins). A throttled call lowers that API's rate
//! multiplicatively; successes raise it back additively, never past the quota. Throttled and
//! unavailable calls are retried with capped exponential backoff and full jitter.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::client::{ApiErrorKind, ApiResult};

/// Default GetLogEvents quota (AWS: 25 TPS per account and region; 10 in some regions).
pub const DEFAULT_GET_EVENTS_TPS: f64 = 25.0;
/// Default FilterLogEvents quota (AWS: 10 TPS; 25 in us-east-1).
pub const DEFAULT_FILTER_EVENTS_TPS: f64 = 10.0;
/// Default DescribeLogStreams quota (AWS: 25 TPS).
pub const DEFAULT_DESCRIBE_STREAMS_TPS: f64 = 25.0;
/// Default CreateLogStream quota (AWS: 50 TPS).
pub const DEFAULT_CREATE_STREAM_TPS: f64 = 50.0;
/// Default PutLogEvents quota (AWS: 5,000 TPS).
pub const DEFAULT_PUT_EVENTS_TPS: f64 = 5000.0;
/// Default quota of the rare group calls, DescribeLogGroups and CreateLogGroup (AWS: 5 TPS).
pub const DEFAULT_GROUP_TPS: f64 = 5.0;
/// Default attempts per call, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Default first backoff after a throttled or failed call; it doubles per attempt.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Default longest backoff.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Default burst of each limiter, in seconds of its quota: half a second. Arrival times at the
/// service jitter with latency, and a client that keeps some of the service's burst in reserve
/// is not throttled by it.
pub const DEFAULT_BURST_SECONDS: f64 = 0.5;

/// The CloudWatch Logs APIs the copier calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// DescribeLogGroups and CreateLogGroup.
    Groups,
    /// DescribeLogStreams.
    DescribeStreams,
    /// GetLogEvents.
    GetEvents,
    /// FilterLogEvents.
    FilterEvents,
    /// CreateLogStream.
    CreateStream,
    /// PutLogEvents.
    PutEvents,
}

impl Api {
    /// Every API, in a fixed order.
    pub const ALL: [Api; 6] = [
        Api::Groups,
        Api::DescribeStreams,
        Api::GetEvents,
        Api::FilterEvents,
        Api::CreateStream,
        Api::PutEvents,
    ];

    /// The AWS name of the API.
    pub fn name(self) -> &'static str {
        match self {
            Api::Groups => "DescribeLogGroups",
            Api::DescribeStreams => "DescribeLogStreams",
            Api::GetEvents => "GetLogEvents",
            Api::FilterEvents => "FilterLogEvents",
            Api::CreateStream => "CreateLogStream",
            Api::PutEvents => "PutLogEvents",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Calls per second allowed per API, and the retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Quotas {
    tps: [f64; 6],
    pub(crate) burst_seconds: f64,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
}

impl Default for Quotas {
    fn default() -> Self {
        let mut tps = [0.0; 6];
        tps[Api::Groups.index()] = DEFAULT_GROUP_TPS;
        tps[Api::DescribeStreams.index()] = DEFAULT_DESCRIBE_STREAMS_TPS;
        tps[Api::GetEvents.index()] = DEFAULT_GET_EVENTS_TPS;
        tps[Api::FilterEvents.index()] = DEFAULT_FILTER_EVENTS_TPS;
        tps[Api::CreateStream.index()] = DEFAULT_CREATE_STREAM_TPS;
        tps[Api::PutEvents.index()] = DEFAULT_PUT_EVENTS_TPS;
        Self {
            tps,
            burst_seconds: DEFAULT_BURST_SECONDS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
        }
    }
}

impl Quotas {
    /// Sets the calls per second of `api` (values below 0.01 are raised to it); defaults are the
    /// `DEFAULT_*_TPS` constants, AWS's documented quotas.
    pub fn with_tps(mut self, api: Api, tps: f64) -> Self {
        self.tps[api.index()] = tps.max(0.01);
        self
    }

    /// Time running `factor` times faster (the benchmark's scaled time): every quota
    /// multiplied by it, and the burst (a number of calls) kept the same.
    pub fn scaled(mut self, factor: f64) -> Self {
        let factor = factor.max(0.001);
        for tps in &mut self.tps {
            *tps *= factor;
        }
        self.burst_seconds /= factor;
        self
    }

    /// Sets each limiter's burst, in seconds of its quota; default [`DEFAULT_BURST_SECONDS`].
    pub fn with_burst_seconds(mut self, seconds: f64) -> Self {
        self.burst_seconds = seconds.max(0.0);
        self
    }

    /// Sets the attempts per call, at least 1; default [`DEFAULT_MAX_ATTEMPTS`].
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first and the longest backoff; defaults [`DEFAULT_BACKOFF_BASE`] and
    /// [`DEFAULT_BACKOFF_CAP`].
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap.max(base);
        self
    }

    /// The calls per second of `api`.
    pub fn tps(&self, api: Api) -> f64 {
        self.tps[api.index()]
    }
}

/// A token bucket with an adaptive rate: the shared pace of one API.
#[derive(Debug)]
pub struct RateLimiter {
    quota: f64,
    state: Mutex<Bucket>,
    throttles: AtomicU64,
    calls: AtomicU64,
    /// Moving average of the time the service takes to answer, in microseconds (0: unknown).
    latency_micros: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    /// May go negative: reservations of callers still waiting.
    tokens: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter allowing `quota` calls per second, with a burst of
    /// [`DEFAULT_BURST_SECONDS`] of calls.
    pub fn new(quota: f64) -> Self {
        Self::with_burst(quota, quota * DEFAULT_BURST_SECONDS)
    }

    /// A limiter allowing `quota` calls per second and `burst` calls at once (at least 1).
    pub fn with_burst(quota: f64, burst: f64) -> Self {
        let quota = quota.max(0.01);
        let burst = burst.max(1.0);
        Self {
            quota,
            state: Mutex::new(Bucket {
                rate: quota,
                tokens: burst,
                burst,
                last: Instant::now(),
            }),
            throttles: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            latency_micros: AtomicU64::new(0),
        }
    }

    /// Waits for this caller's turn.
    pub async fn acquire(&self) {
        let wait = {
            let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
            bucket.last = now;
            bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(bucket.burst);
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(-bucket.tokens / bucket.rate))
            }
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }

    /// The service throttled a call: slow down to 70% of the current rate (at least 5% of the
    /// quota) and drop any saved-up burst.
    pub fn throttled(&self) {
        self.throttles.fetch_add(1, Ordering::Relaxed);
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        bucket.rate = (bucket.rate * 0.7).max(self.quota * 0.05);
        bucket.tokens = bucket.tokens.min(0.0);
    }

    /// A call succeeded: recover 2% of the quota, up to the quota.
    pub fn succeeded(&self) {
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if bucket.rate < self.quota {
            bucket.rate = (bucket.rate + self.quota * 0.02).min(self.quota);
        }
    }

    /// Records how long a call took to answer (a moving average of the last few calls).
    pub fn record_latency(&self, latency: Duration) {
        let sample = latency.as_micros().min(u128::from(u32::MAX)) as u64;
        let _ = self
            .latency_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    (old * 4 + sample) / 5
                })
            });
    }

    /// The moving average of the time calls take to answer; zero before the first call.
    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::Relaxed))
    }

    /// Calls that must be in flight at once to use the whole quota: twice the rate times the
    /// latency, at least 1.
    pub fn width(&self) -> usize {
        ((self.rate() * self.latency().as_secs_f64() * 2.0).ceil() as usize).max(1)
    }

    /// Throttled calls so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Calls let through so far (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The current rate, calls per second.
    pub fn rate(&self) -> f64 {
        self.state.lock().map(|b| b.rate).unwrap_or(self.quota)
    }
}

/// One limiter per API plus the retry policy: what every worker of a run shares.
#[derive(Debug)]
pub(crate) struct Limits {
    limiters: [RateLimiter; 6],
    quotas: Quotas,
}

impl Limits {
    pub(crate) fn new(quotas: Quotas) -> Self {
        Self {
            limiters: Api::ALL.map(|api| {
                RateLimiter::with_burst(quotas.tps(api), quotas.tps(api) * quotas.burst_seconds)
            }),
            quotas,
        }
    }

    pub(crate) fn limiter(&self, api: Api) -> &RateLimiter {
        &self.limiters[api.index()]
    }

    /// Throttled calls of every API so far.
    pub(crate) fn throttles(&self) -> u64 {
        self.limiters.iter().map(RateLimiter::throttles).sum()
    }

    /// Calls per API so far, by AWS name.
    pub(crate) fn calls(&self) -> Vec<(&'static str, u64)> {
        Api::ALL
            .iter()
            .map(|api| (api.name(), self.limiter(*api).calls()))
            .collect()
    }

    /// Makes the call `call` paced by `api`'s limiter, retrying throttling and unavailability
    /// with backoff and jitter until the attempts run out.
    ///
    /// # Errors
    /// The last error, or the first one that is not worth retrying.
    pub(crate) async fn call<T, F, Fut>(&self, api: Api, mut call: F) -> ApiResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let limiter = self.limiter(api);
        let mut attempt = 0u32;
        loop {
            limiter.acquire().await;
            let sent = Instant::now();
            let result = call().await;
            limiter.record_latency(sent.elapsed());
            match result {
                Ok(value) => {
                    limiter.succeeded();
                    return Ok(value);
                }
                Err(error) if error.is_retriable() && attempt + 1 < self.quotas.max_attempts => {
                    if error.kind == ApiErrorKind::Throttled {
                        limiter.throttled();
                    }
                    tracing::debug!(api = api.name(), attempt, error = %error, "Retrying a failed call.");
                    tokio::time::sleep(backoff(&self.quotas, attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Full jitter: a uniform wait in `[0, min(cap, base * 2^attempt))`.
fn backoff(quotas: &Quotas, attempt: u32) -> Duration {
    let ceiling = quotas
        .backoff_base
        .saturating_mul(1u32 << attempt.min(20))
        .min(quotas.backoff_cap);
    ceiling.mul_f64(unit_random())
}

/// A number in `[0, 1)`, different on every call; jitter needs no better randomness.
pub(crate) fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::client::ApiError;

    #[tokio::test]
    async fn the_limiter_paces_calls_at_the_quota_after_a_half_second_burst() {
        let limiter = RateLimiter::new(200.0);
        let start = Instant::now();
        for _ in 0..150 {
            limiter.acquire().await;
        }
        // 100 calls of burst, then 50 at 200/s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!((0.24..=0.4).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test]
    async fn throttling_slows_down_and_successes_recover() {
        let limiter = RateLimiter::new(100.0);
        limiter.throttled();
        assert!((limiter.rate() - 70.0).abs() < 1e-9);
        for _ in 0..100 {
            limiter.succeeded();
        }
        assert!((limiter.rate() - 100.0).abs() < 1e-9);
        for _ in 0..100 {
            limiter.throttled();
        }
        assert!((limiter.rate() - 5.0).abs() < 1e-9);
        assert_eq!(limiter.throttles(), 101);
    }

    #[tokio::test]
    async fn call_retries_throttling_and_gives_up_on_other_errors() {
        let limits = Limits::new(Quotas::default().with_max_attempts(4));
        let mut failures = 2;
        let value = limits
            .call(Api::GetEvents, || {
                let fail = failures > 0;
                failures -= 1;
                async move {
                    if fail {
                        Err(ApiError::new(ApiErrorKind::Throttled, "slow down"))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 7);
        assert_eq!(limits.throttles(), 2);

        let mut calls = 0;
        let error = limits
            .call(Api::PutEvents, || {
                calls += 1;
                async { Err::<(), _>(ApiError::new(ApiErrorKind::Unavailable, "503")) }
            })
            .await
            .unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Unavailable);
        assert_eq!(calls, 4);

        let mut calls = 0;
        let error = limits
            .call(Api::PutEvents, || {
                calls += 1;
                async { Err::<(), _>(ApiError::new(ApiErrorKind::NotFound, "no stream")) }
            })
            .await
            .unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::NotFound);
        assert_eq!(calls, 1);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let quotas = Quotas::default();
        for attempt in 0..30 {
            let wait = backoff(&quotas, attempt);
            assert!(wait <= DEFAULT_BACKOFF_CAP);
        }
        let values: Vec<f64> = (0..20).map(|_| unit_random()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| w[0] != w[1]));
    }
}
