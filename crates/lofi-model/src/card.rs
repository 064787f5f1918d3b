//! Model cards: the JSON sidecar that makes every weights file lofi writes self-describing.
//!
//! Exists because a `.bpk` holds tensors only: without its architecture every later stage had to
//! be told depth, width, snippets and frame size again, and a wrong guess ended in a list of
//! per-tensor shape errors. Beside each weights file (`encoder.bpk` -> `encoder.json`) lofi writes
//! a [`ModelCard`]: what network the weights are for ([`ModelSpec`]), the input it expects
//! ([`InputSpec`]: snippets, frames per snippet, frame size or feature channels, and the input
//! normalisation), the class list, and the producing stage with its whole config as JSON
//! ([`Producer`]), so keys added to a config later travel with the model without a change here.
//!
//! Writing order: the weights first (atomically, [`crate::checkpoint::save`]), then the card
//! (temporary name, then rename) with the weights' byte count and SHA-256, computed by the writer
//! from the file it just wrote. Reading refuses a card whose weights are missing, have another
//! size, or (version 2) another SHA-256 (the weights of another run of the same architecture
//! under an old card), so a card and its weights are always a pair. A weights file without a
//! card (older runs, imported PyTorch files) still loads when the architecture is given
//! explicitly; when it does not match, the error names what the file holds (inferred from its
//! tensor shapes) and what was asked for ([`ModelError::ArchMismatch`]), never the per-tensor
//! list.
//!
//! Version 2 records everything a later stage needs to feed the model like for like: the full
//! fidelity it was trained for (also for a pre-trained trunk: the fidelity it is meant for
//! downstream), the sampling (`rescale`, or a stride in frames or seconds, with the window
//! stride when it was trained on windows), the subsets of its run and the weights' SHA-256.
//! Version-1 cards still load: their sampling and subsets are taken from the producer's config
//! where it has them, and a note says so once per card ([`ModelCard::read`]).
//!
//! Layout (version 2):
//! ```json
//! {
//!   "format": "lofi-model-card", "version": 2,
//!   "weights": "encoder.bpk", "weights_bytes": 123456,
//!   "weights_sha256": "sha256:9f86d0...",
//!   "model": {"kind": "encoder", "arch": {"kind": "tsm", "depth": 18, "base_width": 4,
//!             "shift": true, "shift_div": 8, "frozen_bn": false}, "num_classes": null},
//!   "input": {"snippets": 16, "frames_per_snippet": 1, "size": 64, "channels": null,
//!             "normalization": {"kind": "pixels", "scale": 255.0, "mean": [..], "std": [..]},
//!             "sampling": {"mode": "stride", "stride_frames": 5}, "window_stride": 128},
//!   "subsets": {"train": "Validation", "evaluation": "Test"},
//!   "classes": ["a", "b"],
//!   "producer": {"command": "train", "lofi_version": "0.1.0", "config": {..},
//!                "features": {..}}
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::{BurnpackStore, KeyRemapper, ModuleStore, PytorchStore, SafetensorsStore};
use lofi_eval::feature_folder::Sampling;
use serde::{Deserialize, Serialize};

use crate::encoder::{EncoderArch, EncoderKind};
use crate::error::ModelError;
use crate::head::{DetectConfig, HeadArch};
use crate::import::{r2plus1d_key_patterns, resnet_key_patterns};

/// The value of [`ModelCard::format`].
pub const CARD_FORMAT: &str = "lofi-model-card";
/// The card layout this build writes and the newest it reads.
pub const CARD_VERSION: u32 = 2;

/// What a weights file holds and how to feed it; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Always [`CARD_FORMAT`].
    pub format: String,
    /// Layout version ([`CARD_VERSION`] when written by this build).
    pub version: u32,
    /// File name of the weights, in the card's folder.
    pub weights: String,
    /// Size of the weights file in bytes when the card was written.
    pub weights_bytes: u64,
    /// `sha256:<hex>` of the weights file, computed by the writer (version 2; `None` in a
    /// version-1 card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// The network.
    pub model: ModelSpec,
    /// The input the model expects.
    pub input: InputSpec,
    /// Class names in output order (a clip or video classifier), or the classes the model was
    /// trained on (a trunk after pre-training); `None` for class-agnostic models.
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// The subsets of the producing run (version 2; from the producer's config or absent in a
    /// version-1 card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsets: Option<RunSubsets>,
    /// The stage that wrote the weights.
    pub producer: Producer,
}

/// [`RunSubsets::selection`] of a run that keeps the weights of its last epoch.
pub const LAST_EPOCH: &str = "last epoch";

/// The subsets of the ground truth a run used, as named in its file (`training`, `Validation`,
/// ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSubsets {
    /// The videos (or clips) it was trained on.
    pub train: String,
    /// The videos it was evaluated on (validation loss and mAP, or the later stages' default
    /// for detection and evaluation); `None` when the run evaluated nothing.
    #[serde(default)]
    pub evaluation: Option<String>,
    /// How the kept weights were chosen: `"last epoch"`, or `"lowest validation loss on
    /// <subset>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<String>,
}

