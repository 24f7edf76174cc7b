//! Progress bars on stderr: one per table, rows and rows/s. Hidden when stderr is not a
//! terminal, with `--quiet`, or with `--output json`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::export::ExportProgress;
use crate::load::ImportProgress;

/// indicatif bars keyed by table.
pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    style: ProgressStyle,
}

impl Bars {
    /// Bars that draw only when `visible` and stderr is a terminal.
    pub(crate) fn new(visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(
            "{prefix:>32} {bar:30} {human_pos:>12}/{human_len:<12} {per_sec:>14} {elapsed:>5}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            style,
        }
    }

    fn bar(&self, table: &str) -> Option<ProgressBar> {
        self.bars
            .lock()
            .ok()
            .and_then(|bars| bars.get(table).cloned())
    }
}

impl ExportProgress for Bars {
    fn table_planned(&self, table: &str, estimated_rows: u64) {
        let bar = self.multi.add(ProgressBar::new(estimated_rows.max(1)));
        bar.set_style(self.style.clone());
        bar.set_prefix(table.to_owned());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(table.to_owned(), bar);
        }
    }

    fn rows(&self, table: &str, rows: u64) {
        if let Some(bar) = self.bar(table) {
            bar.inc(rows);
            if bar.position() > bar.length().unwrap_or(0) {
                bar.set_length(bar.position());
            }
        }
    }

    fn table_done(&self, table: &str) {
        if let Some(bar) = self.bar(table) {
            bar.set_length(bar.position());
            bar.finish();
        }
    }
}

impl ImportProgress for Bars {
    fn table_started(&self, table: &str, rows: u64) {
        self.table_planned(table, rows);
    }

    fn rows(&self, table: &str, rows: u64) {
        ExportProgress::rows(self, table, rows);
    }

    fn table_done(&self, table: &str) {
        ExportProgress::table_done(self, table);
    }
}
