//! The trained artefacts of `lofi train-head` and how they are described on disk: the G-TAD head's
//! architecture (without the input width, which comes from the features), the small video-level
//! classifier trained beside it, and their model cards, which let `lofi detect` rebuild both.
//!
//! Exists so that training and detection agree on one description of the models: `train-head`
//! writes the model cards `RUN_DIR/head.json` and `classifier.json` (see [`lofi_model::card`])
//! next to `head.bpk` and `classifier.bpk`, and `detect` builds exactly those modules from them
//! before loading the weights. The helpers here also build the cards of video encoders, which
//! need lofi-video's pixel normalisation.
//!
//! # The video-level classifier
//! G-TAD localizes actions without naming them; the label comes from a video-level classifier.
//! When no external score file is given, we train our own on the training subset's features:
//! the `[L, C]` features are pooled over time into `[mean, max]` (`2C` values), standardised with
//! the training set's per-dimension mean and standard deviation, and fed to a linear layer (or one
//! hidden ReLU layer of `hidden` units) with a softmax over the classes. Its target for a video is
//! the distribution of annotated time over the video's classes (one class: one-hot), and the loss
//! is the cross-entropy against it. It sees no ground truth of the evaluated subset.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use lofi_model::card::RunSubsets;
use lofi_model::{
    DetectConfig, HeadArch, InputSpec, ModelCard, ModelSpec, Normalization, Producer,
};
use serde::{Deserialize, Serialize};

use crate::error::{HeadError, Result};
use crate::features::VideoFeatures;

/// The CPU device (burn's flex backend), for tests and callers without a GPU. Backend selection
/// lives in the binary (`--device`), which passes the device it opened in the stages' inputs.
pub fn cpu_device() -> Device {
    Device::flex()
}

/// The video-level classifier (see the module docs).
#[derive(Module, Debug)]
pub struct VideoClassifier {
    /// Optional hidden layer (then ReLU).
    pub hidden: Option<Linear>,
    /// Output layer to class logits.
    pub out: Linear,
}

impl VideoClassifier {
    /// A classifier on `inputs` pooled values for `classes` classes, `hidden` = 0 for linear.
    pub fn new(inputs: usize, hidden: usize, classes: usize, device: &Device) -> Self {
        if hidden == 0 {
            Self {
                hidden: None,
                out: LinearConfig::new(inputs, classes).init(device),
            }
        } else {
            Self {
                hidden: Some(LinearConfig::new(inputs, hidden).init(device)),
                out: LinearConfig::new(hidden, classes).init(device),
            }
        }
    }

    /// Logits `[B, K]` of standardised pooled features `[B, 2C]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = match &self.hidden {
            Some(h) => relu(h.forward(x)),
            None => x,
        };
        self.out.forward(x)
    }
}

/// Pools `[L, C]` features into `[mean over time, max over time]` (`2C` values).
pub fn pool_features(f: &VideoFeatures) -> Vec<f32> {
    let mut mean = vec![0f32; f.c];
    let mut max = vec![f32::NEG_INFINITY; f.c];
    for row in f.data.chunks(f.c) {
        for (k, v) in row.iter().enumerate() {
            mean[k] += v;
            max[k] = max[k].max(*v);
        }
    }
    let inv = 1.0 / f.l.max(1) as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    mean.extend(max);
    mean
}

/// How the classifier was built and what it needs at inference (read from `classifier.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierMeta {
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Hidden units (0 = linear).
    pub hidden: usize,
    /// Per-dimension mean of the pooled training features.
    pub mean: Vec<f32>,
    /// Per-dimension standard deviation (floored at 1e-6).
    pub std: Vec<f32>,
}

impl ClassifierMeta {
    /// Builds the (untrained) module this description names.
    pub fn init(&self, device: &Device) -> VideoClassifier {
        VideoClassifier::new(self.mean.len(), self.hidden, self.classes.len(), device)
    }

