//! `lofi extract`: the frozen encoder at full fidelity turns every video into a feature file, and
//! `lofi extract --verify` checks a feature folder against the ground truth.
//!
//! Exists because extraction is the longest job after training (ActivityNet: ~20k videos) and
//! the one users split across a cluster: so it is resumable (a video whose output exists and reads
//! back with the right shape is skipped; a corrupt one is redone), shardable (`--shard K/N` takes
//! the videos whose position in the sorted id list is `K` modulo `N`, `K` counted from 0, so `N`
//! array jobs cover every video exactly once), writes each file under a temporary name and renames
//! it, and ends with a list of failed videos instead of stopping at the first bad one.
//!
//! Outputs (issue-5 contract): `FEATURES_DIR/<id>.npy` (`[L, C]` float32, C order) and
//! `FEATURES_DIR/index.json`. A sharded run writes `index.shard-K-of-N.json` instead (shards run
//! concurrently and must not race on one file); [`verify`] merges whatever is on disk into
//! `index.json`.
//!
//! Sampling (`[sampling]` of the config, one [`Sampling`] value):
//! - `mode = "rescale"` (the default, ActivityNet): lofi-video's plan, `L` snippets of `F`
//!   frames over `[0, D]` with `D` the annotated duration; snippet `i` covers
//!   `[i D / L, (i + 1) D / L)` (see `lofi_video::plan`);
//! - `mode = "stride"` (THUMOS14, as TSP, G-TAD and ActionFormer features are made): one snippet
//!   every `stride_frames` frames of the video (its average frame rate) or every `stride_seconds`;
//!   snippet `i` covers `[i s, (i + 1) s)`, and a video gets `ceil(D / s)` snippets. The index
//!   records the sampling and each video's `s` (`snippet_seconds`) and row count, so later stages
//!   map snippet `i` to seconds exactly.
//!
//! The encoder sees one video at a time, `[1, L, F, 3, S, S]`, in inference mode (BatchNorm
//! running statistics), and its snippet features (mean over the `F` frames) are written as they
//! are. A video of more than `max_frames_per_pass` frames (512) is encoded in passes with enough
//! temporal context around each to give the same features as one pass (`lofi_model::passes`):
//! THUMOS14's stride sampling makes a long video thousands of snippets, more than fits at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use lofi_engine::fingerprint::{sha256_bytes, sha256_file, FINGERPRINT_FILE};
use lofi_engine::owned::{check_folder, prepare};
use lofi_engine::{
    Claim, Fingerprint, FolderKind, FolderLock, OutputPlan, Owner, Preset, Settings, Start,
};
use lofi_model::{Encoder, EncoderArch};
use lofi_video::ground_truth::{locate_videos, GroundTruth};
use lofi_video::plan::stride_count;
use lofi_video::{Fidelity, Loader, LoaderConfig, Sampling, SamplingPlan, VideoIndex, VideoJob};
use serde::{Deserialize, Serialize};

use crate::error::{HeadError, Result};
use crate::features::{FailedVideo, FeatureIndex, IndexEntry, INDEX_FILE};
use crate::npy;

/// The encoder to extract with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// Its architecture (TSM-ResNet or R(2+1)D; must match the checkpoint).
    pub model: EncoderArch,
    /// Classes of the clip classifier stored in the checkpoint (a pre-training
    /// `classifier.bpk`); `None` for a trunk (`encoder.bpk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<usize>,
    /// A checkpoint written by lofi (`.bpk`), or a PyTorch `.pth`/`.safetensors` (imported with
    /// lofi-model's key remapping; unused keys such as another task's classifier are ignored).
    /// `None` extracts with a randomly initialised encoder (seeded; for tests and baselines).
    /// A relative path is relative to the working directory; the `config.toml` that [`extract`]
    /// records beside the features stores it absolute, so that file works from any directory.
    pub checkpoint: Option<PathBuf>,
    /// Seed of the random initialisation when there is no checkpoint.
    #[serde(default)]
    pub seed: u64,
}

/// Frames between snippets of the `thumos14` preset (G-TAD's `skip_videoframes`).
pub const THUMOS14_STRIDE_FRAMES: usize = 5;

/// A `--shard K/N` selection: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` (`K` from 0).
    pub fn parse(text: &str) -> Result<Self> {
        let err = || {
            HeadError::Config(format!(
                "shard {text:?} must be K/N with 0 <= K < N (K counted from 0)"
            ))
        };
        let (k, n) = text.split_once('/').ok_or_else(err)?;
        let index: usize = k.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Self { index, count })
    }

    /// Whether the video at `position` of the sorted id list belongs to this shard.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// Settings of `lofi extract` (TOML; unknown keys are errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// Snippets per video, `L` (100), in rescale mode.
    #[serde(default = "default_snippets")]
    pub snippets: usize,
    /// Frames per snippet, `F` (1).
    #[serde(default = "default_frames")]
    pub frames_per_snippet: usize,
    /// Frame side, `S` (224).
    #[serde(default = "default_size")]
    pub size: usize,
    /// Decoding worker threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Allowed shortfall of a video against its annotated duration, seconds.
    #[serde(default = "default_tolerance")]
    pub duration_tolerance: f64,
    /// Most frames the encoder sees at once (512). A longer video (stride sampling of a long
    /// THUMOS14 video: thousands of snippets) is encoded in passes of at most this many frames,
    /// with features equal to one pass (`lofi_model::passes`), so memory stays bounded; the
    /// features do not depend on it.
    #[serde(default = "default_max_frames_per_pass")]
    pub max_frames_per_pass: usize,
    /// Only videos of this subset (`None`: all videos of the ground truth).
    #[serde(default)]
    pub subset: Option<String>,
    /// Where the snippets are taken: `L` over the video (rescale) or a fixed stride.
    #[serde(default, skip_serializing_if = "Sampling::is_rescale")]
    pub sampling: Sampling,
    /// The encoder.
    pub encoder: EncoderSpec,
}

