//! The localization head as a typed choice: G-TAD or BMN, one architecture type
//! ([`HeadArch`]) that every config and model card names, one module ([`Head`]) that every
//! stage trains, saves and detects with, and the post-processing each head's reference uses
//! ([`DetectConfig`]).
//!
//! Exists so that `lofi train`, `lofi train-head` and `lofi detect` are written once for any
//! head: they call [`HeadArch::init`], [`HeadArch::targets`], [`HeadArch::loss`],
//! [`Head::forward`] and [`HeadArch::detect_defaults`] whatever the network. In a TOML config
//! the choice is the `kind` key of the `[head]` table (`"gtad"`, the default, or `"bmn"`); keys
//! that do not belong to the chosen kind are refused by name. A `[head]` table written before
//! heads were a choice (no `kind`) is a G-TAD.
//!
//! # Adding a head
//! A third head is a file beside `gtad.rs` and `bmn.rs` (its arch, module, targets) plus one arm
//! in each `match` of this file: [`HeadKind`], [`HeadArch`] (sizes, scale check, targets,
//! post-processing defaults), [`Head`] (forward, save, load). Its outputs must be
//! [`HeadOutput`]: start / end probabilities `[B, L]` and the regression / classification maps
//! `[B, 2, D, L]` indexed (duration - 1, start), which is what the loss, the candidate rule and
//! Soft-NMS read; nothing outside this crate names a head's concrete type.
//!
//! Files: [`Head::save`] writes the network itself (no enum level in the parameter names), so a
//! `head.bpk` of an older lofi (always a G-TAD) reads back with [`HeadArch::load`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use lofi_eval::{SoftNms, SoftNmsDecay};
use serde::{Deserialize, Serialize};

use crate::bmn::{BmnArch, BmnHead};
use crate::error::ModelError;
use crate::gtad::{GtadArch, GtadHead, GtadOutput};
use crate::loss::{GtadLoss, LossParts};
use crate::targets::{GtadTargets, Segment, TargetConfig};

/// What every head predicts for a batch (see the module docs for the layout).
pub type HeadOutput = GtadOutput;
/// The training targets of one video, in the layout of [`HeadOutput`].
pub type HeadTargets = GtadTargets;

/// The head families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HeadKind {
    /// G-TAD (Xu et al., CVPR 2020), the paper's head.
    #[default]
    #[serde(rename = "gtad")]
    Gtad,
    /// BMN (Lin et al., ICCV 2019).
    #[serde(rename = "bmn")]
    Bmn,
}

impl HeadKind {
    /// Every kind, in the order `--help` lists them (the tests loop over it).
    pub const ALL: [HeadKind; 2] = [HeadKind::Gtad, HeadKind::Bmn];

    /// Its name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gtad => "gtad",
            Self::Bmn => "bmn",
        }
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HeadKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gtad" | "g-tad" => Ok(Self::Gtad),
            "bmn" => Ok(Self::Bmn),
            other => Err(format!("unknown head {other:?} (use gtad or bmn)")),
        }
    }
}

/// The architecture of a head, apart from its input width (which comes from the features).
#[derive(Debug, Clone, PartialEq)]
pub enum HeadArch {
    /// G-TAD.
    Gtad(GtadArch),
    /// BMN.
    Bmn(BmnArch),
}

impl Default for HeadArch {
    /// The paper's G-TAD.
    fn default() -> Self {
        Self::Gtad(GtadArch::default())
    }
}

impl HeadArch {
    /// The published network of `kind`.
    pub fn new(kind: HeadKind) -> Self {
        match kind {
            HeadKind::Gtad => Self::Gtad(GtadArch::default()),
            HeadKind::Bmn => Self::Bmn(BmnArch::default()),
        }
    }

    /// A small network of `kind` for tests and the demo.
    pub fn tiny(kind: HeadKind) -> Self {
        match kind {
            HeadKind::Gtad => Self::Gtad(GtadArch::tiny()),
            HeadKind::Bmn => Self::Bmn(BmnArch::tiny()),
        }
    }

    /// The family.
    pub fn kind(&self) -> HeadKind {
        match self {
            Self::Gtad(_) => HeadKind::Gtad,
            Self::Bmn(_) => HeadKind::Bmn,
        }
    }

