//! The TOML configurations of `lofi pretrain` and `lofi train`, with the paper's defaults and a
//! validation pass that runs before any work.
//!
//! Exists so that a run is described by one file: every key has a default from the LoFi paper
//! (or a documented choice where the paper is silent), unknown keys are errors naming the key,
//! impossible values are errors naming the key and the value, and each run writes the config it
//! actually used to `RUN_DIR/config.toml` so it can be repeated or resumed.

use std::path::Path;

use lofi_engine::Preset;
use lofi_head::Temporal;
use lofi_model::{
    DetectConfig, EncoderArch, EncoderKind, HeadArch, HeadKind, Precision, TargetConfig,
};
use lofi_video::{Fidelity, Sampling};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{TrainError, TrainResult};
use crate::memory::ByteSize;
use crate::schedule::{FidelitySchedule, ScheduleKind};

/// A fidelity as written in a config: `{ snippets = 100, size = 224 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FidelitySpec {
    /// Snippets per video, `L`.
    pub snippets: usize,
    /// Frame side in pixels.
    pub size: usize,
}

impl FidelitySpec {
    /// As the video crate's type (checked: both at least 1).
    pub fn fidelity(self, key: &str) -> TrainResult<Fidelity> {
        Fidelity::new(self.snippets, self.size).map_err(|_| {
            TrainError::Config(format!(
                "{key}: snippets and size must both be at least 1, got {} x {}",
                self.snippets, self.size
            ))
        })
    }
}

impl From<Fidelity> for FidelitySpec {
    fn from(f: Fidelity) -> Self {
        Self {
            snippets: f.snippets,
            size: f.size,
        }
    }
}

/// SGD with a step learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    /// Initial learning rate.
    pub lr: f64,
    /// Factor applied every `lr_step_epochs` epochs.
    pub lr_decay: f64,
    /// Epochs between learning-rate decays.
    pub lr_step_epochs: usize,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// SGD momentum (0 disables it).
    pub momentum: f64,
    /// Clip the gradient norm at this value (`None`: no clipping).
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimizerSection {
    /// LoFi's recipe: lr 0.1, x0.5 every 5 epochs, weight decay 1e-4, momentum 0.
    fn default() -> Self {
        Self {
            lr: 0.1,
            lr_decay: 0.5,
            lr_step_epochs: 5,
            weight_decay: 1e-4,
            momentum: 0.0,
            grad_clip_norm: None,
        }
    }
}

impl OptimizerSection {
    /// Learning rate of epoch `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        self.lr * self.lr_decay.powi((epoch / self.lr_step_epochs) as i32)
    }

    fn validate(&self, section: &str) -> TrainResult<()> {
        let bad = |m: String| Err(TrainError::Config(format!("{section}.{m}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {} must be positive", self.lr));
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0) {
            return bad(format!("lr_decay = {} must be positive", self.lr_decay));
        }
        if self.lr_step_epochs == 0 {
            return bad("lr_step_epochs must be at least 1".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight_decay = {} must be >= 0", self.weight_decay));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!("momentum = {} must be in [0, 1)", self.momentum));
        }
        if let Some(c) = self.grad_clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("grad_clip_norm = {c} must be positive"));
            }
        }
        Ok(())
    }
}

/// The fidelity schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// full, s, t, st, long-cycle or short-cycle.
    pub kind: ScheduleKind,
    /// Long cycle: epochs per fidelity (`c_l`).
    pub long_cycle_epochs: usize,
    /// Short cycle: mini-batches per fidelity (`c_s`).
    pub short_cycle_batches: usize,
    /// Custom cycle list replacing S, T, ST for the cycles.
    pub fidelities: Option<Vec<FidelitySpec>>,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::LongCycle,
            long_cycle_epochs: 1,
            short_cycle_batches: 16,
            fidelities: None,
        }
    }
}

