//! A per-video index of frame timestamps and keyframes, built from packet headers only.
//!
//! Frame-accurate sampling needs to know, before decoding anything, which frame's display interval
//! contains a requested time and which keyframe precedes it. Demuxing packet headers is cheap
//! (no decoding), so one pass gives every frame's presentation timestamp and every keyframe; the
//! sampler then decides per target whether to seek or decode forward.
//!
//! Conventions: time `t` in seconds is `(pts - start_pts) * time_base`, where `start_pts` is the
//! smallest presentation timestamp of the video stream (pts, falling back to dts when a packet has
//! no pts). Frame `i` covers `[t_i, t_{i+1})`; the last frame covers `[t_last, duration)`, its
//! length taken from the packet duration or, when absent, from the median frame interval.

use crate::error::{VideoError, VideoResult};
use ffmpeg::{format, media};
use ffmpeg_next as ffmpeg;
use std::path::{Path, PathBuf};

/// Keyframes and frame timestamps of a video stream.
#[derive(Debug, Clone)]
pub struct VideoIndex {
    /// The file.
    pub path: PathBuf,
    /// Index of the video stream inside the container.
    pub stream_index: usize,
    /// Stream time base as (numerator, denominator).
    pub time_base: (i32, i32),
    /// Smallest presentation timestamp: time zero.
    pub start_pts: i64,
    /// Presentation timestamp of every frame, sorted and unique (stream ticks).
    pub frame_pts: Vec<i64>,
    /// Presentation timestamps of keyframes, sorted (stream ticks).
    pub keyframe_pts: Vec<i64>,
    /// End of the last frame's display interval (stream ticks).
    pub end_pts: i64,
    /// Coded frame width in pixels.
    pub width: u32,
    /// Coded frame height in pixels.
    pub height: u32,
    /// Decoder name, e.g. `h264`.
    pub codec: String,
}

/// Open a container and pick its video stream, turning every failure into a named error.
pub(crate) fn open_video(path: &Path) -> VideoResult<(format::context::Input, usize)> {
    crate::init();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VideoError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(VideoError::io(path, e)),
    };
    if meta.len() == 0 {
        return Err(VideoError::Empty {
            path: path.to_path_buf(),
        });
    }
    let input = format::input(path).map_err(|e| VideoError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let best = input.streams().best(media::Type::Video).and_then(|s| {
        let attached = s
            .disposition()
            .contains(format::stream::Disposition::ATTACHED_PIC);
        (!attached).then_some(s.index())
    });
    let stream_index = best
        .or_else(|| {
            input
                .streams()
                .find(|s| {
                    s.parameters().medium() == media::Type::Video
                        && !s
                            .disposition()
                            .contains(format::stream::Disposition::ATTACHED_PIC)
                })
                .map(|s| s.index())
        })
        .ok_or_else(|| VideoError::NoVideoStream {
            path: path.to_path_buf(),
        })?;
    Ok((input, stream_index))
}

impl VideoIndex {
    /// Build the index of `path` with one pass over its packet headers (no decoding).
    pub fn build(path: &Path) -> VideoResult<Self> {
        let (mut input, stream_index) = open_video(path)?;
        Self::scan(&mut input, stream_index, path)
    }

    /// Build the index from an open container (left at its end; the caller rewinds it).
    pub(crate) fn scan(
        input: &mut format::context::Input,
        stream_index: usize,
        path: &Path,
    ) -> VideoResult<Self> {
        let stream = input
            .stream(stream_index)
            .ok_or_else(|| VideoError::NoVideoStream {
                path: path.to_path_buf(),
            })?;
        let tb = stream.time_base();
        let params = stream.parameters();
        let codec_id = params.id();
        let decoder = ffmpeg::codec::context::Context::from_parameters(params)
            .and_then(|c| c.decoder().video())
            .map_err(|e| VideoError::Unreadable {
                path: path.to_path_buf(),
                reason: format!("no decoder for the video stream ({codec_id:?}): {e}"),
            })?;
        let (width, height) = (decoder.width(), decoder.height());
        let codec = decoder
            .codec()
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| format!("{codec_id:?}").to_lowercase());
        drop(decoder);

