//! Training data: untrimmed videos with their ground truth (for `lofi train`) and trimmed
//! labelled clips (for `lofi pretrain`), decoded through lofi-video's loader.
//!
//! Exists to turn files into tensors and targets in one place: segments in seconds become
//! fractions of the annotated duration and then G-TAD targets at the batch's `L`; a bad or
//! missing video is skipped with a warning and listed at the end of the run instead of stopping
//! it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use lofi_model::Segment;
use lofi_video::ground_truth::{locate_videos, GroundTruth, VideoEntry};
use lofi_video::synth::ClipIndex;
use lofi_video::{ClipU8, Loader, LoaderConfig, Sampling, SamplingPlan, VideoFailure, VideoJob};

use crate::error::{TrainError, TrainResult};

/// One annotated untrimmed video.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainVideo {
    /// Video id.
    pub id: String,
    /// File.
    pub path: PathBuf,
    /// Annotated duration, seconds.
    pub duration: f64,
    /// Action segments as fractions of the duration (of the span, for a window).
    pub segments: Vec<Segment>,
    /// `[start, end]` seconds of a window of the video; `None`: the whole video.
    pub span: Option<[f64; 2]>,
}

impl TrainVideo {
    /// The loader job that decodes this video.
    pub fn job(&self) -> VideoJob {
        VideoJob {
            id: self.id.clone(),
            path: self.path.clone(),
            annotated_duration: Some(self.duration),
            span: self.span,
        }
    }
}

/// Reads the videos of `subset` (any letter case) from an ActivityNet-style ground-truth file,
/// finding each file in `videos`. A listed video without a file is an error naming every such
/// video, unless `skip_missing` is set: then it is returned as a failure, as are videos with a
/// bad duration.
pub fn read_videos(
    ground_truth: &Path,
    videos: &Path,
    subset: &str,
    skip_missing: bool,
) -> TrainResult<(Vec<TrainVideo>, Vec<VideoFailure>)> {
    let gt = GroundTruth::read(ground_truth)?;
    subset_videos(&gt, ground_truth, videos, subset, skip_missing)
}

/// A video of the ground truth with its file: id, annotations, path.
type Located<'g> = (&'g String, &'g VideoEntry, PathBuf);

/// The videos of `subset` with their files under `videos`, in the ground truth's order, and a
/// failure for each video without a file (an error instead, unless `skip_missing`).
fn subset_files<'g>(
    gt: &'g GroundTruth,
    ground_truth: &Path,
    videos: &Path,
    subset: &str,
    skip_missing: bool,
) -> TrainResult<(Vec<Located<'g>>, Vec<VideoFailure>)> {
    let entries: Vec<(&String, &VideoEntry)> = gt.videos_of(subset).collect();
    let (found, missing) = locate_videos(
        ground_truth,
        videos,
        entries.iter().map(|(id, _)| id.as_str()),
        skip_missing,
    )?;
    let mut files: HashMap<String, PathBuf> = found.into_iter().collect();
    let located = entries
        .into_iter()
        .filter_map(|(id, entry)| files.remove(id.as_str()).map(|path| (id, entry, path)))
        .collect();
    let missing = missing
        .into_iter()
        .map(|id| VideoFailure {
            path: videos.join(&id),
            reason: format!("no video file in {}", videos.display()),
            id,
        })
        .collect();
    Ok((located, missing))
}

