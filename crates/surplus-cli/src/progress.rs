//! The progress bar of `surplus backup now` and `surplus restore`: files, bytes, throughput and
//! time left, drawn on standard error when it is a terminal (and nowhere otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over a known total of files and bytes.
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: u64,
    verb: &'static str,
}

impl Bar {
    pub fn new(verb: &'static str, total_files: u64, total_bytes: u64) -> Bar {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:<28} [{bar:30}] {binary_bytes}/{binary_total_bytes} \
                 {binary_bytes_per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let made = Bar {
            bar,
            files: AtomicU64::new(0),
            total_files,
            verb,
        };
        made.show_files(0);
        made
    }

    fn show_files(&self, done: u64) {
        self.bar
            .set_message(format!("{} {done}/{} files", self.verb, self.total_files));
    }

    /// Takes the bar off the terminal, leaving the lines printed after it.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl surplus_backup::repo::Progress for Bar {
    fn bytes(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn file(&self) {
        let done = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.show_files(done);
    }
}

/// A bar drawn once the work knows how much it covers (a backup's scan, a restore's snapshot).
#[derive(Debug)]
pub struct LateBar {
    verb: &'static str,
    bar: std::sync::OnceLock<Bar>,
}

impl LateBar {
    pub fn new(verb: &'static str) -> LateBar {
        LateBar {
            verb,
            bar: std::sync::OnceLock::new(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish();
        }
    }
}

impl surplus_agent::control::FileProgress for LateBar {
    fn start(&self, files: u64, bytes: u64) {
        let _ = self.bar.set(Bar::new(self.verb, files, bytes));
    }

    fn bytes(&self, bytes: u64) {
        if let Some(bar) = self.bar.get() {
            surplus_backup::repo::Progress::bytes(bar, bytes);
        }
    }

    fn file(&self) {
        if let Some(bar) = self.bar.get() {
            surplus_backup::repo::Progress::file(bar);
        }
    }
}
