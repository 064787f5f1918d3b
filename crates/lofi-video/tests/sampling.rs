//! Frame accuracy of the sampler: seeking and sequential decoding must return the very frame
//! whose display interval contains each requested time, for CFR and VFR input and across
//! containers/codecs.

mod common;

use common::{read_index, write_cfr, write_pattern_video, Lcg, SIDE};
use lofi_video::sampler::{SamplerOptions, SeekPolicy};
use lofi_video::writer::VideoCodec;
use lofi_video::{Sampler, VideoIndex};
use std::path::Path;

fn sample_with(path: &Path, policy: SeekPolicy, times: &[f64]) -> (Vec<u8>, usize) {
    let mut sampler = Sampler::open(path, SamplerOptions { policy, threads: 1 }).expect("open");
    let out = sampler.sample(times, SIDE).expect("sample");
    (out, sampler.stats().seeks)
}

fn indices(frames: &[u8]) -> Vec<usize> {
    frames
        .chunks_exact((3 * SIDE * SIDE) as usize)
        .map(read_index)
        .collect()
}

fn random_times(n: usize, duration: f64, seed: u64) -> Vec<f64> {
    let mut rng = Lcg(seed);
    (0..n).map(|_| rng.next_f64() * duration).collect()
}

#[test]
fn seek_and_sequential_return_identical_frames_cfr_h264() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cfr.mp4");
    let fps = 25;
    write_cfr(&path, VideoCodec::H264, fps, 12, 200);
    let index = VideoIndex::build(&path).expect("index");
    assert_eq!(index.frame_count(), 200);
    assert!(
        (index.duration() - 8.0).abs() < 1e-9,
        "{}",
        index.duration()
    );
    assert!(
        index.keyframe_pts.len() >= 200 / 12,
        "{:?}",
        index.keyframe_pts
    );

    // Unsorted targets with repeats and the interval edges.
    let mut times = random_times(40, 8.0, 7);
    times.extend([0.0, 7.999, 3.04, 3.04, 3.0399, 0.04]);
    let (seq, seq_seeks) = sample_with(&path, SeekPolicy::Sequential, &times);
    let (always, always_seeks) = sample_with(&path, SeekPolicy::Always, &times);
    let (auto, auto_seeks) = sample_with(&path, SeekPolicy::Auto, &times);
    assert_eq!(seq_seeks, 0);
    assert!(always_seeks > auto_seeks && auto_seeks > 0);
    assert!(
        seq == always,
        "seek and sequential frames differ: {:?} vs {:?}",
        indices(&seq),
        indices(&always)
    );
    assert!(
        seq == auto,
        "auto differs: {:?} vs {:?}",
        indices(&seq),
        indices(&auto)
    );
    // Frame-threaded decoding (which never drops unneeded frames) gives the same frames.
    let mut threaded = Sampler::open(
        &path,
        SamplerOptions {
            policy: SeekPolicy::Auto,
            threads: 2,
        },
    )
    .expect("open threaded");
    let threaded = threaded.sample(&times, SIDE).expect("sample threaded");
    assert!(
        seq == threaded,
        "threaded differs: {:?}",
        indices(&threaded)
    );
    let expected: Vec<usize> = times
        .iter()
        .map(|t| (t * f64::from(fps) + 1e-9).floor() as usize)
        .collect();
    assert_eq!(indices(&seq), expected);
}

