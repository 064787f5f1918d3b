//! The video encoder as a typed choice: TSM-ResNet-18/34/50 or R(2+1)D-18/34, one architecture
//! type ([`EncoderArch`]) that every config names and one module ([`Encoder`]) that every stage
//! trains, extracts with and saves.
//!
//! Exists so that pre-training, LoFi training and extraction are written once for any encoder:
//! they call [`Encoder::forward`] (snippet features `[B, L, C]` from `[B, L, F, 3, S, S]`) and
//! [`Encoder::classify`] (clip logits from `[B, T, 3, S, S]`) whatever the network. In a TOML
//! config the choice is the `kind` key of the `[encoder]` table (`"tsm"`, the default, or
//! `"r2plus1d"`); keys that do not apply to the chosen kind are refused by name.
//!
//! Files: [`Encoder::save`] writes the network itself (no enum level in the parameter names), so
//! an `encoder.bpk` reads back with [`EncoderArch::load`], which also imports PyTorch `.pth`,
//! `.pt` and `.safetensors` weights of the same architecture.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::import::{import_r2plus1d, import_resnet, ImportOptions};
use crate::r2plus1d::{R2Plus1dConfig, R2Plus1dEncoder};
use crate::resnet::{ResNetConfig, TsmEncoder};

/// The encoder families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EncoderKind {
    /// TSM-ResNet (the paper's encoder; without the shift, a per-frame 2-D ResNet).
    #[default]
    #[serde(rename = "tsm")]
    Tsm,
    /// R(2+1)D: factorised spatio-temporal 3-D convolutions.
    #[serde(rename = "r2plus1d")]
    R2plus1d,
}

impl EncoderKind {
    /// Its name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tsm => "tsm",
            Self::R2plus1d => "r2plus1d",
        }
    }
}

impl fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EncoderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tsm" => Ok(Self::Tsm),
            "r2plus1d" | "r(2+1)d" => Ok(Self::R2plus1d),
            other => Err(format!("unknown encoder {other:?} (use tsm or r2plus1d)")),
        }
    }
}

/// The architecture of an encoder, without a classifier (pre-training adds one with
/// [`EncoderArch::init`]'s `num_classes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEncoder", into = "RawEncoder")]
pub enum EncoderArch {
    /// TSM-ResNet.
    Tsm(ResNetConfig),
    /// R(2+1)D.
    R2plus1d(R2Plus1dConfig),
}

impl Default for EncoderArch {
    /// The paper's TSM-ResNet-18.
    fn default() -> Self {
        Self::Tsm(ResNetConfig::new(18))
    }
}

/// Widest first stage an encoder may have (8x the published 64; wider ones do not fit a machine).
pub const MAX_BASE_WIDTH: usize = 512;
/// Most classes of a clip classifier (ImageNet-21k has about 21k).
pub const MAX_CLASSES: usize = 100_000;

impl EncoderArch {
    /// The published network of `kind` and `depth`.
    pub fn new(kind: EncoderKind, depth: usize) -> Self {
        match kind {
            EncoderKind::Tsm => Self::Tsm(ResNetConfig::new(depth)),
            EncoderKind::R2plus1d => Self::R2plus1d(R2Plus1dConfig::new(depth)),
        }
    }

    /// A narrow network of `kind` for tests and the demo (`base_width` channels in `layer1`).
    pub fn tiny(kind: EncoderKind, depth: usize, base_width: usize) -> Self {
        match kind {
            EncoderKind::Tsm => Self::Tsm(ResNetConfig::tiny(depth, base_width)),
            EncoderKind::R2plus1d => Self::R2plus1d(R2Plus1dConfig::tiny(depth, base_width)),
        }
    }

    /// The family.
    pub fn kind(&self) -> EncoderKind {
        match self {
            Self::Tsm(_) => EncoderKind::Tsm,
            Self::R2plus1d(_) => EncoderKind::R2plus1d,
        }
    }

    /// Depth.
    pub fn depth(&self) -> usize {
        match self {
            Self::Tsm(c) => c.depth,
            Self::R2plus1d(c) => c.depth,
        }
    }

    /// Width of `layer1`.
    pub fn base_width(&self) -> usize {
        match self {
            Self::Tsm(c) => c.base_width,
            Self::R2plus1d(c) => c.base_width,
        }
    }

