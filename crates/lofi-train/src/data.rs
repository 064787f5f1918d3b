//! Training data: untrimmed videos with their ground truth (for `lofi train`) and trimmed
//! labelled clips (for `lofi pretrain`), decoded through lofi-video's loader.
//!
//! Exists to turn files into tensors and targets in one place: segments in seconds become
//! fractions of the annotated duration and then G-TAD targets at the batch's `L`; a bad or
//! missing video is skipped with a warning and listed at the end of the run instead of stopping
//! it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use lofi_model::Segment;
use lofi_video::ground_truth::{find_video, GroundTruth};
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

/// Reads the videos of `subset` from an ActivityNet-style ground-truth file, finding each file
/// in `videos`. Videos without a file or with a bad duration are returned as failures.
pub fn read_videos(
    ground_truth: &Path,
    videos: &Path,
    subset: &str,
) -> TrainResult<(Vec<TrainVideo>, Vec<VideoFailure>)> {
    let gt = GroundTruth::read(ground_truth)?;
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (id, entry) in &gt.database {
        if entry.subset != subset {
            continue;
        }
        let fail = |reason: String| VideoFailure {
            id: id.clone(),
            path: videos.join(id),
            reason,
        };
        let Some(path) = find_video(videos, id) else {
            failed.push(fail(format!("no video file in {}", videos.display())));
            continue;
        };
        let d = entry.duration;
        if !(d.is_finite() && d > 0.0) {
            failed.push(fail(format!(
                "annotated duration {d} in {} is not positive",
                ground_truth.display()
            )));
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
    for f in &failed {
        tracing::warn!(video = %f.id, "skipping video: {}", f.reason);
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
        });
    }
    Ok((index.classes, clips))
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
        let (ok, failed) = read_videos(&gt, &vids, "training")?;
        assert_eq!(ok.len(), 1);
        assert_eq!(
            ok[0].segments,
            vec![Segment::new(0.1, 0.4), Segment::new(0.9, 1.0)]
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id, "b");
        assert!(read_videos(&dir.path().join("none.json"), &vids, "training").is_err());
        assert!(read_clips(dir.path(), "training").is_err());
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
