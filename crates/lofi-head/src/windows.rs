//! Sliding windows: how the head sees long videos (THUMOS14) without rescaling them.
//!
//! Rescaling a video of several minutes to `L` = 100 snippets makes each snippet seconds long,
//! and actions of a few seconds shrink to one snippet or less. G-TAD's THUMOS14 code (and BSN,
//! BMN, and ActionFormer with its long sequences) therefore keeps features at a fixed stride and
//! cuts each video into windows of `W` snippets that overlap; the head runs at `L = W` on every
//! window, and its detections are mapped back to video time and merged. This module is that
//! path; [`Temporal`] chooses it (`[temporal]` of the head config, recorded in `head.json`).
//!
//! # The rules
//! - Windows start at `0, stride, 2 stride, ...` while they fit in the video's `T` snippets; when
//!   the last one does not reach the end, one more ends exactly at `T` (so every snippet is
//!   seen); a video shorter than `W` gets one window, zero-padded past `T` (as G-TAD pads).
//! - Time: snippet `i` covers `[i s, (i + 1) s)`, `s` the features' seconds per snippet (the
//!   stride the index records; `duration / T` for features without one). Window position `p` of
//!   a window starting at snippet `a` is time `(a + p) s`.
//! - Training (G-TAD's `dataset.py`): a window is a training sample when some action has more
//!   than 90 % of its length inside it; its targets are built from every action overlapping it,
//!   clipped to the window.
//! - Detection ([`crate::inference::window_proposals`]): each window gives its candidates (the
//!   rule of [`crate::inference`]), mapped to video time and clipped to `[0, duration]`; Soft-NMS per window, then Soft-NMS over the union of the
//!   video's windows, then the top `top_k` (as G-TAD's `gtad_postprocess.py` merges windows).

use lofi_model::Segment;
use serde::{Deserialize, Serialize};

use crate::error::{HeadError, Result};
use crate::features::VideoFeatures;

/// How the head sees a video (`[temporal]` of `lofi train-head`'s config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Temporal {
    /// The whole video resampled to `snippets` steps (ActivityNet; the default).
    #[default]
    Rescale,
    /// Windows of `snippets` steps of the features as they are, one every `window_stride`
    /// snippets (overlap `snippets - window_stride`).
    Windows {
        /// Snippets between the starts of consecutive windows (1 ..= `snippets`).
        window_stride: usize,
    },
}

impl Temporal {
    /// Whether this is the rescale (the default).
    pub fn is_rescale(&self) -> bool {
        matches!(self, Self::Rescale)
    }