/// Everything `lofi train` needs besides file paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of initialisation, data order and loss sampling.
    pub seed: u64,
    /// Training epochs (not stated in the paper; 10 as in G-TAD).
    pub epochs: usize,
    /// Videos per optimizer step.
    pub batch_size: usize,
    /// Videos per forward/backward pass (gradient accumulation when smaller than the batch);
    /// `None`: the whole batch, or the memory planner's choice when a budget is set.
    pub micro_batch: Option<usize>,
    /// Memory budget ("12GiB", "auto" for the device's available memory); enables the planner.
    pub memory_budget: Option<String>,
    /// Frames per snippet during training (not stated in the paper; 1 makes the L snippets the
    /// TSM segments).
    pub frames_per_snippet: usize,
    /// Full fidelity of the run (the schedule's reductions are taken from it).
    pub full: FidelitySpec,
    /// The fidelity schedule.
    pub schedule: ScheduleSection,
    /// The optimizer.
    pub optimizer: OptimizerSection,
    /// The encoder (`[encoder]`: `kind = "tsm"` by default, or `"r2plus1d"`; see
    /// [`EncoderArch`]).
    pub encoder: EncoderArch,
    /// The head: `[head] kind` (`"gtad"` by default; the kinds of `lofi_model::HeadKind`),
    /// with that family's sizes.
    pub head: HeadArch,
    /// Post-processing of the validation passes, recorded in the head's card for `lofi detect`
    /// (the head's reference defaults; G-TAD's THUMOS14 sigma with `--preset thumos14`).
    pub detect: DetectConfig,
    /// Width of the boundary regions, in snippets.
    pub boundary_width: f64,
    /// Burn's balanced gradient checkpointing (recomputes cheap activations in the backward).
    pub gradient_checkpointing: bool,
    /// Numeric precision of the training step: "f32", or "bf16" (the encoder computes in bf16
    /// with f32 master weights and BatchNorm; the head and the loss stay f32). Validation and
    /// extraction run in f32.
    pub precision: Precision,
    /// Validate every this many epochs at full fidelity (0: never). Validation only reports: the
    /// run keeps its last epoch.
    pub validate_every: usize,
    /// Subset of the ground truth to train on, in any letter case (`None`: `training`, or
    /// THUMOS14's `Validation`, found by its subset names; see
    /// `lofi_video::ground_truth::GroundTruth::choose_subsets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<String>,
    /// Subset to validate on and that later stages evaluate on (`None`: `validation`, or
    /// THUMOS14's `Test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_subset: Option<String>,
    /// Video decoding threads.
    pub workers: usize,
    /// Where full-fidelity snippets sit for sliding windows: `[sampling] mode = "stride"` with
    /// `stride_frames` or `stride_seconds` (the stride the features will be extracted at).
    /// Only read with `[temporal] mode = "windows"`.
    #[serde(skip_serializing_if = "Sampling::is_rescale")]
    pub sampling: Sampling,
    /// Whole videos (rescale, the default) or sliding windows of `full.snippets` snippets every
    /// `window_stride` (`[temporal] mode = "windows"`): each window holding an action is a
    /// training sample, and the schedule's fidelity reduction applies per window.
    #[serde(skip_serializing_if = "Temporal::is_rescale")]
    pub temporal: Temporal,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 10,
            batch_size: 16,
            micro_batch: None,
            memory_budget: None,
            frames_per_snippet: 1,
            full: Fidelity::full().into(),
            schedule: ScheduleSection::default(),
            optimizer: OptimizerSection::default(),
            encoder: EncoderArch::default(),
            head: HeadArch::default(),
            detect: DetectConfig::default(),
            boundary_width: TargetConfig::default().boundary_width,
            gradient_checkpointing: false,
            precision: Precision::F32,
            validate_every: 1,
            train_subset: None,
            val_subset: None,
            workers: 2,
            sampling: Sampling::Rescale,
            temporal: Temporal::Rescale,
        }
    }
}

