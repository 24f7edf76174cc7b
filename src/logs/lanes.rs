//! The two reading lanes and the writers they feed.
//!
//! Reading is where the quotas bite, and the two read APIs have different costs: GetLogEvents
//! (25 TPS) reads one stream and needs one extra call per stream to see its token repeat;
//! FilterLogEvents (10 TPS) reads up to 100 streams in one page sequence with no per-stream
//! overhead. So the "get lane" takes streams one at a time from the front of the queue, and the
//! "filter lane" takes groups from the back, sized from the events per stream seen so far (many
//! small streams per call; one big stream at a time), and only while the get lane alone would
//! take longer to finish the rest than the filter lane needs for its group. Both lanes run at
//! once, each at its own quota. Every stream gets a writer task fed through a small channel;
//! `--concurrency` bounds the streams in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::batch::{EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES};
use super::client::{ApiErrorKind, LogEvent};
use super::limiter::Api;
use super::plan::{Planned, StreamReport};
use super::reader::{GroupReader, MAX_FILTER_STREAMS, ReadContext, StreamReader};
use super::writer::{Chunk, Job, Shared, write_stream};

/// Events per page the lanes plan with until they have seen real pages.
const PAGE_EVENTS: f64 = 10_000.0;
/// Chunks queued per stream between its reader and its writer.
const CHANNEL_CHUNKS: usize = 2;
/// Most readers per lane; how many of them work at once follows the API's rate and latency.
const MAX_LANE_WORKERS: usize = 16;
/// How often an idle reader looks for work.
const IDLE_POLL: Duration = Duration::from_millis(3);

/// Events per stream seen so far, to size filter groups and decide what each lane takes.
#[derive(Default)]
struct Estimate {
    streams: u64,
    events: u64,
    /// Events read so far by streams still being read by the get lane.
    inflight: HashMap<usize, u64>,
    /// Message bytes and events of every page read, for the events a page holds.
    sampled_bytes: u64,
    sampled_events: u64,
}

impl Estimate {
    /// Mean events per finished stream; with none finished, a lower bound once a stream in
    /// flight is known to span pages.
    fn per_stream(&self) -> Option<f64> {
        if self.streams > 0 {
            return Some(self.events as f64 / self.streams as f64);
        }
        self.inflight
            .values()
            .copied()
            .max()
            .filter(|n| *n as f64 >= PAGE_EVENTS * 0.5)
            .map(|n| n as f64)
    }

    fn finished(&mut self, events: u64) {
        self.streams += 1;
        self.events += events;
    }

    fn observe(&mut self, page: &[LogEvent]) {
        self.sampled_events += page.len() as u64;
        self.sampled_bytes += page.iter().map(|e| e.message.len() as u64).sum::<u64>();
    }

    /// Events in a full page: 10,000, or fewer when 1 MiB fills first.
    fn page_events(&self) -> f64 {
        if self.sampled_events == 0 {
            return PAGE_EVENTS;
        }
        let per_event =
            self.sampled_bytes as f64 / self.sampled_events as f64 + EVENT_OVERHEAD_BYTES as f64;
        (MAX_BATCH_BYTES as f64 / per_event)
            .floor()
            .clamp(1.0, PAGE_EVENTS)
    }
}

struct Queue {
    jobs: VecDeque<(usize, Job)>,
    estimate: Estimate,
    /// Streams the get lane is reading.
    get_active: usize,
    /// Groups the filter lane is reading.
    filter_active: usize,
    /// Set when FilterLogEvents is refused: the get lane reads everything.
    filter_disabled: bool,
}