/// [`read_videos`] on a ground truth already read from `ground_truth` (which errors name), so a
/// caller taking several subsets parses the file once.
pub fn subset_videos(
    gt: &GroundTruth,
    ground_truth: &Path,
    videos: &Path,
    subset: &str,
    skip_missing: bool,
) -> TrainResult<(Vec<TrainVideo>, Vec<VideoFailure>)> {
    let (located, mut failed) = subset_files(gt, ground_truth, videos, subset, skip_missing)?;
    let mut ok = Vec::new();
    for (id, entry, path) in located {
        let d = entry.duration;
        if !(d.is_finite() && d > 0.0) {
            let reason = format!(
                "annotated duration {d} in {} is not positive",
                ground_truth.display()
            );
            tracing::warn!(video = %id, "skipping video: {reason}");
            failed.push(VideoFailure {
                id: id.clone(),
                path,
                reason,
            });
            continue;
        }
        let segments = entry
            .annotations
            .iter()
            .filter_map(|a| {
                let s = (a.segment[0] / d).clamp(0.0, 1.0);
                let e = (a.segment[1] / d).clamp(0.0, 1.0);
                (s.is_finite() && e.is_finite() && s < e).then(|| Segment::new(s, e))
            })
            .collect();
        ok.push(TrainVideo {
            id: id.clone(),
            path,
            duration: d,
            segments,
            span: None,
        });
    }
    Ok((ok, failed))
}

/// The training windows of `videos` (whole videos, as [`read_videos`] returns them) for
/// end-to-end training on sliding windows: snippets of `step` seconds, windows of `w` snippets
/// every `stride`, kept when they hold more than 90 % of an action (lofi-head's
/// [`window_targets`](lofi_head::windows::window_targets), the rule `train-head` uses). Each
/// window is a [`TrainVideo`] of its own: id `<video>@<start snippet>`, its span in seconds
/// (ending at the annotated duration at the latest), its actions as fractions of the span, so
/// that a fidelity's `L` snippets cover the window (T-LoFi samples `w / 4` snippets of it).
///
/// The step is `sampling`'s stride; a stride in frames reads each video's frame rate off its
/// packet headers (a video that cannot be read is left to fail when it is decoded).
pub fn windows_of(
    videos: &[TrainVideo],
    sampling: Sampling,
    w: usize,
    stride: usize,
) -> Vec<TrainVideo> {
    let mut out = Vec::new();
    for v in videos {
        let fps = match sampling {
            Sampling::Stride {
                stride_frames: Some(_),
                ..
            } => lofi_video::VideoIndex::build(&v.path).map_or(0.0, |i| i.fps()),
            _ => 0.0,
        };
        let Some(step) = sampling
            .stride_seconds(fps)
            .filter(|s| s.is_finite() && *s > 0.0)
        else {
            tracing::warn!(
                video = %v.id,
                "no usable snippet stride ({sampling:?}, frame rate {fps}); video skipped"
            );
            continue;
        };
        let actions: Vec<[f64; 2]> = v
            .segments
            .iter()
            .map(|s| [s.start * v.duration, s.end * v.duration])
            .collect();
        let t = lofi_video::plan::stride_count(v.duration, step);
        for (start, _) in lofi_head::windows::window_targets(t, step, &actions, w, stride) {
            // The span stops at the annotated end (the loader samples inside the video), so the
            // last window of a video, or a video shorter than a window, covers a little less.
            let a = start as f64 * step;
            let b = (a + w as f64 * step).min(v.duration);
            let segments = actions
                .iter()
                .filter_map(|x| {
                    let s = ((x[0] - a) / (b - a)).clamp(0.0, 1.0);
                    let e = ((x[1] - a) / (b - a)).clamp(0.0, 1.0);
                    (e > s).then(|| Segment::new(s, e))
                })
                .collect();
            out.push(TrainVideo {
                id: format!("{}@{start}", v.id),
                path: v.path.clone(),
                duration: v.duration,
                segments,
                span: Some([a, b]),
            });
        }
    }
    out
}

/// One labelled trimmed clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Clip id (file stem).
    pub id: String,
    /// File.
    pub path: PathBuf,
    /// Class index.
    pub label: usize,
    /// The part of the file to sample, seconds (a segment of an untrimmed video); `None`: all
    /// of it (a trimmed clip file).
    pub span: Option<[f64; 2]>,
    /// The annotated duration of the file, where the annotations give one.
    pub annotated_duration: Option<f64>,
}

impl Clip {
    /// The loader job that decodes this clip.
    pub fn job(&self) -> VideoJob {
        VideoJob {
            id: self.id.clone(),
            path: self.path.clone(),
            annotated_duration: self.annotated_duration,
            span: self.span,
        }
    }
}