    /// The same sizes class (published or tiny) of another family: what `--head-kind` turns a
    /// preset's head into. The published sizes stay published, anything else becomes tiny.
    pub fn with_kind(self, kind: HeadKind) -> Self {
        if kind == self.kind() {
            return self;
        }
        let published = self == Self::new(self.kind());
        let max = self.max_duration();
        let out = if published {
            Self::new(kind)
        } else {
            Self::tiny(kind)
        };
        out.with_max_duration(max)
    }

    /// Longest anchor in snippets (`None`: `L`; BMN scores every anchor).
    pub fn max_duration(&self) -> Option<usize> {
        match self {
            Self::Gtad(a) => a.max_duration,
            Self::Bmn(_) => None,
        }
    }

    /// Limits G-TAD's anchors to `d` snippets (THUMOS14's 64); BMN, which has no such limit in
    /// its reference, keeps every anchor.
    pub fn with_max_duration(mut self, d: Option<usize>) -> Self {
        if let Self::Gtad(a) = &mut self {
            a.max_duration = d;
        }
        self
    }

    /// Checks the sizes for `in_channels`-wide features without building the head.
    pub fn validate(&self, in_channels: usize) -> Result<(), ModelError> {
        match self {
            Self::Gtad(a) => a.validate(in_channels),
            Self::Bmn(a) => a.validate(in_channels),
        }
    }

    /// Checks a temporal scale `l` (the message names the key): every head needs `L >= 2`;
    /// G-TAD's graph needs `head.k` neighbours among the snippets.
    pub fn check_snippets(&self, l: usize) -> Result<(), ModelError> {
        let need = match self {
            Self::Gtad(a) => a.k,
            Self::Bmn(_) => 2,
        };
        if l < 2 || l < need {
            return Err(ModelError::Config(match self {
                Self::Gtad(a) => format!(
                    "snippets = {l}: need L >= 2 snippets and at least head.k = {}",
                    a.k
                ),
                Self::Bmn(_) => format!("snippets = {l}: need L >= 2 snippets"),
            }));
        }
        Ok(())
    }

    /// Checks that what grows with the temporal scale `l` fits in `memory` bytes (`None`: not
    /// checked), before any work.
    pub fn check_scale(&self, l: usize, memory: Option<u64>) -> Result<(), ModelError> {
        match self {
            Self::Gtad(a) => a.check_scale(l, memory),
            Self::Bmn(a) => a.check_scale(l, memory),
        }
    }

    /// Builds the head for `in_channels`-wide features.
    pub fn init(&self, in_channels: usize, device: &Device) -> Result<Head, ModelError> {
        Ok(match self {
            Self::Gtad(a) => Head::Gtad(a.gtad(in_channels).init(device)?),
            Self::Bmn(a) => Head::Bmn(a.init(in_channels, device)?),
        })
    }

    /// Builds the head and loads `path` (a `head.bpk` written by [`Head::save`]) into it.
    pub fn load(
        &self,
        in_channels: usize,
        path: &Path,
        device: &Device,
    ) -> Result<Head, ModelError> {
        self.init(in_channels, device)?.load_file(path)
    }

    /// The training targets of a video with `segments` (fractions of its span) at `l`
    /// snippets; `boundary_width` is the width of the regions around each boundary (3).
    pub fn targets(
        &self,
        segments: &[Segment],
        l: usize,
        boundary_width: f64,
    ) -> Result<HeadTargets, ModelError> {
        match self {
            Self::Gtad(a) => GtadTargets::new(
                segments,
                l,
                &TargetConfig {
                    boundary_width,
                    max_duration: a.max_duration,
                },
            ),
            Self::Bmn(_) => crate::bmn::targets(segments, l, boundary_width),
        }
    }

    /// The training loss (the published one of each head; BMN's and G-TAD's have the same
    /// terms and weights: boundary BCE + 10 x regression + classification BCE).
    pub fn loss(&self) -> GtadLoss {
        GtadLoss::default()
    }