fn default_snippets() -> usize {
    100
}
fn default_frames() -> usize {
    1
}
fn default_size() -> usize {
    224
}
fn default_workers() -> usize {
    2
}
fn default_tolerance() -> f64 {
    1.0
}
fn default_max_frames_per_pass() -> usize {
    512
}

impl ExtractConfig {
    /// Full fidelity (100 x 1 x 224) with `encoder`.
    pub fn new(encoder: EncoderSpec) -> Self {
        Self {
            snippets: default_snippets(),
            frames_per_snippet: default_frames(),
            size: default_size(),
            workers: default_workers(),
            duration_tolerance: default_tolerance(),
            max_frames_per_pass: default_max_frames_per_pass(),
            subset: None,
            sampling: Sampling::Rescale,
            encoder,
        }
    }

    /// The settings of `preset` with a randomly initialised encoder of its architecture
    /// (`paper`: TSM-R18 at 100 x 1 x 224; `tiny`: width-4 TSM-R18 at 16 x 1 x 64, the fidelity
    /// `lofi train --preset tiny` trains at).
    pub fn preset(preset: Preset) -> Self {
        let spec = |model| EncoderSpec {
            model,
            num_classes: None,
            checkpoint: None,
            seed: 0,
        };
        match preset {
            Preset::Paper => Self::new(spec(EncoderArch::default())),
            Preset::Tiny => Self {
                snippets: 16,
                size: 64,
                ..Self::new(spec(EncoderArch::tiny(lofi_model::EncoderKind::Tsm, 18, 4)))
            },
            // G-TAD's THUMOS14 features: one snippet every 5 frames of the video.
            Preset::Thumos14 => Self {
                sampling: Sampling::Stride {
                    stride_frames: Some(THUMOS14_STRIDE_FRAMES),
                    stride_seconds: None,
                },
                ..Self::new(spec(EncoderArch::default()))
            },
        }
    }

    /// These settings as recorded beside the features: the checkpoint path made absolute (against
    /// the working directory, as it was read), so a run reusing the recorded file (`--config
    /// FEATURES/config.toml`, e.g. a re-submitted cluster array) finds the same checkpoint from
    /// any directory.
    pub fn recorded(&self) -> Result<Self> {
        let mut c = self.clone();
        if let Some(p) = &self.encoder.checkpoint {
            let absolute = std::path::absolute(p).map_err(|e| HeadError::io(p, e))?;
            c.encoder.checkpoint = Some(absolute);
        }
        Ok(c)
    }

    fn plan(&self) -> Result<SamplingPlan> {
        let fidelity = Fidelity::new(self.snippets, self.size)?;
        Ok(fidelity.apply(&SamplingPlan::new(self.frames_per_snippet)?))
    }
}

impl lofi_engine::Settings for ExtractConfig {
    type Error = HeadError;