/// Reads `clips.json` in `data` (the layout `lofi synth` writes): returns the class names and
/// the clips of `subset`.
pub fn read_clips(data: &Path, subset: &str) -> TrainResult<(Vec<String>, Vec<Clip>)> {
    let path = data.join("clips.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let index: ClipIndex = serde_json::from_str(&text).map_err(|e| TrainError::Data {
        path: path.clone(),
        message: format!("not a clip index: {e}"),
    })?;
    if index.classes.is_empty() {
        return Err(TrainError::Data {
            path,
            message: "lists no classes".into(),
        });
    }
    let mut clips = Vec::new();
    for c in index.clips.iter().filter(|c| c.subset == subset) {
        if c.label_index >= index.classes.len() {
            return Err(TrainError::Data {
                path,
                message: format!(
                    "clip {} has label_index {} but only {} classes",
                    c.file,
                    c.label_index,
                    index.classes.len()
                ),
            });
        }
        let p = data.join(&c.file);
        let id = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(&c.file)
            .to_string();
        clips.push(Clip {
            id,
            path: p,
            label: c.label_index,
            span: None,
            annotated_duration: None,
        });
    }
    Ok((index.classes, clips))
}

/// The name of the optional background class of [`annotated_clips`].
pub const BACKGROUND_CLASS: &str = "background";

/// Which subsets of a ground truth pre-training uses: trained on, and validated on (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretrainSubsets {
    /// Subset whose segments are trained on.
    pub train: String,
    /// Subset whose segments measure the validation accuracy.
    pub validation: Option<String>,
}

impl PretrainSubsets {
    /// Says once, for each of the subsets, what is wrong with its segments
    /// ([`GroundTruth::segment_problems`]).
    pub fn warn_segment_problems(&self, gt: &GroundTruth, path: &Path) {
        for subset in std::iter::once(&self.train).chain(self.validation.as_ref()) {
            if let Some(problems) = gt.segment_problems(subset) {
                tracing::warn!("{}: {problems}", path.display());
            }
        }
    }

    /// The subsets of `gt` to train on, spelled as the file spells them (the rule of
    /// [`GroundTruth::choose_subsets`]); on THUMOS14's layout pre-training reports accuracy on
    /// `Test` and keeps the last epoch, so that accuracy selects nothing.
    pub fn choose(
        gt: &GroundTruth,
        path: &Path,
        train: Option<&str>,
        validation: Option<&str>,
    ) -> TrainResult<Self> {
        let (train, validation) =
            gt.choose_subsets(train, validation)
                .map_err(|message| TrainError::Data {
                    path: path.to_path_buf(),
                    message,
                })?;
        Ok(Self { train, validation })
    }
}

/// Trimmed clips cut (virtually) out of untrimmed videos at their annotated segments.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedClips {
    /// Class names in label order: the training subset's labels sorted, then
    /// [`BACKGROUND_CLASS`] when asked for.
    pub classes: Vec<String>,
    /// The subsets used.
    pub subsets: PretrainSubsets,
    /// Training clips, in video id then annotation order (background clips last).
    pub train: Vec<Clip>,
    /// Validation clips, likewise.
    pub validation: Vec<Clip>,
    /// Listed videos without a file (only with `skip_missing`), and segments left out, with why.
    pub skipped: Vec<VideoFailure>,
}

