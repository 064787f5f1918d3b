//! Files a run writes: atomic replacement, the JSONL metrics log and the `last` checkpoint
//! pointer.
//!
//! Exists because a training run can be killed at any instant and must then be resumable
//! exactly: nothing is ever written half (temporary name + rename), and the metrics log can be
//! cut back to the last complete epoch so that a resumed run appends exactly the lines an
//! uninterrupted run would have written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{TrainError, TrainResult};

/// Writes `bytes` to `path` atomically (`lofi_eval::write_atomic`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> TrainResult<()> {
    lofi_eval::write_atomic(path, bytes).map_err(|e| TrainError::io(path, e))
}

/// An append-only JSON-lines log, flushed after every line.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> TrainResult<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one JSON object as a line and flushes it.
    pub fn append(&mut self, value: &serde_json::Value) -> TrainResult<()> {
        let mut line = value.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads every JSON line of a metrics log (a missing file is empty; a torn last line, left by a
/// kill in the middle of a write, is dropped).
pub fn read_metrics(path: &Path) -> TrainResult<Vec<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Rewrites the log keeping only lines of epochs before `epoch` (atomically): what a resumed
/// run does before redoing the interrupted epoch.
pub fn truncate_metrics(path: &Path, epoch: usize) -> TrainResult<usize> {
    let lines = read_metrics(path)?;
    let keep: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| {
            v.get("epoch")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|e| (e as usize) < epoch)
        })
        .collect();
    let mut text = String::new();
    for v in &keep {
        text.push_str(&v.to_string());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())?;
    Ok(lines.len() - keep.len())
}

/// `checkpoints/last`: which checkpoint is the newest complete one and where training resumes.
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

impl LastCheckpoint {
    /// Reads `dir/last`; `None` when there is none yet.
    pub fn read(dir: &Path) -> TrainResult<Option<Self>> {
        let path = dir.join("last");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TrainError::Data {
                    path,
                    message: format!("not a checkpoint pointer: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrainError::io(path, e)),
        }
    }

    /// Writes `dir/last` atomically.
    pub fn write(&self, dir: &Path) -> TrainResult<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TrainError::Config(format!("cannot serialise: {e}")))?;
        write_atomic(&dir.join("last"), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_append_read_and_truncate() -> TrainResult<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path)?;
        for e in 0..3 {
            log.append(&json!({"epoch": e, "loss": 1.0}))?;
            log.append(&json!({"epoch": e, "event": "epoch_end"}))?;
        }
        drop(log);
        // A torn last line (killed mid-write) is ignored.
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        f.write_all(b"{\"epoch\": 2, \"lo")
            .map_err(|e| TrainError::io(&path, e))?;
        assert_eq!(read_metrics(&path)?.len(), 6);
        assert_eq!(truncate_metrics(&path, 1)?, 4);
        let left = read_metrics(&path)?;
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|v| v["epoch"] == 0));
        assert!(read_metrics(&dir.path().join("none"))?.is_empty());
        Ok(())
    }

    #[test]
    fn last_pointer_round_trips() -> TrainResult<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        assert_eq!(LastCheckpoint::read(dir.path())?, None);
        let last = LastCheckpoint {
            epoch: 3,
            model: "epoch-3.bpk".into(),
            optimizer: "epoch-3.optim".into(),
            step: 12,
            elapsed_s: 1.5,
        };
        last.write(dir.path())?;
        assert_eq!(LastCheckpoint::read(dir.path())?, Some(last));
        std::fs::write(dir.path().join("last"), "garbage").map_err(|e| TrainError::io("x", e))?;
        assert!(LastCheckpoint::read(dir.path()).is_err());
        Ok(())
    }
}
