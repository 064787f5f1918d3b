//! A synthetic untrimmed-video benchmark that a small model can learn on two CPU cores.
//!
//! Real TAL datasets are large and gated; tests and demos need videos with known action segments
//! that are made from a seed in seconds. The design makes temporal modelling necessary, which is
//! what LoFi is about:
//! - one actor, a light square of fixed size and colour, is always on screen; the five classes
//!   differ only in how it moves (slide left, slide right, bounce, pulse, orbit), so a single
//!   frame cannot tell them apart, and action boundaries show only as a change of motion;
//! - between actions the actor idles with a small wobble, so "something moves" is not enough;
//! - the background (drifting diagonal stripes) and 2-3 distractor discs move all the time;
//! - 1-4 actions per video, durations that vary, positions and colours drawn from the seed.
//!
//! The `long` preset ([`ActionLayout::Dense`]) is the THUMOS14 shape instead: videos of several
//! minutes, each holding dozens of short actions (1.5-4 s) of one or two classes, separated by
//! idle gaps of 1-12 s. Rescaled to a fixed number of snippets such a video loses its actions
//! (a 3-minute video at L = 100 has 1.8 s snippets), which is what sliding windows over features
//! at a fixed stride are for; the preset exists to measure that.
//!
//! Output (see [`write_dataset`]): `videos/<id>.mp4` (H.264 via libx264 from the system FFmpeg),
//! `ground_truth.json` in the ActivityNet layout, trimmed clips `clips/<id>_<k>.mp4` and
//! `clips.json` listing file, label and subset. Everything is a pure function of the seed and the
//! preset, whatever the worker count or the machine load: each video's content comes from its own
//! RNG stream (seed and video index, never a shared generator consumed in scheduling order), each
//! video is rendered and encoded by one worker from start to end, and the encoder reads nothing
//! but the frames (see [`crate::writer`] for the x264 settings that make this hold). The JSON
//! files are byte-identical across runs, and the videos are too for a given FFmpeg/x264 build.

use crate::error::{VideoError, VideoResult};
use crate::ground_truth::{write_json_atomic, Annotation, GroundTruth, TaxonomyNode, VideoEntry};
use crate::loader::SplitMix64;
use crate::writer::{VideoWriter, WriterConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The action classes, in label order.
pub const CLASSES: [&str; 5] = ["slide_left", "slide_right", "bounce", "pulse", "orbit"];

/// Dataset sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynthPreset {
    /// For tests: 16 videos of 8-16 s, 64 px, 10 fps.
    Tiny,
    /// For the benchmark: 240 videos of 20-60 s, 128 px, 10 fps.
    Benchmark,
    /// THUMOS14-like: 20 videos of 2-4 minutes at 64 px, 10 fps, each with dozens of actions of
    /// 1.5-4 s ([`ActionLayout::Dense`]).
    Long,
}

/// How the actions of a video are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionLayout {
    /// 1-4 actions, each 12-30 % of the video (at least 1.5 s), any class (ActivityNet-like).
    #[default]
    Few,
    /// As many actions of 1.5-4 s as fit, separated by idle gaps of 1-12 s, all of one or two
    /// classes per video (THUMOS14-like).
    Dense,
}

/// Everything that decides a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// Number of untrimmed videos.
    pub videos: usize,
    /// Frame side in pixels (even).
    pub size: u32,
    /// Frames per second.
    pub fps: u32,
    /// Shortest video, seconds.
    pub min_duration: f64,
    /// Longest video, seconds.
    pub max_duration: f64,
    /// Every `validation_every`-th video (index % n == n - 1) is in the validation subset.
    pub validation_every: usize,
    /// Seed of everything.
    pub seed: u64,
    /// How actions are laid out in a video.
    #[serde(default)]
    pub layout: ActionLayout,
}

