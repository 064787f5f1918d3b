//! Checking a video folder against an annotation file before a long run.
//!
//! Users of the Python peers discover missing or broken videos hours into training. `probe`
//! indexes every video (packet headers only, so it is fast) and reports per video its duration,
//! frame rate, frame count, codec and keyframe interval, plus which annotated videos are missing,
//! unreadable or shorter than annotated, and which files are not annotated at all.

use crate::error::{VideoError, VideoResult};
use crate::ground_truth::{find_video, GroundTruth, VIDEO_EXTENSIONS};
use crate::index::VideoIndex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Stream facts of a readable video.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    /// Duration in seconds.
    pub duration: f64,
    /// Frames per second of duration.
    pub fps: f64,
    /// Frame count.
    pub frames: usize,
    /// Decoder name.
    pub codec: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Mean distance between keyframes, seconds.
    pub keyframe_interval: f64,
}

/// The verdict on one video.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProbeStatus {
    /// Readable and (if annotated) long enough.
    Ok,
    /// Annotated but no file found.
    Missing,
    /// A file exists but cannot be indexed.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Readable but shorter than its annotated duration beyond the tolerance.
    ShorterThanAnnotated {
        /// Annotated duration, seconds.
        annotated: f64,
    },
    /// A readable video file that the annotation file does not list.
    NotAnnotated,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRow {
    /// Video id (annotation key, or file stem for unannotated files).
    pub id: String,
    /// File found for it.
    pub path: Option<PathBuf>,
    /// Verdict.
    #[serde(flatten)]
    pub status: ProbeStatus,
    /// Stream facts when readable.
    pub info: Option<VideoInfo>,
}

/// All rows, sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// Per video.
    pub videos: Vec<ProbeRow>,
}

impl ProbeReport {
    /// Rows with a given kind of status.
    pub fn count(&self, pred: impl Fn(&ProbeStatus) -> bool) -> usize {
        self.videos.iter().filter(|r| pred(&r.status)).count()
    }
}

fn info_of(index: &VideoIndex) -> VideoInfo {
    VideoInfo {
        duration: index.duration(),
        fps: index.fps(),
        frames: index.frame_count(),
        codec: index.codec.clone(),
        width: index.width,
        height: index.height,
        keyframe_interval: index.mean_keyframe_interval(),
    }
}