impl TrainConfig {
    /// The configuration of `preset` (`paper`: [`Default`]; `tiny`: [`TrainConfig::tiny`]).
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Paper => Self::default(),
            Preset::Tiny => Self::tiny(),
            Preset::Thumos14 => Self::thumos14(),
        }
    }

    /// THUMOS14 end to end as G-TAD's THUMOS14 code cuts it: features every 5 frames, windows of
    /// 256 snippets every 128 at 224 px as full fidelity (the schedules reduce each window),
    /// anchors up to 64 snippets; trained on `Validation` (the file's subsets decide, see
    /// [`crate::data::PretrainSubsets::choose`]).
    pub fn thumos14() -> Self {
        let mut c = Self {
            full: FidelitySpec {
                snippets: 256,
                size: 224,
            },
            sampling: Sampling::Stride {
                stride_frames: Some(lofi_head::THUMOS14_STRIDE_FRAMES),
                stride_seconds: None,
            },
            temporal: Temporal::Windows { window_stride: 128 },
            ..Self::default()
        };
        c.head = c.head.with_max_duration(Some(64));
        c.detect = lofi_head::detect_preset(Preset::Thumos14, &c.head);
        c
    }

    /// A tiny configuration for tests and the demo: TSM-R18 of width 4, tiny head, 16 snippets
    /// of 64 px at full fidelity, batch 4, 2 epochs.
    pub fn tiny() -> Self {
        Self {
            epochs: 2,
            batch_size: 4,
            full: FidelitySpec {
                snippets: 16,
                size: 64,
            },
            schedule: ScheduleSection {
                short_cycle_batches: 1,
                ..ScheduleSection::default()
            },
            optimizer: OptimizerSection {
                lr: 0.01,
                ..OptimizerSection::default()
            },
            encoder: EncoderArch::tiny(EncoderKind::Tsm, 18, 4),
            head: HeadArch::tiny(HeadKind::Gtad),
            ..Self::default()
        }
    }

    /// This configuration with a head of `kind` (same size class, the kind's reference
    /// post-processing); unchanged when it already has one.
    pub fn with_head_kind(mut self, kind: HeadKind) -> Self {
        if self.head.kind() != kind {
            self.head = self.head.with_kind(kind);
            self.detect = self.detect.for_head(&self.head);
        }
        self
    }

    /// The run's full fidelity.
    pub fn full_fidelity(&self) -> TrainResult<Fidelity> {
        self.full.fidelity("full")
    }

    /// The resolved schedule.
    pub fn fidelity_schedule(&self) -> TrainResult<FidelitySchedule> {
        let full = self.full_fidelity()?;
        let custom = match &self.schedule.fidelities {
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, f)| f.fidelity(&format!("schedule.fidelities[{i}]")))
                    .collect::<TrainResult<Vec<_>>>()?,
            ),
            None => None,
        };
        FidelitySchedule::new(
            self.schedule.kind,
            full,
            custom.as_deref(),
            self.schedule.long_cycle_epochs,
            self.schedule.short_cycle_batches,
        )
    }

    /// The memory budget in bytes, if one was set (`"auto"` resolves to `auto_bytes`).
    pub fn budget_bytes(&self, auto_bytes: Option<u64>) -> TrainResult<Option<u64>> {
        match self.memory_budget.as_deref() {
            None => Ok(None),
            Some("auto") => auto_bytes.map(Some).ok_or_else(|| {
                TrainError::Config(
                    "memory_budget = \"auto\" but the device's memory is unknown; give a size"
                        .into(),
                )
            }),
            Some(text) => text.parse::<ByteSize>().map(|b| Some(b.0)),
        }
    }

    /// Checks every value; called before any work.
    pub fn validate(&self) -> TrainResult<()> {
        if self.epochs == 0 {
            return Err(TrainError::Config("epochs must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(TrainError::Config("batch_size must be at least 1".into()));
        }
        if self.micro_batch == Some(0) {
            return Err(TrainError::Config("micro_batch must be at least 1".into()));
        }
        if self.frames_per_snippet == 0 {
            return Err(TrainError::Config(
                "frames_per_snippet must be at least 1".into(),
            ));
        }
        lofi_video::limits::check_workers(self.workers)?;
        self.sampling.check().map_err(TrainError::Config)?;
        if let Temporal::Windows { window_stride } = self.temporal {
            if window_stride == 0 || window_stride > self.full.snippets {
                return Err(TrainError::Config(format!(
                    "temporal.window_stride = {window_stride} must be between 1 and \
                     full.snippets = {} (the window length)",
                    self.full.snippets
                )));
            }
        }
        if !self.temporal.is_rescale() && self.sampling.is_rescale() {
            return Err(TrainError::Config(
                "temporal mode \"windows\" needs [sampling] mode = \"stride\" (the snippet \
                 stride the windows are counted in)"
                    .into(),
            ));
        }
        if !(self.boundary_width.is_finite() && self.boundary_width > 0.0) {
            return Err(TrainError::Config(format!(
                "boundary_width = {} must be positive",
                self.boundary_width
            )));
        }
        let full = self.full_fidelity()?;
        let schedule = self.fidelity_schedule()?;
        for f in schedule.fidelities().into_iter().chain([full]) {
            if let Err(e) = self.head.check_snippets(f.snippets) {
                return Err(TrainError::Config(format!(
                    "fidelity {}x{}: {e}",
                    f.snippets, f.size
                )));
            }
            lofi_video::limits::check_clip(f.snippets, self.frames_per_snippet, f.size)?;
            self.head
                .check_scale(f.snippets, lofi_video::limits::total_memory())?;
            if f.size < 8 {
                return Err(TrainError::Config(format!(
                    "fidelity {}x{}: frames of {} px are too small for a ResNet (need >= 8)",
                    f.snippets, f.size, f.size
                )));
            }
        }
        if let Some(text) = &self.memory_budget {
            if text != "auto" {
                text.parse::<ByteSize>()?;
            }
        }
        self.optimizer.validate("optimizer")?;
        self.encoder.validate()?;
        self.head
            .validate(self.encoder.out_channels())
            .map_err(|e| TrainError::Config(format!("head: {e}")))
    }
}

/// Everything `lofi pretrain` needs besides file paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Seed of initialisation and data order.
    pub seed: u64,
    /// Epochs over the training clips.
    pub epochs: usize,
    /// Clips per step.
    pub batch_size: usize,
    /// Frames sampled uniformly from each clip (TSM segments).
    pub segments: usize,
    /// Frame side in pixels.
    pub size: usize,
    /// Snippets per video `L` the encoder is meant for after pre-training: the full fidelity
    /// of `lofi train` and of extraction (paper 100, tiny 16, thumos14 256: its windows). Not
    /// used by pre-training itself (`segments` per clip); recorded in the encoder's model card,
    /// so that `lofi extract` feeds the pre-trained encoder like the one `lofi train` makes.
    pub snippets: usize,
    /// The sampling the encoder is meant for downstream (`[sampling]` as in `lofi train`:
    /// rescale, or a stride in frames or seconds); recorded in its model card.
    #[serde(skip_serializing_if = "Sampling::is_rescale")]
    pub sampling: Sampling,
    /// The optimizer (SGD; defaults lr 0.01, momentum 0.9, weight decay 1e-4, x0.1 every 10
    /// epochs, TSM's Kinetics recipe scaled down).
    pub optimizer: OptimizerSection,
    /// The encoder (`[encoder]`, as in the train config).
    pub encoder: EncoderArch,
    /// Video decoding threads.
    pub workers: usize,
    /// Add a "background" class of spans outside every annotation (only when the clips are
    /// sampled from annotated videos, `--ground-truth`; off by default).
    pub background: bool,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 10,
            batch_size: 8,
            segments: 8,
            size: 224,
            snippets: Fidelity::full().snippets,
            sampling: Sampling::Rescale,
            optimizer: OptimizerSection {
                lr: 0.01,
                lr_decay: 0.1,
                lr_step_epochs: 10,
                weight_decay: 1e-4,
                momentum: 0.9,
                grad_clip_norm: None,
            },
            encoder: EncoderArch::default(),
            workers: 2,
            background: false,
        }
    }
}