#[test]
fn variable_frame_rate_uses_timestamps_not_frame_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vfr.mp4");
    // Frame durations between 10 and 150 ms, in a millisecond time base.
    let mut rng = Lcg(3);
    let mut pts = vec![0i64];
    for _ in 1..150 {
        let last = pts[pts.len() - 1];
        pts.push(last + 10 + (rng.next_f64() * 140.0) as i64);
    }
    write_pattern_video(&path, VideoCodec::H264, (1, 1000), 12, 10, &pts);
    let index = VideoIndex::build(&path).expect("index");
    assert_eq!(index.frame_count(), pts.len());
    let seconds: Vec<f64> = index.frame_pts.iter().map(|&p| index.seconds(p)).collect();
    for (s, p) in seconds.iter().zip(&pts) {
        assert!((s - *p as f64 / 1000.0).abs() < 1e-3, "{s} vs {p} ms");
    }
    let duration = index.duration();
    let mut times = random_times(60, duration, 11);
    // Just inside and at the start of some frame intervals.
    times.extend([
        seconds[10],
        seconds[11] - 1e-4,
        seconds[100],
        duration - 1e-4,
    ]);
    let expected: Vec<usize> = times
        .iter()
        .map(|&t| seconds.partition_point(|&s| s <= t) - 1)
        .collect();
    let (seq, _) = sample_with(&path, SeekPolicy::Sequential, &times);
    let (always, _) = sample_with(&path, SeekPolicy::Always, &times);
    let (auto, _) = sample_with(&path, SeekPolicy::Auto, &times);
    assert_eq!(indices(&seq), expected);
    assert!(
        seq == always,
        "always differs: {:?} vs {:?}",
        indices(&seq),
        indices(&always)
    );
    assert!(
        seq == auto,
        "auto differs: {:?} vs {:?}",
        indices(&seq),
        indices(&auto)
    );
    // A constant-rate reading (index = t * mean fps) would be wrong for many of these.
    let naive_wrong = times
        .iter()
        .zip(&expected)
        .filter(|(t, e)| ((*t * index.fps()) as usize) != **e)
        .count();
    assert!(naive_wrong > 10, "test video is not variable enough");
}

#[test]
fn other_containers_and_codecs_are_frame_accurate() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, codec) in [
        ("h264.mkv", VideoCodec::H264),
        ("vp9.webm", VideoCodec::Vp9),
        ("mpeg4.avi", VideoCodec::Mpeg4),
    ] {
        let path = dir.path().join(name);
        write_cfr(&path, codec, 10, 15, 60);
        let index = VideoIndex::build(&path).expect("index");
        assert_eq!(index.frame_count(), 60, "{name}");
        assert!(
            (index.duration() - 6.0).abs() < 0.11,
            "{name}: {}",
            index.duration()
        );
        let times = random_times(20, 5.9, 5);
        let expected: Vec<usize> = times.iter().map(|t| (t * 10.0) as usize).collect();
        let (seq, _) = sample_with(&path, SeekPolicy::Sequential, &times);
        let (always, _) = sample_with(&path, SeekPolicy::Always, &times);
        assert_eq!(indices(&seq), expected, "{name}");
        assert!(
            seq == always,
            "{name}: {:?} vs {:?}",
            indices(&seq),
            indices(&always)
        );
    }
}

#[test]
fn resize_and_crop_follow_the_short_side_policy() {
    // A 128x64 frame, left half dark, right half bright, with a bright 8-pixel stripe at each
    // short edge: short-side resize to 32 gives 64x32, and the centre crop drops the stripes.
    use lofi_video::writer::{VideoWriter, WriterConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.mp4");
    let (w, h) = (128usize, 64usize);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let v = if !(8..w - 8).contains(&x) {
                255
            } else if x < w / 2 {
                40
            } else {
                200
            };
            rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v, v]);
        }
    }
    let mut config = WriterConfig::h264_cfr(w as u32, h as u32, 10);
    config.crf = 10;
    let mut writer = VideoWriter::create(&path, &config).expect("create");
    for i in 0..5 {
        writer.write_rgb(&rgb, i).expect("write");
    }
    writer.finish().expect("finish");
    let mut sampler = Sampler::open(&path, SamplerOptions::default()).expect("open");
    let out = sampler.sample(&[0.2], 32).expect("sample");
    assert_eq!(out.len(), 3 * 32 * 32);
    let red = &out[..32 * 32];
    for y in [2usize, 16, 29] {
        // Columns 0..16 of the crop are the dark half, 16..32 the bright half; no stripe at the
        // edges.
        assert!(red[y * 32] < 80, "left edge {}", red[y * 32]);
        assert!(
            red[y * 32 + 31] > 160 && red[y * 32 + 31] < 235,
            "right {}",
            red[y * 32 + 31]
        );
        assert!(red[y * 32 + 8] < 80 && red[y * 32 + 24] > 160);
    }
}