    /// Standardised pooled inputs `[B, 2C]` of a batch of videos, on `device`.
    pub fn inputs(&self, videos: &[&VideoFeatures], device: &Device) -> Tensor<2> {
        let d = self.mean.len();
        let mut data = Vec::with_capacity(videos.len() * d);
        for v in videos {
            let p = pool_features(v);
            data.extend(
                p.iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(x, (m, s))| (x - m) / s),
            );
        }
        Tensor::from_data(TensorData::new(data, [videos.len(), d]), device)
    }

    /// Class probabilities of each video (softmax), in [`classes`](Self::classes) order.
    pub fn predict(
        &self,
        model: &VideoClassifier,
        videos: &[&VideoFeatures],
        device: &Device,
    ) -> Result<Vec<Vec<f64>>> {
        if videos.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(v) = videos.iter().find(|v| 2 * v.c != self.mean.len()) {
            return Err(HeadError::Input(format!(
                "video {:?} has {} feature channels but the classifier was trained on {}",
                v.id,
                v.c,
                self.mean.len() / 2
            )));
        }
        let probs =
            burn::tensor::activation::softmax(model.forward(self.inputs(videos, device)), 1);
        let k = self.classes.len();
        let flat: Vec<f32> = probs
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| HeadError::Input(format!("cannot read classifier output: {e:?}")))?;
        Ok(flat
            .chunks(k)
            .map(|r| r.iter().map(|p| f64::from(*p)).collect())
            .collect())
    }
}

/// Everything `lofi detect` needs from a head run, all typed, all from the model cards
/// `head.json` (of `head.bpk`) and `classifier.json` (of `classifier.bpk`), or from the single
/// `head.json` of runs written before model cards ([`LegacyHeadJson`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMeta {
    /// Feature channels `C`.
    pub in_channels: usize,
    /// Temporal scale `L` the head runs at (features are resampled to it, or cut into windows of
    /// it).
    pub snippets: usize,
    /// Rescale or sliding windows, as the head was trained (the card's window stride).
    pub temporal: crate::windows::Temporal,
    /// Family and sizes.
    pub arch: HeadArch,
    /// The post-processing the run validated with (the card's; the head's defaults for a card
    /// without one).
    pub detect: DetectConfig,
    /// The subsets of the producing run, when recorded.
    pub subsets: Option<RunSubsets>,
    /// The video classifier, when one was trained.
    pub classifier: Option<ClassifierMeta>,
}

/// The `head.json` of runs written before model cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyHeadJson {
    /// Feature channels `C`.
    pub in_channels: usize,
    /// Temporal scale `L`.
    pub snippets: usize,
    /// Rescale (absent) or sliding windows.
    #[serde(default, skip_serializing_if = "crate::windows::Temporal::is_rescale")]
    pub temporal: crate::windows::Temporal,
    /// Head sizes (always a G-TAD then).
    pub arch: HeadArch,
    /// The video classifier, when one was trained.
    pub classifier: Option<ClassifierMeta>,
    /// Epochs trained.
    pub epochs: usize,
}

impl From<LegacyHeadJson> for HeadMeta {
    fn from(old: LegacyHeadJson) -> Self {
        Self {
            in_channels: old.in_channels,
            snippets: old.snippets,
            temporal: old.temporal,
            detect: old.arch.detect_defaults(),
            arch: old.arch,
            subsets: None,
            classifier: old.classifier,
        }
    }
}

/// File names inside a train-head run folder.
pub mod files {
    /// Final head weights.
    pub const HEAD: &str = "head.bpk";
    /// Final classifier weights.
    pub const CLASSIFIER: &str = "classifier.bpk";
    /// The model card of `head.bpk` (before model cards: the [`super::HeadMeta`] layout).
    pub const META: &str = "head.json";
    /// The model card of `classifier.bpk`.
    pub const CLASSIFIER_CARD: &str = "classifier.json";
    /// The epoch chosen for `head.bpk` (lowest validation loss).
    pub const BEST: &str = "best.json";
}

/// The input of models on features: `channels` at `snippets`, normalised as `normalization`.
pub fn feature_input(snippets: usize, channels: usize, normalization: Normalization) -> InputSpec {
    InputSpec {
        snippets: Some(snippets),
        frames_per_snippet: None,
        size: None,
        channels: Some(channels),
        normalization,
        sampling: None,
        window_stride: None,
    }
}

/// The input of lofi's video encoders: `frames_per_snippet` frames of `size` px per snippet, RGB
/// normalised with ImageNet's statistics (what [`lofi_video::ClipU8::to_f32_normalized`] does).
pub fn video_input(snippets: Option<usize>, frames_per_snippet: usize, size: usize) -> InputSpec {
    InputSpec {
        snippets,
        frames_per_snippet: Some(frames_per_snippet),
        size: Some(size),
        channels: None,
        normalization: pixel_normalization(),
        sampling: None,
        window_stride: None,
    }
}

