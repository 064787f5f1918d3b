//! Long videos: features at a fixed snippet stride (extraction, index, resume, verify) and the
//! sliding-window head on them (training windows, detection mapped back to video time).

use std::path::Path;

use lofi_engine::Settings;
use lofi_head::{extract, verify, EncoderSpec, ExtractConfig, ExtractInputs, FeatureIndex, Shard};
use lofi_model::{EncoderArch, EncoderKind};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
use lofi_video::Sampling;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn stride_extract(sampling: Sampling) -> ExtractConfig {
    let mut c = ExtractConfig::new(EncoderSpec {
        model: EncoderArch::tiny(EncoderKind::Tsm, 18, 8),
        num_classes: None,
        checkpoint: None,
        seed: 3,
    });
    c.size = 32;
    c.sampling = sampling;
    c
}

fn inputs(root: &Path, out: &str, shard: Option<Shard>) -> ExtractInputs {
    ExtractInputs {
        device: lofi_head::cpu_device(),
        ground_truth: root.join("ground_truth.json"),
        videos: root.join("videos"),
        out: root.join(out),
        shard,
    }
}

/// Three short videos of the long preset's layout (30-40 s, 10 fps).
fn short_long_videos(root: &Path) -> Result<SynthConfig, Box<dyn std::error::Error>> {
    let synth = SynthConfig {
        videos: 3,
        min_duration: 30.0,
        max_duration: 40.0,
        ..SynthConfig::preset(SynthPreset::Long, 2)
    };
    write_dataset(root, &synth, 2, &|_| {})?;
    Ok(synth)
}

#[test]
fn stride_features_have_one_row_per_stride_and_record_their_times() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    short_long_videos(root)?;
    let frames = Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    let out = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    let index = FeatureIndex::read(&root.join("f4/index.json"))?;
    assert_eq!(index.sampling, frames);
    for (id, e) in &index.videos {
        let step = e.snippet_seconds.ok_or("no snippet_seconds")?;
        assert!((step - 0.4).abs() < 1e-9, "{id}: {step}");
        assert_eq!(
            e.shape[0],
            (e.duration / 0.4 - 1e-9).ceil() as usize,
            "{id}"
        );
        let a = lofi_head::npy::read_2d(&root.join("f4").join(&e.file))?;
        assert_eq!([a.rows, a.cols], e.shape);
    }

    // The same stride in seconds samples the same frames: the same features.
    let seconds = Sampling::Stride {
        stride_frames: None,
        stride_seconds: Some(0.4),
    };
    extract(
        &stride_extract(seconds),
        &inputs(root, "s04", None),
        &|_, _| {},
    )?;
    for e in index.videos.values() {
        let a = lofi_head::npy::read_2d(&root.join("f4").join(&e.file))?;
        let b = lofi_head::npy::read_2d(&root.join("s04").join(&e.file))?;
        assert_eq!(a, b);
    }

    // Resume keeps every file; a truncated one is redone; shards + verify merge the index with
    // the per-video times.
    let again = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert_eq!((again.extracted, again.skipped), (0, 3));
    let victim = root
        .join("f4")
        .join(&index.videos.values().next().ok_or("empty")?.file);
    let bytes = std::fs::read(&victim)?;
    std::fs::write(&victim, &bytes[..bytes.len() - 8])?;
    let again = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert_eq!((again.extracted, again.skipped, again.redone), (1, 2, 1));
    for k in 0..2 {
        let shard = Shard { index: k, count: 2 };
        extract(
            &stride_extract(frames),
            &inputs(root, "sharded", Some(shard)),
            &|_, _| {},
        )?;
    }
    let report = verify(&root.join("sharded"), &root.join("ground_truth.json"), None)?;
    assert!(report.is_complete(), "{report:?}");
    let merged = FeatureIndex::read(&root.join("sharded/index.json"))?;
    assert_eq!(merged.sampling, frames);
    assert_eq!(merged.videos, index.videos);
    Ok(())
}