impl PretrainConfig {
    /// The configuration of `preset` (`paper`: [`Default`]; `tiny`: [`PretrainConfig::tiny`]).
    pub fn preset(preset: Preset) -> Self {
        match preset {
            Preset::Paper => Self::default(),
            Preset::Tiny => Self::tiny(),
            Preset::Thumos14 => Self::thumos14(),
        }
    }

    /// A tiny configuration for tests and the demo (width-4 TSM-R18, 4 frames of 64 px).
    pub fn tiny() -> Self {
        Self {
            epochs: 2,
            batch_size: 4,
            segments: 4,
            size: 64,
            snippets: TrainConfig::tiny().full.snippets,
            encoder: EncoderArch::tiny(EncoderKind::Tsm, 18, 4),
            ..Self::default()
        }
    }

    /// The paper's pre-training for an encoder meant for THUMOS14 as `lofi train --preset
    /// thumos14` trains it: windows of 256 snippets of features every 5 frames.
    pub fn thumos14() -> Self {
        let target = TrainConfig::thumos14();
        Self {
            snippets: target.full.snippets,
            sampling: target.sampling,
            ..Self::default()
        }
    }

    /// Checks every value; called before any work.
    pub fn validate(&self) -> TrainResult<()> {
        if self.epochs == 0
            || self.batch_size == 0
            || self.segments == 0
            || self.snippets == 0
            || self.workers == 0
        {
            return Err(TrainError::Config(
                "epochs, batch_size, segments, snippets and workers must all be at least 1".into(),
            ));
        }
        if let Err(m) = self.sampling.check() {
            return Err(TrainError::Config(m));
        }
        if self.size < 8 {
            return Err(TrainError::Config(format!(
                "size = {} is too small for a ResNet (need >= 8)",
                self.size
            )));
        }
        lofi_video::limits::check_clip(1, self.segments, self.size)?;
        lofi_video::limits::check_workers(self.workers)?;
        self.optimizer.validate("optimizer")?;
        Ok(self.encoder.validate()?)
    }
}