/// The pre-training clips of `ground_truth`'s videos in `videos`: one clip per annotated segment
/// (clamped to the video's annotated duration; empty ones are left out), labelled with its class,
/// sampled straight from the untrimmed video through the loader's `span`. No clip file is
/// written. With `background`, an extra class of spans outside every annotation is added, as
/// many clips per subset as the mean number per action class, drawn with `seed` (the same seed
/// gives the same spans): each span is as long as the median action of the subset (or the whole
/// gap when shorter), in a gap picked with probability proportional to its length, among gaps at
/// least half that long. Validation clips of a label the training subset lacks are left out
/// (listed in `skipped`). Listed videos without a file are an error naming them all, unless
/// `skip_missing`.
pub fn annotated_clips(
    ground_truth: &Path,
    videos: &Path,
    subsets: (Option<&str>, Option<&str>),
    background: bool,
    seed: u64,
    skip_missing: bool,
) -> TrainResult<AnnotatedClips> {
    let gt = GroundTruth::read(ground_truth)?;
    let subsets = PretrainSubsets::choose(&gt, ground_truth, subsets.0, subsets.1)?;
    subsets.warn_segment_problems(&gt, ground_truth);
    let mut classes: Vec<String> = gt
        .videos_of(&subsets.train)
        .flat_map(|(_, e)| e.annotations.iter().map(|a| a.label.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    if classes.is_empty() {
        return Err(TrainError::Data {
            path: ground_truth.to_path_buf(),
            message: format!("subset {:?} has no annotated segment", subsets.train),
        });
    }
    let class_of: HashMap<String, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i))
        .collect();
    if background {
        if class_of.contains_key(BACKGROUND_CLASS) {
            return Err(TrainError::Data {
                path: ground_truth.to_path_buf(),
                message: format!(
                    "a label is already called {BACKGROUND_CLASS:?}; turn the background class off"
                ),
            });
        }
        classes.push(BACKGROUND_CLASS.to_string());
    }
    let mut skipped = Vec::new();
    let mut per_subset = Vec::new();
    for (k, subset) in std::iter::once(&subsets.train)
        .chain(subsets.validation.as_ref())
        .enumerate()
    {
        let (located, missing) = subset_files(&gt, ground_truth, videos, subset, skip_missing)?;
        skipped.extend(missing);
        let mut clips = Vec::new();
        let mut gaps = Vec::new();
        let mut lengths = Vec::new();
        for (id, entry, path) in located {
            let d = entry.duration;
            let mut spans = Vec::new();
            for (n, a) in entry.annotations.iter().enumerate() {
                let start = a.segment[0].clamp(0.0, d);
                let end = a.segment[1].clamp(0.0, d);
                let clip_id = format!("{id}#{n}");
                let left_out = |reason: String| VideoFailure {
                    id: clip_id.clone(),
                    path: path.clone(),
                    reason,
                };
                if !(d.is_finite() && d > 0.0 && start < end) {
                    skipped.push(left_out(format!(
                        "segment [{}, {}] is empty within the annotated duration {d} s",
                        a.segment[0], a.segment[1]
                    )));
                    continue;
                }
                let Some(&label) = class_of.get(&a.label) else {
                    skipped.push(left_out(format!(
                        "label {:?} does not occur in the training subset {:?}",
                        a.label, subsets.train
                    )));
                    continue;
                };
                spans.push([start, end]);
                lengths.push(end - start);
                clips.push(Clip {
                    id: clip_id,
                    path: path.clone(),
                    label,
                    span: Some([start, end]),
                    annotated_duration: Some(d),
                });
            }
            if background && d.is_finite() && d > 0.0 {
                gaps.extend(
                    free_spans(d, &mut spans)
                        .into_iter()
                        .map(|g| (id.clone(), path.clone(), d, g)),
                );
            }
        }
        if background {
            let action_classes = classes.len() - 1;
            let count = (clips.len() as f64 / action_classes as f64).round() as usize;
            let mut rng = lofi_rng::SplitMix64::new(lofi_rng::derive(seed, 0xb6 + k as u64));
            clips.extend(background_clips(
                &gaps,
                &lengths,
                count,
                classes.len() - 1,
                &mut rng,
            ));
        }
        per_subset.push(clips);
    }
    let validation = if per_subset.len() > 1 {
        per_subset.pop().unwrap_or_default()
    } else {
        Vec::new()
    };
    let train = per_subset.pop().unwrap_or_default();
    if !skipped.is_empty() {
        tracing::warn!(
            "{} listed video(s) or segment(s) of {} left out of pre-training (see the run's \
             summary.json)",
            skipped.len(),
            ground_truth.display()
        );
    }
    Ok(AnnotatedClips {
        classes,
        subsets,
        train,
        validation,
        skipped,
    })
}