/// Runs both lanes over `jobs` and returns every stream's report.
pub(super) async fn run_lanes(
    ctx: &ReadContext,
    shared: &Arc<Shared>,
    jobs: Vec<(Planned, Job)>,
    concurrency: usize,
) -> Vec<StreamReport> {
    let queue = Arc::new(Mutex::new(Queue {
        jobs: jobs.into_iter().map(|(_, j)| j).enumerate().collect(),
        estimate: Estimate::default(),
        get_active: 0,
        filter_active: 0,
        filter_disabled: false,
    }));
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let writers = Arc::new(Mutex::new(JoinSet::new()));
    let get_workers = concurrency.clamp(1, MAX_LANE_WORKERS);
    let filter_workers = concurrency.clamp(1, MAX_LANE_WORKERS);
    let mut lanes = JoinSet::new();
    for _ in 0..get_workers {
        lanes.spawn(get_lane(
            ctx.clone(),
            shared.clone(),
            queue.clone(),
            slots.clone(),
            writers.clone(),
        ));
    }
    for _ in 0..filter_workers {
        lanes.spawn(filter_lane(
            ctx.clone(),
            shared.clone(),
            queue.clone(),
            slots.clone(),
            writers.clone(),
            concurrency,
        ));
    }
    while lanes.join_next().await.is_some() {}
    let mut reports = Vec::new();
    let mut writers = std::mem::take(&mut *writers.lock().unwrap_or_else(|p| p.into_inner()));
    while let Some(result) = writers.join_next().await {
        match result {
            Ok(report) => reports.push(report),
            Err(error) => reports.push(StreamReport {
                stream: "?".to_owned(),
                error: Some(format!("a writer task failed: {error}")),
                ..StreamReport::default()
            }),
        }
    }
    reports
}

type Writers = Arc<Mutex<JoinSet<StreamReport>>>;

/// Starts the writer of `job` and returns the sender of its events.
fn start_writer(
    shared: &Arc<Shared>,
    writers: &Writers,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> mpsc::Sender<Chunk> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let shared = shared.clone();
    writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .spawn(async move {
            let report = write_stream(shared, job, rx).await;
            drop(permit);
            report
        });
    tx
}