    /// Checks every value before any work.
    fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("snippets", self.snippets),
            ("frames_per_snippet", self.frames_per_snippet),
            ("size", self.size),
            ("workers", self.workers),
            ("max_frames_per_pass", self.max_frames_per_pass),
        ] {
            if v == 0 {
                return Err(HeadError::Config(format!("{key} must be at least 1")));
            }
        }
        self.sampling.check().map_err(HeadError::Config)?;
        if !(self.duration_tolerance.is_finite() && self.duration_tolerance >= 0.0) {
            return Err(HeadError::Config(format!(
                "duration_tolerance = {} must be >= 0",
                self.duration_tolerance
            )));
        }
        if self.size < 32 {
            return Err(HeadError::Config(format!(
                "size = {} is too small for a ResNet (at least 32 px)",
                self.size
            )));
        }
        lofi_video::limits::check_clip(self.snippets, self.frames_per_snippet, self.size)?;
        lofi_video::limits::check_workers(self.workers)?;
        if let Some(p) = &self.encoder.checkpoint {
            if !p.is_file() {
                return Err(HeadError::Config(format!(
                    "encoder.checkpoint {} does not exist",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// Where `extract` reads and writes.
#[derive(Debug, Clone)]
pub struct ExtractInputs {
    /// Ground truth (the video list and durations).
    pub ground_truth: PathBuf,
    /// Folder of the video files (`<id>.mp4` etc., with or without `v_`).
    pub videos: PathBuf,
    /// Feature folder.
    pub out: PathBuf,
    /// Shard of the video list (`None`: all).
    pub shard: Option<Shard>,
    /// Redo everything in a folder that another extraction made (its fingerprint differs, or it
    /// has none); without it such a folder is refused. Not with a shard: clear it unsharded.
    pub overwrite: bool,
    /// Go on without the videos of the shard that have no file in `videos` (listed as failed);
    /// without it, any such video is an error that names them all, before any work.
    pub skip_missing_videos: bool,
    /// Where the encoder runs (`cpu_device()`, or a GPU opened by the caller).
    pub device: Device,
}

/// What `extract` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractOutcome {
    /// Videos of this shard.
    pub videos: usize,
    /// Newly extracted.
    pub extracted: usize,
    /// Already done (valid output found).
    pub skipped: usize,
    /// Existing outputs that were corrupt and were redone.
    pub redone: usize,
    /// Videos that failed, with the reason (those without a video file, skipped on request,
    /// included).
    pub failed: Vec<FailedVideo>,
    /// How many of `failed` had no video file and were skipped on request
    /// (`skip_missing_videos`).
    pub skipped_missing: usize,
    /// The index file written.
    pub index_path: PathBuf,
    /// Frames encoded.
    pub frames: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Builds the encoder of `spec` on `device` in inference mode.
pub fn load_encoder(spec: &EncoderSpec, device: &Device) -> Result<Encoder> {
    let encoder = match &spec.checkpoint {
        // Random weights (a baseline): drawn now, from the seed alone.
        None => lofi_model::seed::seeded(device, spec.seed, || {
            (spec.model.init(spec.num_classes, device)).map(lofi_model::seed::initialized)
        })?,
        // The checkpoint's weights replace the lazily created ones, which are never drawn.
        Some(path) => {
            if let Some(card) = lofi_model::ModelCard::read_beside(path)? {
                crate::model::check_video_input(&card, &lofi_model::card::card_path(path))?;
            }
            let encoder = spec.model.init(spec.num_classes, device)?;
            spec.model.load_into(spec.num_classes, encoder, path)?
        }
    };
    Ok(encoder.valid())
}

/// Checks an existing output: header, shape `[L, C]`, file size. `Ok(shape)` when usable.
pub fn check_output(
    path: &Path,
    l: Option<usize>,
    c: Option<usize>,
) -> std::result::Result<[usize; 2], String> {
    let header = npy::read_header(path).map_err(|e| e.0)?;
    if header.dtype != npy::Dtype::F32 || header.shape.len() != 2 {
        return Err(format!(
            "expected a 2-D float32 array, found {:?} {:?}",
            header.dtype, header.shape
        ));
    }
    let shape = [header.shape[0], header.shape[1]];
    if l.is_some_and(|l| l != shape[0]) || c.is_some_and(|c| c != shape[1]) || shape[0] == 0 {
        return Err(format!(
            "shape {shape:?}, expected [{}, {}]",
            l.map_or("L".to_string(), |l| l.to_string()),
            c.map_or("C".to_string(), |c| c.to_string())
        ));
    }
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len() as usize;
    let want = header.data_offset + header.data_bytes();
    if len != want {
        return Err(format!(
            "file has {len} bytes, its header promises {want} (truncated or corrupt)"
        ));
    }
    Ok(shape)
}

/// The videos of the ground truth selected by `subset` (any letter case) and `shard`, sorted by
/// id, with durations. (Ids are safe file names: [`GroundTruth::read`] refused any other.)
pub fn select_videos(
    truth: &GroundTruth,
    gt_path: &Path,
    subset: Option<&str>,
    shard: Option<Shard>,
) -> Result<Vec<(String, f64)>> {
    if let Some(wanted) = subset {
        if truth.subset_name(wanted).is_none() {
            return Err(HeadError::format(
                gt_path,
                format!(
                    "no video of subset {wanted:?} (the file has: {})",
                    truth.describe_subsets()
                ),
            ));
        }
    }
    let all: Vec<(&String, &lofi_video::ground_truth::VideoEntry)> = match subset {
        Some(wanted) => truth.videos_of(wanted).collect(),
        None => truth.database.iter().collect(),
    };
    Ok(all
        .into_iter()
        .enumerate()
        .filter(|(pos, _)| shard.is_none_or(|s| s.takes(*pos)))
        .map(|(_, (id, entry))| (id.clone(), entry.duration))
        .collect())
}

/// Index file name of a shard.
pub fn index_name(shard: Option<Shard>) -> String {
    match shard {
        Some(s) if s.count > 1 => format!("index.shard-{}-of-{}.json", s.index, s.count),
        _ => INDEX_FILE.to_string(),
    }
}

/// Extracts features of every selected video; see the module docs. `progress(done, total)` is
/// called after each video of the shard (skipped ones included).
pub fn extract(
    config: &ExtractConfig,
    inputs: &ExtractInputs,
    progress: &dyn Fn(usize, usize),
) -> Result<ExtractOutcome> {
    config.validate()?;
    let started = Instant::now();
    let truth = GroundTruth::read(&inputs.ground_truth)?;
    let selected = select_videos(
        &truth,
        &inputs.ground_truth,
        config.subset.as_deref(),
        inputs.shard,
    )?;
    let (located, _) = locate_videos(
        &inputs.ground_truth,
        &inputs.videos,
        selected.iter().map(|(id, _)| id.as_str()),
        inputs.skip_missing_videos,
    )?;
    let files: BTreeMap<String, PathBuf> = located.into_iter().collect();
    check_stride_sizes(config, &selected, &files)?;
    // The encoder before the folder: weights of another architecture are refused before
    // anything is written.
    let device = inputs.device.clone();
    let encoder = load_encoder(&config.encoder, &device)?;
    let least = encoder.min_frames_per_pass(config.frames_per_snippet);
    if config.max_frames_per_pass < least {
        return Err(HeadError::Config(format!(
            "max_frames_per_pass = {} is too few for {}-{}: at {} frames per snippet a pass \
             holds one snippet and {} snippets of context on each side, at least {least} frames",
            config.max_frames_per_pass,
            config.encoder.model.kind(),
            config.encoder.model.depth(),
            config.frames_per_snippet,
            encoder.context_snippets(config.frames_per_snippet),
        )));
    }
    let recorded = config.recorded()?;
    let (_lock, owner) = claim_folder(config, &recorded, inputs, &selected)?;
    let (_, previous, listed_failed) = read_indexes(&inputs.out)?;
    let c = config.encoder.model.out_channels();
    let l = config.snippets;
    let total = selected.len();

    let Pending {
        mut entries,
        mut failed,
        jobs,
        skipped,
        redone,
    } = pending(
        &selected,
        &files,
        [l, c],
        config.sampling,
        (&previous, &listed_failed),
        inputs,
        &|done| progress(done, total),
    )?;

    // Only videos without a file (skipped on request) fail before decoding.
    let skipped_missing = failed.len();
    let mut loader_cfg = LoaderConfig::new(config.plan()?);
    loader_cfg.sampling = config.sampling;
    loader_cfg.workers = config.workers;
    loader_cfg.queue = config.workers * 2;
    loader_cfg.duration_tolerance = config.duration_tolerance;
    let mut extracted = 0;
    let mut frames = 0;
    if !jobs.is_empty() {
        let mut loader = Loader::new(jobs, loader_cfg)?;
        for video in loader.by_ref() {
            let [cl, f, ch, h, w] = video.clip.shape;
            // A pass at a time, converted from the decoded bytes as it goes: a long video is
            // never in the encoder's format whole.
            let feats = encoder.forward_passes(cl, f, config.max_frames_per_pass, |range| {
                let part = video.clip.snippets_f32_normalized(range);
                let shape = [1, part.shape[0], f, ch, h, w];
                Ok(Tensor::<6>::from_data(
                    TensorData::new(part.data, shape),
                    &device,
                ))
            })?;
            let data: Vec<f32> = feats
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| HeadError::Input(format!("cannot read encoder output: {e:?}")))?;
            let file = format!("{}.npy", video.id);
            let path = inputs.out.join(&file);
            // The hash of the bytes written, without reading the file back.
            let written = npy::encode_f32_2d(cl, c, &data)
                .map_err(|e| e.0)
                .and_then(|bytes| {
                    owner
                        .write(&file, &bytes)
                        .map(|_| sha256_bytes(&bytes))
                        .map_err(|e| format!("cannot write: {e}"))
                });
            match written {
                Ok(sha256) => {
                    entries.insert(
                        video.id.clone(),
                        IndexEntry {
                            file,
                            duration: video.duration,
                            shape: [cl, c],
                            sha256: Some(sha256),
                            snippet_seconds: (!config.sampling.is_rescale())
                                .then_some(video.snippet_seconds),
                        },
                    );
                    extracted += 1;
                    frames += cl * f;
                }
                Err(e) => failed.push(FailedVideo {
                    id: video.id.clone(),
                    reason: format!("{}: {e}", path.display()),
                }),
            }
            progress(skipped + extracted + failed.len(), total);
        }
        let report = loader.finish();
        for f in report.failed {
            tracing::warn!("video {}: {}", f.id, f.reason);
            failed.push(FailedVideo {
                id: f.id,
                reason: f.reason,
            });
            progress(skipped + extracted + failed.len(), total);
        }
    }
    failed.sort_by(|a, b| a.id.cmp(&b.id));
    let index = FeatureIndex {
        snippets: l,
        frames_per_snippet: config.frames_per_snippet,
        size: config.size,
        encoder: encoder_name(&recorded.encoder),
        sampling: config.sampling,
        videos: entries,
        failed: failed.clone(),
    };
    let index_path = owner.write(&index_name(inputs.shard), &index_bytes(&index)?)?;
    Ok(ExtractOutcome {
        videos: total,
        extracted,
        skipped,
        redone,
        failed,
        skipped_missing,
        index_path,
        frames,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every size a stride extraction will reach, before any work: a stride no finer than one frame
/// of each video (finer would repeat frames, and a stride of 1e-9 s asks for billions of
/// snippets), and each video's decoded snippets within this machine's memory.
fn check_stride_sizes(
    config: &ExtractConfig,
    selected: &[(String, f64)],
    files: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    if config.sampling.is_rescale() {
        return Ok(());
    }
    for (id, duration) in selected {
        let Some(path) = files.get(id) else { continue };
        let fps = VideoIndex::build(path)?.fps();
        let step = config.sampling.stride_seconds(fps).unwrap_or(0.0);
        let frame = 1.0 / fps;
        if !(step.is_finite() && fps.is_finite() && fps > 0.0) || step < frame * (1.0 - 1e-6) {
            return Err(HeadError::Config(format!(
                "a stride of {step} s is finer than one frame of video {id} ({}: {:.6} s at \
                 {fps:.3} fps); snippets start at most once per frame: use --stride-frames 1 or \
                 a longer stride",
                path.display(),
                frame
            )));
        }
        let snippets = stride_count(*duration, step);
        lofi_video::limits::check_decoded_video(
            snippets,
            config.frames_per_snippet,
            config.size,
            &format!("video {id} at a stride of {step:.4} s"),
        )?;
    }
    Ok(())
}

/// What is left to extract after looking at the output folder.
struct Pending {
    /// Usable outputs already there.
    entries: BTreeMap<String, IndexEntry>,
    /// Videos without a file.
    failed: Vec<FailedVideo>,
    /// Videos to decode and encode.
    jobs: Vec<VideoJob>,
    /// Outputs kept.
    skipped: usize,
    /// Unusable outputs to redo.
    redone: usize,
}

/// Seconds per snippet and snippet count of a stride extraction of `video` (annotated `duration`);
/// a stride in frames reads the frame rate off the packet headers (no decoding).
fn stride_shape(
    sampling: Sampling,
    video: &Path,
    duration: f64,
) -> std::result::Result<(f64, usize), String> {
    let fps = match sampling {
        Sampling::Stride {
            stride_frames: Some(_),
            ..
        } => VideoIndex::build(video).map_err(|e| e.to_string())?.fps(),
        _ => 0.0,
    };
    match sampling.stride_seconds(fps) {
        Some(step) if step.is_finite() && step > 0.0 => Ok((step, stride_count(duration, step))),
        _ => Err(format!("no usable stride ({sampling:?}, frame rate {fps})")),
    }
}

/// Sorts `selected` videos into finished ones (a usable `[L, C]` output exists, `L` the
/// rescale's or the stride's count for the video, and agrees with what the folder's indexes
/// recorded for it: the same annotated duration, the same bytes), ones to extract and ones without
/// a video file; `progress` gets the count of videos settled so far. The folder's fingerprint
/// already matched, so an output is this job's unless `previous` says otherwise.
fn pending(
    selected: &[(String, f64)],
    files: &BTreeMap<String, PathBuf>,
    shape: [usize; 2],
    sampling: Sampling,
    recorded: (&BTreeMap<String, IndexEntry>, &BTreeSet<String>),
    inputs: &ExtractInputs,
    progress: &dyn Fn(usize),
) -> Result<Pending> {
    let (previous, listed_failed) = recorded;
    let [l, c] = shape;
    let mut entries: BTreeMap<String, IndexEntry> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut jobs = Vec::new();
    let (mut skipped, mut redone) = (0, 0);
    for (id, duration) in selected {
        let file = format!("{id}.npy");
        let path = inputs.out.join(&file);
        let video = files.get(id);
        if path.exists() {
            let expected = match (&sampling, video) {
                (Sampling::Rescale, _) => Ok((*duration / l as f64, l)),
                (_, Some(v)) => stride_shape(sampling, v, *duration),
                (_, None) => Err("no video file to measure its stride".into()),
            };
            let usable = expected.and_then(|(step, n)| {
                let shape = check_output(&path, Some(n), Some(c))?;
                let sha256 = sha256_file(&path).map_err(|e| e.to_string())?;
                if listed_failed.contains(id) {
                    return Err("the folder's index lists it as failed or corrupt".into());
                }
                match previous.get(id) {
                    Some(p) if p.duration != *duration => Err(format!(
                        "it covers {} s, the ground truth now says {} s",
                        p.duration, duration
                    )),
                    Some(IndexEntry {
                        sha256: Some(h), ..
                    }) if *h != sha256 => {
                        Err("its bytes changed since it was extracted (sha256 differs)".into())
                    }
                    _ => Ok((step, shape, sha256)),
                }
            });
            match usable {
                Ok((step, shape, sha256)) => {
                    entries.insert(
                        id.clone(),
                        IndexEntry {
                            file,
                            duration: *duration,
                            shape,
                            sha256: Some(sha256),
                            snippet_seconds: (!sampling.is_rescale()).then_some(step),
                        },
                    );
                    skipped += 1;
                    progress(skipped);
                    continue;
                }
                Err(reason) => {
                    tracing::warn!(
                        "video {id}: existing {} is unusable ({reason}); redoing it",
                        path.display()
                    );
                    redone += 1;
                }
            }
        }
        match video {
            Some(video) => jobs.push(VideoJob {
                id: id.clone(),
                path: video.clone(),
                annotated_duration: Some(*duration),
                span: None,
            }),
            None => {
                let reason = format!(
                    "no video file for it in {} (skipped: --skip-missing-videos)",
                    inputs.videos.display()
                );
                tracing::warn!("video {id}: {reason}");
                failed.push(FailedVideo {
                    id: id.clone(),
                    reason,
                });
                progress(skipped + failed.len());
            }
        }
    }

    Ok(Pending {
        entries,
        failed,
        jobs,
        skipped,
        redone,
    })
}

/// What an extraction's outputs depend on: the encoder's architecture and weights (by their
/// bytes), and the sampling (`L` or the stride, `F`, `S`). Not the subset, shard, workers or
/// tolerance: they choose which videos are done, not what a feature file holds.
pub fn fingerprint(config: &ExtractConfig) -> Result<Fingerprint> {
    let spec = &config.encoder;
    let f = Fingerprint::new()
        .with("encoder", &(&spec.model, spec.num_classes))?
        .with(
            "sampling",
            &serde_json::json!({
                "snippets": config.snippets,
                "frames_per_snippet": config.frames_per_snippet,
                "size": config.size,
                "stride": config.sampling,
            }),
        )?;
    Ok(match &spec.checkpoint {
        Some(p) => f.with_file("weights", p)?,
        None => f.with(
            "weights",
            &format!("random initialisation, seed {}", spec.seed),
        )?,
    })
}

/// The settings file of a feature folder.
const CONFIG_FILE: &str = lofi_engine::run_dir::files::CONFIG;

/// Locks the output folder (a shard shares it with the other shards) and claims it for this
/// extraction's fingerprint and output files ([`lofi_engine::owned::prepare`]): a folder of
/// another kind, inputs inside it, or files lofi did not write where the feature files, indexes or
/// settings go are refused; a folder made by another extraction is refused too, or with
/// `overwrite` emptied of what that extraction wrote (only that). `config.toml` is written only
/// when the folder starts afresh, so a refused rerun leaves a complete folder as it was. Shards
/// claim one at a time (a short exclusive lock), so each sees the others' records.
fn claim_folder(
    config: &ExtractConfig,
    recorded: &ExtractConfig,
    inputs: &ExtractInputs,
    videos: &[(String, f64)],
) -> Result<(FolderLock, Owner)> {
    let out = &inputs.out;
    let sharded = inputs.shard.filter(|s| s.count > 1);
    if inputs.overwrite && sharded.is_some() {
        return Err(HeadError::Config(
            "--overwrite clears the whole folder, which other shards write too: run it once \
             without --shard, or choose a fresh folder for the sharded run"
                .into(),
        ));
    }
    let lock = match sharded {
        Some(s) => FolderLock::shard(out, "extraction", s.index, s.count)?,
        None => FolderLock::exclusive(out, "extraction")?,
    };
    let _claiming = FolderLock::claiming(out)?;
    let plan = OutputPlan::new(FolderKind::Features, &[CONFIG_FILE], &[])
        .with_files([index_name(inputs.shard)])
        .with_files(videos.iter().map(|(id, _)| format!("{id}.npy")))
        .with_input("the ground truth", &inputs.ground_truth)
        .with_input("the video folder", &inputs.videos);
    check_folder(out, &plan)?;
    let mine = fingerprint(config)?;
    let start = match Fingerprint::read(out)? {
        // Compares only (the folder has a fingerprint): a different one is refused unless
        // overwrite.
        Some(_) => match mine.claim(out, "extraction", inputs.overwrite)? {
            Claim::Overwrite => Start::Overwrite,
            _ => Start::Continue,
        },
        // Features without a fingerprint (it was removed, or an older lofi wrote them): what
        // made them is unknown, so they are not resumed blindly.
        None if holds_own_features(out)? => {
            if !inputs.overwrite {
                return Err(HeadError::Config(format!(
                    "{} holds feature files but no {FINGERPRINT_FILE} (made by an older lofi or \
                     by hand), so what made them is unknown; use --overwrite to extract again \
                     into it (only files lofi recorded writing there are removed), or choose \
                     another --out",
                    out.display()
                )));
            }
            Start::Overwrite
        }
        None => Start::Continue,
    };
    let owner = prepare(out, &plan, start)?;
    let fresh = !out.join(FINGERPRINT_FILE).is_file();
    if fresh {
        owner.write_json(FINGERPRINT_FILE, &mine)?;
    }
    if fresh || !out.join(CONFIG_FILE).is_file() {
        let text = toml::to_string_pretty(recorded)
            .map_err(|e| HeadError::format(out.join(CONFIG_FILE), e.to_string()))?;
        owner.write(CONFIG_FILE, text.as_bytes())?;
    }
    Ok((lock, owner))
}

/// An index file's bytes (pretty JSON with a final newline).
fn index_bytes(index: &FeatureIndex) -> std::result::Result<Vec<u8>, lofi_engine::EngineError> {
    serde_json::to_string_pretty(index)
        .map(|t| (t + "\n").into_bytes())
        .map_err(|e| lofi_engine::EngineError::data(INDEX_FILE, e.to_string()))
}

/// Whether `dir` holds feature files or indexes that lofi wrote (others are foreign: the
/// folder's claim refuses them where they are in the way).
fn holds_own_features(dir: &Path) -> Result<bool> {
    let record = lofi_engine::owned::Record::read(dir)?;
    let listing = std::fs::read_dir(dir).map_err(|e| HeadError::io(dir, e))?;
    for entry in listing {
        let name = entry.map_err(|e| HeadError::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        let feature =
            name.ends_with(".npy") || (name.starts_with("index") && name.ends_with(".json"));
        if feature && record.owns(&name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn encoder_name(spec: &EncoderSpec) -> String {
    match &spec.checkpoint {
        Some(p) => p.display().to_string(),
        None => format!(
            "random {}-{} width {} (seed {})",
            spec.model.kind(),
            spec.model.depth(),
            spec.model.base_width(),
            spec.seed
        ),
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    /// Videos with a valid feature file.
    pub ok: usize,
    /// Videos without a feature file.
    pub missing: Vec<String>,
    /// Videos whose file is unusable, with the reason.
    pub corrupt: Vec<FailedVideo>,
    /// The merged index (`index.json`), listing the valid files.
    pub index_path: PathBuf,
    /// Whether the merged index was written: `false` when it equals the one there, or when the
    /// folder cannot be written (a read-only copy: the check stands, nothing is merged).
    pub index_written: bool,
    /// Unfinished temporary files of extractions that were stopped (the next extraction into the
    /// folder removes them).
    pub leftovers: Vec<String>,
}

impl VerifyReport {
    /// Whether every video has a valid file.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// `lofi extract --verify`: checks that every video of the ground truth (`subset` only, when
/// given) has a valid `<id>.npy` in `dir` (header, `[L, C]` shape agreeing with the other files
/// and the index, complete data, finite values, and the bytes the extraction recorded), merges
/// the shard indexes into `index.json` (valid files only; missing and corrupt ones under
/// `failed`), and lists what is wrong. A folder that cannot be written (read-only) is checked all
/// the same; only the merge is skipped.
pub fn verify(dir: &Path, ground_truth: &Path, subset: Option<&str>) -> Result<VerifyReport> {
    let truth = GroundTruth::read(ground_truth)?;
    let selected = select_videos(&truth, ground_truth, subset, None)?;
    if !dir.is_dir() {
        return Err(HeadError::Input(format!(
            "{}: no such feature folder",
            dir.display()
        )));
    }
    // Writers of the folder are excluded while it is checked; a read-only folder has none.
    let _lock = match FolderLock::exclusive(dir, "verification") {
        Ok(lock) => Some(lock),
        Err(e)
            if matches!(
                e.io_kind(),
                Some(std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
            ) =>
        {
            None
        }
        Err(e) => return Err(lofi_engine::EngineError::from(e).into()),
    };
    let (settings, recorded, _) = read_indexes(dir)?;
    let stride = settings.as_ref().is_some_and(|s| !s.sampling.is_rescale());
    let mut report = VerifyReport {
        leftovers: lofi_engine::owned::dead_partials(
            dir,
            &OutputPlan::new(FolderKind::Features, &[], &[]),
        )?,
        ..VerifyReport::default()
    };
    let mut entries = BTreeMap::new();
    let mut channels: Option<usize> = None;
    let mut l_seen: Option<usize> = settings.as_ref().map(|s| s.snippets);
    for (id, duration) in &selected {
        let file = format!("{id}.npy");
        let path = dir.join(&file);
        if !path.is_file() {
            report.missing.push(id.clone());
            continue;
        }
        let listed = recorded.get(id);
        if let Some(Err(reason)) = listed.map(|e| e.check_file(id)) {
            report.corrupt.push(FailedVideo {
                id: id.clone(),
                reason: format!("{}: {reason}", dir.join(INDEX_FILE).display()),
            });
            continue;
        }
        // A stride's row count is the video's own; it is known from the index that lists it.
        let expected = match (stride, listed) {
            (true, Some(e)) => Ok(Some(e.shape[0])),
            (true, None) => {
                Err("no index lists it, so its stride is unknown (extract it again)".to_string())
            }
            (false, _) => Ok(l_seen),
        };
        match expected.and_then(|l| verify_file(&path, l, channels, listed)) {
            Ok((shape, sha256)) => {
                l_seen.get_or_insert(shape[0]);
                channels.get_or_insert(shape[1]);
                entries.insert(
                    id.clone(),
                    IndexEntry {
                        file,
                        duration: listed.map_or(*duration, |e| e.duration),
                        shape,
                        sha256: Some(sha256),
                        snippet_seconds: listed.and_then(|e| e.snippet_seconds),
                    },
                );
                report.ok += 1;
            }
            Err(reason) => report.corrupt.push(FailedVideo {
                id: id.clone(),
                reason: format!("{}: {reason}", path.display()),
            }),
        }
    }
    let mut failed: Vec<FailedVideo> = report
        .missing
        .iter()
        .map(|id| FailedVideo {
            id: id.clone(),
            reason: "missing".into(),
        })
        .chain(report.corrupt.iter().cloned())
        .collect();
    failed.sort_by(|a, b| a.id.cmp(&b.id));
    let base = settings.unwrap_or(FeatureIndex {
        snippets: l_seen.unwrap_or(0),
        frames_per_snippet: 0,
        size: 0,
        encoder: "unknown (no index file found)".into(),
        sampling: Sampling::Rescale,
        videos: BTreeMap::new(),
        failed: Vec::new(),
    });
    let merged = FeatureIndex {
        videos: entries,
        failed,
        ..base
    };
    report.index_path = dir.join(INDEX_FILE);
    let current = FeatureIndex::read(&report.index_path).ok();
    if current.as_ref() != Some(&merged) {
        let written =
            Owner::open(dir).and_then(|owner| owner.write(INDEX_FILE, &index_bytes(&merged)?));
        match written {
            Ok(_) => report.index_written = true,
            Err(lofi_engine::EngineError::Io { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                tracing::warn!(
                    "{} cannot be written ({source}): the files are checked, the shard indexes \
                     are not merged",
                    dir.display()
                );
            }
            Err(e @ lofi_engine::EngineError::Foreign { .. }) => {
                tracing::warn!("the files are checked, the indexes are not merged: {e}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report)
}

/// Checks one feature file: `[L, C]` header agreeing with `l` / `c` when known, complete data,
/// finite values, and the bytes `recorded` for it (when the index has a hash). Returns its shape
/// and hash.
fn verify_file(
    path: &Path,
    l: Option<usize>,
    c: Option<usize>,
    recorded: Option<&IndexEntry>,
) -> std::result::Result<([usize; 2], String), String> {
    let l = match l {
        Some(l) => l,
        None => match npy::read_header(path).map_err(|e| e.0)?.shape.first() {
            Some(&l) => l,
            None => return Err("array has no dimensions".into()),
        },
    };
    let shape = check_output(path, Some(l), c)?;
    // One read serves the hash and the values; the checks are the readers' own
    // (`lofi_eval::feature_folder::check_bytes`), so what passes here is what they accept.
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    lofi_eval::feature_folder::check_bytes(&bytes, recorded)?;
    Ok((shape, sha256_bytes(&bytes)))
}

/// What the indexes of a folder say: settings, entries by id, ids listed as failed.
type RecordedIndexes = (
    Option<FeatureIndex>,
    BTreeMap<String, IndexEntry>,
    BTreeSet<String>,
);

/// The settings of the indexes in `dir` (`index.json` or shard indexes; all must agree on L, F,
/// S and the sampling), the entry of every video they list (annotated duration, recorded hash), and the videos
/// they list as failed (missing, or found corrupt by `--verify`).
fn read_indexes(dir: &Path) -> Result<RecordedIndexes> {
    let mut settings: Option<FeatureIndex> = None;
    let mut entries: BTreeMap<String, IndexEntry> = BTreeMap::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let listing = std::fs::read_dir(dir).map_err(|e| HeadError::io(dir, e))?;
    let mut index_files: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("index") && n.ends_with(".json"))
        })
        .collect();
    index_files.sort();
    for p in &index_files {
        let idx = FeatureIndex::read(p)?;
        if let Some(s) = &settings {
            if (s.snippets, s.frames_per_snippet, s.size)
                != (idx.snippets, idx.frames_per_snippet, idx.size)
            {
                return Err(HeadError::format(
                    p,
                    format!(
                        "made with L={}, F={}, S={} but {} says L={}, F={}, S={}",
                        idx.snippets,
                        idx.frames_per_snippet,
                        idx.size,
                        index_files[0].display(),
                        s.snippets,
                        s.frames_per_snippet,
                        s.size
                    ),
                ));
            }
            if s.sampling != idx.sampling {
                return Err(HeadError::format(
                    p,
                    format!(
                        "made with sampling {:?} but {} says {:?}",
                        idx.sampling,
                        index_files[0].display(),
                        s.sampling
                    ),
                ));
            }
        }
        for (id, e) in &idx.videos {
            entries.insert(id.clone(), e.clone());
        }
        failed.extend(idx.failed.iter().map(|f| f.id.clone()));
        settings.get_or_insert(idx);
    }
    failed.retain(|id| !entries.contains_key(id));
    Ok((settings, entries, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subset_without_videos_is_an_error_naming_the_subsets_there() {
        let gt = Path::new("gt.json");
        let truth = GroundTruth::from_slice(
            br#"{"version": "t", "database": {
                "a": {"subset": "training", "duration": 5.0, "annotations": []},
                "b": {"subset": "validation", "duration": 5.0, "annotations": []}}}"#,
            gt,
        )
        .expect("ground truth");
        let one = select_videos(&truth, gt, Some("validation"), None).expect("one video");
        assert_eq!(one, [("b".to_string(), 5.0)]);
        let folded = select_videos(&truth, gt, Some("Validation"), None).expect("any case");
        assert_eq!(folded, one);
        let e = select_videos(&truth, gt, Some("Validaton"), None).expect_err("typo");
        let text = e.to_string();
        assert!(
            text.contains("gt.json")
                && text.contains("\"Validaton\"")
                && text.contains("validation"),
            "{text}"
        );
        // An empty shard of an existing subset is not an error (more shards than videos).
        let shard = Shard { index: 1, count: 4 };
        assert!(select_videos(&truth, gt, Some("training"), Some(shard))
            .expect("ok")
            .is_empty());
    }

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!(Shard::parse("1/3").ok(), Some(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (0..3).map(|k| Shard { index: k, count: 3 }).collect();
        for pos in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.takes(pos)).count(), 1);
        }
        assert_eq!(index_name(Some(shards[2])), "index.shard-2-of-3.json");
        assert_eq!(index_name(None), "index.json");
    }

    #[test]
    fn config_refuses_unknown_keys_and_bad_values() {
        let p = Path::new("extract.toml");
        let base = "[encoder]\nseed = 1\n[encoder.model]\ndepth = 18\nbase_width = 8\nshift = true\nshift_div = 8\nfrozen_bn = false\n";
        let ok = ExtractConfig::from_toml(&format!("snippets = 8\nsize = 64\n{base}"), p)
            .expect("valid");
        assert_eq!((ok.snippets, ok.frames_per_snippet, ok.size), (8, 1, 64));
        let e = ExtractConfig::from_toml(&format!("snipets = 8\n{base}"), p).expect_err("key");
        assert!(e.to_string().contains("snipets"), "{e}");
        let e = ExtractConfig::from_toml(&format!("snippets = 0\n{base}"), p).expect_err("zero");
        assert!(e.to_string().contains("snippets"), "{e}");
        let with_ckpt = base.replace(
            "seed = 1\n",
            "seed = 1\ncheckpoint = \"/nonexistent/enc.bpk\"\n",
        );
        let e = ExtractConfig::from_toml(&with_ckpt, p).expect_err("missing checkpoint");
        assert!(e.to_string().contains("/nonexistent/enc.bpk"), "{e}");
        let typo = format!("{base}shift_dvi = 4\n");
        let e = ExtractConfig::from_toml(&typo, p).expect_err("typo in the model table");
        assert!(e.to_string().contains("shift_dvi"), "{e}");
    }

    #[test]
    fn recorded_config_stores_the_checkpoint_absolute() {
        let mut c = ExtractConfig::new(EncoderSpec {
            model: EncoderArch::tiny(lofi_model::EncoderKind::Tsm, 18, 8),
            num_classes: None,
            checkpoint: None,
            seed: 0,
        });
        assert_eq!(c.recorded().expect("no checkpoint"), c);
        c.encoder.checkpoint = Some(PathBuf::from("runs/enc.bpk"));
        let cwd = std::env::current_dir().expect("cwd");
        let mut rec = c.recorded().expect("relative");
        assert_eq!(rec.encoder.checkpoint, Some(cwd.join("runs/enc.bpk")));
        rec.encoder.checkpoint = c.encoder.checkpoint.clone();
        assert_eq!(rec, c, "only the checkpoint path changes");
        c.encoder.checkpoint = Some(PathBuf::from("/data/enc.bpk"));
        assert_eq!(c.recorded().expect("absolute"), c);
    }

    #[test]
    fn check_output_catches_truncation_and_wrong_shape() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("v.npy");
        npy::write_f32_2d(&p, 4, 3, &[0.5; 12]).expect("write");
        assert_eq!(check_output(&p, Some(4), Some(3)), Ok([4, 3]));
        assert!(check_output(&p, Some(5), Some(3)).is_err());
        assert!(check_output(&p, Some(4), Some(2)).is_err());
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() - 4]).expect("truncate");
        assert!(check_output(&p, Some(4), Some(3))
            .expect_err("truncated")
            .contains("truncated"));
    }
}