impl SynthConfig {
    /// The settings of a preset.
    pub fn preset(preset: SynthPreset, seed: u64) -> Self {
        match preset {
            SynthPreset::Tiny => Self {
                videos: 16,
                size: 64,
                fps: 10,
                min_duration: 8.0,
                max_duration: 16.0,
                validation_every: 4,
                seed,
                layout: ActionLayout::Few,
            },
            SynthPreset::Benchmark => Self {
                videos: 240,
                size: 128,
                fps: 10,
                min_duration: 20.0,
                max_duration: 60.0,
                validation_every: 4,
                seed,
                layout: ActionLayout::Few,
            },
            SynthPreset::Long => Self {
                videos: 20,
                size: 64,
                fps: 10,
                min_duration: 120.0,
                max_duration: 240.0,
                validation_every: 4,
                seed,
                layout: ActionLayout::Dense,
            },
        }
    }

    fn validate(&self) -> VideoResult<()> {
        let ok = self.videos > 0
            && self.size >= 32
            && self.size.is_multiple_of(2)
            && self.fps > 0
            && self.min_duration >= 4.0
            && self.max_duration >= self.min_duration
            && self.validation_every > 0;
        if ok {
            Ok(())
        } else {
            Err(VideoError::InvalidPlan(format!(
                "synthetic dataset settings out of range: {self:?} (need videos > 0, even size \
                 >= 32, fps > 0, 4 s <= min_duration <= max_duration, validation_every > 0)"
            )))
        }
    }
}

/// One action instance in frame units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// Index into [`CLASSES`].
    pub class: usize,
    /// First frame of the action.
    pub start_frame: usize,
    /// One past the last frame.
    pub end_frame: usize,
}

#[derive(Debug, Clone, Copy)]
struct Disc {
    x: f64,
    y: f64,
    vx: f64,
    vy: f64,
    radius: f64,
    color: [u8; 3],
}

/// Everything needed to render one video.
#[derive(Debug, Clone)]
pub struct VideoSpec {
    /// Video id.
    pub id: String,
    /// `training` or `validation`.
    pub subset: &'static str,
    /// Frames in the video.
    pub frames: usize,
    /// Actions, sorted and non-overlapping.
    pub actions: Vec<ActionSpec>,
    size: u32,
    fps: u32,
    background: [f64; 3],
    stripe_angle: f64,
    stripe_period: f64,
    stripe_speed: f64,
    discs: Vec<Disc>,
    actor_start: (f64, f64),
    actor_color: [u8; 3],
    wobble_phase: f64,
}

/// Actor position (centre, pixels, wrapped onto the frame) and scale at one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActorState {
    /// Centre x.
    pub x: f64,
    /// Centre y.
    pub y: f64,
    /// Side multiplier (1 at rest).
    pub scale: f64,
}

fn video_rng(seed: u64, index: usize) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ 0x005E_ED0F_1F0E);
    let base = mix.next_u64();
    SplitMix64::new(base.wrapping_add((index as u64).wrapping_mul(0xA24B_AED4_963E_E407)))
}

/// Decide the content of video `index` (pure function of the config).
pub fn plan_video(config: &SynthConfig, index: usize) -> VideoSpec {
    let mut rng = video_rng(config.seed, index);
    let fps = f64::from(config.fps);
    let size = f64::from(config.size);
    let duration =
        config.min_duration + rng.next_f64() * (config.max_duration - config.min_duration);
    let frames = (duration * fps).round().max(fps * 4.0) as usize;

    let actions = match config.layout {
        ActionLayout::Few => few_actions(&mut rng, frames, fps),
        ActionLayout::Dense => dense_actions(&mut rng, frames, fps),
    };

    let hue = rng.next_f64();
    let background = [
        0.18 + 0.12 * (hue * std::f64::consts::TAU).sin(),
        0.18 + 0.12 * (hue * std::f64::consts::TAU + 2.1).sin(),
        0.18 + 0.12 * (hue * std::f64::consts::TAU + 4.2).sin(),
    ];
    let disc_count = 2 + rng.below(2);
    let palette = [[220, 60, 60], [60, 200, 80], [70, 110, 230], [220, 180, 40]];
    let discs = (0..disc_count)
        .map(|_| {
            let angle = rng.next_f64() * std::f64::consts::TAU;
            let speed = size * (0.08 + 0.25 * rng.next_f64());
            Disc {
                x: rng.next_f64() * size,
                y: rng.next_f64() * size,
                vx: speed * angle.cos(),
                vy: speed * angle.sin(),
                radius: size * (0.035 + 0.03 * rng.next_f64()),
                color: palette[rng.below(palette.len())],
            }
        })
        .collect();
    VideoSpec {
        id: format!("syn{index:04}"),
        subset: if index % config.validation_every == config.validation_every - 1 {
            "validation"
        } else {
            "training"
        },
        frames,
        actions,
        size: config.size,
        fps: config.fps,
        background,
        stripe_angle: rng.next_f64() * std::f64::consts::PI,
        stripe_period: size * (0.2 + 0.2 * rng.next_f64()),
        stripe_speed: size
            * (0.05 + 0.15 * rng.next_f64())
            * if rng.below(2) == 0 { 1.0 } else { -1.0 },
        discs,
        actor_start: (
            size * (0.25 + 0.5 * rng.next_f64()),
            size * (0.3 + 0.4 * rng.next_f64()),
        ),
        actor_color: [235, 235, 225],
        wobble_phase: rng.next_f64() * std::f64::consts::TAU,
    }
}