/// The one pixel normalisation lofi applies.
pub fn pixel_normalization() -> Normalization {
    Normalization::Pixels {
        scale: 255.0,
        mean: lofi_video::IMAGENET_MEAN,
        std: lofi_video::IMAGENET_STD,
    }
}

/// Refuses an encoder card whose input normalisation is not the one lofi applies.
pub fn check_video_input(card: &ModelCard, card_path: &Path) -> Result<()> {
    if card.input.normalization == pixel_normalization() {
        Ok(())
    } else {
        Err(HeadError::format(
            card_path,
            format!(
                "the encoder expects inputs normalised as {:?}, but lofi feeds RGB (x / 255 - \
                 ImageNet mean) / ImageNet std",
                card.input.normalization
            ),
        ))
    }
}

/// Writes `module` to `path` and its card beside it (weights first, then the card), outside any
/// run folder (the tests' fixtures; stages write through `RunDir::save_with_card`).
#[cfg(test)]
fn save_with_card<M: Module>(module: &M, path: &Path, card: &ModelCard) -> Result<()> {
    lofi_model::checkpoint::save(module, path)?;
    card.write_beside(path)?;
    Ok(())
}

impl HeadMeta {
    /// Reads the description of the head in `path`: a run folder or a `head.bpk` (its card;
    /// `classifier.bpk` and its card in the same folder give the classifier), or the `head.json`
    /// of a run written before model cards.
    pub fn read(path: &Path) -> Result<Self> {
        let weights = lofi_model::card::resolve_weights(path, files::HEAD)?;
        let dir = weights.parent().unwrap_or(Path::new("."));
        let card_path = lofi_model::card::card_path(&weights);
        let text = std::fs::read_to_string(&card_path).map_err(|e| {
            HeadError::format(
                &card_path,
                format!(
                    "cannot read the card of {} ({e}); a head needs its card (written by `lofi \
                     train-head` or `lofi train`)",
                    weights.display()
                ),
            )
        })?;
        if !text.contains(lofi_model::card::CARD_FORMAT) {
            // A run folder of an older lofi: head.json in the legacy layout.
            return serde_json::from_str::<LegacyHeadJson>(&text)
                .map(Self::from)
                .map_err(|e| HeadError::format(&card_path, e.to_string()));
        }
        let card = ModelCard::read(&card_path)?;
        let ModelSpec::Head {
            arch,
            in_channels,
            snippets,
            detect,
        } = card.model
        else {
            return Err(HeadError::format(
                &card_path,
                format!(
                    "describes {}, not a localization head",
                    card.model.describe()
                ),
            ));
        };
        let classifier_weights = dir.join(files::CLASSIFIER);
        let classifier = match ModelCard::read_beside(&classifier_weights)? {
            Some(c) => Some(ClassifierMeta::from_card(&c, &classifier_weights)?),
            None => None,
        };
        let temporal = match card.input.window_stride {
            Some(window_stride) => crate::windows::Temporal::Windows { window_stride },
            None => crate::windows::Temporal::Rescale,
        };
        Ok(Self {
            in_channels,
            snippets,
            temporal,
            detect: detect.unwrap_or_else(|| arch.detect_defaults()),
            arch,
            subsets: card.subsets,
            classifier,
        })
    }
}

impl ClassifierMeta {
    /// This classifier's card (`producer`: the head run that trained it).
    pub fn card(&self, snippets: usize, producer: Producer) -> ModelCard {
        ModelCard::new(
            ModelSpec::VideoClassifier {
                inputs: self.mean.len(),
                hidden: self.hidden,
            },
            feature_input(
                snippets,
                self.mean.len() / 2,
                Normalization::Standardize {
                    mean: self.mean.clone(),
                    std: self.std.clone(),
                },
            ),
            producer,
        )
        .with_classes(Some(self.classes.clone()))
    }

    /// Reads a classifier's description back from its card.
    pub fn from_card(card: &ModelCard, weights: &Path) -> Result<Self> {
        let bad = |m: String| HeadError::format(lofi_model::card::card_path(weights), m);
        let ModelSpec::VideoClassifier { hidden, inputs } = card.model else {
            return Err(bad(format!(
                "describes {}, not a video classifier",
                card.model.describe()
            )));
        };
        let Normalization::Standardize { mean, std } = &card.input.normalization else {
            return Err(bad(
                "a video classifier card needs \"standardize\" inputs".into()
            ));
        };
        let classes = card.classes.clone().unwrap_or_default();
        if mean.len() != inputs || std.len() != inputs || classes.is_empty() {
            return Err(bad(format!(
                "inconsistent card: {inputs} inputs, {} means, {} deviations, {} classes",
                mean.len(),
                std.len(),
                classes.len()
            )));
        }
        Ok(Self {
            classes,
            hidden,
            mean: mean.clone(),
            std: std.clone(),
        })
    }
}