    /// Sets the width of `layer1`.
    pub fn with_base_width(mut self, base_width: usize) -> Self {
        match &mut self {
            Self::Tsm(c) => c.base_width = base_width,
            Self::R2plus1d(c) => c.base_width = base_width,
        }
        self
    }

    /// Whether every BatchNorm is frozen.
    pub fn frozen_bn(&self) -> bool {
        match self {
            Self::Tsm(c) => c.frozen_bn,
            Self::R2plus1d(c) => c.frozen_bn,
        }
    }

    /// Sets `frozen_bn`.
    pub fn with_frozen_bn(mut self, frozen: bool) -> Self {
        match &mut self {
            Self::Tsm(c) => c.frozen_bn = frozen,
            Self::R2plus1d(c) => c.frozen_bn = frozen,
        }
        self
    }

    /// Channels of the snippet feature.
    pub fn out_channels(&self) -> usize {
        match self {
            Self::Tsm(c) => c.out_channels(),
            Self::R2plus1d(c) => c.out_channels(),
        }
    }

    /// Checks the sizes without building anything; errors name the key.
    pub fn validate(&self) -> Result<(), ModelError> {
        let (depths, depth): (&[usize], usize) = match self {
            Self::Tsm(c) => {
                if c.shift_div == 0 {
                    return Err(ModelError::Config(
                        "encoder.shift_div must be at least 1".into(),
                    ));
                }
                (&[18, 34, 50], c.depth)
            }
            Self::R2plus1d(c) => (&[18, 34], c.depth),
        };
        if !depths.contains(&depth) {
            return Err(ModelError::Config(format!(
                "encoder.depth = {depth} is not a {} depth (use {depths:?})",
                self.kind()
            )));
        }
        if self.base_width() == 0 || self.base_width() > MAX_BASE_WIDTH {
            return Err(ModelError::Config(format!(
                "encoder.base_width = {} must be 1 to {MAX_BASE_WIDTH} (64 for the published \
                 networks)",
                self.base_width()
            )));
        }
        Ok(())
    }

    /// Builds the encoder (with a clip classifier of `num_classes` for pre-training).
    pub fn init(&self, num_classes: Option<usize>, device: &Device) -> Result<Encoder, ModelError> {
        self.validate()?;
        if let Some(n) = num_classes.filter(|&n| n == 0 || n > MAX_CLASSES) {
            return Err(ModelError::Config(format!(
                "{n} classes: a classifier needs 1 to {MAX_CLASSES}"
            )));
        }
        Ok(match self {
            Self::Tsm(c) => Encoder::Tsm(c.clone().with_num_classes(num_classes).init(device)?),
            Self::R2plus1d(c) => Encoder::R2plus1d(
                R2Plus1dConfig {
                    num_classes,
                    ..c.clone()
                }
                .init(device)?,
            ),
        })
    }

    /// Builds the encoder and loads `path` into it: our own `.bpk` ([`Encoder::save`]) or
    /// PyTorch weights (`.pth`, `.pt`, `.safetensors`; keys of other tasks ignored).
    pub fn load(
        &self,
        num_classes: Option<usize>,
        path: &Path,
        device: &Device,
    ) -> Result<Encoder, ModelError> {
        let encoder = self.init(num_classes, device)?;
        self.load_into(num_classes, encoder, path)
    }

    /// Loads `path` into `encoder` (built from this architecture with `num_classes`). Weights of
    /// another architecture give one [`ModelError::ArchMismatch`] naming what the file holds
    /// (from its model card, or inferred from its tensor shapes) and what was asked for; a card
    /// that contradicts the request is refused before any tensor is read.
    pub fn load_into(
        &self,
        num_classes: Option<usize>,
        encoder: Encoder,
        path: &Path,
    ) -> Result<Encoder, ModelError> {
        if crate::card::ModelCard::read_beside(path)?.is_some() {
            if let Some(e) = crate::card::encoder_mismatch(path, self, num_classes) {
                return Err(e);
            }
        }
        encoder.load_file(path).map_err(|e| match e {
            ModelError::KeyMismatch { .. } | ModelError::Checkpoint { .. } if path.is_file() => {
                crate::card::encoder_mismatch(path, self, num_classes)
                    .or_else(|| crate::card::card_contradiction(path))
                    .unwrap_or(e)
            }
            e => e,
        })
    }
}