/// 1-4 actions, each 12-30 % of the video but at least 1.5 s, gaps of at least 0.5 s.
fn few_actions(rng: &mut SplitMix64, frames: usize, fps: f64) -> Vec<ActionSpec> {
    let min_len = (1.5 * fps).ceil() as usize;
    let min_gap = (0.5 * fps).ceil() as usize;
    let mut count = 1 + rng.below(4);
    let mut lengths: Vec<usize>;
    loop {
        lengths = (0..count)
            .map(|_| ((0.12 + 0.18 * rng.next_f64()) * frames as f64).round() as usize)
            .map(|l| l.max(min_len))
            .collect();
        let busy: usize = lengths.iter().sum::<usize>() + (count + 1) * min_gap;
        if busy <= frames || count == 1 {
            break;
        }
        count -= 1;
    }
    let total: usize = lengths.iter().sum();
    let spare = frames.saturating_sub(total + (count + 1) * min_gap);
    let weights: Vec<f64> = (0..=count).map(|_| 0.1 + rng.next_f64()).collect();
    let weight_sum: f64 = weights.iter().sum();
    let mut gaps: Vec<usize> = weights
        .iter()
        .map(|w| min_gap + (w / weight_sum * spare as f64).floor() as usize)
        .collect();
    // Rounding leftovers go to the last gap so the actions end inside the video.
    let used: usize = gaps.iter().sum::<usize>() + total;
    if let Some(last) = gaps.last_mut() {
        *last += frames.saturating_sub(used);
    }
    let mut actions = Vec::with_capacity(count);
    let mut cursor = 0;
    for (k, &len) in lengths.iter().enumerate() {
        cursor += gaps[k];
        let end = (cursor + len).min(frames);
        actions.push(ActionSpec {
            class: rng.below(CLASSES.len()),
            start_frame: cursor.min(end.saturating_sub(1)),
            end_frame: end,
        });
        cursor = end;
    }
    actions
}

/// As many actions of 1.5-4 s as fit, gaps of 1-12 s (mean 4.7 s; the first gap 1-6 s), of one
/// class or (three videos in ten) two classes.
fn dense_actions(rng: &mut SplitMix64, frames: usize, fps: f64) -> Vec<ActionSpec> {
    let first = rng.below(CLASSES.len());
    let second = if rng.next_f64() < 0.3 {
        (first + 1 + rng.below(CLASSES.len() - 1)) % CLASSES.len()
    } else {
        first
    };
    let frames_of = |seconds: f64| (seconds * fps).round() as usize;
    let mut actions = Vec::new();
    let mut cursor = frames_of(1.0 + 5.0 * rng.next_f64());
    loop {
        let len = frames_of(1.5 + 2.5 * rng.next_f64());
        let class = if rng.below(2) == 0 { first } else { second };
        // Mostly short gaps, some long ones (up to 12 s), so that actions do not come at a
        // regular beat that a fixed grid of proposals would match.
        let r = rng.next_f64();
        let gap = frames_of(1.0 + 11.0 * r * r);
        if cursor + len + frames_of(1.0) > frames {
            break;
        }
        actions.push(ActionSpec {
            class,
            start_frame: cursor,
            end_frame: cursor + len,
        });
        cursor += len + gap;
    }
    actions
}