/// Reads a TOML config with unknown keys rejected (the error names the file and the key).
pub fn read_config<T: DeserializeOwned>(path: &Path) -> TrainResult<T> {
    lofi_engine::read_toml(path).map_err(|e| match e {
        lofi_engine::EngineError::Data { path, message } => {
            TrainError::ConfigFile { path, message }
        }
        other => other.into(),
    })
}

/// Parses TOML text into a config.
pub fn parse_config<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    lofi_engine::parse_toml::<T>(text, Path::new("config")).map_err(|e| match e {
        lofi_engine::EngineError::Data { message, .. } => message,
        other => other.to_string(),
    })
}

/// Writes a config as TOML, atomically.
pub fn write_config<T: Serialize>(value: &T, path: &Path) -> TrainResult<()> {
    Ok(lofi_engine::run_dir::write_toml(value, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_paper_recipe() {
        let c = TrainConfig::default();
        assert_eq!(c.batch_size, 16);
        assert_eq!(c.optimizer.lr, 0.1);
        assert_eq!(c.optimizer.momentum, 0.0);
        assert_eq!(c.optimizer.weight_decay, 1e-4);
        assert_eq!(c.optimizer.lr_at(4), 0.1);
        assert_eq!(c.optimizer.lr_at(5), 0.05);
        assert_eq!(c.optimizer.lr_at(10), 0.025);
        assert_eq!(c.schedule.long_cycle_epochs, 1);
        assert_eq!(c.schedule.short_cycle_batches, 16);
        assert_eq!(c.full_fidelity().ok(), Some(Fidelity::full()));
        assert!(c.validate().is_ok());
        assert!(TrainConfig::tiny().validate().is_ok());
        assert!(PretrainConfig::default().validate().is_ok());
        assert!(PretrainConfig::tiny().validate().is_ok());
    }

    #[test]
    fn round_trip_through_toml() -> TrainResult<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let path = dir.path().join("config.toml");
        let mut c = TrainConfig::tiny();
        c.schedule.fidelities = Some(vec![FidelitySpec {
            snippets: 8,
            size: 32,
        }]);
        c.memory_budget = Some("2GiB".into());
        write_config(&c, &path)?;
        let back: TrainConfig = read_config(&path)?;
        assert_eq!(back, c);
        Ok(())
    }

    #[test]
    fn partial_files_take_defaults() {
        let c: TrainConfig =
            parse_config("epochs = 3\n[schedule]\nkind = \"short-cycle\"\n").expect("valid config");
        assert_eq!(c.epochs, 3);
        assert_eq!(c.schedule.kind, ScheduleKind::ShortCycle);
        assert_eq!(c.batch_size, 16);
    }

    #[test]
    fn unknown_keys_are_named() {
        for text in [
            "epoch = 3\n",
            "[optimizer]\nlearning_rate = 0.1\n",
            "[schedule]\nkind = \"long-cycle\"\nc_l = 2\n",
            "[encoder]\ndepht = 18\n",
            "[full]\nsnippets = 10\nsize = 64\nframes = 2\n",
        ] {
            let err = parse_config::<TrainConfig>(text).expect_err(text);
            assert!(err.contains("unknown field"), "{text}: {err}");
        }
        let err = parse_config::<TrainConfig>("[schedule]\nkind = \"medium-cycle\"\n")
            .expect_err("bad kind");
        assert!(err.contains("medium-cycle"), "{err}");
        assert!(parse_config::<PretrainConfig>("segmnets = 3\n").is_err());
    }

    #[test]
    fn impossible_values_are_rejected_with_the_key() {
        let check = |edit: &dyn Fn(&mut TrainConfig), needle: &str| {
            let mut c = TrainConfig::tiny();
            edit(&mut c);
            let err = c.validate().expect_err(needle).to_string();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        };
        check(&|c| c.full.snippets = 1, "L >= 2");
        check(&|c| c.full.size = 0, "full");
        check(&|c| c.epochs = 0, "epochs");
        check(&|c| c.batch_size = 0, "batch_size");
        check(&|c| c.micro_batch = Some(0), "micro_batch");
        check(&|c| c.optimizer.lr = -1.0, "optimizer.lr");
        check(&|c| c.optimizer.momentum = 1.5, "momentum");
        check(&|c| c.optimizer.lr_step_epochs = 0, "lr_step_epochs");
        check(
            &|c| c.encoder = EncoderArch::new(EncoderKind::Tsm, 19),
            "encoder.depth",
        );
        check(
            &|c| c.encoder = EncoderArch::new(EncoderKind::R2plus1d, 50),
            "encoder.depth",
        );
        check(&|c| c.memory_budget = Some("lots".into()), "lots");
        check(
            &|c| c.schedule.short_cycle_batches = 0,
            "short_cycle_batches",
        );
        check(
            &|c| {
                c.schedule.kind = ScheduleKind::T;
                c.full.snippets = 4;
            },
            "L >= 2",
        );
        check(
            &|c| {
                c.schedule.fidelities = Some(vec![FidelitySpec {
                    snippets: 8,
                    size: 0,
                }])
            },
            "schedule.fidelities[0]",
        );
        check(
            &|c| {
                c.head = lofi_model::HeadArch::Gtad(lofi_model::GtadArch {
                    stem_groups: 3,
                    ..lofi_model::GtadArch::tiny()
                })
            },
            "head",
        );
        let mut p = PretrainConfig::tiny();
        p.segments = 0;
        assert!(p.validate().is_err());
    }

    #[test]
    fn budgets() -> TrainResult<()> {
        let mut c = TrainConfig::tiny();
        assert_eq!(c.budget_bytes(Some(5))?, None);
        c.memory_budget = Some("1KiB".into());
        assert_eq!(c.budget_bytes(None)?, Some(1024));
        c.memory_budget = Some("auto".into());
        assert_eq!(c.budget_bytes(Some(7))?, Some(7));
        assert!(c.budget_bytes(None).is_err());
        Ok(())
    }
}