/// Takes streams one at a time from the front and reads each with GetLogEvents.
async fn get_lane(
    ctx: ReadContext,
    shared: Arc<Shared>,
    queue: Arc<Mutex<Queue>>,
    slots: Arc<Semaphore>,
    writers: Writers,
) {
    let limiter = shared.limits.limiter(Api::GetEvents);
    loop {
        // Only as many streams at once as keep the quota busy: the rest stay queued, where the
        // filter lane may take them.
        let (id, job) = loop {
            let next = {
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.jobs.is_empty() {
                    return;
                }
                if q.get_active < limiter.width() + 1 {
                    q.get_active += 1;
                    q.jobs.pop_front()
                } else {
                    None
                }
            };
            match next {
                Some(job) => break job,
                None => tokio::time::sleep(IDLE_POLL).await,
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let name = job.report.stream.clone();
        let tx = start_writer(&shared, &writers, job, permit);
        let mut reader = StreamReader::new(ctx.clone(), name.clone());
        let mut events = 0u64;
        loop {
            match reader.next_page().await {
                Ok(Some(page)) => {
                    events += page.len() as u64;
                    {
                        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                        queue.estimate.inflight.insert(id, events);
                        queue.estimate.observe(&page);
                    }
                    if tx.send(Ok(page)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = tx
                        .send(Err(format!("reading {}/{name}: {error}", ctx.group)))
                        .await;
                    break;
                }
            }
        }
        drop(tx);
        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.get_active -= 1;
        queue.estimate.inflight.remove(&id);
        queue.estimate.finished(events);
    }
}

/// Takes groups of streams from the back and reads each group with FilterLogEvents, while that
/// finishes sooner than leaving them to the get lane.
async fn filter_lane(
    ctx: ReadContext,
    shared: Arc<Shared>,
    queue: Arc<Mutex<Queue>>,
    slots: Arc<Semaphore>,
    writers: Writers,
    concurrency: usize,
) {
    let limits = &shared.limits;
    loop {
        // Wait until the get lane has shown how big streams are, and for a free place.
        let taken = loop {
            let rates = Rates {
                get: limits.limiter(Api::GetEvents).rate(),
                filter: limits.limiter(Api::FilterEvents).rate(),
                filter_width: limits.limiter(Api::FilterEvents).width(),
            };
            match take_group(&queue, rates, concurrency) {
                Take::Done => return,
                Take::Wait => tokio::time::sleep(IDLE_POLL).await,
                Take::Group(jobs) => break jobs,
            }
        };
        let mut senders: HashMap<String, (mpsc::Sender<Chunk>, u64)> = HashMap::new();
        let mut names = Vec::with_capacity(taken.len());
        // All of the group's slots at once: workers each holding part of theirs would wait
        // for each other forever.
        let Ok(mut permits) = slots.clone().acquire_many_owned(taken.len() as u32).await else {
            return;
        };
        for (_, job) in taken {
            let Some(permit) = permits.split(1) else {
                return;
            };
            let name = job.report.stream.clone();
            names.push(name.clone());
            let tx = start_writer(&shared, &writers, job, permit);
            senders.insert(name, (tx, 0));
        }
        let mut reader = GroupReader::new(ctx.clone(), names.clone());
        loop {
            match reader.next_page().await {
                Ok(Some(page)) => {
                    {
                        let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                        let sample: Vec<LogEvent> =
                            page.iter().take(64).map(|(_, e)| e.clone()).collect();
                        queue.estimate.observe(&sample);
                    }
                    let mut by_stream: HashMap<String, Vec<LogEvent>> = HashMap::new();
                    for (stream, event) in page {
                        by_stream.entry(stream).or_default().push(event);
                    }
                    for (stream, events) in by_stream {
                        if let Some((tx, count)) = senders.get_mut(&stream) {
                            *count += events.len() as u64;
                            // A writer that stopped has reported its error already.
                            let _ = tx.send(Ok(events)).await;
                        }
                    }
                }
                Ok(None) => break,
                Err(error)
                    if matches!(error.kind, ApiErrorKind::Auth | ApiErrorKind::Invalid)
                        && senders.values().all(|(_, count)| *count == 0) =>
                {
                    // No logs:FilterLogEvents permission (the AWS sample's policy lacks it), or
                    // a service that refuses the call: read this group with GetLogEvents, and
                    // leave the rest of the queue to the get lane.
                    tracing::warn!(error = %error, "FilterLogEvents refused; reading with GetLogEvents only.");
                    queue
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .filter_disabled = true;
                    for name in &names {
                        if let Some((tx, count)) = senders.get_mut(name) {
                            *count = read_one(&ctx, name, tx).await;
                        }
                    }
                    break;
                }
                Err(error) => {
                    for (name, (tx, _)) in &senders {
                        let _ = tx
                            .send(Err(format!("reading {}/{name}: {error}", ctx.group)))
                            .await;
                    }
                    break;
                }
            }
        }
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.filter_active -= 1;
        for (_, count) in senders.into_values() {
            q.estimate.finished(count);
        }
    }
}

/// Reads one stream with GetLogEvents into its writer; returns the events read.
async fn read_one(ctx: &ReadContext, name: &str, tx: &mpsc::Sender<Chunk>) -> u64 {
    let mut reader = StreamReader::new(ctx.clone(), name.to_owned());
    let mut events = 0;
    loop {
        match reader.next_page().await {
            Ok(Some(page)) => {
                events += page.len() as u64;
                if tx.send(Ok(page)).await.is_err() {
                    return events;
                }
            }
            Ok(None) => return events,
            Err(error) => {
                let _ = tx
                    .send(Err(format!("reading {}/{name}: {error}", ctx.group)))
                    .await;
                return events;
            }
        }
    }
}

enum Take {
    Done,
    Wait,
    Group(VecDeque<(usize, Job)>),
}

/// The filter lane's next group: as many streams as make about four pages (at most half the
/// slots, so reading never waits for every writer to finish), and only if the get lane alone
/// would take longer to read the rest than the filter lane needs for them.
fn take_group(queue: &Mutex<Queue>, rates: Rates, concurrency: usize) -> Take {
    let Rates {
        get: get_tps,
        filter: filter_tps,
        filter_width,
    } = rates;
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    if q.jobs.is_empty() || q.filter_disabled {
        return Take::Done;
    }
    if q.filter_active >= filter_width {
        return Take::Wait;
    }
    let Some(per_stream) = q.estimate.per_stream() else {
        return Take::Wait;
    };
    let page = q.estimate.page_events();
    let size = if q.estimate.streams > 0 {
        ((4.0 * page / per_stream.max(1.0)) as usize).clamp(1, MAX_FILTER_STREAMS)
    } else {
        1
    }
    .min((concurrency / 2).max(1))
    .min(q.jobs.len());
    let pages_per_stream = (per_stream / page).ceil().max(1.0);
    let filter_time = (size as f64 * per_stream / page).ceil().max(1.0) / filter_tps;
    let inflight_pages: f64 = q
        .estimate
        .inflight
        .values()
        .map(|read| ((per_stream - *read as f64) / page).max(0.0))
        .sum();
    let rest = (q.jobs.len() - size) as f64;
    let get_time = (rest * (pages_per_stream + 1.0) + inflight_pages) / get_tps;
    if filter_time > get_time {
        return Take::Done;
    }
    let at = q.jobs.len() - size;
    q.filter_active += 1;
    Take::Group(q.jobs.split_off(at))
}

/// The current rates of the two read APIs, and how many filter groups keep FilterLogEvents busy.
#[derive(Clone, Copy)]
struct Rates {
    get: f64,
    filter: f64,
    filter_width: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::archive::StreamKey;

    fn queue(jobs: usize, finished: &[u64], bytes_per_event: u64) -> Mutex<Queue> {
        let job = |i: usize| Job {
            key: Arc::new(StreamKey {
                group: "g".into(),
                stream: format!("s{i}").into(),
                try_: None,
            }),
            report: StreamReport::default(),
            target: format!("s{i}"),
            target_exists: false,
            skip: 0,
            put: true,
        };
        let mut estimate = Estimate::default();
        for events in finished {
            estimate.finished(*events);
        }
        estimate.sampled_events = 100;
        estimate.sampled_bytes = 100 * bytes_per_event;
        Mutex::new(Queue {
            jobs: (0..jobs).map(|i| (i, job(i))).collect(),
            estimate,
            get_active: 0,
            filter_active: 0,
            filter_disabled: false,
        })
    }

    const RATES: Rates = Rates {
        get: 25.0,
        filter: 10.0,
        filter_width: 1,
    };

    fn taken(take: Take) -> Option<usize> {
        match take {
            Take::Group(jobs) => Some(jobs.len()),
            _ => None,
        }
    }

    #[test]
    fn small_streams_go_many_to_a_filter_call_within_half_the_slots() {
        let q = queue(2000, &[200], 100);
        assert_eq!(taken(take_group(&q, RATES, 64)), Some(32));
        // One group at a time keeps a FilterLogEvents quota this fast busy.
        assert!(matches!(take_group(&q, RATES, 64), Take::Wait));
        let q = queue(2000, &[200], 100);
        assert_eq!(taken(take_group(&q, RATES, 400)), Some(100));
        // Until the get lane has finished a stream (or seen a big one), the filter lane waits.
        let q = queue(10, &[], 100);
        assert!(matches!(take_group(&q, RATES, 64), Take::Wait));
    }

    #[test]
    fn big_streams_go_one_at_a_time_and_not_at_the_end() {
        // 200,000 events of 100 bytes: 25 pages each.
        let q = queue(10, &[200_000], 100);
        assert_eq!(taken(take_group(&q, RATES, 64)), Some(1));
        // Two left: the get lane reads them (2 x 26 calls at 25/s) sooner than the filter lane
        // reads one (25 pages at 10/s).
        let q = queue(2, &[200_000], 100);
        assert!(matches!(take_group(&q, RATES, 64), Take::Done));
    }

    #[test]
    fn pages_hold_fewer_events_when_a_mebibyte_fills_first() {
        let q = queue(1, &[1], 100);
        let page = q.lock().unwrap().estimate.page_events();
        assert_eq!(page, (1_048_576.0_f64 / 126.0).floor());
        let q = queue(1, &[1], 10);
        assert_eq!(q.lock().unwrap().estimate.page_events(), PAGE_EVENTS);
    }
}