#[test]
fn a_stride_needs_exactly_one_positive_value() {
    let p = Path::new("extract.toml");
    let model = "[encoder]\nseed = 1\n[encoder.model]\ndepth = 18\nbase_width = 8\nshift = true\nshift_div = 8\nfrozen_bn = false\n";
    let ok = ExtractConfig::from_toml(
        &format!("[sampling]\nmode = \"stride\"\nstride_frames = 5\n{model}"),
        p,
    )
    .expect("valid");
    assert_eq!(
        ok.sampling,
        Sampling::Stride {
            stride_frames: Some(5),
            stride_seconds: None
        }
    );
    // The recorded config reads back the same.
    let text = toml::to_string_pretty(&ok).expect("toml");
    assert_eq!(ExtractConfig::from_toml(&text, p).expect("round trip"), ok);
    for (bad, key) in [
        ("[sampling]\nmode = \"stride\"\n", "exactly one"),
        (
            "[sampling]\nmode = \"stride\"\nstride_frames = 5\nstride_seconds = 0.5\n",
            "exactly one",
        ),
        (
            "[sampling]\nmode = \"stride\"\nstride_frames = 0\n",
            "stride_frames",
        ),
        ("[sampling]\nmode = \"strde\"\n", "strde"),
        ("[sampling]\nmode = \"stride\"\nstride = 4\n", "stride"),
    ] {
        let e = ExtractConfig::from_toml(&format!("{bad}{model}"), p).expect_err(bad);
        assert!(e.to_string().contains(key), "{bad}: {e}");
    }
}

/// Detection mAP (fractions) of a detection file at THUMOS14's tIoU thresholds 0.3:0.1:0.7.
fn thumos_map(gt: &Path, detections: &Path) -> Result<(Vec<f64>, f64), Box<dyn std::error::Error>> {
    let truth = lofi_eval::GroundTruth::from_path(
        gt,
        &lofi_eval::GroundTruthOptions {
            subset: "validation".into(),
            ..lofi_eval::GroundTruthOptions::default()
        },
    )?;
    let predictions = lofi_eval::Predictions::from_path(
        detections,
        &truth,
        lofi_eval::PredictionKind::Detections,
    )?;
    let report = lofi_eval::evaluate_detection(
        &truth,
        &predictions,
        &lofi_eval::Thresholds::THUMOS14.values(),
    )?;
    Ok((report.map, report.average_map))
}

/// Snippets of the head in both arms of the comparison below.
const HEAD_L: usize = 32;