/// The network a weights file is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// A video encoder; `num_classes` is its clip classifier's size (`None`: the trunk alone).
    Encoder {
        /// Family and sizes.
        arch: EncoderArch,
        /// Classes of the clip classifier stored with it, if any.
        #[serde(default)]
        num_classes: Option<usize>,
    },
    /// A localization head ([`HeadArch`]) on `in_channels` features at `snippets` snippets;
    /// whole videos resampled to `snippets`, or windows of it (the card's
    /// [`InputSpec::window_stride`]).
    Head {
        /// Family and sizes (`"kind"`; absent in a card written before heads were a choice: a
        /// G-TAD).
        arch: HeadArch,
        /// Feature channels `C`.
        in_channels: usize,
        /// Temporal scale `L` it was trained at.
        snippets: usize,
        /// The post-processing its run validated with, which `lofi detect` applies (version 2;
        /// from the producer's config in a version-1 card; `None`: the head's defaults).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detect: Option<DetectConfig>,
    },
    /// The video-level classifier of `lofi train-head` on `[mean, max]`-pooled features
    /// (`inputs` = 2C values, standardised as [`InputSpec::normalization`] says).
    VideoClassifier {
        /// Pooled input values (2 x feature channels).
        inputs: usize,
        /// Hidden units (0: linear).
        hidden: usize,
    },
}

/// How inputs are normalised before the model sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// RGB pixels: `(x / scale - mean[c]) / std[c]` per channel.
    Pixels {
        /// Divisor of the raw 8-bit values (255).
        scale: f32,
        /// Per-channel mean (RGB).
        mean: [f32; 3],
        /// Per-channel standard deviation (RGB).
        std: [f32; 3],
    },
    /// Per-dimension standardisation `(x - mean[i]) / std[i]` (the video classifier's pooled
    /// features).
    Standardize {
        /// Per-dimension mean.
        mean: Vec<f32>,
        /// Per-dimension standard deviation.
        std: Vec<f32>,
    },
    /// Features as they are.
    None,
}

/// The input a model expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Snippets per video `L`; `None` when any `L` works (a trunk pre-trained on trimmed clips).
    #[serde(default)]
    pub snippets: Option<usize>,
    /// Frames per snippet `F` (video models).
    #[serde(default)]
    pub frames_per_snippet: Option<usize>,
    /// Frame side `S` in pixels (video models).
    #[serde(default)]
    pub size: Option<usize>,
    /// Feature channels `C` (models on features).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Input normalisation.
    pub normalization: Normalization,
    /// Where the snippets sit on a video (version 2): `snippets` over the whole video
    /// (rescale), or one every N frames or seconds (stride). `None`: not recorded (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Trained on windows of `snippets` snippets of stride features, one every this many
    /// snippets (version 2); `None`: whole videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_stride: Option<usize>,
}

impl InputSpec {
    /// Sets the sampling and the window stride (see the fields).
    pub fn with_sampling(mut self, sampling: Sampling, window_stride: Option<usize>) -> Self {
        self.sampling = Some(sampling);
        self.window_stride = window_stride;
        self
    }

    /// `snippets x frames x size px` (video models) or `snippets x channels` (models on
    /// features), with the sampling: `"16 x 1 x 64 px, rescale"`, `"256 x 1 x 224 px, stride 5
    /// frames, windows every 128"`.
    pub fn describe(&self) -> String {
        let l = self
            .snippets
            .map_or_else(|| "any L".to_string(), |l| l.to_string());
        let mut out = match (self.frames_per_snippet, self.size, self.channels) {
            (Some(f), Some(s), _) => format!("{l} x {f} x {s} px"),
            (_, _, Some(c)) => format!("{l} x {c} channels"),
            _ => l,
        };
        if let Some(s) = &self.sampling {
            out.push_str(", ");
            out.push_str(&describe_sampling(s));
        }
        if let Some(w) = self.window_stride {
            out.push_str(&format!(", windows every {w}"));
        }
        out
    }
}

/// `rescale`, `stride 5 frames`, `stride 0.5 s`.
pub fn describe_sampling(sampling: &Sampling) -> String {
    match sampling {
        Sampling::Rescale => "rescale".into(),
        Sampling::Stride {
            stride_frames: Some(n),
            ..
        } => format!("stride {n} frames"),
        Sampling::Stride {
            stride_seconds: Some(s),
            ..
        } => format!("stride {s} s"),
        Sampling::Stride { .. } => "stride (unset)".into(),
    }
}

/// Who wrote the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    /// The lofi command (`pretrain`, `train`, `train-head`).
    pub command: String,
    /// lofi's version.
    pub lofi_version: String,
    /// The command's whole config, as JSON (the run's `config.toml`).
    pub config: serde_json::Value,
    /// For models trained on features: the settings the features were extracted with (the
    /// feature folder's `config.toml`, as JSON), when the folder has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<serde_json::Value>,
}

