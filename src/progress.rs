//! Download progress for people: bars on a terminal, plain lines for logs (journald, CI, the
//! webui's own output for first-use downloads). The one place that draws progress; the
//! downloader only reports events to a [`Reporter`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::models::download::Reporter;
use crate::models::human_bytes;

/// Progress bars on a terminal: one per file, with speed and ETA.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    labels: Vec<String>,
}

impl Bars {
    /// `labels[id]` names transfer `id`.
    pub fn new(labels: Vec<String>) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
            labels,
        }
    }

    fn label(&self, id: usize) -> &str {
        self.labels.get(id).map_or("?", String::as_str)
    }

    fn bar(&self, id: usize) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(&id).cloned()
    }
}

impl Reporter for Bars {
    fn on_start(&self, id: usize, label: &str, total: Option<u64>, done: u64) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(id).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::no_length());
            let style = ProgressStyle::with_template(
                "{msg:28!} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_message(label.to_owned());
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
        bar.reset_eta();
    }

    fn on_progress(&self, id: usize, bytes: u64) {
        if let Some(bar) = self.bar(id) {
            bar.inc(bytes);
        }
    }

    fn on_notice(&self, id: usize, message: &str) {
        let _ = self.multi.println(format!("{}: {message}", self.label(id)));
    }

    fn on_finish(&self, id: usize) {
        if let Some(bar) = self.bar(id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

/// Plain lines for logs: start, every 10 % (at most every 5 s), retries, end.
pub struct Lines {
    state: Mutex<HashMap<usize, LineState>>,
    labels: Vec<String>,
}

struct LineState {
    total: Option<u64>,
    done: u64,
    started: Instant,
    start_done: u64,
    last_print: Instant,
    last_tenth: u64,
}

impl Lines {
    /// `labels[id]` names transfer `id`.
    pub fn new(labels: Vec<String>) -> Lines {
        Lines {
            state: Mutex::new(HashMap::new()),
            labels,
        }
    }

    fn label(&self, id: usize) -> &str {
        self.labels.get(id).map_or("?", String::as_str)
    }
}

impl Reporter for Lines {
    fn on_start(&self, id: usize, _label: &str, total: Option<u64>, done: u64) {
        let now = Instant::now();
        eprintln!(
            "{}: downloading{}{}",
            self.label(id),
            total
                .map(|t| format!(" {}", human_bytes(t)))
                .unwrap_or_default(),
            if done > 0 {
                format!(", {} already here", human_bytes(done))
            } else {
                String::new()
            }
        );
        if let Ok(mut state) = self.state.lock() {
            state.insert(
                id,
                LineState {
                    total,
                    done,
                    started: now,
                    start_done: done,
                    last_print: now,
                    last_tenth: total.filter(|t| *t > 0).map_or(0, |t| done * 10 / t),
                },
            );
        }
    }

    fn on_progress(&self, id: usize, bytes: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(s) = state.get_mut(&id) else {
            return;
        };
        s.done += bytes;
        let Some(total) = s.total.filter(|t| *t > 0) else {
            return;
        };
        let tenth = s.done * 10 / total;
        if tenth > s.last_tenth && s.last_print.elapsed() >= Duration::from_secs(5)
            || tenth == 10 && s.last_tenth < 10
        {
            s.last_tenth = tenth;
            s.last_print = Instant::now();
            let elapsed = s.started.elapsed().as_secs_f64().max(0.001);
            let rate = (s.done - s.start_done) as f64 / elapsed;
            let eta = if rate > 0.0 {
                format!(
                    ", ETA {:.0} s",
                    (total.saturating_sub(s.done)) as f64 / rate
                )
            } else {
                String::new()
            };
            eprintln!(
                "{}: {}% ({} of {}, {}/s{eta})",
                self.label(id),
                s.done * 100 / total,
                human_bytes(s.done),
                human_bytes(total),
                human_bytes(rate as u64),
            );
        }
    }

    fn on_notice(&self, id: usize, message: &str) {
        eprintln!("{}: {message}", self.label(id));
    }

    fn on_finish(&self, id: usize) {
        if let Ok(mut state) = self.state.lock()
            && let Some(s) = state.remove(&id)
        {
            let elapsed = s.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{}: received {} in {:.1} s ({}/s)",
                self.label(id),
                human_bytes(s.done - s.start_done),
                elapsed,
                human_bytes(((s.done - s.start_done) as f64 / elapsed) as u64)
            );
        }
    }
}
