//! The synthetic dataset end to end: real files, ActivityNet layout, determinism, and the
//! loader reading it back.

use lofi_video::ground_truth::{find_video, GroundTruth};
use lofi_video::sampler::SamplerOptions;
use lofi_video::synth::{write_dataset, ClipIndex, SynthConfig, SynthPreset, CLASSES};
use lofi_video::{Fidelity, Loader, LoaderConfig, Sampler, SamplingPlan, VideoIndex, VideoJob};
use std::path::Path;

/// Classify a decoded clip from the actor's trajectory alone (bright, unsaturated pixels), to show
/// that the class lives in the motion and survives H.264 at 64 px.
fn classify_by_motion(path: &Path) -> &'static str {
    let mut sampler = Sampler::open(path, SamplerOptions::default()).expect("open clip");
    let index = sampler.index().clone();
    let times: Vec<f64> = index.frame_pts.iter().map(|&p| index.seconds(p)).collect();
    let s = 64usize;
    let frames = sampler.sample(&times, s as u32).expect("decode clip");
    let tau = std::f64::consts::TAU;
    let mut track = Vec::new();
    for f in frames.chunks_exact(3 * s * s) {
        let (mut cx, mut sx, mut cy, mut sy, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for y in 0..s {
            for x in 0..s {
                let i = y * s + x;
                if f[i].min(f[s * s + i]).min(f[2 * s * s + i]) > 190 {
                    let (ax, ay) = (tau * x as f64 / s as f64, tau * y as f64 / s as f64);
                    cx += ax.cos();
                    sx += ax.sin();
                    cy += ay.cos();
                    sy += ay.sin();
                    n += 1.0;
                }
            }
        }
        let px = sx.atan2(cx).rem_euclid(tau) / tau * s as f64;
        let py = sy.atan2(cy).rem_euclid(tau) / tau * s as f64;
        track.push((px, py, n));
    }
    let delta = |a: f64, b: f64| {
        let d = (a - b).rem_euclid(s as f64);
        if d > s as f64 / 2.0 {
            d - s as f64
        } else {
            d
        }
    };
    let (mut dx, mut x_span, mut y_span) = (0.0f64, (0.0f64, 0.0f64), (0.0f64, 0.0f64));
    let (mut x, mut y) = (0.0, 0.0);
    for w in track.windows(2) {
        let (ddx, ddy) = (delta(w[1].0, w[0].0), delta(w[1].1, w[0].1));
        dx += ddx;
        x += ddx;
        y += ddy;
        x_span = (x_span.0.min(x), x_span.1.max(x));
        y_span = (y_span.0.min(y), y_span.1.max(y));
    }
    let areas: Vec<f64> = track.iter().map(|t| t.2).collect();
    let (amin, amax) = areas
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    let secs = index.duration();
    if amax > 1.8 * amin.max(1.0) {
        "pulse"
    } else if dx.abs() > 0.2 * s as f64 * secs {
        if dx > 0.0 {
            "slide_right"
        } else {
            "slide_left"
        }
    } else if x_span.1 - x_span.0 < 0.08 * s as f64 {
        "bounce"
    } else {
        "orbit"
    }
}

#[test]
fn tiny_dataset_is_complete_deterministic_and_loadable() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let config = SynthConfig::preset(SynthPreset::Tiny, 7);
    let summary = write_dataset(a.path(), &config, 2, &|_| {}).expect("synth a");
    write_dataset(b.path(), &config, 1, &|_| {}).expect("synth b");
    assert_eq!(summary.videos, 16);

    let gt_a = std::fs::read(a.path().join("ground_truth.json")).expect("gt a");
    let gt_b = std::fs::read(b.path().join("ground_truth.json")).expect("gt b");
    assert!(gt_a == gt_b, "ground truth differs between runs");
    let clips_a = std::fs::read(a.path().join("clips.json")).expect("clips a");
    assert!(clips_a == std::fs::read(b.path().join("clips.json")).expect("clips b"));

    let json: serde_json::Value = serde_json::from_slice(&gt_a).expect("json");
    let db = json["database"].as_object().expect("database");
    assert_eq!(db.len(), 16);
    for entry in db.values() {
        let keys: Vec<&String> = entry.as_object().expect("entry").keys().collect();
        assert_eq!(keys, ["annotations", "duration", "fps", "subset"]);
        let seg = &entry["annotations"][0];
        assert!(seg["segment"].as_array().map(|s| s.len()) == Some(2));
        assert!(CLASSES.contains(&seg["label"].as_str().expect("label")));
    }

    let gt = GroundTruth::read(&a.path().join("ground_truth.json")).expect("read gt");
    let subsets: Vec<&str> = gt.database.values().map(|v| v.subset.as_str()).collect();
    assert_eq!(subsets.iter().filter(|s| **s == "validation").count(), 4);
    let mut jobs = Vec::new();
    for (id, entry) in &gt.database {
        let path = find_video(&a.path().join("videos"), id).expect("video file");
        let twin = b.path().join("videos").join(format!("{id}.mp4"));
        assert!(
            std::fs::read(&path).expect("a") == std::fs::read(&twin).expect("b"),
            "{id} differs between runs"
        );
        let index = VideoIndex::build(&path).expect("index");
        assert!((index.duration() - entry.duration).abs() < 1e-6, "{id}");
        assert_eq!(index.codec, "h264");
        assert_eq!(index.width, 64);
        jobs.push(VideoJob {
            id: id.clone(),
            path,
            annotated_duration: Some(entry.duration),
            span: None,
        });
    }

    let clips: ClipIndex = serde_json::from_slice(&clips_a).expect("clips json");
    assert_eq!(summary.clips, clips.clips.len());
    let annotated: usize = gt.database.values().map(|v| v.annotations.len()).sum();
    assert_eq!(clips.clips.len(), annotated);
    for clip in &clips.clips {
        let index = VideoIndex::build(&a.path().join(&clip.file)).expect("clip index");
        let want = clip.segment[1] - clip.segment[0];
        assert!((index.duration() - want).abs() < 1e-6, "{}", clip.file);
        assert_eq!(CLASSES[clip.label_index], clip.label);
    }

    // The class is readable from the motion of the decoded clips.
    let correct = clips
        .clips
        .iter()
        .filter(|c| classify_by_motion(&a.path().join(&c.file)) == c.label)
        .count();
    eprintln!("motion-rule accuracy: {correct}/{}", clips.clips.len());
    assert!(
        correct * 10 >= clips.clips.len() * 9,
        "{correct} of {} clips classified from motion",
        clips.clips.len()
    );

    let plan = Fidelity::new(16, 32)
        .expect("fidelity")
        .apply(&SamplingPlan::new(1).expect("plan"));
    let mut loader = Loader::new(jobs, LoaderConfig::new(plan)).expect("loader");
    let n = loader.by_ref().count();
    let report = loader.finish();
    assert_eq!(n, 16);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // No temporary files left behind.
    for sub in ["videos", "clips"] {
        for e in std::fs::read_dir(a.path().join(sub)).expect("dir") {
            let name = e.expect("entry").file_name();
            assert!(!name.to_string_lossy().ends_with(".partial"));
        }
    }
}
