//! The run folder: where a stage keeps its config, metrics, checkpoints and outputs.
//!
//! Exists so that every trainer creates, refuses and resumes a folder by the same rules: one
//! process at a time writes it (an advisory lock, [`FolderLock`]); a fresh run refuses a folder
//! that already holds a run (its `checkpoints/last` exists) unless told to `--overwrite` it; a
//! resume must bring the very config and input files the run was started with (its
//! `fingerprint.json`); `config.toml` always describes the run that is in the folder; and every
//! file goes through the folder's ownership record ([`crate::owned`]), so that an overwrite
//! removes the old run's files and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lofi_model::card::{card_path, ModelCard};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::Checkpointer;
use crate::error::{EngineError, EngineResult};
use crate::fingerprint::{Fingerprint, FINGERPRINT_FILE};
use crate::fit::RunControl;
use crate::lock::FolderLock;
use crate::owned::{prepare, OutputPlan, Owner, Start};

/// Names of the files every run folder has.
pub mod files {
    /// The config the run was started with (TOML).
    pub const CONFIG: &str = "config.toml";
    /// One typed record per line ([`crate::MetricsRecord`]).
    pub const METRICS: &str = "metrics.jsonl";
    /// Per-epoch checkpoints and the `last` pointer.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// The run's summary, written when it ends.
    pub const SUMMARY: &str = "summary.json";
}

/// An open run folder; holds the folder's lock ([`FolderLock`]) until the last clone is dropped,
/// and writes through the folder's ownership record ([`Owner`]).
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    owner: Owner,
    _lock: Arc<FolderLock>,
}

impl RunDir {
    /// Opens `root` for a run of `config` whose input files are fingerprinted in `inputs` (the
    /// initial weights, the data's annotations...), locking it against other processes first.
    /// `plan` names the folder's kind, the files the stage writes besides the ones every run
    /// has ([`files`]), and its data inputs; [`owned::prepare`] checks them before any work (no
    /// folder of another kind, no input inside the folder, no file lofi did not write where the
    /// run writes). A fresh run (`control.resume == false`) refuses a folder that already holds a
    /// run, unless `control.overwrite`, which removes what the old run wrote (and only that); a
    /// resume must bring the config and inputs the run was started with, and an error lists what
    /// differs. Creates the folder and `checkpoints/`, and writes `config.toml` and
    /// `fingerprint.json`.
    ///
    /// [`owned::prepare`]: crate::owned::prepare
    pub fn open<C>(
        root: &Path,
        config: &C,
        inputs: Fingerprint,
        control: &RunControl,
        plan: &OutputPlan,
    ) -> EngineResult<Self>
    where
        C: Serialize + DeserializeOwned + PartialEq,
    {
        let lock = FolderLock::exclusive(root, "training")?;
        let fingerprint = inputs.with("config", config)?;
        let config_path = root.join(files::CONFIG);
        let holds_run = root
            .join(files::CHECKPOINTS)
            .join(crate::checkpoint::LAST)
            .exists();
        let mut plan = plan.clone();
        plan.files.extend(
            [files::CONFIG, files::METRICS, files::SUMMARY]
                .iter()
                .map(|s| s.to_string()),
        );
        plan.dirs.push(files::CHECKPOINTS.to_string());
        crate::owned::check_folder(root, &plan)?;
        let start = if control.resume {
            match Fingerprint::read(root)? {
                Some(_) => {
                    fingerprint.claim(root, "run", false)?;
                }
                // A run of an older lofi: its config.toml is all there is to compare.
                None if config_path.is_file() => {
                    let saved: C = read_toml(&config_path)?;
                    if &saved != config {
                        return Err(EngineError::RunDir(format!(
                            "--resume: the config differs from the one the run in {} was started \
                             with ({}); resume with that file",
                            root.display(),
                            config_path.display()
                        )));
                    }
                }
                None => {}
            }
            Start::Continue
        } else if holds_run && !control.overwrite {
            return Err(EngineError::RunDir(format!(
                "{} already holds a run; continue it with --resume, redo it with --overwrite, \
                 or choose another --out",
                root.display()
            )));
        } else if holds_run || Fingerprint::read(root)?.is_some() {
            // Overwrite (or a fresh start over a run stopped before its first checkpoint): the
            // old run's files go, so nothing of it is mistaken for this one's.
            Start::Overwrite
        } else {
            Start::Continue
        };
        let owner = prepare(root, &plan, start)?;
        owner.mkdir(files::CHECKPOINTS)?;
        let text = toml::to_string_pretty(config).map_err(|e| {
            EngineError::data(&config_path, format!("cannot serialise the config: {e}"))
        })?;
        owner.write(files::CONFIG, text.as_bytes())?;
        owner.write_json(FINGERPRINT_FILE, &fingerprint)?;
        owner.log(files::METRICS)?;
        Ok(Self {
            root: root.to_path_buf(),
            owner,
            _lock: Arc::new(lock),
        })
    }

    /// The folder's ownership record: every file the run writes goes through it.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The checkpoints of the run, written through its record.
    pub fn checkpointer(&self) -> Checkpointer {
        Checkpointer::owned(self.owner.clone(), files::CHECKPOINTS)
    }