impl Producer {
    /// `command` with `config` serialised.
    pub fn new<C: Serialize>(command: &str, config: &C) -> Result<Self, ModelError> {
        Ok(Self {
            command: command.to_string(),
            lofi_version: env!("CARGO_PKG_VERSION").to_string(),
            config: serde_json::to_value(config)
                .map_err(|e| ModelError::Config(format!("cannot record the config: {e}")))?,
            features: None,
        })
    }

    /// Records the extraction settings of the features the model was trained on.
    pub fn with_features(mut self, features: Option<serde_json::Value>) -> Self {
        self.features = features;
        self
    }
}

/// Logs `message` at info level the first time it is given for `path` in this process.
fn note_once(path: &Path, message: &str) {
    static NOTED: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = NOTED
        .lock()
        .map(|mut set| set.insert(path.to_path_buf()))
        .unwrap_or(true);
    if first {
        tracing::info!("{message}");
    }
}

/// The sidecar of `weights`: the same name with `.json`.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// `path` itself, or `path/default_name` when `path` is a folder (a run folder given as
/// `--encoder runs/x` or `--head runs/x/head`).
pub fn resolve_weights(path: &Path, default_name: &str) -> Result<PathBuf, ModelError> {
    if path.is_dir() {
        let p = path.join(default_name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("this folder holds no {default_name} (is it the right run?)"),
            })
        }
    } else {
        Ok(path.to_path_buf())
    }
}

impl ModelCard {
    /// A card for the weights file `weights` (name and size filled in by [`write_beside`]).
    ///
    /// [`write_beside`]: Self::write_beside
    pub fn new(model: ModelSpec, input: InputSpec, producer: Producer) -> Self {
        Self {
            format: CARD_FORMAT.to_string(),
            version: CARD_VERSION,
            weights: String::new(),
            weights_bytes: 0,
            weights_sha256: None,
            model,
            input,
            classes: None,
            subsets: None,
            producer,
        }
    }

    /// Sets the subsets of the producing run.
    pub fn with_subsets(mut self, subsets: Option<RunSubsets>) -> Self {
        self.subsets = subsets;
        self
    }

    /// Sets the class list.
    pub fn with_classes(mut self, classes: Option<Vec<String>>) -> Self {
        self.classes = classes;
        self
    }