/// The parts of `[0, duration]` outside every span (spans are sorted in place).
fn free_spans(duration: f64, spans: &mut [[f64; 2]]) -> Vec<[f64; 2]> {
    spans.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut free = Vec::new();
    let mut at = 0.0;
    for &[start, end] in spans.iter() {
        if start > at {
            free.push([at, start]);
        }
        at = f64::max(at, end);
    }
    if duration > at {
        free.push([at, duration]);
    }
    free
}

/// `count` background clips in `gaps` (see [`annotated_clips`]), labelled `label`.
fn background_clips(
    gaps: &[(String, PathBuf, f64, [f64; 2])],
    action_lengths: &[f64],
    count: usize,
    label: usize,
    rng: &mut lofi_rng::SplitMix64,
) -> Vec<Clip> {
    let mut sorted = action_lengths.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else {
        return Vec::new();
    };
    let usable: Vec<&(String, PathBuf, f64, [f64; 2])> = gaps
        .iter()
        .filter(|(_, _, _, [a, b])| b - a >= median / 2.0)
        .collect();
    let total: f64 = usable.iter().map(|(_, _, _, [a, b])| b - a).sum();
    if usable.is_empty() || total <= 0.0 {
        if count > 0 {
            tracing::warn!("no unannotated span is long enough for a background clip");
        }
        return Vec::new();
    }
    (0..count)
        .map(|n| {
            let mut pick = rng.next_f64() * total;
            let mut chosen = usable[usable.len() - 1];
            for gap in &usable {
                let len = gap.3[1] - gap.3[0];
                if pick < len {
                    chosen = gap;
                    break;
                }
                pick -= len;
            }
            let (id, path, duration, [a, b]) = chosen;
            let len = median.min(b - a);
            let start = a + rng.next_f64() * (b - a - len);
            Clip {
                id: format!("{id}#background-{n}"),
                path: path.clone(),
                label,
                span: Some([start, start + len]),
                annotated_duration: Some(*duration),
            }
        })
        .collect()
}

/// Decoded clips `(id, clip)` in job order, and the videos that failed.
pub type Decoded = (Vec<(String, ClipU8)>, Vec<VideoFailure>);

/// Decodes `jobs` with `plan` on `workers` threads, in order; failures are returned, not fatal.
pub fn decode(jobs: Vec<VideoJob>, plan: SamplingPlan, workers: usize) -> TrainResult<Decoded> {
    if jobs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut config = LoaderConfig::new(plan);
    config.workers = workers;
    config.queue = workers.max(2);
    let mut loader = Loader::new(jobs, config)?;
    let clips: Vec<(String, ClipU8)> = loader.by_ref().map(|v| (v.id, v.clip)).collect();
    let report = loader.finish();
    Ok((clips, report.failed))
}

/// One batch to decode: its videos and the sampling plan of its fidelity.
pub type BatchJob = (Vec<VideoJob>, SamplingPlan);

/// The batches of one epoch: `0..items` in the order of `seed`'s shuffle, cut into batches of
/// `batch_size`, each turned into a decoding job by `job(batch, indices)`, decoded with `workers`
/// threads each (`ahead`: on a background thread, see [`EpochBatches`]).
pub fn shuffled_batches(
    items: usize,
    batch_size: usize,
    seed: u64,
    (workers, ahead): (usize, bool),
    job: impl Fn(usize, &[usize]) -> BatchJob,
) -> TrainResult<EpochBatches> {
    let order = lofi_rng::SplitMix64::new(seed).permutation(items);
    let jobs: Vec<BatchJob> = order
        .chunks(batch_size.max(1))
        .enumerate()
        .map(|(b, chunk)| job(b, chunk))
        .collect();
    EpochBatches::new(jobs, workers, ahead)
}