/// Probe `dir` (and the annotation file, if given) with `workers` threads. A video shorter than
/// annotated by more than `tolerance` seconds is flagged.
pub fn probe_dir(
    dir: &Path,
    ground_truth: Option<&GroundTruth>,
    tolerance: f64,
    workers: usize,
) -> VideoResult<ProbeReport> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(VideoError::InvalidPlan(format!(
            "tolerance = {tolerance}: the allowed shortfall must be a finite number of seconds >= 0"
        )));
    }
    crate::limits::check_workers(workers)?;
    let entries = std::fs::read_dir(dir).map_err(|e| VideoError::io(dir, e))?;
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(|e| VideoError::io(dir, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let is_video = ext
            .as_deref()
            .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e));
        if let (true, Some(stem)) = (is_video, path.file_stem().and_then(|s| s.to_str())) {
            if !stem.starts_with('.') {
                files.insert(stem.to_string(), path);
            }
        }
    }
    // (id, path, annotated duration, annotated?)
    let mut todo: Vec<(String, Option<PathBuf>, Option<f64>, bool)> = Vec::new();
    let mut claimed = std::collections::BTreeSet::new();
    if let Some(gt) = ground_truth {
        for (id, entry) in &gt.database {
            let path = find_video(dir, id);
            if let Some(p) = &path {
                claimed.insert(p.clone());
            }
            todo.push((id.clone(), path, Some(entry.duration), true));
        }
    }
    for (stem, path) in files {
        if !claimed.contains(&path) {
            todo.push((stem, Some(path), None, ground_truth.is_none()));
        }
    }
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<ProbeRow>> = Mutex::new(Vec::with_capacity(todo.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, todo.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, path, annotated, listed)) = todo.get(i) else {
                    return;
                };
                let row = match path {
                    None => ProbeRow {
                        id: id.clone(),
                        path: None,
                        status: ProbeStatus::Missing,
                        info: None,
                    },
                    Some(p) => match VideoIndex::build(p) {
                        Err(e) => ProbeRow {
                            id: id.clone(),
                            path: Some(p.clone()),
                            status: ProbeStatus::Unreadable {
                                reason: e.to_string(),
                            },
                            info: None,
                        },
                        Ok(index) => {
                            let info = info_of(&index);
                            let status = match annotated {
                                Some(a) if *a > info.duration + tolerance => {
                                    ProbeStatus::ShorterThanAnnotated { annotated: *a }
                                }
                                _ if !listed => ProbeStatus::NotAnnotated,
                                _ => ProbeStatus::Ok,
                            };
                            ProbeRow {
                                id: id.clone(),
                                path: Some(p.clone()),
                                status,
                                info: Some(info),
                            }
                        }
                    },
                };
                rows.lock().unwrap_or_else(|e| e.into_inner()).push(row);
            });
        }
    });
    let mut videos = rows.into_inner().unwrap_or_else(|e| e.into_inner());
    videos.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(ProbeReport { videos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::{Annotation, VideoEntry};
    use crate::writer::{VideoWriter, WriterConfig};

    fn write_video(path: &Path, frames: i64) -> VideoResult<()> {
        let config = WriterConfig::h264_cfr(32, 32, 10);
        let mut w = VideoWriter::create(path, &config)?;
        let rgb = vec![128u8; 32 * 32 * 3];
        for i in 0..frames {
            w.write_rgb(&rgb, i)?;
        }
        w.finish()
    }

    #[test]
    fn reports_missing_unreadable_short_and_extra_videos() -> VideoResult<()> {
        let dir = tempfile::tempdir().map_err(|e| VideoError::io("tmp", e))?;
        write_video(&dir.path().join("a.mp4"), 30)?;
        write_video(&dir.path().join("short.mp4"), 30)?;
        write_video(&dir.path().join("extra.mp4"), 10)?;
        std::fs::write(dir.path().join("broken.mp4"), b"not a video")
            .map_err(|e| VideoError::io("broken", e))?;
        let entry = |d: f64| VideoEntry {
            subset: "validation".into(),
            duration: d,
            fps: None,
            annotations: vec![Annotation {
                segment: [0.0, 1.0],
                label: "x".into(),
            }],
        };
        let gt = GroundTruth {
            version: Some("t".into()),
            taxonomy: Vec::new(),
            database: [
                ("a".to_string(), entry(3.0)),
                ("short".to_string(), entry(10.0)),
                ("broken".to_string(), entry(3.0)),
                ("gone".to_string(), entry(3.0)),
            ]
            .into_iter()
            .collect(),
        };
        let report = probe_dir(dir.path(), Some(&gt), 0.5, 2)?;
        let status: Vec<(&str, &ProbeStatus)> = report
            .videos
            .iter()
            .map(|r| (r.id.as_str(), &r.status))
            .collect();
        assert_eq!(status.len(), 5);
        assert_eq!(status[0], ("a", &ProbeStatus::Ok));
        assert!(matches!(
            status[1],
            ("broken", ProbeStatus::Unreadable { .. })
        ));
        assert_eq!(status[2], ("extra", &ProbeStatus::NotAnnotated));
        assert_eq!(status[3], ("gone", &ProbeStatus::Missing));
        assert_eq!(
            status[4],
            (
                "short",
                &ProbeStatus::ShorterThanAnnotated { annotated: 10.0 }
            )
        );
        let info = report.videos[0]
            .info
            .as_ref()
            .map(|i| (i.frames, i.codec.as_str()));
        assert_eq!(info, Some((30, "h264")));
        let a = report.videos[0].info.as_ref().map(|i| (i.duration, i.fps));
        assert_eq!(a, Some((3.0, 10.0)));
        Ok(())
    }
}