    /// Saves weights as `name` through `write` (which writes them whole to the path it is given,
    /// e.g. [`lofi_model::checkpoint::save`]) and then their card beside them, both recorded.
    pub fn save_with_card(
        &self,
        name: &str,
        card: &ModelCard,
        write: impl FnOnce(&Path) -> Result<(), lofi_model::ModelError>,
    ) -> EngineResult<PathBuf> {
        let path = self
            .owner
            .write_with(name, |tmp| -> EngineResult<()> { Ok(write(tmp)?) })?;
        let card_file = card_path(&path);
        let card_name = card_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.owner.check_replace(&card_name)?;
        card.write_beside(&path)?;
        self.owner.adopt(&card_name)?;
        Ok(path)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The checkpoints folder.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(files::CHECKPOINTS)
    }

    /// The metrics log.
    pub fn metrics(&self) -> PathBuf {
        self.root.join(files::METRICS)
    }

    /// Writes `value` as pretty JSON (with a final newline) to `name`, atomically, through the
    /// folder's record.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> EngineResult<PathBuf> {
        self.owner.write_json(name, value)
    }
}

/// Reads a TOML settings file into `C`: the one loader of every lofi config (train, pretrain,
/// extract, train-head). Unknown keys are errors naming the key where `C` denies them; the
/// caller validates the values.
pub fn read_toml<C: DeserializeOwned>(path: &Path) -> EngineResult<C> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    parse_toml(&text, path)
}

/// Parses TOML `text` (read from `path`, which errors name) into `C`.
pub fn parse_toml<C: DeserializeOwned>(text: &str, path: &Path) -> EngineResult<C> {
    toml::from_str(text).map_err(|e| EngineError::data(path, e.to_string().trim().to_string()))
}

/// A settings file: a serde struct read by the one loader ([`read_toml`]), then checked by its
/// own rules before any work.
pub trait Settings: DeserializeOwned + Sized {
    /// The error of the settings' own checks.
    type Error: From<EngineError>;

    /// Checks every value; errors name the key.
    fn validate(&self) -> Result<(), Self::Error>;

    /// Parses TOML `text` (read from `path`) and validates it.
    fn from_toml(text: &str, path: &Path) -> Result<Self, Self::Error> {
        let settings: Self = parse_toml(text, path)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads the TOML file `path` and validates it.
    fn load(path: &Path) -> Result<Self, Self::Error> {
        let settings: Self = read_toml(path)?;
        settings.validate()?;
        Ok(settings)
    }
}

/// Writes `config` as TOML to `path`, atomically.
pub fn write_toml<C: Serialize>(config: &C, path: &Path) -> EngineResult<()> {
    let text = toml::to_string_pretty(config)
        .map_err(|e| EngineError::data(path, format!("cannot serialise the config: {e}")))?;
    lofi_eval::write_atomic(path, text.as_bytes()).map_err(|e| EngineError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Settings {
        epochs: usize,
    }

    fn plan() -> OutputPlan {
        OutputPlan::new(crate::owned::FolderKind::Training, &[], &[])
    }

    fn control(resume: bool, overwrite: bool) -> RunControl {
        RunControl {
            resume,
            overwrite,
            ..RunControl::default()
        }
    }

    #[test]
    fn fresh_resume_and_refusal() -> EngineResult<()> {
        let tmp = tempfile::tempdir().map_err(|e| EngineError::io("tmp", e))?;
        let root = tmp.path().join("run");
        let a = Settings { epochs: 2 };
        let inputs = || Fingerprint::new().with("init", &"sha256:aa");
        let dir = RunDir::open(&root, &a, inputs()?, &control(false, false), &plan())?;
        assert!(dir.checkpoints().is_dir());
        assert_eq!(read_toml::<Settings>(&dir.path(files::CONFIG))?, a);
        // One process at a time.
        let e =
            RunDir::open(&root, &a, inputs()?, &control(true, false), &plan()).expect_err("locked");
        assert!(
            e.to_string().contains("in use by another lofi process"),
            "{e}"
        );
        drop(dir);
        // No checkpoint yet: a fresh start may reuse the folder.
        let dir = RunDir::open(&root, &a, inputs()?, &control(false, false), &plan())?;
        dir.owner().write("checkpoints/last", b"{}")?;
        drop(dir);
        let e =
            RunDir::open(&root, &a, inputs()?, &control(false, false), &plan()).expect_err("a run");
        assert!(e.to_string().contains("already holds a run"), "{e}");
        drop(RunDir::open(
            &root,
            &a,
            inputs()?,
            &control(true, false),
            &plan(),
        )?);
        let e = RunDir::open(
            &root,
            &Settings { epochs: 3 },
            inputs()?,
            &control(true, false),
            &plan(),
        )
        .expect_err("other config");
        assert!(
            e.to_string()
                .contains("config.epochs: 2 (recorded) vs 3 (this run)"),
            "{e}"
        );
        let other = Fingerprint::new().with("init", &"sha256:bb")?;
        let e = RunDir::open(&root, &a, other.clone(), &control(true, false), &plan())
            .expect_err("other initial weights");
        assert!(e.to_string().contains("init: \"sha256:aa\""), "{e}");
        // --overwrite clears the old run and starts this one.
        let b = Settings { epochs: 3 };
        let dir = RunDir::open(&root, &b, other, &control(false, true), &plan())?;
        assert!(!dir.checkpoints().join("last").exists());
        assert_eq!(read_toml::<Settings>(&dir.path(files::CONFIG))?, b);
        Ok(())
    }
}
