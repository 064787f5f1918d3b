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
use lofi_video::{ClipU8, Loader, LoaderConfig, SamplingPlan, VideoFailure, VideoJob};

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
    /// Action segments as fractions of the duration.
    pub segments: Vec<Segment>,
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
        });
    }
    for f in &failed {
        tracing::warn!(video = %f.id, "skipping video: {}", f.reason);
    }
    Ok((ok, failed))
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

/// Decodes `jobs` with `plan` on `workers` threads, in order; failures are returned, not fatal.
pub fn decode(
    jobs: Vec<VideoJob>,
    plan: SamplingPlan,
    workers: usize,
) -> TrainResult<(Vec<(String, ClipU8)>, Vec<VideoFailure>)> {
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
}
