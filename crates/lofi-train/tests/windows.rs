//! LoFi end to end on sliding windows of long videos: each window holding an action is a
//! training sample, and the schedule's fidelity reduction applies per window (T-LoFi samples a
//! quarter of a window's snippets over the same span).

use lofi_engine::metrics::{self, MetricsRecord};
use lofi_head::Temporal;
use lofi_train::data::{read_videos, windows_of};
use lofi_train::{train, RunOptions, ScheduleKind, TrainConfig, TrainPaths};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
use lofi_video::Sampling;

#[test]
fn t_lofi_trains_on_windows_at_a_quarter_of_their_snippets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("long");
    let synth = SynthConfig {
        videos: 3,
        min_duration: 20.0,
        max_duration: 25.0,
        validation_every: 3,
        ..SynthConfig::preset(SynthPreset::Long, 1)
    };
    write_dataset(&root, &synth, 2, &|_| {}).expect("synthetic data");
    let gt = root.join("ground_truth.json");
    let sampling = Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    let mut config = TrainConfig::tiny();
    config.schedule.kind = ScheduleKind::T;
    config.full.snippets = 16;
    config.full.size = 32;
    config.epochs = 1;
    config.batch_size = 4;
    config.head = config.head.with_max_duration(Some(8));
    config.sampling = sampling;
    config.temporal = Temporal::Windows { window_stride: 8 };

    // The windows the run will train on: 16 snippets of 0.4 s (6.4 s) every 3.2 s.
    let (videos, failed) =
        read_videos(&gt, &root.join("videos"), "training", false).expect("videos");
    assert!(failed.is_empty() && videos.len() == 2);
    let windows = windows_of(&videos, sampling, 16, 8);
    assert!(windows.len() >= 4, "{} windows", windows.len());
    for w in &windows {
        let [a, b] = w.span.expect("a window has a span");
        // 6.4 s, or up to the video's end for its last window.
        assert!(0.0 <= a && a < b && b <= w.duration, "{a} {b}");
        assert!((b - a - 6.4).abs() < 1e-6 || b == w.duration, "{a} {b}");
        assert!(w.id.contains('@') && !w.segments.is_empty());
    }

    let out = dir.path().join("run");
    let outcome = train(
        &config,
        &TrainPaths {
            ground_truth: gt,
            videos: root.join("videos"),
            encoder: None,
            out: out.clone(),
        },
        &RunOptions::default(),
    )
    .expect("training on windows");
    assert!(outcome.epochs.iter().all(|e| e.mean_loss.is_finite()));
    let steps: Vec<_> = metrics::read(&out.join("metrics.jsonl"))
        .expect("metrics")
        .into_iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => Some(s),
            _ => None,
        })
        .collect();
    let seen: usize = steps.iter().map(|s| s.videos).sum();
    assert_eq!(seen, windows.len(), "every window once per epoch");
    for s in &steps {
        assert_eq!(
            (s.fidelity.as_deref(), s.snippets, s.size),
            (Some("t"), Some(4), Some(32))
        );
    }
    // The recorded config names the windows, so a resume trains the same samples.
    let text = std::fs::read_to_string(out.join("config.toml")).expect("config");
    assert!(
        text.contains("window_stride = 8") && text.contains("stride_frames = 4"),
        "{text}"
    );
}

#[test]
fn windows_need_a_stride_and_a_window_stride_that_fits() {
    let mut config = TrainConfig::tiny();
    config.temporal = Temporal::Windows { window_stride: 8 };
    let e = config.validate().expect_err("no stride");
    assert!(e.to_string().contains("[sampling]"), "{e}");
    config.sampling = Sampling::Stride {
        stride_frames: None,
        stride_seconds: Some(0.5),
    };
    assert!(config.validate().is_ok());
    config.temporal = Temporal::Windows { window_stride: 17 };
    let e = config.validate().expect_err("longer than the window");
    assert!(e.to_string().contains("window_stride = 17"), "{e}");
}