/// The decoded batches of an epoch, in order. Either each batch is decoded when it is asked for
/// (on the CPU, where decoding and the training step share the cores and a step's memory is
/// measured from the whole process), or the next batch is decoded on a background thread while
/// the device computes the current one (on a GPU, where decoding would otherwise leave it idle;
/// at most one batch is held ahead). Both yield the same batches in the same order.
pub struct EpochBatches {
    inner: Pipeline,
}

enum Pipeline {
    Inline {
        pending: std::vec::IntoIter<BatchJob>,
        workers: usize,
    },
    Ahead {
        results: std::sync::mpsc::Receiver<TrainResult<Decoded>>,
        remaining: usize,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl EpochBatches {
    /// The batches of `jobs`, decoded with `workers` threads each, `ahead` or on demand.
    pub fn new(jobs: Vec<BatchJob>, workers: usize, ahead: bool) -> TrainResult<Self> {
        if !ahead {
            return Ok(Self {
                inner: Pipeline::Inline {
                    pending: jobs.into_iter(),
                    workers,
                },
            });
        }
        // A rendezvous channel: the thread decodes batch b+1 while b is being used, then waits
        // until b+1 is taken, so one batch at most is held ahead.
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let remaining = jobs.len();
        let thread = std::thread::Builder::new()
            .name("lofi-decode-ahead".into())
            .spawn(move || {
                for (videos, plan) in jobs {
                    if tx.send(decode(videos, plan, workers)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| TrainError::io("decode thread", e))?;
        Ok(Self {
            inner: Pipeline::Ahead {
                results: rx,
                remaining,
                thread: Some(thread),
            },
        })
    }
}

impl Iterator for EpochBatches {
    type Item = TrainResult<Decoded>;

    /// Exact: the number of batches not yet yielded (progress bars show the epoch's length).
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.inner {
            Pipeline::Inline { pending, .. } => pending.len(),
            Pipeline::Ahead { remaining, .. } => *remaining,
        };
        (left, Some(left))
    }

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Pipeline::Inline { pending, workers } => {
                let (videos, plan) = pending.next()?;
                Some(decode(videos, plan, *workers))
            }
            Pipeline::Ahead {
                results, remaining, ..
            } => {
                if *remaining == 0 {
                    return None;
                }
                *remaining -= 1;
                // A closed channel before the last batch means the thread died (a panic in a
                // decoder): an error, not a silently shorter epoch.
                Some(results.recv().unwrap_or_else(|_| {
                    Err(TrainError::NoData(
                        "the background decoding thread stopped before the end of the epoch".into(),
                    ))
                }))
            }
        }
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        if let Pipeline::Ahead {
            results, thread, ..
        } = &mut self.inner
        {
            // Closing the channel makes the thread's next send fail; wait for it so that no
            // decoder outlives the epoch.
            let (_, closed) = std::sync::mpsc::sync_channel(0);
            drop(std::mem::replace(results, closed));
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Stacks clips `[L, F, 3, S, S]` into a normalised `[B, L, F, 3, S, S]` tensor.
pub fn stack_clips(clips: &[&ClipU8], device: &Device) -> TrainResult<Tensor<6>> {
    let first = clips
        .first()
        .ok_or_else(|| TrainError::NoData("empty batch".into()))?;
    let shape = first.shape;
    let mut data = Vec::with_capacity(clips.len() * shape.iter().product::<usize>());
    for c in clips {
        if c.shape != shape {
            return Err(TrainError::NoData(format!(
                "clips of one batch differ in shape: {:?} vs {:?}",
                c.shape, shape
            )));
        }
        data.extend(c.to_f32_normalized().data);
    }
    let [l, f, ch, h, w] = shape;
    Ok(Tensor::from_data(
        TensorData::new(data, [clips.len(), l, f, ch, h, w]),
        device,
    ))
}

/// Failures seen during a run, each video once, in the order first seen.
#[derive(Debug, Default, Clone)]
pub struct FailureList {
    seen: BTreeSet<String>,
    list: Vec<VideoFailure>,
}

impl FailureList {
    /// Adds failures not yet listed.
    pub fn extend(&mut self, failures: impl IntoIterator<Item = VideoFailure>) {
        for f in failures {
            if self.seen.insert(f.id.clone()) {
                self.list.push(f);
            }
        }
    }

    /// Whether `id` failed before.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// The failures.
    pub fn into_vec(self) -> Vec<VideoFailure> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_truth_is_normalised_and_missing_files_are_listed() -> TrainResult<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let gt = dir.path().join("gt.json");
        std::fs::write(
            &gt,
            r#"{"version": "1", "database": {
              "a": {"subset": "training", "duration": 10.0,
                    "annotations": [{"segment": [1.0, 4.0], "label": "x"},
                                    {"segment": [9.0, 12.0], "label": "x"}]},
              "b": {"subset": "training", "duration": 10.0, "annotations": []},
              "c": {"subset": "validation", "duration": 10.0, "annotations": []}}}"#,
        )
        .map_err(|e| TrainError::io(&gt, e))?;
        let vids = dir.path().join("videos");
        std::fs::create_dir(&vids).map_err(|e| TrainError::io(&vids, e))?;
        std::fs::write(vids.join("a.mp4"), b"x").map_err(|e| TrainError::io("a", e))?;
        let message = read_videos(&gt, &vids, "training", false)
            .expect_err("b has no file")
            .to_string();
        assert!(
            message.contains("1 of 2 videos listed in") && message.contains(": b;"),
            "{message}"
        );
        let (ok, failed) = read_videos(&gt, &vids, "Training", true)?;
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[0].segments,
            vec![Segment::new(0.1, 0.4), Segment::new(0.9, 1.0)]
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "b");
        assert!(read_videos(&dir.path().join("none.json"), &vids, "training", true).is_err());
        assert!(read_clips(dir.path(), "training").is_err());
        Ok(())
    }

    /// Clips sampled at the annotated segments of the untrimmed videos are the clips `lofi synth`
    /// cut into files: the same clips, labels and shapes, and nearly the same pixels (both are
    /// lossy encodings of the same rendered frames); background spans are deterministic from the
    /// seed and avoid every annotation.
    #[test]
    fn annotated_clips_match_the_clip_files() -> TrainResult<()> {
        use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let mut synth = SynthConfig::preset(SynthPreset::Tiny, 4);
        synth.videos = 4;
        write_dataset(dir.path(), &synth, 2, &|_| {})?;
        let (gt, videos) = (
            dir.path().join("ground_truth.json"),
            dir.path().join("videos"),
        );
        let (file_classes, files) = read_clips(dir.path(), "training")?;
        let ann = annotated_clips(&gt, &videos, (None, None), false, 0, false)?;
        assert_eq!(ann.subsets.train, "training");
        assert!(ann.skipped.is_empty(), "{:?}", ann.skipped);
        assert_eq!(ann.train.len(), files.len());
        let name = |classes: &[String], c: &Clip| classes[c.label].clone();
        let plan = lofi_video::Fidelity::new(4, 32)?.apply(&SamplingPlan::new(1)?);
        let (from_files, failed) = decode(files.iter().map(Clip::job).collect(), plan, 2)?;
        assert!(failed.is_empty(), "{failed:?}");
        let (from_videos, failed) = decode(ann.train.iter().map(Clip::job).collect(), plan, 2)?;
        assert!(failed.is_empty(), "{failed:?}");
        let diff = |a: &ClipU8, b: &ClipU8| -> f64 {
            let sum: u64 = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| u64::from(x.abs_diff(*y)))
                .sum();
            sum as f64 / a.data.len() as f64
        };
        // Both lists are in video then start order.
        for (k, (file, span)) in files.iter().zip(&ann.train).enumerate() {
            assert_eq!(name(&file_classes, file), name(&ann.classes, span));
            let (a, b) = (&from_files[k].1, &from_videos[k].1);
            assert_eq!(a.shape, b.shape);
            let same = diff(a, b);
            assert!(same < 4.0, "clip {k}: mean |difference| {same}");
            let other = &from_files[(k + 1) % files.len()].1;
            assert!(same < diff(other, b), "clip {k} is closer to another clip");
        }

        let with = |seed| annotated_clips(&gt, &videos, (None, None), true, seed, false);
        let (a, b, c) = (with(7)?, with(7)?, with(8)?);
        assert_eq!(a, b, "the same seed gives the same clips");
        assert_eq!(a.classes.last().map(String::as_str), Some(BACKGROUND_CLASS));
        let background: Vec<&Clip> = a
            .train
            .iter()
            .filter(|c| c.label + 1 == a.classes.len())
            .collect();
        let expected = (ann.train.len() as f64 / (a.classes.len() - 1) as f64).round() as usize;
        assert_eq!(background.len(), expected);
        let spans = |x: &AnnotatedClips| -> Vec<Option<[f64; 2]>> {
            x.train.iter().map(|c| c.span).collect()
        };
        assert_ne!(spans(&a), spans(&c), "another seed, other background spans");
        let truth = GroundTruth::read(&gt)?;
        for clip in background {
            let video = clip.id.split('#').next().unwrap_or_default();
            let [s, e] = clip.span.unwrap_or_default();
            assert!(s < e && e <= truth.database[video].duration);
            for annotation in &truth.database[video].annotations {
                let [a0, a1] = annotation.segment;
                assert!(e <= a0 || s >= a1, "{clip:?} overlaps {a0}-{a1}");
            }
        }
        Ok(())
    }