/// The class motion's offset from the base position and scale, `tau` seconds into the action.
fn action_offset(class: usize, tau: f64, size: f64) -> (f64, f64, f64) {
    use std::f64::consts::{PI, TAU};
    match class {
        // Slides move the base position itself (see `actor_states`).
        0 | 1 => (0.0, 0.0, 1.0),
        2 => (0.0, -0.25 * size * (PI * tau / 0.9).sin().abs(), 1.0),
        3 => (0.0, 0.0, 1.0 + 0.9 * (PI * tau / 1.2).sin().powi(2)),
        _ => {
            let r = 0.16 * size;
            let w = TAU / 1.6;
            (r * ((w * tau).cos() - 1.0), r * (w * tau).sin(), 1.0)
        }
    }
}

fn wrap(v: f64, size: f64) -> f64 {
    v.rem_euclid(size)
}

/// Actor state at every frame of a video.
pub fn actor_states(spec: &VideoSpec) -> Vec<ActorState> {
    let size = f64::from(spec.size);
    let fps = f64::from(spec.fps);
    let slide_speed = 0.45 * size;
    let (mut bx, mut by) = spec.actor_start;
    let mut scale: f64 = 1.0;
    let mut states = Vec::with_capacity(spec.frames);
    let mut active: Option<(ActionSpec, (f64, f64, f64))> = None;
    for f in 0..spec.frames {
        let t = f as f64 / fps;
        let action = spec
            .actions
            .iter()
            .find(|a| (a.start_frame..a.end_frame).contains(&f))
            .copied();
        // Leaving an action: the base absorbs the last offset so the actor does not jump.
        if let Some((prev, last)) = active {
            if action != Some(prev) {
                bx += last.0;
                by += last.1;
                scale = last.2;
                active = None;
            }
        }
        let (ox, oy, s) = match action {
            Some(a) => {
                let tau = (f - a.start_frame) as f64 / fps;
                match a.class {
                    0 => bx -= slide_speed / fps,
                    1 => bx += slide_speed / fps,
                    _ => {}
                }
                let off = action_offset(a.class, tau, size);
                active = Some((a, off));
                off
            }
            None => {
                // Idle: relax the scale towards 1 and wobble by about a pixel.
                scale += (1.0 - scale) * (4.0 / fps).min(1.0);
                let w = 0.012 * size;
                (
                    w * (1.3 * t + spec.wobble_phase).sin(),
                    w * (1.7 * t + 2.0 * spec.wobble_phase).cos(),
                    scale,
                )
            }
        };
        states.push(ActorState {
            x: wrap(bx + ox, size),
            y: wrap(by + oy, size),
            scale: s,
        });
    }
    states
}

/// Signed wrapped distance on a torus of side `size`.
fn torus_delta(a: f64, b: f64, size: f64) -> f64 {
    let d = (a - b).rem_euclid(size);
    if d > size / 2.0 {
        d - size
    } else {
        d
    }
}