    /// The post-processing of the head's reference code on ActivityNet: G-TAD's boundary
    /// candidates, `cls x reg` scores and Gaussian Soft-NMS (sigma 0.8); BMN's every anchor,
    /// `start x end x cls x reg` scores and its width-gated Soft-NMS (alpha 0.4, thresholds 0.5
    /// to 0.9).
    pub fn detect_defaults(&self) -> DetectConfig {
        match self {
            Self::Gtad(_) => DetectConfig::default(),
            Self::Bmn(_) => DetectConfig {
                soft_nms_sigma: 0.4,
                soft_nms: SoftNmsRule::WidthGated {
                    low: 0.5,
                    high: 0.9,
                },
                candidates: CandidateRule::All,
                boundary_in_score: true,
                ..DetectConfig::default()
            },
        }
    }

    /// "G-TAD hidden 256" / "BMN hidden 256": the family and its main width.
    pub fn describe(&self) -> String {
        match self {
            Self::Gtad(a) => format!("G-TAD hidden {}", a.hidden),
            Self::Bmn(a) => format!("BMN hidden {}", a.hidden_1d),
        }
    }
}

impl Serialize for HeadArch {
    /// The `[head]` table: `kind` and the chosen family's keys.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = match self {
            Self::Gtad(a) => serde_json::to_value(a),
            Self::Bmn(a) => serde_json::to_value(a),
        }
        .map_err(serde::ser::Error::custom)?;
        let mut map = match inner {
            serde_json::Value::Object(m) => m,
            _ => return Err(serde::ser::Error::custom("a head architecture is a table")),
        };
        // TOML has no null: an unset optional size is left out, as the plain struct did.
        map.retain(|_, v| !v.is_null());
        map.insert("kind".into(), self.kind().name().into());
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HeadArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match map.remove("kind") {
            None => HeadKind::Gtad,
            Some(serde_json::Value::String(k)) => k.parse().map_err(serde::de::Error::custom)?,
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "head.kind = {other} must be \"gtad\" or \"bmn\""
                )))
            }
        };
        let rest = serde_json::Value::Object(map);
        let named = |e: serde_json::Error| {
            serde::de::Error::custom(format!("[head] of kind = \"{kind}\": {e}"))
        };
        Ok(match kind {
            HeadKind::Gtad => Self::Gtad(serde_json::from_value(rest).map_err(named)?),
            HeadKind::Bmn => Self::Bmn(serde_json::from_value(rest).map_err(named)?),
        })
    }
}

/// A head of either family.
// One value per model, moved rarely: burn's Module derive needs the networks inline (no Box).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head {
    /// G-TAD.
    Gtad(GtadHead),
    /// BMN.
    Bmn(BmnHead),
}

impl Head {
    /// The family.
    pub fn kind(&self) -> HeadKind {
        match self {
            Self::Gtad(_) => HeadKind::Gtad,
            Self::Bmn(_) => HeadKind::Bmn,
        }
    }

    /// Runs the head on features `[B, C, L]`.
    pub fn forward(&self, features: Tensor<3>) -> Result<HeadOutput, ModelError> {
        match self {
            Self::Gtad(h) => h.forward(features),
            Self::Bmn(h) => h.forward(features),
        }
    }

    /// The loss of `out` against per-video `targets`; `seed` drives the regression band
    /// sampling.
    pub fn loss(
        &self,
        out: &HeadOutput,
        targets: &[HeadTargets],
        seed: u64,
    ) -> Result<LossParts, ModelError> {
        GtadLoss::default().compute(out, targets, seed)
    }

    /// The device its parameters live on.
    pub fn device(&self) -> Device {
        match self {
            Self::Gtad(h) => h.stem.weight.val().device(),
            Self::Bmn(h) => h.base1.weight.val().device(),
        }
    }

    /// Saves the network (without the enum level in parameter names) to `path`, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        match self {
            Self::Gtad(h) => crate::checkpoint::save(h, path),
            Self::Bmn(h) => crate::checkpoint::save(h, path),
        }
    }

    /// Loads a file written by [`Head::save`] into this head (same architecture).
    pub fn load_file(self, path: &Path) -> Result<Self, ModelError> {
        Ok(match self {
            Self::Gtad(h) => Self::Gtad(crate::checkpoint::load(h, path)?),
            Self::Bmn(h) => Self::Bmn(crate::checkpoint::load(h, path)?),
        })
    }
}

/// Which boundary positions become proposal starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateRule {
    /// G-TAD's (`gtad_inference.py`, the BMN paper's rule): a strict local peak or above half
    /// the maximum, among positions `1..=L-2`; the first start and the last end always.
    #[default]
    PeaksOrHalfMax,
    /// Every position (the BMN reimplementation's `main.py`: every anchor ending before `L`).
    All,
}