        let mut frames: Vec<(i64, i64, bool)> = Vec::new();
        for (s, packet) in input.packets() {
            if s.index() != stream_index || packet.size() == 0 {
                continue;
            }
            if let Some(ts) = packet.pts().or(packet.dts()) {
                frames.push((ts, packet.duration(), packet.is_key()));
            }
        }
        if frames.is_empty() {
            return Err(VideoError::NoFrames {
                path: path.to_path_buf(),
            });
        }
        frames.sort_by_key(|f| f.0);
        frames.dedup_by_key(|f| f.0);
        let frame_pts: Vec<i64> = frames.iter().map(|f| f.0).collect();
        let keyframe_pts: Vec<i64> = frames.iter().filter(|f| f.2).map(|f| f.0).collect();
        let mut intervals: Vec<i64> = frame_pts.windows(2).map(|w| w[1] - w[0]).collect();
        intervals.sort_unstable();
        let median = intervals.get(intervals.len() / 2).copied();
        let (last_pts, last_duration, _) = frames[frames.len() - 1];
        let last_len = if last_duration > 0 {
            last_duration
        } else if let Some(m) = median {
            m
        } else {
            // A single frame without a duration: give it one tick per 1/25 s as a last resort.
            let ticks = (f64::from(tb.denominator()) / f64::from(tb.numerator().max(1)) / 25.0)
                .round() as i64;
            ticks.max(1)
        };
        Ok(Self {
            path: path.to_path_buf(),
            stream_index,
            time_base: (tb.numerator(), tb.denominator()),
            start_pts: frame_pts[0],
            keyframe_pts: if keyframe_pts.is_empty() {
                // Streams that do not flag keyframes (rare) are only decodable from the start.
                vec![frame_pts[0]]
            } else {
                keyframe_pts
            },
            end_pts: last_pts + last_len,
            frame_pts,
            width,
            height,
            codec,
        })
    }

    /// Seconds from time zero of a stream timestamp.
    pub fn seconds(&self, pts: i64) -> f64 {
        (pts - self.start_pts) as f64 * f64::from(self.time_base.0) / f64::from(self.time_base.1)
    }

    /// Duration in seconds: end of the last frame's interval.
    pub fn duration(&self) -> f64 {
        self.seconds(self.end_pts)
    }

    /// Number of frames in the stream.
    pub fn frame_count(&self) -> usize {
        self.frame_pts.len()
    }

    /// Average frame rate: frames per second of duration.
    pub fn fps(&self) -> f64 {
        let d = self.duration();
        if d > 0.0 {
            self.frame_count() as f64 / d
        } else {
            0.0
        }
    }

    /// Mean distance between keyframes in seconds (the duration when there is one keyframe).
    pub fn mean_keyframe_interval(&self) -> f64 {
        self.duration() / self.keyframe_pts.len().max(1) as f64
    }

    /// Index of the frame whose display interval contains `t` seconds, or `None` when `t` lies
    /// outside `[0, duration)` or is not a number.
    pub fn frame_at(&self, t: f64) -> Option<usize> {
        if !t.is_finite() || t < 0.0 || t >= self.duration() {
            return None;
        }
        let n = self.frame_pts.partition_point(|&p| self.seconds(p) <= t);
        n.checked_sub(1)
    }

    /// Timestamp of the last keyframe at or before `pts` (the first keyframe if none precedes).
    pub fn keyframe_at_or_before(&self, pts: i64) -> i64 {
        let n = self.keyframe_pts.partition_point(|&k| k <= pts);
        self.keyframe_pts[n.saturating_sub(1)]
    }
}