    /// Writes the card beside `weights` (which must already be complete) with their size and
    /// SHA-256: `<stem>.json`, under a temporary name first, then renamed.
    pub fn write_beside(&self, weights: &Path) -> Result<PathBuf, ModelError> {
        let err = |p: &Path, message: String| ModelError::Checkpoint {
            path: p.to_path_buf(),
            message,
        };
        let bytes = std::fs::metadata(weights)
            .map_err(|e| err(weights, format!("cannot describe missing weights: {e}")))?
            .len();
        let mut card = self.clone();
        card.weights = weights
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| err(weights, "weights file name is not UTF-8".into()))?
            .to_string();
        card.weights_bytes = bytes;
        card.weights_sha256 = Some(
            crate::hash::sha256_file(weights)
                .map_err(|e| err(weights, format!("cannot hash the weights: {e}")))?,
        );
        card.version = CARD_VERSION;
        let path = card_path(weights);
        let text = serde_json::to_string_pretty(&card)
            .map_err(|e| err(&path, format!("cannot serialise the card: {e}")))?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text + "\n").map_err(|e| err(&tmp, format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, format!("cannot rename: {e}")))?;
        Ok(path)
    }

    /// Reads a card file and checks it against its weights (present, same size).
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(CARD_FORMAT) {
            return Err(err(format!(
                "not a lofi model card (\"format\" is {format:?}, expected {CARD_FORMAT:?})"
            )));
        }
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version == 0 || version > u64::from(CARD_VERSION) {
            return Err(err(format!(
                "card version {version} is not readable by this lofi (reads 1 to {CARD_VERSION}; \
                 a newer lofi wrote it?)"
            )));
        }
        let mut card: Self =
            serde_json::from_value(value).map_err(|e| err(format!("invalid card: {e}")))?;
        let weights = path.with_file_name(&card.weights);
        match std::fs::metadata(&weights) {
            Err(_) => {
                return Err(err(format!(
                    "describes {}, which is missing (an interrupted write? the card is written \
                     after the weights)",
                    weights.display()
                )))
            }
            Ok(m) if m.len() != card.weights_bytes => {
                return Err(err(format!(
                    "describes a {} of {} bytes, but the file has {} (the weights were replaced \
                     after the card was written)",
                    card.weights,
                    card.weights_bytes,
                    m.len()
                )))
            }
            Ok(_) => {}
        }
        if let Some(expected) = &card.weights_sha256 {
            let found = crate::hash::sha256_file(&weights)
                .map_err(|e| err(format!("cannot hash {}: {e}", weights.display())))?;
            if &found != expected {
                return Err(err(format!(
                    "written by `lofi {}` (lofi {}) for weights {expected}, but {} has {found}: \
                     not the weights this card describes (another run's?)",
                    card.producer.command,
                    card.producer.lofi_version,
                    weights.display()
                )));
            }
        }
        if card.version == 1 {
            card.upgrade_v1(path);
        }
        Ok(card)
    }

    /// Fills a version-1 card's missing fields from its producer's config where it has them
    /// (sampling, window stride) and says once per card what was taken and what stays unknown.
    fn upgrade_v1(&mut self, path: &Path) {
        let config = V1Config::of(&self.producer.config);
        let features = self.producer.features.as_ref().map(V1Config::of);
        let mut taken = Vec::new();
        // A config that records no sampling sampled by rescale (lofi writes the key only for a
        // stride), as did a stage that has no sampling at all (pre-training on clips).
        let sampling = match config
            .sampling
            .clone()
            .or_else(|| features.as_ref().and_then(|f| f.sampling.clone()))
        {
            Some(v) => serde_json::from_value::<Sampling>(v).ok(),
            None => Some(Sampling::Rescale),
        };
        if let Some(s) = sampling {
            taken.push(format!("sampling {}", describe_sampling(&s)));
            self.input.sampling = Some(s);
        }
        let windows = config
            .temporal
            .as_ref()
            .or_else(|| features.as_ref().and_then(|f| f.temporal.as_ref()))
            .and_then(|t| (t.mode == "windows").then_some(t.window_stride).flatten());
        if let Some(w) = windows {
            taken.push(format!("windows every {w}"));
            self.input.window_stride = Some(w);
        }
        if let (None, Some(train)) = (&self.subsets, config.train_subset.clone()) {
            let evaluation = config.val_subset.clone();
            taken.push(format!(
                "subsets {train} / {}",
                evaluation.as_deref().unwrap_or("none")
            ));
            self.subsets = Some(RunSubsets {
                train,
                evaluation,
                selection: None,
            });
        }
        if let ModelSpec::Head { detect, .. } = &mut self.model {
            if let (None, Some(d)) = (&detect, config.detect) {
                taken.push("post-processing".into());
                *detect = Some(d);
            }
        }
        let mut unknown = vec!["no weights hash (only the size is checked)"];
        if self.input.snippets.is_none() && self.input.size.is_some() {
            unknown.push("no snippets per video");
        }
        if self.subsets.is_none() {
            unknown.push("no subsets");
        }
        note_once(
            path,
            &format!(
                "{} is a version-1 model card: {} taken from its producer's config (`lofi {}`); \
                 {}",
                path.display(),
                if taken.is_empty() {
                    "nothing".to_string()
                } else {
                    taken.join(", ")
                },
                self.producer.command,
                unknown.join(", ")
            ),
        );
    }

    /// The card beside `weights`, if there is one (checked as [`read`](Self::read) does). A
    /// JSON file of that name that is not a lofi card (another tool's file beside an imported
    /// `model.pth`) is not a card: `None`.
    pub fn read_beside(weights: &Path) -> Result<Option<Self>, ModelError> {
        let path = card_path(weights);
        let is_card = || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(CARD_FORMAT))
        };
        if path.is_file() && path != weights && is_card() {
            let card = Self::read(&path)?;
            let named = weights.file_name().and_then(|n| n.to_str());
            if named != Some(card.weights.as_str()) {
                return Err(ModelError::Checkpoint {
                    path,
                    message: format!("describes {}, not {}", card.weights, weights.display()),
                });
            }
            Ok(Some(card))
        } else {
            Ok(None)
        }
    }

    /// The encoder this card describes, or an error naming what it describes instead.
    pub fn encoder(&self) -> Result<(&EncoderArch, Option<usize>), ModelError> {
        match &self.model {
            ModelSpec::Encoder { arch, num_classes } => Ok((arch, *num_classes)),
            other => Err(ModelError::Config(format!(
                "{} holds {}, not a video encoder",
                self.weights,
                other.describe()
            ))),
        }
    }
}

/// What a version-1 card's producer config (or its features' settings) can tell about the
/// fields version 2 records; every key optional, the rest of the config ignored.
#[derive(Debug, Default, Deserialize)]
struct V1Config {
    #[serde(default)]
    sampling: Option<serde_json::Value>,
    #[serde(default)]
    temporal: Option<V1Temporal>,
    #[serde(default)]
    train_subset: Option<String>,
    #[serde(default)]
    val_subset: Option<String>,
    #[serde(default)]
    detect: Option<DetectConfig>,
}

/// `[temporal]` of a version-1 producer config.
#[derive(Debug, Deserialize)]
struct V1Temporal {
    mode: String,
    #[serde(default)]
    window_stride: Option<usize>,
}