impl CandidateRule {
    /// Whether each position of `p` is a candidate; `always` is kept whatever its value.
    pub fn keep(self, p: &[f32], always: usize) -> Vec<bool> {
        let n = p.len();
        match self {
            Self::All => vec![true; n],
            Self::PeaksOrHalfMax => {
                let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (0..n)
                    .map(|i| {
                        i == always
                            || (i >= 1
                                && i + 1 < n
                                && ((p[i] > p[i - 1] && p[i] > p[i + 1]) || p[i] > 0.5 * max))
                    })
                    .collect()
            }
        }
    }

    /// Whether this is the default rule.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which Soft-NMS decays the overlapping candidates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SoftNmsRule {
    /// G-TAD's Gaussian Soft-NMS: every overlap decays, `exp(-o^2 / soft_nms_sigma)`.
    #[default]
    Gaussian,
    /// BMN's: the same decay (`soft_nms_sigma` is BMN's `alpha`), only where the overlap
    /// exceeds `low + (high - low) x` the kept proposal's width as a fraction of the span
    /// ([`lofi_eval::SoftNmsDecay::Bmn`]).
    WidthGated {
        /// Threshold at width 0 (0.5).
        low: f64,
        /// Threshold at the span's width (0.9).
        high: f64,
    },
}

impl SoftNmsRule {
    /// Whether this is the default rule.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Post-processing settings: from a head's outputs to class-agnostic proposals, then labelled
/// detections (`[detect]` of the head configs, and a head's model card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Gaussian Soft-NMS width (0.8 on ActivityNet, 0.46 on THUMOS14; BMN's `alpha`, 0.4).
    pub soft_nms_sigma: f64,
    /// Which Soft-NMS: G-TAD's Gaussian (absent) or BMN's width-gated one.
    #[serde(skip_serializing_if = "SoftNmsRule::is_default")]
    pub soft_nms: SoftNmsRule,
    /// Which boundary positions are candidates (absent: G-TAD's peaks or half the maximum).
    #[serde(skip_serializing_if = "CandidateRule::is_default")]
    pub candidates: CandidateRule,
    /// Proposals kept per video (100).
    pub top_k: usize,
    /// Video-level classes paired with each proposal (2).
    pub top_classes: usize,
    /// Multiply the start and end probabilities into the proposal score (BMN's full rule).
    pub boundary_in_score: bool,
    /// Videos per forward pass.
    pub batch_size: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            soft_nms_sigma: 0.8,
            soft_nms: SoftNmsRule::Gaussian,
            candidates: CandidateRule::PeaksOrHalfMax,
            top_k: 100,
            top_classes: 2,
            boundary_in_score: false,
            batch_size: 16,
        }
    }
}

