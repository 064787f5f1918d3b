//! Per-epoch checkpoints and the `last` pointer: one layout for every trainer.
//!
//! Layout of `checkpoints/`: `epoch-<E>.bpk` (weights and BatchNorm statistics, burnpack),
//! `epoch-<E>.optim` (the optimizer's state) and `last`, a small JSON file naming the newest
//! complete pair, the optimizer steps taken and the training seconds so far. Epochs are 0-based
//! here as in every metrics record. Each file is written under a temporary name and renamed, and
//! `last` is written after the pair it names, so a kill at any instant leaves either the old or
//! the new complete checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, EngineResult};
use crate::owned::Owner;

/// The name of the pointer file.
pub const LAST: &str = "last";

/// `checkpoints/last`: the newest complete checkpoint and where training resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastCheckpoint {
    /// The epoch (0-based) whose end the checkpoint captures.
    pub epoch: usize,
    /// Model weights, relative to the checkpoints folder.
    pub model: String,
    /// Optimizer state, relative to the checkpoints folder.
    pub optimizer: String,
    /// Optimizer steps taken so far.
    pub step: usize,
    /// Training seconds so far.
    pub elapsed_s: f64,
}

/// A checkpoint written but not yet committed (see [`Checkpointer::commit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Weights file, relative to the checkpoints folder.
    pub model: String,
    /// Optimizer file, relative to the checkpoints folder.
    pub optimizer: String,
}

/// Saves and restores the checkpoints of one run folder.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
    /// The run folder's record and the checkpoints' subfolder in it, for writing.
    owner: Option<(Owner, String)>,
}

impl Checkpointer {
    /// The checkpoints in `dir` (the run folder's `checkpoints/`, which must exist), for reading
    /// ([`Checkpointer::last`], [`Checkpointer::restore`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            owner: None,
        }
    }

    /// The checkpoints in subfolder `sub` of `owner`'s folder, written through its record.
    pub fn owned(owner: Owner, sub: &str) -> Self {
        Self {
            dir: owner.dir().join(sub),
            owner: Some((owner, sub.to_string())),
        }
    }

    fn writer(&self) -> EngineResult<(&Owner, &str)> {
        self.owner
            .as_ref()
            .map(|(o, s)| (o, s.as_str()))
            .ok_or_else(|| {
                EngineError::RunDir(format!(
                    "{}: checkpoints opened for reading only",
                    self.dir.display()
                ))
            })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the `last` pointer; `None` when no epoch has completed yet.
    pub fn last(&self) -> EngineResult<Option<LastCheckpoint>> {
        let path = self.dir.join(LAST);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| EngineError::data(path, format!("not a checkpoint pointer: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(path, e)),
        }
    }

    /// Saves the weights and optimizer state at the end of `epoch`; [`commit`](Self::commit)
    /// then points `last` at them (after whatever else must be done before the epoch counts as
    /// complete, such as its validation and metrics).
    pub fn save<M: Module>(
        &self,
        epoch: usize,
        model: &M,
        optim: &ModuleOptimizer,
    ) -> EngineResult<Saved> {
        let saved = Saved {
            epoch,
            model: format!("epoch-{epoch}.bpk"),
            optimizer: format!("epoch-{epoch}.optim"),
        };
        let (owner, sub) = self.writer()?;
        owner.write_with(
            &format!("{sub}/{}", saved.model),
            |tmp| -> EngineResult<()> { Ok(lofi_model::checkpoint::save(model, tmp)?) },
        )?;
        owner.write_with(&format!("{sub}/{}", saved.optimizer), |tmp| {
            save_optimizer(optim, tmp)
        })?;
        Ok(saved)
    }

    /// Points `last` at a saved checkpoint, atomically: from now on a resume continues after it.
    pub fn commit(
        &self,
        saved: Saved,
        step: usize,
        elapsed_s: f64,
    ) -> EngineResult<LastCheckpoint> {
        let last = LastCheckpoint {
            epoch: saved.epoch,
            model: saved.model,
            optimizer: saved.optimizer,
            step,
            elapsed_s,
        };
        let (owner, sub) = self.writer()?;
        let path = self.dir.join(LAST);
        let text = serde_json::to_string_pretty(&last)
            .map_err(|e| EngineError::data(&path, format!("cannot serialise: {e}")))?;
        owner.write(&format!("{sub}/{LAST}"), text.as_bytes())?;
        Ok(last)
    }

    /// Loads the newest complete checkpoint into `model` and `optim`; `None` (and the inputs
    /// back untouched) when there is none.
    pub fn restore<M: Module>(
        &self,
        model: M,
        optim: ModuleOptimizer,
    ) -> EngineResult<(M, ModuleOptimizer, Option<LastCheckpoint>)> {
        let Some(last) = self.last()? else {
            return Ok((model, optim, None));
        };
        let model = lofi_model::checkpoint::load(model, &self.dir.join(&last.model))?;
        let optim = load_optimizer(optim, &self.dir.join(&last.optimizer))?;
        Ok((model, optim, Some(last)))
    }
}

/// Writes the optimizer state to `path` (a temporary name of [`Owner::write_with`]).
fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> EngineResult<()> {
    optim
        .to_record()
        .save(path)
        .map_err(|e| EngineError::data(path, format!("cannot write the optimizer state: {e:?}")))
}

fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> EngineResult<ModuleOptimizer> {
    let record = OptimizerRecord::load(path)
        .map_err(|e| EngineError::data(path, format!("cannot read the optimizer state: {e:?}")))?;
    Ok(optim.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_round_trips_and_garbage_is_refused() -> EngineResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))?;
        let c = Checkpointer::new(tmp.path());
        assert_eq!(c.last()?, None);
        let last = LastCheckpoint {
            epoch: 3,
            model: "epoch-3.bpk".into(),
            optimizer: "epoch-3.optim".into(),
            step: 12,
            elapsed_s: 1.5,
        };
        let text =
            serde_json::to_string(&last).map_err(|e| EngineError::data("x", e.to_string()))?;
        std::fs::write(tmp.path().join(LAST), text).map_err(|e| EngineError::io("w", e))?;
        assert_eq!(c.last()?, Some(last));
        std::fs::write(tmp.path().join(LAST), "epoch-3.bpk\n")
            .map_err(|e| EngineError::io("w", e))?;
        let e = c.last().expect_err("not JSON");
        assert!(e.to_string().contains("not a checkpoint pointer"), "{e}");
        Ok(())
    }
}
