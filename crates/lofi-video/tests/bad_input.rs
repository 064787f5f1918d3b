//! Bad input: every broken file gets a clear error naming it, the loader skips it and goes on,
//! and the failure list at the end names path and reason. The broken files are made here.

mod common;

use common::write_cfr;
use lofi_video::sampler::SamplerOptions;
use lofi_video::writer::VideoCodec;
use lofi_video::{Fidelity, Loader, LoaderConfig, Sampler, SamplingPlan, VideoError, VideoJob};
use std::path::Path;

/// A valid 16-bit mono PCM WAV file: audio only.
fn write_wav(path: &Path, seconds: u32) {
    let rate = 8000u32;
    let samples = rate * seconds;
    let mut bytes = Vec::new();
    bytes.extend(b"RIFF");
    bytes.extend((36 + samples * 2).to_le_bytes());
    bytes.extend(b"WAVEfmt ");
    bytes.extend(16u32.to_le_bytes());
    bytes.extend(1u16.to_le_bytes()); // PCM
    bytes.extend(1u16.to_le_bytes()); // mono
    bytes.extend(rate.to_le_bytes());
    bytes.extend((rate * 2).to_le_bytes());
    bytes.extend(2u16.to_le_bytes());
    bytes.extend(16u16.to_le_bytes());
    bytes.extend(b"data");
    bytes.extend((samples * 2).to_le_bytes());
    for i in 0..samples {
        let v = ((i as f32 * 0.05).sin() * 8000.0) as i16;
        bytes.extend(v.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write wav");
}

fn open_err(path: &Path) -> VideoError {
    match Sampler::open(path, SamplerOptions::default()) {
        Ok(_) => panic!("{} opened although it is broken", path.display()),
        Err(e) => e,
    }
}

#[test]
fn each_broken_file_gets_a_named_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.mp4");
    write_cfr(&good, VideoCodec::H264, 10, 10, 40);

    let missing = dir.path().join("missing.mp4");
    let e = open_err(&missing);
    assert!(matches!(e, VideoError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("missing.mp4") && e.to_string().contains("not found"));

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    let e = open_err(&empty);
    assert!(matches!(e, VideoError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("empty.mp4"));

    // An MP4 cut in half loses its index (moov at the end): unreadable.
    let bytes = std::fs::read(&good).expect("read");
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let e = open_err(&truncated);
    assert!(matches!(e, VideoError::Unreadable { .. }), "{e}");
    assert!(e.to_string().contains("truncated.mp4"));

    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![0x5au8; 4096]).expect("write");
    let e = open_err(&garbage);
    assert!(e.to_string().contains("garbage.mp4"), "{e}");

    let audio = dir.path().join("audio.wav");
    write_wav(&audio, 2);
    let e = open_err(&audio);
    assert!(matches!(e, VideoError::NoVideoStream { .. }), "{e}");
    assert!(e.to_string().contains("audio.wav") && e.to_string().contains("no video stream"));

    // A timestamp past the end (and a negative one) is refused, naming the video.
    let mut sampler = Sampler::open(&good, SamplerOptions::default()).expect("open good");
    for t in [4.0, 9.5, -0.1, f64::NAN] {
        let e = sampler.sample(&[1.0, t], 16).expect_err("out of range");
        assert!(matches!(e, VideoError::TimestampOutOfRange { .. }), "{e}");
        assert!(e.to_string().contains("good.mp4"), "{e}");
    }
    assert_eq!(
        sampler.sample(&[3.99], 16).map(|v| v.len()).ok(),
        Some(3 * 16 * 16)
    );
}

#[test]
fn truncated_matroska_keeps_the_frames_it_has() {
    // Matroska writes clusters as it goes: cut short, it still opens, is simply shorter, and a
    // time past the new end is an error naming it.
    let dir = tempfile::tempdir().expect("tempdir");
    let full = dir.path().join("full.mkv");
    write_cfr(&full, VideoCodec::H264, 10, 10, 80);
    let bytes = std::fs::read(&full).expect("read");
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).expect("write");
    let mut sampler = Sampler::open(&cut, SamplerOptions::default()).expect("open cut mkv");
    let d = sampler.index().duration();
    assert!(d > 1.0 && d < 7.5, "cut duration {d}");
    assert!(sampler.sample(&[0.5, d * 0.9], 16).is_ok());
    let e = sampler.sample(&[7.9], 16).expect_err("past the end");
    assert!(e.to_string().contains("cut.mkv"), "{e}");
}

#[test]
fn loader_skips_bad_videos_reports_them_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.mp4");
    write_cfr(&good, VideoCodec::H264, 10, 10, 50);
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").expect("write");
    let audio = dir.path().join("audio.wav");
    write_wav(&audio, 1);
    let bytes = std::fs::read(&good).expect("read");
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).expect("write");

    let job = |id: &str, path: &Path, annotated: Option<f64>| VideoJob {
        id: id.to_string(),
        path: path.to_path_buf(),
        annotated_duration: annotated,
        span: None,
    };
    let jobs = vec![
        job("good", &good, Some(5.0)),
        job("missing", &dir.path().join("nope.mp4"), None),
        job("empty", &empty, None),
        job("audio", &audio, None),
        job("truncated", &truncated, None),
        // Annotated 9 s, but the file lasts 5 s: beyond the 1 s tolerance.
        job("short", &good, Some(9.0)),
        // 5.5 s annotated: within tolerance, sample times clamp to the last frame.
        job("slightly_short", &good, Some(5.5)),
        job("good_again", &good, None),
    ];
    let plan = Fidelity::new(8, 16)
        .expect("fidelity")
        .apply(&SamplingPlan::new(1).expect("plan"));
    let mut config = LoaderConfig::new(plan);
    config.workers = 3;
    config.queue = 2;
    let mut loader = Loader::new(jobs, config).expect("loader");
    let loaded: Vec<_> = loader.by_ref().collect();
    let report = loader.finish();
    let ids: Vec<&str> = loaded.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["good", "slightly_short", "good_again"]);
    assert_eq!(report.loaded, 3);
    assert!(report.max_buffered <= 2, "{}", report.max_buffered);
    let slightly = &loaded[1];
    assert_eq!(slightly.duration, 5.5);
    assert!(slightly.timestamps.iter().all(|&t| t < 5.0));
    assert_eq!(slightly.clip.data.len(), 8 * 3 * 16 * 16);

    let failed: Vec<(&str, &str)> = report
        .failed
        .iter()
        .map(|f| (f.id.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    let reason = |id: &str| {
        failed
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.to_string())
            .unwrap_or_default()
    };
    assert!(reason("missing").contains("nope.mp4") && reason("missing").contains("not found"));
    assert!(reason("empty").contains("empty (0 bytes)"));
    assert!(reason("audio").contains("no video stream"));
    assert!(reason("truncated").contains("truncated.mp4"));
    assert!(
        reason("short").contains("annotated as 9.000 s"),
        "{}",
        reason("short")
    );
    for f in &report.failed {
        assert!(!f.path.as_os_str().is_empty());
    }
}

#[test]
fn loader_order_and_clips_are_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut jobs = Vec::new();
    for i in 0..6 {
        let path = dir.path().join(format!("v{i}.mp4"));
        write_cfr(&path, VideoCodec::H264, 10, 8, 20 + 7 * i);
        jobs.push(VideoJob {
            id: format!("v{i}"),
            path,
            annotated_duration: None,
            span: None,
        });
    }
    let plan = Fidelity::new(5, 16)
        .expect("fidelity")
        .apply(&SamplingPlan::new(2).expect("plan"));
    let run = |workers: usize, seed: u64| {
        let mut config = LoaderConfig::new(plan);
        config.workers = workers;
        config.queue = 2;
        config.seed = Some(seed);
        let loader = Loader::new(jobs.clone(), config).expect("loader");
        loader
            .map(|v| (v.id, v.clip.data))
            .collect::<Vec<(String, Vec<u8>)>>()
    };
    let one = run(1, 42);
    let three = run(3, 42);
    assert_eq!(one.len(), 6);
    assert!(one == three, "order or data depends on the worker count");
    let ids = |r: &[(String, Vec<u8>)]| r.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&run(2, 42)), ids(&one));
    assert_ne!(ids(&run(2, 7)), ids(&one), "seed has no effect");
}