/// The TOML form of [`EncoderArch`]: `kind` chooses the family (TSM when absent), the other keys
/// default to the published network of that family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    #[serde(default)]
    kind: EncoderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_width: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shift: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shift_div: Option<usize>,
    #[serde(default)]
    frozen_bn: bool,
}

impl TryFrom<RawEncoder> for EncoderArch {
    type Error = String;

    fn try_from(raw: RawEncoder) -> Result<Self, Self::Error> {
        let arch = match raw.kind {
            EncoderKind::Tsm => {
                let d = ResNetConfig::new(raw.depth.unwrap_or(18));
                Self::Tsm(ResNetConfig {
                    base_width: raw.base_width.unwrap_or(d.base_width),
                    shift: raw.shift.unwrap_or(d.shift),
                    shift_div: raw.shift_div.unwrap_or(d.shift_div),
                    ..d
                })
            }
            EncoderKind::R2plus1d => {
                for (key, set) in [
                    ("shift", raw.shift.is_some()),
                    ("shift_div", raw.shift_div.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "encoder.{key} applies to kind = \"tsm\" only, not \"r2plus1d\""
                        ));
                    }
                }
                let d = R2Plus1dConfig::new(raw.depth.unwrap_or(18));
                Self::R2plus1d(R2Plus1dConfig {
                    base_width: raw.base_width.unwrap_or(d.base_width),
                    ..d
                })
            }
        };
        let arch = arch.with_frozen_bn(raw.frozen_bn);
        arch.validate().map_err(|e| e.to_string())?;
        Ok(arch)
    }
}

impl From<EncoderArch> for RawEncoder {
    fn from(arch: EncoderArch) -> Self {
        match arch {
            EncoderArch::Tsm(c) => Self {
                kind: EncoderKind::Tsm,
                depth: Some(c.depth),
                base_width: Some(c.base_width),
                shift: Some(c.shift),
                shift_div: Some(c.shift_div),
                frozen_bn: c.frozen_bn,
            },
            EncoderArch::R2plus1d(c) => Self {
                kind: EncoderKind::R2plus1d,
                depth: Some(c.depth),
                base_width: Some(c.base_width),
                shift: None,
                shift_div: None,
                frozen_bn: c.frozen_bn,
            },
        }
    }
}

/// A video encoder of either family.
// One value per model, moved rarely: the variants' size difference costs nothing, and burn's
// Module derive needs the networks inline (no Box).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoder {
    /// TSM-ResNet.
    Tsm(TsmEncoder),
    /// R(2+1)D.
    R2plus1d(R2Plus1dEncoder),
}

impl Encoder {
    /// The family.
    pub fn kind(&self) -> EncoderKind {
        match self {
            Self::Tsm(_) => EncoderKind::Tsm,
            Self::R2plus1d(_) => EncoderKind::R2plus1d,
        }
    }

    /// Snippet features: `[B, L, F, 3, S, S]` -> `[B, L, C]`.
    pub fn forward(&self, video: Tensor<6>) -> Result<Tensor<3>, ModelError> {
        match self {
            Self::Tsm(e) => e.forward(video),
            Self::R2plus1d(e) => e.forward(video),
        }
    }

    /// Clip logits for pre-training: `[B, T, 3, S, S]` (T frames) -> `[B, classes]`.
    pub fn classify(&self, clip: Tensor<5>) -> Result<Tensor<2>, ModelError> {
        match self {
            Self::Tsm(e) => e.classify(clip),
            Self::R2plus1d(e) => e.classify(clip.swap_dims(1, 2)),
        }
    }

    /// Freezes every BatchNorm (running statistics, no affine gradient).
    pub fn freeze_bn(self) -> Self {
        match self {
            Self::Tsm(e) => Self::Tsm(e.freeze_bn()),
            Self::R2plus1d(e) => Self::R2plus1d(e.freeze_bn()),
        }
    }

    /// The trunk alone (the clip classifier dropped): what later stages load.
    pub fn without_classifier(self) -> Self {
        match self {
            Self::Tsm(mut e) => {
                e.fc = None;
                Self::Tsm(e)
            }
            Self::R2plus1d(mut e) => {
                e.fc = None;
                Self::R2plus1d(e)
            }
        }
    }