impl V1Config {
    /// The fields of `value` that read as the types above (a field that does not is unknown).
    fn of(value: &serde_json::Value) -> Self {
        let field = |key: &str| -> Option<serde_json::Value> {
            match value {
                serde_json::Value::Object(m) => m.get(key).cloned(),
                _ => None,
            }
        };
        fn typed<T: serde::de::DeserializeOwned>(v: Option<serde_json::Value>) -> Option<T> {
            v.and_then(|v| serde_json::from_value(v).ok())
        }
        Self {
            sampling: field("sampling"),
            temporal: typed(field("temporal")),
            train_subset: typed(field("train_subset")),
            val_subset: typed(field("val_subset")),
            detect: typed(field("detect")),
        }
    }
}

impl ModelSpec {
    /// A short human description ("a TSM-R18 width 4 with 3 classes").
    pub fn describe(&self) -> String {
        match self {
            Self::Encoder { arch, num_classes } => {
                format!("a {}", describe_encoder(arch, *num_classes))
            }
            Self::Head {
                arch,
                in_channels,
                snippets,
                ..
            } => format!(
                "a {} head on {in_channels} channels at L = {snippets}",
                arch.describe()
            ),
            Self::VideoClassifier { inputs, hidden } => {
                format!("a video classifier on {inputs} pooled values (hidden {hidden})")
            }
        }
    }
}

impl fmt::Display for EncoderArch {
    /// `TSM-R18 width 64` / `R(2+1)D-34 width 64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            EncoderKind::Tsm => write!(f, "TSM-R{} width {}", self.depth(), self.base_width()),
            EncoderKind::R2plus1d => {
                write!(f, "R(2+1)D-{} width {}", self.depth(), self.base_width())
            }
        }
    }
}

/// `TSM-R18 width 4 with 3 classes` (without the classes part for a trunk).
pub fn describe_encoder(arch: &EncoderArch, num_classes: Option<usize>) -> String {
    match num_classes {
        Some(k) => format!("{arch} with {k} classes"),
        None => arch.to_string(),
    }
}

/// What the tensors of an encoder weights file say about its architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundEncoder {
    /// Family.
    pub kind: EncoderKind,
    /// Depth, when the block counts are those of a known network.
    pub depth: Option<usize>,
    /// Width of `layer1` (TSM: the stem's output channels).
    pub base_width: Option<usize>,
    /// Classes of the clip classifier in the file, if it has one.
    pub num_classes: Option<usize>,
    /// Blocks per stage, as counted.
    pub blocks: [usize; 4],
}

impl FoundEncoder {
    /// Whether `arch` (with `num_classes`) has the tensors this file holds.
    pub fn matches(&self, arch: &EncoderArch, num_classes: Option<usize>) -> bool {
        self.kind == arch.kind()
            && self.depth == Some(arch.depth())
            && self.base_width == Some(arch.base_width())
            && self.num_classes == num_classes
    }

    /// The flags of `lofi extract` that select this architecture.
    pub fn flags(&self) -> String {
        let mut f = format!("--kind {}", self.kind);
        if let Some(d) = self.depth {
            f.push_str(&format!(" --depth {d}"));
        }
        if let Some(w) = self.base_width {
            f.push_str(&format!(" --base-width {w}"));
        }
        if let Some(k) = self.num_classes {
            f.push_str(&format!(" --num-classes {k}"));
        }
        f
    }
}

impl FoundEncoder {
    /// The `[encoder]` keys of a config that select this architecture.
    pub fn toml(&self) -> String {
        let mut t = format!("[encoder] kind = \"{}\"", self.kind);
        if let Some(d) = self.depth {
            t.push_str(&format!(", depth = {d}"));
        }
        if let Some(w) = self.base_width {
            t.push_str(&format!(", base_width = {w}"));
        }
        t
    }
}

impl fmt::Display for FoundEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let depth = self
            .depth
            .map_or_else(|| format!("?{:?}", self.blocks), |d| d.to_string());
        match self.kind {
            EncoderKind::Tsm => write!(f, "TSM-R{depth}")?,
            EncoderKind::R2plus1d => write!(f, "R(2+1)D-{depth}")?,
        }
        if let Some(w) = self.base_width {
            write!(f, " width {w}")?;
        }
        if let Some(k) = self.num_classes {
            write!(f, " with {k} classes")?;
        }
        Ok(())
    }
}