impl DetectConfig {
    /// Checks every value before any work; errors name the key.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.soft_nms_sigma.is_finite() && self.soft_nms_sigma > 0.0) {
            return Err(ModelError::Config(format!(
                "soft_nms_sigma = {} must be a positive number",
                self.soft_nms_sigma
            )));
        }
        if let SoftNmsRule::WidthGated { low, high } = self.soft_nms {
            if !(low.is_finite() && high.is_finite()) {
                return Err(ModelError::Config(format!(
                    "soft_nms.low = {low} and soft_nms.high = {high} must be numbers"
                )));
            }
        }
        for (key, v) in [
            ("top_k", self.top_k),
            ("top_classes", self.top_classes),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return Err(ModelError::Config(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }

    /// `head`'s own post-processing ([`HeadArch::detect_defaults`]) with this one's choices that
    /// belong to no head: videos per forward pass and classes paired with each proposal.
    pub fn for_head(&self, head: &HeadArch) -> DetectConfig {
        DetectConfig {
            batch_size: self.batch_size,
            top_classes: self.top_classes,
            ..head.detect_defaults()
        }
    }

    /// The Soft-NMS of these settings for candidates that lie in a span of `span` seconds.
    pub fn soft_nms(&self, span: f64) -> SoftNms {
        let mut nms = SoftNms::gaussian(self.soft_nms_sigma, self.top_k);
        if let SoftNmsRule::WidthGated { low, high } = self.soft_nms {
            nms.decay = SoftNmsDecay::Bmn {
                alpha: self.soft_nms_sigma,
                low,
                high,
                span,
            };
        }
        nms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn toml_form_defaults_to_gtad_and_refuses_keys_of_the_other_kind() {
        let parse = |text: &str| toml::from_str::<HeadArch>(text);
        assert_eq!(parse("").expect("empty"), HeadArch::default());
        // A [head] table written before the choice: a G-TAD.
        let old = toml::to_string(&GtadArch::tiny()).expect("old layout");
        assert_eq!(parse(&old).expect("old"), HeadArch::tiny(HeadKind::Gtad));
        let bmn = parse("kind = \"bmn\"\nhidden_1d = 32\n").expect("bmn");
        assert_eq!(bmn.kind(), HeadKind::Bmn);
        let e = parse("kind = \"bmn\"\nk = 3\n").expect_err("gtad key");
        assert!(e.to_string().contains("kind = \"bmn\""), "{e}");
        assert!(e.to_string().contains('k'), "{e}");
        let e = parse("kind = \"tcanet\"\n").expect_err("kind");
        assert!(e.to_string().contains("tcanet"), "{e}");
        for kind in HeadKind::ALL {
            for arch in [HeadArch::new(kind), HeadArch::tiny(kind)] {
                let text = toml::to_string(&arch).expect("serialize");
                assert!(text.contains(&format!("kind = \"{kind}\"")), "{text}");
                assert_eq!(parse(&text).expect("round trip"), arch, "{text}");
                let json = serde_json::to_string(&arch).expect("json");
                assert_eq!(
                    serde_json::from_str::<HeadArch>(&json).expect("json back"),
                    arch
                );
            }
        }
        let thumos = HeadArch::default().with_max_duration(Some(64));
        assert_eq!(
            parse(&toml::to_string(&thumos).expect("ser")).expect("de"),
            thumos
        );
        assert_eq!("BMN".parse::<HeadKind>(), Ok(HeadKind::Bmn));
        assert_eq!(
            HeadArch::tiny(HeadKind::Gtad).with_kind(HeadKind::Bmn),
            HeadArch::tiny(HeadKind::Bmn)
        );
        assert_eq!(
            HeadArch::default().with_kind(HeadKind::Bmn),
            HeadArch::new(HeadKind::Bmn)
        );
    }

    #[test]
    fn every_kind_runs_trains_saves_and_loads() -> Result<(), ModelError> {
        let device = Device::flex();
        let dir = std::env::temp_dir().join(format!("lofi-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::Input(e.to_string()))?;
        for kind in HeadKind::ALL {
            let arch = HeadArch::tiny(kind);
            let head = arch.init(8, &device)?;
            assert_eq!(head.kind(), kind);
            let x = Tensor::<3>::random([2, 8, 12], Distribution::Default, &device);
            let out = head.forward(x.clone())?;
            assert_eq!(out.maps.dims(), [2, 2, 12, 12]);
            assert_eq!(out.start.dims(), [2, 12]);
            let t = arch.targets(&[Segment::new(0.2, 0.6)], 12, 3.0)?;
            let parts = head.loss(&out, &[t.clone(), t], 1)?;
            let total: f32 = parts.total.into_data().try_to_vec().unwrap_or_default()[0];
            assert!(total.is_finite() && total > 0.0, "{kind}: {total}");
            let path = dir.join(format!("{kind}.bpk"));
            head.save(&path)?;
            let back = arch.load(8, &path, &device)?;
            let again = back.forward(x)?;
            let a: Vec<f32> = out.maps.into_data().try_to_vec().unwrap_or_default();
            let b: Vec<f32> = again.maps.into_data().try_to_vec().unwrap_or_default();
            assert_eq!(a, b, "{kind}");
            // The other family cannot read it.
            let other = HeadKind::ALL
                .into_iter()
                .find(|k| *k != kind)
                .expect("two kinds");
            assert!(HeadArch::tiny(other).load(8, &path, &device).is_err());
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn candidate_rules() {
        let c = CandidateRule::PeaksOrHalfMax.keep(&[0.1, 0.2, 0.9, 0.3, 0.35, 0.2], 0);
        assert_eq!(c, vec![true, false, true, false, true, false]);
        assert_eq!(CandidateRule::All.keep(&[0.0; 3], 0), vec![true; 3]);
    }
}
