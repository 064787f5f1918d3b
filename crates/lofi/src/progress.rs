//! Progress bars for the trainers' events (lofi-engine's `Progress`): one bar per epoch with the
//! step's loss, drawn only when stderr is a terminal.
//!
//! Exists so that the libraries only report events and the binary alone decides how they look.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use lofi_engine::metrics::{EpochRecord, StepRecord, ValidationMetrics};
use lofi_engine::{Progress, Reporter};

/// Bars on stderr.
struct Bars {
    stage: Mutex<String>,
    epochs: Mutex<usize>,
    bar: Mutex<Option<ProgressBar>>,
}

/// The reporter of the CLI: bars on a terminal, nothing otherwise (logs still say each epoch).
pub fn reporter() -> Reporter {
    if std::io::stderr().is_terminal() {
        Reporter::new(Bars {
            stage: Mutex::new(String::new()),
            epochs: Mutex::new(0),
            bar: Mutex::new(None),
        })
    } else {
        Reporter::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Progress for Bars {
    fn run_started(&self, stage: &str, epochs: usize, _first_epoch: usize) {
        *lock(&self.stage) = stage.to_string();
        *lock(&self.epochs) = epochs;
    }

    fn epoch_started(&self, epoch: usize, batches: Option<usize>) {
        let bar = ProgressBar::new(batches.unwrap_or(0) as u64);
        let template = format!(
            "{} epoch {}/{} {{pos}}/{{len}} [{{elapsed}} < {{eta}}] {{wide_bar}} {{msg}}",
            lock(&self.stage),
            epoch + 1,
            lock(&self.epochs)
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if let Some(old) = lock(&self.bar).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn step_done(&self, record: &StepRecord) {
        if let Some(bar) = lock(&self.bar).as_ref() {
            bar.set_position(record.batch as u64 + 1);
            bar.set_message(format!("loss {:.4}", record.loss));
        }
    }

    fn epoch_done(&self, _record: &EpochRecord, _validation: Option<&ValidationMetrics>) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }

    fn run_finished(&self) {
        if let Some(bar) = lock(&self.bar).take() {
            bar.finish_and_clear();
        }
    }
}