    /// Loads `path` into this encoder (same architecture): our own `.bpk` ([`Encoder::save`]) or
    /// PyTorch weights (`.pth`, `.pt`, `.safetensors`; keys of other tasks ignored).
    pub fn load_file(self, path: &Path) -> Result<Self, ModelError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let pytorch = matches!(ext.as_str(), "pth" | "pt" | "safetensors");
        let options = ImportOptions {
            ignore_unused: true,
            ..Default::default()
        };
        Ok(match self {
            Self::Tsm(e) if pytorch => Self::Tsm(import_resnet(e, path, &options)?.0),
            Self::R2plus1d(e) if pytorch => Self::R2plus1d(import_r2plus1d(e, path, &options)?.0),
            Self::Tsm(e) => Self::Tsm(crate::checkpoint::load(e, path)?),
            Self::R2plus1d(e) => Self::R2plus1d(crate::checkpoint::load(e, path)?),
        })
    }

    /// Saves the network (without the enum level in parameter names) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        match self {
            Self::Tsm(e) => crate::checkpoint::save(e, path),
            Self::R2plus1d(e) => crate::checkpoint::save(e, path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn toml_form_defaults_to_tsm_and_refuses_keys_of_the_other_kind() {
        let parse = |text: &str| toml::from_str::<EncoderArch>(text);
        assert_eq!(parse("").expect("empty"), EncoderArch::default());
        let tsm = parse("depth = 34\nbase_width = 8\nfrozen_bn = true\n").expect("tsm");
        assert_eq!(
            (tsm.kind(), tsm.depth(), tsm.base_width()),
            (EncoderKind::Tsm, 34, 8)
        );
        assert!(tsm.frozen_bn());
        let r = parse("kind = \"r2plus1d\"\nbase_width = 4\n").expect("r2plus1d");
        assert_eq!(
            (r.kind(), r.depth(), r.base_width()),
            (EncoderKind::R2plus1d, 18, 4)
        );
        let e = parse("kind = \"r2plus1d\"\nshift = false\n").expect_err("shift");
        assert!(
            e.to_string()
                .contains("encoder.shift applies to kind = \"tsm\""),
            "{e}"
        );
        let e = parse("kind = \"r2plus1d\"\ndepth = 50\n").expect_err("depth");
        assert!(e.to_string().contains("encoder.depth = 50"), "{e}");
        let e = parse("kind = \"i3d\"\n").expect_err("kind");
        assert!(e.to_string().contains("i3d"), "{e}");
        let e = parse("widht = 3\n").expect_err("typo");
        assert!(e.to_string().contains("widht"), "{e}");
        for arch in [tsm, r] {
            let text = toml::to_string(&arch).expect("serialize");
            assert_eq!(parse(&text).expect("round trip"), arch, "{text}");
        }
        assert_eq!("R2PLUS1D".parse::<EncoderKind>(), Ok(EncoderKind::R2plus1d));
        assert!("c3d".parse::<EncoderKind>().is_err());
    }

    #[test]
    fn both_kinds_extract_classify_and_save_plain_networks() -> Result<(), ModelError> {
        let device = Device::flex();
        let dir = std::env::temp_dir().join(format!("lofi-encoder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::Input(e.to_string()))?;
        for kind in [EncoderKind::Tsm, EncoderKind::R2plus1d] {
            let arch = EncoderArch::tiny(kind, 18, 4);
            let enc = arch.init(Some(3), &device)?;
            let video = Tensor::<6>::random([2, 3, 2, 3, 32, 32], Distribution::Default, &device);
            assert_eq!(enc.forward(video)?.dims(), [2, 3, arch.out_channels()]);
            let clip = Tensor::<5>::random([2, 4, 3, 32, 32], Distribution::Default, &device);
            assert_eq!(enc.classify(clip.clone())?.dims(), [2, 3]);
            let trunk = enc.without_classifier();
            assert!(trunk.classify(clip).is_err());
            let path = dir.join(format!("{kind}.bpk"));
            trunk.save(&path)?;
            let back = arch.load(None, &path, &device)?;
            assert_eq!(back.kind(), kind);
            // The other family cannot read it, with the model crate's error.
            let other = match kind {
                EncoderKind::Tsm => EncoderKind::R2plus1d,
                EncoderKind::R2plus1d => EncoderKind::Tsm,
            };
            assert!(EncoderArch::tiny(other, 18, 4)
                .load(None, &path, &device)
                .is_err());
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