/// Render frame `f` as packed RGB24 into `rgb` (`size * size * 3` bytes).
pub fn render_frame(spec: &VideoSpec, actor: ActorState, f: usize, rgb: &mut [u8]) {
    let size = f64::from(spec.size);
    let s = spec.size as usize;
    let t = f as f64 / f64::from(spec.fps);
    let (ca, sa) = (spec.stripe_angle.cos(), spec.stripe_angle.sin());
    let phase = spec.stripe_speed * t;
    for y in 0..s {
        for x in 0..s {
            let proj = (x as f64 * ca + y as f64 * sa - phase) / spec.stripe_period;
            let tri = (2.0 * (proj - proj.floor()) - 1.0).abs();
            let o = (y * s + x) * 3;
            for c in 0..3 {
                let v = spec.background[c] + 0.10 * tri;
                rgb[o + c] = (v * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
    }
    for disc in &spec.discs {
        let cx = wrap(disc.x + disc.vx * t, size);
        let cy = wrap(disc.y + disc.vy * t, size);
        let r = disc.radius;
        let (y0, y1) = ((cy - r).floor() as i64, (cy + r).ceil() as i64);
        let (x0, x1) = ((cx - r).floor() as i64, (cx + r).ceil() as i64);
        for yy in y0..=y1 {
            for xx in x0..=x1 {
                let (px, py) = (
                    xx.rem_euclid(s as i64) as usize,
                    yy.rem_euclid(s as i64) as usize,
                );
                let (dx, dy) = (xx as f64 + 0.5 - cx, yy as f64 + 0.5 - cy);
                if dx * dx + dy * dy <= r * r {
                    rgb[(py * s + px) * 3..(py * s + px) * 3 + 3].copy_from_slice(&disc.color);
                }
            }
        }
    }
    let half = 0.08 * size * actor.scale;
    let (y0, y1) = (
        (actor.y - half).floor() as i64,
        (actor.y + half).ceil() as i64,
    );
    let (x0, x1) = (
        (actor.x - half).floor() as i64,
        (actor.x + half).ceil() as i64,
    );
    for yy in y0..=y1 {
        for xx in x0..=x1 {
            let (px, py) = (
                xx.rem_euclid(s as i64) as usize,
                yy.rem_euclid(s as i64) as usize,
            );
            let dx = torus_delta(px as f64 + 0.5, actor.x, size).abs();
            let dy = torus_delta(py as f64 + 0.5, actor.y, size).abs();
            if dx <= half && dy <= half {
                rgb[(py * s + px) * 3..(py * s + px) * 3 + 3].copy_from_slice(&spec.actor_color);
            }
        }
    }
}

/// One trimmed clip in `clips.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipEntry {
    /// Path relative to the dataset folder, `clips/<video>_<k>.mp4`.
    pub file: String,
    /// Class name.
    pub label: String,
    /// Index of the class in `classes`.
    pub label_index: usize,
    /// Subset of the source video.
    pub subset: String,
    /// Source video id.
    pub video: String,
    /// `[start, end]` in the source video, seconds.
    pub segment: [f64; 2],
}

/// `clips.json`: the trimmed clips for classification pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipIndex {
    /// Format version.
    pub version: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Clips sorted by video and start time.
    pub clips: Vec<ClipEntry>,
}

/// What [`write_dataset`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    /// Untrimmed videos written.
    pub videos: usize,
    /// Trimmed clips written.
    pub clips: usize,
    /// Frames encoded (videos and clips).
    pub frames: usize,
    /// Sum of video durations, seconds.
    pub total_duration: f64,
}

fn seconds(frame: usize, fps: u32) -> f64 {
    frame as f64 / f64::from(fps)
}

/// Render and encode one video and its clips.
fn write_video(dir: &Path, spec: &VideoSpec) -> VideoResult<usize> {
    let states = actor_states(spec);
    let s = spec.size as usize;
    let fps = spec.fps as i32;
    let mut config = WriterConfig::h264_cfr(spec.size, spec.size, fps);
    config.gop = spec.fps * 2;
    let mut video = VideoWriter::create(
        &dir.join("videos").join(format!("{}.mp4", spec.id)),
        &config,
    )?;
    let mut rgb = vec![0u8; s * s * 3];
    let mut clip: Option<(usize, VideoWriter)> = None;
    let mut frames = 0;
    for (f, state) in states.iter().enumerate() {
        render_frame(spec, *state, f, &mut rgb);
        video.write_rgb(&rgb, f as i64)?;
        frames += 1;
        if let Some(k) = spec.actions.iter().position(|a| a.start_frame == f) {
            let path = dir.join("clips").join(format!("{}_{k}.mp4", spec.id));
            clip = Some((k, VideoWriter::create(&path, &config)?));
        }
        if let Some((k, writer)) = clip.as_mut() {
            let start = spec.actions[*k].start_frame;
            writer.write_rgb(&rgb, (f - start) as i64)?;
            frames += 1;
            if f + 1 == spec.actions[*k].end_frame {
                if let Some((_, done)) = clip.take() {
                    done.finish()?;
                }
            }
        }
    }
    if let Some((_, done)) = clip.take() {
        done.finish()?;
    }
    video.finish()?;
    Ok(frames)
}