/// The head trained and evaluated both ways on the same stride features (0.8 s) of minutes-long
/// videos with dozens of short actions: the same head (L = 32, anchors up to 8 steps), either on
/// whole videos rescaled to 32 steps (3-4 s each) or on windows of 32 snippets every 16, with
/// the same number of optimizer steps. Both detect with the same video-level classes (the ground
/// truth's, so that the difference is localization alone) and are scored at THUMOS14's
/// thresholds 0.3:0.1:0.7.
#[test]
fn windows_beat_the_rescale_on_long_videos() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let synth = SynthConfig {
        videos: 12,
        min_duration: 100.0,
        max_duration: 140.0,
        validation_every: 3,
        ..SynthConfig::preset(SynthPreset::Long, 0)
    };
    write_dataset(root, &synth, 2, &|_| {})?;
    let t0 = std::time::Instant::now();
    let stride = Sampling::Stride {
        stride_frames: Some(8),
        stride_seconds: None,
    };
    let mut extract_config = stride_extract(stride);
    extract_config.size = 64;
    let out = extract(&extract_config, &inputs(root, "features", None), &|_, _| {})?;
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    eprintln!("extract: {:.1} s", t0.elapsed().as_secs_f64());

    let gt = root.join("ground_truth.json");
    let truth = lofi_video::ground_truth::GroundTruth::read(&gt)?;
    let classes = root.join("classes.json");
    std::fs::write(&classes, serde_json::to_vec(&oracle_file(&truth)?)?)?;

    // The windows' training samples, counted as train-head will cut them.
    let index = FeatureIndex::read(&root.join("features/index.json"))?;
    let window_stride = HEAD_L / 2;
    let (mut train_videos, mut train_windows) = (0, 0);
    for (id, e) in truth
        .database
        .iter()
        .filter(|(_, e)| e.subset == "training")
    {
        let entry = &index.videos[id];
        let actions: Vec<[f64; 2]> = e.annotations.iter().map(|a| a.segment).collect();
        let step = entry.step();
        train_windows += lofi_head::windows::window_targets(
            entry.shape[0],
            step,
            &actions,
            HEAD_L,
            window_stride,
        )
        .len();
        train_videos += 1;
    }
    let window_batch = 4;
    let window_epochs = 6;
    let steps = window_epochs * train_windows.div_ceil(window_batch);
    let rescale_epochs = steps.div_ceil(train_videos);
    eprintln!("{train_windows} training windows of {train_videos} videos: {steps} steps each");
    let mut results = Vec::new();
    for (name, temporal, batch, epochs) in [
        ("rescale", lofi_head::Temporal::Rescale, 1, rescale_epochs),
        (
            "windows",
            lofi_head::Temporal::Windows { window_stride },
            window_batch,
            window_epochs,
        ),
    ] {
        let t = std::time::Instant::now();
        let mut config = lofi_head::HeadConfig::tiny(HEAD_L);
        config.temporal = temporal;
        config.head.max_duration = Some(8);
        config.batch_size = batch;
        config.epochs = epochs;
        config.lr_step_epochs = epochs;
        config.validate_every = epochs;
        let run = root.join(name);
        let outcome = lofi_head::train_head(
            &config,
            &lofi_head::HeadInputs {
                features: root.join("features"),
                ground_truth: gt.clone(),
                out: run.clone(),
                device: lofi_head::cpu_device(),
            },
            &lofi_engine::RunControl::default(),
        )?;
        let detections = run.join("detections.json");
        lofi_head::detect(
            &config.detect,
            &lofi_head::DetectInputs {
                head_dir: run.clone(),
                features: root.join("features"),
                ground_truth: gt.clone(),
                subset: "validation".into(),
                class_scores: Some(classes.clone()),
                out: detections.clone(),
                class_scores_out: None,
                evaluate: false,
                device: lofi_head::cpu_device(),
            },
        )?;
        let (map, average) = thumos_map(&gt, &detections)?;
        let percent: Vec<String> = map.iter().map(|m| format!("{:.1}", 100.0 * m)).collect();
        eprintln!(
            "{name}: {epochs} epochs of batch {batch} on {} videos, mAP@0.3:0.1:0.7 [{}] \
             average {:.2} ({:.1} s)",
            outcome.train_videos,
            percent.join(", "),
            100.0 * average,
            t.elapsed().as_secs_f64()
        );
        results.push(average);
    }
    assert!(
        results[1] > results[0] + 0.05 && results[1] > 1.5 * results[0],
        "windows {:.4} against rescale {:.4}",
        results[1],
        results[0]
    );
    Ok(())
}

/// The ground truth's video-level classes as a class-score file.
fn oracle_file(
    truth: &lofi_video::ground_truth::GroundTruth,
) -> Result<lofi_head::ClassScoreFile, Box<dyn std::error::Error>> {
    let mut classes: Vec<String> = truth
        .database
        .values()
        .flat_map(|e| e.annotations.iter().map(|a| a.label.clone()))
        .collect();
    classes.sort();
    classes.dedup();
    let mut results = std::collections::BTreeMap::new();
    for (id, e) in &truth.database {
        let mut scores = vec![0.0; classes.len()];
        for a in &e.annotations {
            if let Ok(j) = classes.binary_search(&a.label) {
                scores[j] += a.segment[1] - a.segment[0];
            }
        }
        let total: f64 = scores.iter().sum::<f64>().max(1e-9);
        scores.iter_mut().for_each(|s| *s /= total);
        results.insert(id.clone(), scores);
    }
    Ok(lofi_head::ClassScoreFile {
        class: classes,
        results,
    })
}