    /// Checks the window stride against the window length `w`; the message names the key.
    pub fn check(&self, w: usize) -> Result<()> {
        match *self {
            Self::Windows { window_stride } if window_stride == 0 || window_stride > w => {
                Err(HeadError::Config(format!(
                    "temporal.window_stride = {window_stride} must be between 1 and snippets = \
                     {w} (the window length)"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Start snippets of the windows of length `w` every `stride` over `t` snippets (module docs).
pub fn window_starts(t: usize, w: usize, stride: usize) -> Vec<usize> {
    if t <= w {
        return vec![0];
    }
    let stride = stride.max(1);
    let mut starts: Vec<usize> = (0..)
        .map(|k| k * stride)
        .take_while(|s| s + w <= t)
        .collect();
    if starts.last().is_none_or(|&s| s + w < t) {
        starts.push(t - w);
    }
    starts
}

/// A video's features at their own stride: the whole `[T, C]` sequence and its seconds per
/// snippet.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedFeatures {
    /// `[T, C]`, `duration` the annotated one.
    pub features: VideoFeatures,
    /// Seconds per snippet.
    pub step: f64,
}

/// One window of a video: its features `[W, C]` (zero past the end) and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Features of the window; `id` is the video's, `duration` the window's span `W s`.
    pub features: VideoFeatures,
    /// First snippet.
    pub start: usize,
    /// Seconds per snippet.
    pub step: f64,
}

impl Window {
    /// Seconds from the video's start to the window's.
    pub fn offset(&self) -> f64 {
        self.start as f64 * self.step
    }
}

/// The window of `w` snippets of `video` starting at snippet `start`.
pub fn cut(video: &TimedFeatures, start: usize, w: usize) -> Window {
    let f = &video.features;
    let c = f.c;
    let mut data = vec![0f32; w * c];
    let rows = f.l.saturating_sub(start).min(w);
    data[..rows * c].copy_from_slice(&f.data[start * c..(start + rows) * c]);
    Window {
        features: VideoFeatures {
            id: f.id.clone(),
            duration: w as f64 * video.step,
            l: w,
            c,
            data,
        },
        start,
        step: video.step,
    }
}

/// Every window of `video` (length `w`, one every `stride` snippets).
pub fn windows(video: &TimedFeatures, w: usize, stride: usize) -> Vec<Window> {
    window_starts(video.features.l, w, stride)
        .into_iter()
        .map(|s| cut(video, s, w))
        .collect()
}

/// The training windows of a video of `t` snippets of `step` seconds with annotated `actions`
/// (seconds): the start snippet of each window (length `w`, one every `stride`) holding more
/// than 90 % of some action, with the actions overlapping it as fractions of the window.
pub fn window_targets(
    t: usize,
    step: f64,
    actions: &[[f64; 2]],
    w: usize,
    stride: usize,
) -> Vec<(usize, Vec<Segment>)> {
    let mut out = Vec::new();
    for start in window_starts(t, w, stride) {
        let (lo, span) = (start as f64 * step, w as f64 * step);
        let mut segments = Vec::new();
        let mut held = false;
        for a in actions {
            let len = a[1] - a[0];
            if len <= 0.0 {
                continue;
            }
            let inside = (a[1].min(lo + span) - a[0].max(lo)).max(0.0);
            if inside > 0.0 {
                let s = ((a[0] - lo) / span).clamp(0.0, 1.0);
                let e = ((a[1] - lo) / span).clamp(0.0, 1.0);
                segments.push(Segment::new(s, e));
                held |= inside / len > 0.9;
            }
        }
        if held {
            out.push((start, segments));
        }
    }
    out
}

/// [`window_targets`] of a video's features: the windows themselves with their segments.
pub fn training_windows(
    video: &TimedFeatures,
    actions: &[[f64; 2]],
    w: usize,
    stride: usize,
) -> Vec<(Window, Vec<Segment>)> {
    window_targets(video.features.l, video.step, actions, w, stride)
        .into_iter()
        .map(|(start, segments)| (cut(video, start, w), segments))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(t: usize, c: usize, step: f64) -> TimedFeatures {
        TimedFeatures {
            features: VideoFeatures {
                id: "v".into(),
                duration: t as f64 * step,
                l: t,
                c,
                data: (0..t * c).map(|i| i as f32).collect(),
            },
            step,
        }
    }

    #[test]
    fn windows_cover_every_snippet_and_end_at_the_last() {
        assert_eq!(window_starts(10, 4, 2), vec![0, 2, 4, 6]);
        assert_eq!(window_starts(11, 4, 2), vec![0, 2, 4, 6, 7]);
        assert_eq!(window_starts(4, 4, 2), vec![0]);
        assert_eq!(window_starts(3, 4, 2), vec![0]);
        assert_eq!(window_starts(9, 4, 4), vec![0, 4, 5]);
        for (t, w, s) in [(100, 16, 5), (37, 8, 8), (50, 50, 1), (1000, 256, 128)] {
            let starts = window_starts(t, w, s);
            let mut seen = vec![false; t];
            for &a in &starts {
                assert!(a + w <= t.max(w));
                seen[a..(a + w).min(t)].iter_mut().for_each(|x| *x = true);
            }
            assert!(seen.iter().all(|&x| x), "{t} {w} {s}");
        }
    }

    #[test]
    fn a_cut_is_the_rows_of_the_window_zero_padded() {
        let v = video(5, 2, 0.5);
        let win = cut(&v, 3, 4);
        assert_eq!(
            win.features.data,
            vec![6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!((win.offset(), win.features.duration), (1.5, 2.0));
    }

    #[test]
    fn training_windows_hold_most_of_an_action_and_clip_the_others() {
        // 40 snippets of 0.5 s (20 s), windows of 8 (4 s) every 4 (2 s).
        let v = video(40, 1, 0.5);
        let actions = [[1.0, 2.0], [3.5, 6.5], [15.0, 19.9]];
        let wins = training_windows(&v, &actions, 8, 4);
        let starts: Vec<f64> = wins.iter().map(|(w, _)| w.offset()).collect();
        // [0, 4) holds the first action whole and 50 % of the second; [2, 6) 83 % of the second;
        // [4, 8) 83 %; 4.9 s actions never fit 90 % into 4 s windows; nothing else is held.
        assert_eq!(starts, vec![0.0]);
        let (_, segs) = &wins[0];
        assert_eq!(segs.len(), 2);
        assert!((segs[0].start - 0.25).abs() < 1e-12 && (segs[0].end - 0.5).abs() < 1e-12);
        assert!((segs[1].start - 0.875).abs() < 1e-12 && segs[1].end == 1.0);
        let wins = training_windows(&v, &[[2.5, 5.5]], 8, 4);
        let starts: Vec<f64> = wins.iter().map(|(w, _)| w.offset()).collect();
        assert_eq!(starts, vec![2.0]);
        assert!(training_windows(&v, &[], 8, 4).is_empty());
    }

    #[test]
    fn the_window_stride_is_checked_against_the_window() {
        let ok = Temporal::Windows { window_stride: 8 };
        assert!(ok.check(8).is_ok() && Temporal::Rescale.check(8).is_ok());
        let e = Temporal::Windows { window_stride: 9 }
            .check(8)
            .expect_err("too long");
        assert!(e.to_string().contains("window_stride = 9"), "{e}");
        assert!(Temporal::Windows { window_stride: 0 }.check(8).is_err());
    }
}