/// Write the dataset into `dir` with `workers` threads; `progress` is called after each video
/// with the number done. Video files, clips and both JSON files are written atomically, the
/// JSON files last.
pub fn write_dataset(
    dir: &Path,
    config: &SynthConfig,
    workers: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> VideoResult<SynthSummary> {
    config.validate()?;
    for sub in ["videos", "clips"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| VideoError::io(&p, e))?;
    }
    let specs: Vec<VideoSpec> = (0..config.videos).map(|i| plan_video(config, i)).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let frames = AtomicUsize::new(0);
    let first_error: Mutex<Option<(usize, VideoError)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, config.videos) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= specs.len() {
                    return;
                }
                let failed = first_error.lock().map(|e| e.is_some()).unwrap_or(true);
                if failed {
                    return;
                }
                match write_video(dir, &specs[i]) {
                    Ok(n) => {
                        frames.fetch_add(n, Ordering::Relaxed);
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                    Err(e) => {
                        if let Ok(mut slot) = first_error.lock() {
                            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                                *slot = Some((i, e));
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some((_, e)) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }

    let fps = config.fps;
    let mut database = BTreeMap::new();
    let mut clips = Vec::new();
    let mut total_duration = 0.0;
    for spec in &specs {
        let duration = seconds(spec.frames, fps);
        total_duration += duration;
        let annotations = spec
            .actions
            .iter()
            .map(|a| Annotation {
                segment: [seconds(a.start_frame, fps), seconds(a.end_frame, fps)],
                label: CLASSES[a.class].to_string(),
            })
            .collect();
        for (k, a) in spec.actions.iter().enumerate() {
            clips.push(ClipEntry {
                file: format!("clips/{}_{k}.mp4", spec.id),
                label: CLASSES[a.class].to_string(),
                label_index: a.class,
                subset: spec.subset.to_string(),
                video: spec.id.clone(),
                segment: [seconds(a.start_frame, fps), seconds(a.end_frame, fps)],
            });
        }
        database.insert(
            spec.id.clone(),
            VideoEntry {
                subset: spec.subset.to_string(),
                duration,
                fps: Some(f64::from(fps)),
                annotations,
            },
        );
    }
    let clip_count = clips.len();
    write_json_atomic(
        &dir.join("clips.json"),
        &ClipIndex {
            version: format!("lofi-synth 1 seed {}", config.seed),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            clips,
        },
    )?;
    GroundTruth {
        version: Some(format!("lofi-synth 1 seed {}", config.seed)),
        taxonomy: TaxonomyNode::flat(&CLASSES),
        database,
    }
    .write(&dir.join("ground_truth.json"))?;
    Ok(SynthSummary {
        videos: specs.len(),
        clips: clip_count,
        frames: frames.into_inner(),
        total_duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net_motion(states: &[ActorState], a: &ActionSpec, size: f64) -> (f64, f64, f64, f64) {
        let span = &states[a.start_frame..a.end_frame];
        let (mut dx, mut dy) = (0.0, 0.0);
        for w in span.windows(2) {
            dx += torus_delta(w[1].x, w[0].x, size);
            dy += torus_delta(w[1].y, w[0].y, size);
        }
        let ys: Vec<f64> = span.iter().map(|s| s.y).collect();
        let y_range = ys.iter().cloned().fold(f64::MIN, f64::max)
            - ys.iter().cloned().fold(f64::MAX, f64::min);
        let max_scale = span.iter().map(|s| s.scale).fold(0.0, f64::max);
        (dx, dy, y_range, max_scale)
    }

    #[test]
    fn actions_are_sorted_disjoint_inside_and_varied() {
        let config = SynthConfig::preset(SynthPreset::Benchmark, 3);
        let mut seen_classes = [0usize; 5];
        let mut seen_counts = [0usize; 5];
        let mut lengths = Vec::new();
        for i in 0..200 {
            let spec = plan_video(&config, i);
            lengths.push(spec.frames);
            let n = spec.actions.len();
            assert!((1..=4).contains(&n), "{n} actions");
            seen_counts[n] += 1;
            let mut last_end = 0;
            for a in &spec.actions {
                assert!(a.start_frame >= last_end && a.start_frame < a.end_frame);
                assert!(a.end_frame <= spec.frames);
                assert!(
                    a.end_frame - a.start_frame >= 15,
                    "action shorter than 1.5 s"
                );
                last_end = a.end_frame;
                seen_classes[a.class] += 1;
            }
        }
        assert!(seen_classes.iter().all(|&c| c > 20), "{seen_classes:?}");
        assert!(seen_counts[1..].iter().all(|&c| c > 10), "{seen_counts:?}");
        lengths.sort_unstable();
        assert!(
            lengths[0] < 250 && lengths[199] > 550,
            "durations do not vary"
        );
    }

    #[test]
    fn the_long_preset_has_dozens_of_short_actions_of_one_or_two_classes() {
        let config = SynthConfig::preset(SynthPreset::Long, 4);
        let fps = config.fps as usize;
        let mut two_class_videos = 0;
        for i in 0..config.videos {
            let spec = plan_video(&config, i);
            let minutes = spec.frames as f64 / (60.0 * fps as f64);
            assert!((2.0..=4.0).contains(&minutes), "{minutes} minutes");
            let n = spec.actions.len();
            assert!(
                n as f64 >= 6.0 * minutes,
                "only {n} actions in {minutes:.1} minutes"
            );
            let mut last_end = 0;
            for a in &spec.actions {
                let len = a.end_frame - a.start_frame;
                assert!((15..=40).contains(&len), "action of {len} frames");
                assert!(a.start_frame >= last_end + fps, "gap under 1 s");
                last_end = a.end_frame;
            }
            assert!(last_end + fps <= spec.frames);
            let mut classes: Vec<usize> = spec.actions.iter().map(|a| a.class).collect();
            classes.sort_unstable();
            classes.dedup();
            assert!((1..=2).contains(&classes.len()), "{classes:?}");
            two_class_videos += usize::from(classes.len() == 2);
        }
        assert!((1..config.videos).contains(&two_class_videos));
        // Pure function of the seed.
        let again = plan_video(&config, 3);
        assert_eq!(again.actions, plan_video(&config, 3).actions);
        assert_ne!(
            plan_video(&SynthConfig::preset(SynthPreset::Long, 5), 3).actions,
            again.actions
        );
    }

    #[test]
    fn classes_differ_only_in_motion() {
        let config = SynthConfig::preset(SynthPreset::Benchmark, 11);
        let size = f64::from(config.size);
        let mut checked = [false; 5];
        for i in 0..40 {
            let spec = plan_video(&config, i);
            let states = actor_states(&spec);
            for a in &spec.actions {
                let (dx, dy, y_range, max_scale) = net_motion(&states, a, size);
                let secs = (a.end_frame - a.start_frame) as f64 / f64::from(config.fps);
                match a.class {
                    0 => assert!(dx < -0.3 * size * secs, "slide_left dx {dx}"),
                    1 => assert!(dx > 0.3 * size * secs, "slide_right dx {dx}"),
                    2 => assert!(y_range > 0.15 * size && dx.abs() < 2.0, "bounce"),
                    3 => assert!(max_scale > 1.5 && dx.abs() < 2.0 && dy.abs() < 2.0, "pulse"),
                    _ => assert!(y_range > 0.1 * size, "orbit"),
                }
                checked[a.class] = true;
            }
            // Idle between actions: the actor stays within a few pixels.
            let idle_end = spec.actions[0].start_frame;
            if idle_end > 2 {
                let (x0, y0) = (states[0].x, states[0].y);
                for s in &states[..idle_end] {
                    assert!(torus_delta(s.x, x0, size).abs() < 0.05 * size);
                    assert!(torus_delta(s.y, y0, size).abs() < 0.05 * size);
                }
            }
        }
        assert!(checked.iter().all(|&c| c), "{checked:?}");
    }

    #[test]
    fn the_actor_looks_the_same_in_every_class() {
        // Same colour and, outside pulse, same size: one frame carries no class information.
        let config = SynthConfig::preset(SynthPreset::Tiny, 5);
        let spec = plan_video(&config, 0);
        let states = actor_states(&spec);
        for a in spec.actions.iter().filter(|a| a.class != 3) {
            for s in &states[a.start_frame..a.end_frame] {
                assert!((s.scale - 1.0).abs() < 0.35, "{}", s.scale);
            }
        }
        let mut rgb = vec![0u8; 64 * 64 * 3];
        render_frame(&spec, states[0], 0, &mut rgb);
        let actor_pixels = rgb
            .chunks_exact(3)
            .filter(|p| *p == spec.actor_color.as_slice())
            .count();
        assert!(actor_pixels > 60, "{actor_pixels}");
    }
}