/// A trained head (and classifier) loaded from a run folder, ready for inference.
#[derive(Debug)]
pub struct TrainedHead {
    /// The description it was built from.
    pub meta: HeadMeta,
    /// The head.
    pub head: lofi_model::Head,
    /// The classifier, when the run trained one.
    pub classifier: Option<VideoClassifier>,
}

impl TrainedHead {
    /// Loads a head from `path`, a run folder or a `head.bpk` (of `lofi train-head`, or the
    /// end-to-end head of `lofi train`), as [`HeadMeta::read`] describes it, with the
    /// classifier beside it when there is one.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let meta = HeadMeta::read(path)?;
        let weights = lofi_model::card::resolve_weights(path, files::HEAD)?;
        let dir = weights.parent().unwrap_or(Path::new("."));
        let head = meta
            .arch
            .load(meta.in_channels, &weights, device)
            .map_err(|e| {
                HeadError::format(
                    &weights,
                    format!(
                        "does not hold the head its card describes ({} on {} channels): {e}",
                        meta.arch.describe(),
                        meta.in_channels
                    ),
                )
            })?;
        let classifier = match &meta.classifier {
            Some(c) => Some(lofi_model::checkpoint::load(
                c.init(device),
                &dir.join(files::CLASSIFIER),
            )?),
            None => None,
        };
        Ok(Self {
            meta,
            head,
            classifier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_runs_read_from_cards_and_from_the_older_head_json() {
        let device = cpu_device();
        let dir = tempfile::tempdir().expect("temp dir");
        let arch = HeadArch::tiny(lofi_model::HeadKind::Gtad);
        let head = arch.init(8, &device).expect("head");
        let classifier = ClassifierMeta {
            classes: vec!["a".into(), "b".into()],
            hidden: 0,
            mean: vec![0.5; 16],
            std: vec![1.0; 16],
        };
        let producer = Producer::new("train-head", &serde_json::json!({"epochs": 3})).expect("p");

        // With cards: a run folder or its head.bpk.
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).expect("mkdir");
        let card = ModelCard::new(
            ModelSpec::Head {
                arch: arch.clone(),
                in_channels: 8,
                snippets: 12,
                detect: Some(DetectConfig {
                    top_k: 7,
                    ..DetectConfig::default()
                }),
            },
            feature_input(12, 8, Normalization::None),
            producer.clone(),
        );
        head.save(&run.join(files::HEAD)).expect("head");
        card.write_beside(&run.join(files::HEAD)).expect("card");
        let model = classifier.init(&device);
        save_with_card(
            &model,
            &run.join(files::CLASSIFIER),
            &classifier.card(12, producer),
        )
        .expect("classifier");
        for path in [run.clone(), run.join(files::HEAD)] {
            let loaded = TrainedHead::load(&path, &device).expect("load");
            assert_eq!(loaded.meta.snippets, 12);
            assert_eq!(loaded.meta.detect.top_k, 7);
            assert_eq!(loaded.meta.classifier.as_ref(), Some(&classifier));
            assert!(loaded.classifier.is_some());
        }

        // A run of an older lofi: head.json in the HeadMeta layout, no classifier card.
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).expect("mkdir");
        head.save(&old.join(files::HEAD)).expect("head");
        lofi_model::checkpoint::save(&model, &old.join(files::CLASSIFIER)).expect("cls");
        let meta = LegacyHeadJson {
            in_channels: 8,
            snippets: 12,
            temporal: crate::windows::Temporal::default(),
            arch: arch.clone(),
            classifier: Some(classifier.clone()),
            epochs: 3,
        };
        std::fs::write(
            old.join(files::META),
            serde_json::to_string(&meta).expect("json"),
        )
        .expect("write");
        let loaded = TrainedHead::load(&old, &device).expect("older run");
        assert_eq!(loaded.meta, HeadMeta::from(meta));
        assert_eq!(loaded.meta.detect, DetectConfig::default());

        // A head card without its weights is refused by name.
        std::fs::remove_file(run.join(files::HEAD)).expect("rm");
        let e = TrainedHead::load(&run, &device).expect_err("no weights");
        assert!(e.to_string().contains("head.bpk"), "{e}");
    }
}