/// Tensor names (after our key remapping) and shapes of a weights file: `.bpk` (ours),
/// `.safetensors`, `.pth` / `.pt` (also under `state_dict` or `model`).
fn tensor_shapes(
    path: &Path,
    patterns: Vec<(&'static str, &'static str)>,
) -> Option<BTreeMap<String, Vec<usize>>> {
    fn shapes(
        map: &BTreeMap<String, burn::store::burn_pack::Tensor>,
    ) -> BTreeMap<String, Vec<usize>> {
        map.iter()
            .map(|(k, t)| (k.clone(), t.shape.to_vec()))
            .collect()
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let remapper = KeyRemapper::from_patterns(patterns).ok()?;
    match ext.as_str() {
        "safetensors" => {
            let mut store = SafetensorsStore::from_file(path).remap(remapper);
            store.get_all_tensors().ok().map(shapes)
        }
        "pth" | "pt" | "bin" => {
            for key in [None, Some("state_dict"), Some("model")] {
                let mut store = PytorchStore::from_file(path).remap(remapper.clone());
                if let Some(k) = key {
                    store = store.with_top_level_key(k);
                }
                if let Ok(map) = store.get_all_tensors() {
                    if map.keys().any(|k| k.starts_with("layer1.")) {
                        return Some(shapes(map));
                    }
                }
            }
            None
        }
        _ => {
            let mut store = BurnpackStore::from_file(path).auto_extension(false);
            store.get_all_tensors().ok().map(shapes)
        }
    }
}

/// Infers an encoder's architecture from the tensor shapes of `path`; `None` when the file is
/// unreadable or not a ResNet / R(2+1)D of a layout lofi knows.
pub fn inspect_encoder(path: &Path) -> Option<FoundEncoder> {
    let tensors = tensor_shapes(path, resnet_key_patterns())?;
    let kind = if tensors.keys().any(|k| k.starts_with("stem.")) {
        EncoderKind::R2plus1d
    } else if tensors.contains_key("conv1.weight") {
        EncoderKind::Tsm
    } else {
        return None;
    };
    let tensors = match kind {
        EncoderKind::Tsm => tensors,
        EncoderKind::R2plus1d => tensor_shapes(path, r2plus1d_key_patterns())?,
    };
    let mut blocks = [0usize; 4];
    for key in tensors.keys() {
        for (stage, count) in blocks.iter_mut().enumerate() {
            let prefix = format!("layer{}.", stage + 1);
            if let Some(rest) = key.strip_prefix(&prefix) {
                if let Some(i) = rest.split('.').next().and_then(|s| s.parse::<usize>().ok()) {
                    *count = (*count).max(i + 1);
                }
            }
        }
    }
    let bottleneck = tensors.keys().any(|k| k.contains(".conv3."));
    let depth = match (kind, blocks, bottleneck) {
        (_, [2, 2, 2, 2], false) => Some(18),
        (_, [3, 4, 6, 3], false) => Some(34),
        (EncoderKind::Tsm, [3, 4, 6, 3], true) => Some(50),
        _ => None,
    };
    let first = |key: &str| tensors.get(key).and_then(|s| s.first().copied());
    let base_width = match kind {
        EncoderKind::Tsm => first("conv1.weight"),
        EncoderKind::R2plus1d => first("layer1.0.conv1.temporal.weight"),
    };
    let num_classes = first("fc.bias");
    Some(FoundEncoder {
        kind,
        depth,
        base_width,
        num_classes,
        blocks,
    })
}

/// The short error for weights that do not fit `arch`: names what the file holds (its card, or
/// what its tensor shapes say) and what was asked for; `None` when neither tells a difference.
pub fn encoder_mismatch(
    path: &Path,
    arch: &EncoderArch,
    num_classes: Option<usize>,
) -> Option<ModelError> {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let expected = describe_encoder(arch, num_classes);
    if let Ok(Some(card)) = ModelCard::read_beside(path) {
        if let ModelSpec::Encoder {
            arch: found,
            num_classes: found_classes,
        } = &card.model
        {
            if !same_weights(found, *found_classes, arch, num_classes) {
                return Some(ModelError::ArchMismatch {
                    path: path.to_path_buf(),
                    message: format!(
                        "{file} holds a {}, the config asks for a {expected} (as its card {} \
                         says)",
                        describe_encoder(found, *found_classes),
                        card_path(path).display()
                    ),
                });
            }
        }
        return None;
    }
    let found = inspect_encoder(path)?;
    if found.matches(arch, num_classes) {
        return None;
    }
    Some(ModelError::ArchMismatch {
        path: path.to_path_buf(),
        message: format!(
            "{file} holds a {found}, the config asks for a {expected}; it has no card ({}) to say \
             its architecture, so give it explicitly: `{}` to extract (with --snippets, --frames, \
             --size for the fidelity it was trained at), or `{}` in a config",
            card_path(path)
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            found.flags(),
            found.toml()
        ),
    })
}

/// After weights failed to load under a card that agrees with the request: what the file's
/// tensors say it holds against what its card says (a card edited by hand keeps its weights'
/// hash), in one line; `None` when the shapes tell no difference.
pub fn card_contradiction(path: &Path) -> Option<ModelError> {
    let card = ModelCard::read_beside(path).ok()??;
    let ModelSpec::Encoder { arch, num_classes } = &card.model else {
        return None;
    };
    let found = inspect_encoder(path)?;
    if found.matches(arch, *num_classes) {
        return None;
    }
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    Some(ModelError::ArchMismatch {
        path: path.to_path_buf(),
        message: format!(
            "{} holds a {found} (by its tensor shapes), but its card {} says a {}: the card does \
             not describe these weights (edited by hand?); restore the card the run wrote, or \
             remove it and give the architecture explicitly",
            name(path),
            card_path(path).display(),
            describe_encoder(arch, *num_classes)
        ),
    })
}

/// Whether two encoders have the same tensors (the sizes that shape the weights).
pub fn same_weights(
    a: &EncoderArch,
    a_classes: Option<usize>,
    b: &EncoderArch,
    b_classes: Option<usize>,
) -> bool {
    a.kind() == b.kind()
        && a.depth() == b.depth()
        && a.base_width() == b.base_width()
        && a_classes == b_classes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> ModelCard {
        ModelCard::new(
            ModelSpec::Encoder {
                arch: EncoderArch::tiny(EncoderKind::Tsm, 18, 4),
                num_classes: Some(3),
            },
            InputSpec {
                snippets: Some(16),
                frames_per_snippet: Some(1),
                size: Some(64),
                channels: None,
                normalization: Normalization::Pixels {
                    scale: 255.0,
                    mean: [0.485, 0.456, 0.406],
                    std: [0.229, 0.224, 0.225],
                },
                sampling: None,
                window_stride: None,
            },
            Producer::new("pretrain", &serde_json::json!({"epochs": 2})).expect("config"),
        )
        .with_classes(Some(vec!["a".into(), "b".into(), "c".into()]))
    }

    #[test]
    fn a_card_round_trips_and_is_refused_without_its_weights() {
        let dir = tempfile::tempdir().expect("temp dir");
        let weights = dir.path().join("encoder.bpk");
        assert!(card().write_beside(&weights).is_err(), "no weights yet");
        std::fs::write(&weights, b"12345").expect("weights");
        let path = card().write_beside(&weights).expect("written");
        assert_eq!(path, dir.path().join("encoder.json"));
        let back = ModelCard::read_beside(&weights)
            .expect("read")
            .expect("card");
        assert_eq!(back.weights, "encoder.bpk");
        assert_eq!(back.weights_bytes, 5);
        assert_eq!(back.model, card().model);
        assert_eq!(back.producer.config["epochs"], 2);
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(text.contains("\"kind\": \"encoder\""), "{text}");
        assert!(text.contains("\"base_width\": 4"), "{text}");
        // Replaced weights and missing weights are refused by name.
        std::fs::write(&weights, b"123456").expect("weights");
        let e = ModelCard::read(&path).expect_err("size");
        assert!(e.to_string().contains("5 bytes"), "{e}");
        std::fs::remove_file(&weights).expect("rm");
        let e = ModelCard::read(&path).expect_err("missing");
        assert!(e.to_string().contains("missing"), "{e}");
        // A file that is not a card (another tool's JSON beside the weights: ignored beside
        // them), or a card from a newer lofi.
        std::fs::write(&path, "{\"format\": \"x\"}").expect("write");
        assert!(ModelCard::read(&path).is_err());
        std::fs::write(&weights, b"12345").expect("weights");
        assert_eq!(ModelCard::read_beside(&weights).expect("not a card"), None);
        std::fs::write(
            &path,
            format!("{{\"format\": \"{CARD_FORMAT}\", \"version\": 99}}"),
        )
        .expect("write");
        let e = ModelCard::read(&path).expect_err("newer");
        assert!(e.to_string().contains("version 99"), "{e}");
    }

    #[test]
    fn version_two_records_the_weights_hash_and_refuses_other_weights_of_the_same_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let weights = dir.path().join("encoder.bpk");
        std::fs::write(&weights, b"12345").expect("weights");
        let mut card = card();
        card.input = card.input.clone().with_sampling(
            Sampling::Stride {
                stride_frames: Some(5),
                stride_seconds: None,
            },
            Some(128),
        );
        let card = card.with_subsets(Some(RunSubsets {
            train: "Validation".into(),
            evaluation: Some("Test".into()),
            selection: Some("last epoch".into()),
        }));
        let path = card.write_beside(&weights).expect("written");
        let back = ModelCard::read(&path).expect("read");
        assert_eq!(back.version, 2);
        assert_eq!(
            back.weights_sha256.as_deref(),
            Some(crate::hash::sha256_bytes(b"12345").as_str())
        );
        assert_eq!(back.input, card.input);
        assert_eq!(back.subsets, card.subsets);
        assert_eq!(
            back.input.describe(),
            "16 x 1 x 64 px, stride 5 frames, windows every 128"
        );
        // Another run's weights of the same size: refused in one line naming the card, its
        // producer and both hashes.
        std::fs::write(&weights, b"54321").expect("weights");
        let e = ModelCard::read(&path)
            .expect_err("other weights")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("lofi pretrain"), "{e}");
        assert!(e.contains(&crate::hash::sha256_bytes(b"12345")), "{e}");
        assert!(e.contains(&crate::hash::sha256_bytes(b"54321")), "{e}");
    }

    #[test]
    fn descriptions_are_short() {
        let arch = EncoderArch::tiny(EncoderKind::Tsm, 18, 4);
        assert_eq!(
            describe_encoder(&arch, Some(3)),
            "TSM-R18 width 4 with 3 classes"
        );
        assert_eq!(
            EncoderArch::new(EncoderKind::R2plus1d, 34).to_string(),
            "R(2+1)D-34 width 64"
        );
        assert_eq!(card().model.describe(), "a TSM-R18 width 4 with 3 classes");
    }

    #[test]
    fn shapes_tell_the_architecture_and_mismatches_are_one_line() {
        use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
        use burn::tensor::Device;
        let device = Device::flex();
        let dir = tempfile::tempdir().expect("temp dir");
        // Our own .bpk, TSM with a 3-class classifier and R(2+1)D trunk, without cards.
        let tsm = EncoderArch::tiny(EncoderKind::Tsm, 18, 4);
        let path = dir.path().join("classifier.bpk");
        tsm.init(Some(3), &device)
            .expect("tsm")
            .save(&path)
            .expect("saved");
        let found = inspect_encoder(&path).expect("recognised");
        assert_eq!(
            (found.kind, found.depth, found.base_width, found.num_classes),
            (EncoderKind::Tsm, Some(18), Some(4), Some(3))
        );
        let r21 = EncoderArch::tiny(EncoderKind::R2plus1d, 18, 8);
        let rpath = dir.path().join("r21.bpk");
        r21.init(None, &device)
            .expect("r21")
            .save(&rpath)
            .expect("saved");
        let found = inspect_encoder(&rpath).expect("recognised");
        assert_eq!(
            (found.kind, found.depth, found.base_width, found.num_classes),
            (EncoderKind::R2plus1d, Some(18), Some(8), None)
        );

        let wide = EncoderArch::tiny(EncoderKind::Tsm, 18, 64);
        let e = wide.load(None, &path, &device).expect_err("mismatch");
        let msg = e.to_string();
        assert!(matches!(e, ModelError::ArchMismatch { .. }), "{msg}");
        assert!(
            msg.contains("classifier.bpk holds a TSM-R18 width 4 with 3 classes, the config asks for a TSM-R18 width 64"),
            "{msg}"
        );
        assert!(
            msg.contains("--kind tsm --depth 18 --base-width 4 --num-classes 3"),
            "{msg}"
        );
        assert!(
            msg.contains("[encoder] kind = \"tsm\", depth = 18, base_width = 4"),
            "{msg}"
        );
        assert!(msg.len() < 500 && !msg.contains("ShapeMismatch"), "{msg}");

        // With a card, the card is believed first.
        let card = ModelCard::new(
            ModelSpec::Encoder {
                arch: tsm.clone(),
                num_classes: Some(3),
            },
            InputSpec {
                snippets: None,
                frames_per_snippet: Some(1),
                size: Some(64),
                channels: None,
                normalization: Normalization::None,
                sampling: None,
                window_stride: None,
            },
            Producer::new("pretrain", &serde_json::json!({})).expect("producer"),
        );
        card.write_beside(&path).expect("card");
        let msg = wide
            .load(None, &path, &device)
            .expect_err("mismatch")
            .to_string();
        assert!(msg.contains("its card"), "{msg}");
        assert!(tsm.load(Some(3), &path, &device).is_ok());

        // A card edited to another width (its weights hash still holds): the file's shapes
        // against the card's word, one line, before and after the card is believed.
        let mut lying = ModelCard::read_beside(&path).expect("read").expect("card");
        lying.model = ModelSpec::Encoder {
            arch: wide.clone(),
            num_classes: Some(3),
        };
        std::fs::write(
            card_path(&path),
            serde_json::to_string(&lying).expect("json"),
        )
        .expect("card edited");
        let msg = wide
            .load(Some(3), &path, &device)
            .expect_err("the card lies")
            .to_string();
        assert!(
            msg.contains("classifier.bpk holds a TSM-R18 width 4 with 3 classes (by its tensor shapes), but its card")
                && msg.contains("says a TSM-R18 width 64 with 3 classes"),
            "{msg}"
        );
        assert!(msg.len() < 500 && !msg.contains('\n'), "{msg}");
        card.write_beside(&path).expect("card restored");

        // A PyTorch-layout safetensors of width 8 read as width 4.
        let st = dir.path().join("torchvision.safetensors");
        let src = EncoderArch::tiny(EncoderKind::Tsm, 34, 8)
            .init(Some(5), &device)
            .expect("src");
        let crate::Encoder::Tsm(src) = src else {
            panic!("a TSM encoder")
        };
        let mut store = SafetensorsStore::from_file(&st)
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .remap(
                KeyRemapper::from_patterns(vec![
                    (r"\.downsample\.conv\.", ".downsample.0."),
                    (r"\.downsample\.bn\.", ".downsample.1."),
                    (r"^", "module.base_model."),
                ])
                .expect("patterns"),
            );
        src.save_into(&mut store).expect("written");
        let msg = tsm
            .load(None, &st, &device)
            .expect_err("mismatch")
            .to_string();
        assert!(
            msg.contains("torchvision.safetensors holds a TSM-R34 width 8 with 5 classes, the config asks for a TSM-R18 width 4"),
            "{msg}"
        );
        assert!(msg.len() < 400, "{msg}");
    }
}
