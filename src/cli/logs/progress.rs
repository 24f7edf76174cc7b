//! The logs progress bar on stderr: streams done, events and bytes written, events/s and
//! throttled calls. Hidden when stderr is not a terminal, with `--quiet` or `--output json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::inspect::human_bytes;
use crate::logs::LogsProgress;

/// One bar for the whole run.
pub(crate) struct LogsBar {
    bar: ProgressBar,
    events: AtomicU64,
    bytes: AtomicU64,
    throttles: AtomicU64,
    started: Instant,
}

impl LogsBar {
    pub(crate) fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("streams {bar:30} {pos}/{len} {msg} {elapsed:>5}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar,
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn refresh(&self) {
        let events = self.events.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{events} events ({}) {:.0} events/s, {} throttled",
            human_bytes(self.bytes.load(Ordering::Relaxed) as i64),
            events as f64 / seconds,
            self.throttles.load(Ordering::Relaxed)
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl LogsProgress for LogsBar {
    fn planned(&self, streams: u64) {
        self.bar.set_length(streams);
    }

    fn events(&self, events: u64, bytes: u64) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.refresh();
    }

    fn stream_done(&self, throttles: u64) {
        self.throttles.store(throttles, Ordering::Relaxed);
        self.bar.inc(1);
        self.refresh();
    }
}
