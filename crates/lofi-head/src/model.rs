//! The trained artefacts of `lofi train-head` and how they are described on disk: the G-TAD head's
//! architecture (without the input width, which comes from the features), the small video-level
//! classifier trained beside it, and `head.json`, which lets `lofi detect` rebuild both.
//!
//! Exists so that training and detection agree on one description of the models: `train-head`
//! writes `RUN_DIR/head.json` next to `head.bpk` and `classifier.bpk`, and `detect` builds exactly
//! those modules from it before loading the weights.
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
use lofi_model::GtadArch;
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

/// How the classifier was built and what it needs at inference (`head.json`'s `classifier`).
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

/// `RUN_DIR/head.json`: everything `lofi detect` needs to rebuild the trained models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadMeta {
    /// Feature channels `C`.
    pub in_channels: usize,
    /// Temporal scale `L` the head runs at (features are resampled to it, or cut into windows of
    /// it).
    pub snippets: usize,
    /// Rescale (absent) or sliding windows, as the head was trained.
    #[serde(default, skip_serializing_if = "crate::windows::Temporal::is_rescale")]
    pub temporal: crate::windows::Temporal,
    /// Head sizes.
    pub arch: GtadArch,
    /// The video classifier, when one was trained.
    pub classifier: Option<ClassifierMeta>,
    /// Epochs trained.
    pub epochs: usize,
}

/// File names inside a train-head run folder.
pub mod files {
    /// Final head weights.
    pub const HEAD: &str = "head.bpk";
    /// Final classifier weights.
    pub const CLASSIFIER: &str = "classifier.bpk";
    /// Model description.
    pub const META: &str = "head.json";
    /// The epoch chosen for `head.bpk` (lowest validation loss).
    pub const BEST: &str = "best.json";
}

impl HeadMeta {
    /// Reads `head.json` from a run folder.
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(files::META);
        let text = std::fs::read_to_string(&path).map_err(|e| HeadError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| HeadError::format(&path, e.to_string()))
    }
}

/// A trained head (and classifier) loaded from a run folder, ready for inference.
#[derive(Debug)]
pub struct TrainedHead {
    /// The description it was built from.
    pub meta: HeadMeta,
    /// The head.
    pub head: lofi_model::GtadHead,
    /// The classifier, when the run trained one.
    pub classifier: Option<VideoClassifier>,
}

impl TrainedHead {
    /// Loads `head.json`, `head.bpk` and (when described) `classifier.bpk` from `run_dir`.
    pub fn load(run_dir: &Path, device: &Device) -> Result<Self> {
        let meta = HeadMeta::read(run_dir)?;
        let head = meta.arch.gtad(meta.in_channels).init(device)?;
        let head = lofi_model::checkpoint::load(head, &run_dir.join(files::HEAD))?;
        let classifier = match &meta.classifier {
            Some(c) => Some(lofi_model::checkpoint::load(
                c.init(device),
                &run_dir.join(files::CLASSIFIER),
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