    /// Decoding one batch ahead yields exactly the batches of decoding on demand (a missing
    /// video included), and an epoch abandoned half-way stops its decoding thread.
    #[test]
    fn decoding_ahead_matches_decoding_on_demand() -> TrainResult<()> {
        use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
        let dir = tempfile::tempdir().map_err(|e| TrainError::io("tmp", e))?;
        let mut synth = SynthConfig::preset(SynthPreset::Tiny, 3);
        synth.videos = 3;
        write_dataset(dir.path(), &synth, 2, &|_| {})?;
        let (videos, _) = read_videos(
            &dir.path().join("ground_truth.json"),
            &dir.path().join("videos"),
            "training",
            false,
        )?;
        let mut all: Vec<VideoJob> = videos.iter().map(TrainVideo::job).collect();
        all.push(VideoJob {
            id: "missing".into(),
            path: dir.path().join("videos/missing.mp4"),
            annotated_duration: Some(5.0),
            span: None,
        });
        let plan = |l: usize, s: usize| -> TrainResult<SamplingPlan> {
            Ok(lofi_video::Fidelity::new(l, s)?.apply(&SamplingPlan::new(1)?))
        };
        let jobs: Vec<BatchJob> = vec![
            (all[..2].to_vec(), plan(4, 32)?),
            (all[2..].to_vec(), plan(2, 48)?),
            (all[..1].to_vec(), plan(3, 16)?),
        ];
        let inline: Vec<Decoded> =
            EpochBatches::new(jobs.clone(), 1, false)?.collect::<TrainResult<_>>()?;
        let ahead: Vec<Decoded> =
            EpochBatches::new(jobs.clone(), 1, true)?.collect::<TrainResult<_>>()?;
        assert_eq!(inline.len(), 3);
        assert_eq!(inline, ahead);
        assert_eq!(inline[1].1.len(), 1, "the missing video is listed");
        assert_eq!(inline[1].0[0].1.shape, [2, 1, 3, 48, 48]);
        for ahead in [false, true] {
            let mut partial = EpochBatches::new(jobs.clone(), 1, ahead)?;
            assert_eq!(partial.size_hint(), (3, Some(3)));
            assert!(partial.next().is_some());
            assert_eq!(partial.size_hint(), (2, Some(2)), "ahead = {ahead}");
            drop(partial);
        }
        Ok(())
    }
}
