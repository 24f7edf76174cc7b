//! PutLogEvents batches within AWS's limits, which the emulator does not check: at most
//! [`MAX_BATCH_EVENTS`] events and [`MAX_BATCH_BYTES`] bytes (UTF-8 message bytes plus
//! [`EVENT_OVERHEAD_BYTES`] per event), chronological, spanning less than 24 hours.

use super::client::LogEvent;

/// Most events in one PutLogEvents call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most bytes in one PutLogEvents call, counted as message bytes plus 26 per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes CloudWatch counts per event on top of its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// A batch spans less than this many milliseconds (24 hours) from first to last event.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 60 * 60 * 1000;

/// Events ready for one PutLogEvents call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The events, in time order.
    pub events: Vec<LogEvent>,
    /// Their size as CloudWatch counts it.
    pub bytes: usize,
}

/// The size of `event` as PutLogEvents counts it.
pub fn event_bytes(event: &LogEvent) -> usize {
    event.message.len() + EVENT_OVERHEAD_BYTES
}

/// Groups events, fed in time order, into batches that PutLogEvents accepts.
///
/// An event that is out of order closes the batch in progress, so every batch is
/// chronological whatever the input. An event too large for any batch is set aside (see
/// [`Batcher::take_oversize`]) and never sent.
#[derive(Debug)]
pub struct Batcher {
    max_events: usize,
    max_bytes: usize,
    pending: Vec<LogEvent>,
    bytes: usize,
    oversize: Vec<LogEvent>,
}

impl Default for Batcher {
    fn default() -> Self {
        Self::new(MAX_BATCH_EVENTS, MAX_BATCH_BYTES)
    }
}

impl Batcher {
    /// A batcher with smaller limits than AWS's (they are capped at AWS's).
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            max_events: max_events.clamp(1, MAX_BATCH_EVENTS),
            max_bytes: max_bytes.clamp(EVENT_OVERHEAD_BYTES + 1, MAX_BATCH_BYTES),
            pending: Vec::new(),
            bytes: 0,
            oversize: Vec::new(),
        }
    }

    /// Adds `event`; returns the batch it closed, if adding it closed one.
    pub fn push(&mut self, event: LogEvent) -> Option<Batch> {
        let size = event_bytes(&event);
        if size > self.max_bytes {
            self.oversize.push(event);
            return None;
        }
        let closes = match (self.pending.first(), self.pending.last()) {
            (Some(first), Some(last)) => {
                self.pending.len() == self.max_events
                    || self.bytes + size > self.max_bytes
                    || event.timestamp < last.timestamp
                    || event.timestamp - first.timestamp >= MAX_BATCH_SPAN_MS
            }
            _ => false,
        };
        let closed = if closes { self.take() } else { None };
        self.bytes += size;
        self.pending.push(event);
        closed
    }

    /// The batch in progress, if it has any event.
    pub fn finish(&mut self) -> Option<Batch> {
        self.take()
    }

    /// Events too large to send (more than [`MAX_BATCH_BYTES`] with their overhead).
    pub fn take_oversize(&mut self) -> Vec<LogEvent> {
        std::mem::take(&mut self.oversize)
    }

    fn take(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.bytes);
        Some(Batch {
            events: std::mem::take(&mut self.pending),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(timestamp: i64, len: usize) -> LogEvent {
        LogEvent {
            timestamp,
            ingestion_time: timestamp,
            message: "x".repeat(len),
        }
    }

    fn batch_all(events: Vec<LogEvent>) -> (Vec<Batch>, Vec<LogEvent>) {
        let mut batcher = Batcher::default();
        let mut out: Vec<Batch> = events.into_iter().filter_map(|e| batcher.push(e)).collect();
        out.extend(batcher.finish());
        (out, batcher.take_oversize())
    }

    fn assert_valid(batches: &[Batch]) {
        for batch in batches {
            assert!(batch.events.len() <= MAX_BATCH_EVENTS);
            let bytes: usize = batch.events.iter().map(event_bytes).sum();
            assert_eq!(bytes, batch.bytes);
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
            assert!(
                batch
                    .events
                    .windows(2)
                    .all(|w| w[0].timestamp <= w[1].timestamp)
            );
            let span = batch.events.last().unwrap().timestamp - batch.events[0].timestamp;
            assert!(span < MAX_BATCH_SPAN_MS);
        }
    }

    #[test]
    fn ten_thousand_events_at_most() {
        let (batches, _) = batch_all((0..25_001).map(|i| event(i, 1)).collect());
        assert_eq!(
            batches.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            [10_000, 10_000, 5_001]
        );
        assert_valid(&batches);
    }

    #[test]
    fn bytes_count_26_per_event_up_to_exactly_one_mib() {
        // 1,048,576 / (998 + 26) = 1024 events fill a batch exactly.
        let (batches, _) = batch_all((0..2049).map(|i| event(i, 998)).collect());
        assert_eq!(
            batches.iter().map(|b| b.events.len()).collect::<Vec<_>>(),
            [1024, 1024, 1]
        );
        assert_eq!(batches[0].bytes, MAX_BATCH_BYTES);
        // One byte more per event: 1023 fit.
        let (batches, _) = batch_all((0..1024).map(|i| event(i, 999)).collect());
        assert_eq!(batches[0].events.len(), 1023);
        assert_valid(&batches);
    }

    #[test]
    fn a_batch_spans_less_than_a_day() {
        let day = MAX_BATCH_SPAN_MS;
        let times = [0, 1, day - 1, day, day + 5, 3 * day];
        let (batches, _) = batch_all(times.iter().map(|t| event(*t, 3)).collect());
        let split: Vec<Vec<i64>> = batches
            .iter()
            .map(|b| b.events.iter().map(|e| e.timestamp).collect())
            .collect();
        assert_eq!(
            split,
            [vec![0, 1, day - 1], vec![day, day + 5], vec![3 * day]]
        );
        assert_valid(&batches);
    }

    #[test]
    fn out_of_order_input_still_gives_chronological_batches() {
        let (batches, _) = batch_all([5, 6, 2, 3, 3, 1].iter().map(|t| event(*t, 1)).collect());
        assert_eq!(batches.len(), 3);
        assert_valid(&batches);
        assert_eq!(batches.iter().map(|b| b.events.len()).sum::<usize>(), 6);
    }

    #[test]
    fn oversize_events_are_set_aside_not_sent() {
        let big = MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES + 1;
        let (batches, oversize) = batch_all(vec![event(1, 10), event(2, big), event(3, 10)]);
        assert_eq!(oversize.len(), 1);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].events.len(), 2);
        // The largest event that fits is sent alone.
        let (batches, oversize) = batch_all(vec![event(1, big - 1), event(2, 1)]);
        assert!(oversize.is_empty());
        assert_eq!(batches.len(), 2);
        assert_valid(&batches);
    }
}
