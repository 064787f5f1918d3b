//! Progress of a run, as events: the binary draws bars (indicatif), tests and library callers
//! stay silent.
//!
//! Exists so that the libraries say *what* happened (an epoch started, a step finished) and
//! never decide how it is shown: the terminal, a log or nothing.

use std::sync::Arc;

use crate::metrics::{EpochRecord, StepRecord, ValidationMetrics};

/// Receives the events of a run; every method does nothing by default.
pub trait Progress: Send + Sync {
    /// A stage starts (or resumes at `first_epoch`) a run of `epochs` epochs.
    fn run_started(&self, _stage: &str, _epochs: usize, _first_epoch: usize) {}
    /// An epoch starts; `batches` when known.
    fn epoch_started(&self, _epoch: usize, _batches: Option<usize>) {}
    /// A step finished.
    fn step_done(&self, _record: &StepRecord) {}
    /// An epoch finished (after its checkpoint and validation).
    fn epoch_done(&self, _record: &EpochRecord, _validation: Option<&ValidationMetrics>) {}
    /// The run's epochs are done.
    fn run_finished(&self) {}
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// A shareable progress receiver (cloned into the options of every stage).
#[derive(Clone)]
pub struct Reporter(pub Arc<dyn Progress>);

impl Reporter {
    /// Wraps a receiver.
    pub fn new(progress: impl Progress + 'static) -> Self {
        Self(Arc::new(progress))
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Self::new(Silent)
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl std::ops::Deref for Reporter {
    type Target = dyn Progress;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
