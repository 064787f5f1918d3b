//! Long videos: features at a fixed snippet stride (extraction, index, resume, verify) and the
//! sliding-window head on them (training windows, detection mapped back to video time).

use std::path::Path;

use lofi_engine::Settings;
use lofi_head::{
    detect, extract, train_head, verify, ClassScoreFile, DetectInputs, EncoderSpec, ExtractConfig,
    ExtractInputs, FeatureIndex, HeadConfig, HeadInputs, Shard, Temporal,
};
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
        overwrite: false,
        skip_missing_videos: false,
    }
}

/// Three short videos of the long preset's layout (30-40 s, 10 fps), the last for validation.
fn short_long_videos(root: &Path) -> Result<SynthConfig, Box<dyn std::error::Error>> {
    let synth = SynthConfig {
        videos: 3,
        validation_every: 3,
        min_duration: 30.0,
        max_duration: 40.0,
        ..SynthConfig::preset(SynthPreset::Long, 2)
    };
    write_dataset(root, &synth, 2, &|_| {})?;
    Ok(synth)
}

/// Features of every video of `root` at one snippet every 4 frames, into `root/features`.
fn extract_every_4_frames(root: &Path) -> TestResult {
    let stride = Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    extract(
        &stride_extract(stride),
        &inputs(root, "features", None),
        &|_, _| {},
    )?;
    Ok(())
}

/// A tiny head on windows of 16 snippets every 8, anchors up to 8 snippets, 2 epochs.
fn windows_head() -> HeadConfig {
    let mut config = HeadConfig::tiny(16);
    config.temporal = Temporal::Windows { window_stride: 8 };
    config.head = config.head.with_max_duration(Some(8));
    config.epochs = 2;
    config
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

    // The same stride in seconds: the same rows (the frames can differ where a sample time
    // falls on a frame boundary, 4 / fps and 0.4 differing in the last bit).
    let seconds = Sampling::Stride {
        stride_frames: None,
        stride_seconds: Some(0.4),
    };
    extract(
        &stride_extract(seconds),
        &inputs(root, "s04", None),
        &|_, _| {},
    )?;
    let by_seconds = FeatureIndex::read(&root.join("s04/index.json"))?;
    for (id, e) in &index.videos {
        assert_eq!(by_seconds.videos[id].shape, e.shape, "{id}");
    }

    // Resume keeps every file; a truncated one is refused (its bytes are not lofi's) and
    // extracted again once removed; shards + verify merge the index with the per-video times.
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
    assert!(extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )
    .is_err());
    std::fs::remove_file(&victim)?;
    let again = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert_eq!((again.extracted, again.skipped, again.redone), (1, 2, 0));
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
    // The same videos, times and shapes (the bytes, and so the recorded hashes, may differ in
    // the last bits between two extractions with several threads).
    let without_hashes = |i: &FeatureIndex| {
        let mut videos = i.videos.clone();
        for e in videos.values_mut() {
            e.sha256 = None;
        }
        videos
    };
    assert_eq!(without_hashes(&merged), without_hashes(&index));

    // In passes of at most 20 frames (the tiny TSM-R18 needs 8 snippets of context on each side
    // of the ones a pass keeps, so each keeps up to 4): the features of one pass, for videos of
    // 75-100 snippets.
    let mut passes = stride_extract(frames);
    passes.max_frames_per_pass = 20;
    extract(&passes, &inputs(root, "passes", None), &|_, _| {})?;
    for (id, e) in &index.videos {
        let one = lofi_head::npy::read_2d(&root.join("f4").join(&e.file))?;
        let many = lofi_head::npy::read_2d(&root.join("passes").join(&e.file))?;
        assert_eq!([many.rows, many.cols], e.shape, "{id}");
        let d = one
            .data
            .iter()
            .zip(&many.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{id}: passes differ from one pass by {d}");
    }
    // The pass length is not part of what made the features: a rerun with another one resumes.
    let again = extract(&passes, &inputs(root, "f4", None), &|_, _| {})?;
    assert_eq!((again.extracted, again.skipped), (0, 3));
    // Passes too short to hold the context are refused before anything is written.
    passes.max_frames_per_pass = 16;
    let err = extract(&passes, &inputs(root, "refused", None), &|_, _| {})
        .expect_err("16 frames cannot hold 8 + 1 + 8 snippets");
    let msg = err.to_string();
    assert!(
        msg.contains("max_frames_per_pass = 16") && msg.contains("at least 17 frames"),
        "{msg}"
    );
    assert!(!root.join("refused").exists());
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

/// A head trained on windows of 16 snippets (6.4 s) of 30-40 s videos: `head.json` records the
/// mode, `detect` runs it window by window, and the detections are in video time (inside the
/// video, spread over all of it, not only over one window's span), a few per window after the
/// merge.
#[test]
fn a_windows_head_detects_in_video_time() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    short_long_videos(root)?;
    extract_every_4_frames(root)?;
    let gt = root.join("ground_truth.json");
    let mut config = windows_head();
    config.classifier.enabled = false;
    let run = root.join("head");
    let outcome = train_head(
        &config,
        &HeadInputs {
            features: root.join("features"),
            ground_truth: gt.clone(),
            out: run.clone(),
            device: lofi_head::cpu_device(),
        },
        &lofi_engine::RunControl::default(),
    )?;
    assert_eq!(outcome.train_videos, 2);
    let meta = lofi_head::HeadMeta::read(&run)?;
    assert_eq!(meta.temporal, config.temporal);

    // Class scores from a file (the head has no classifier): one class per video.
    let truth = lofi_video::ground_truth::GroundTruth::read(&gt)?;
    let classes: Vec<String> = lofi_video::synth::CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut results = std::collections::BTreeMap::new();
    for (id, e) in &truth.database {
        let mut scores = vec![0.0; classes.len()];
        if let Some(a) = e.annotations.first() {
            let k = classes.iter().position(|c| *c == a.label).ok_or("label")?;
            scores[k] = 1.0;
        }
        results.insert(id.clone(), scores);
    }
    let scores = root.join("classes.json");
    std::fs::write(
        &scores,
        serde_json::to_vec(&ClassScoreFile {
            class: classes,
            results,
        })?,
    )?;
    let out = detect(
        &config.detect,
        &DetectInputs {
            head_dir: run,
            features: root.join("features"),
            ground_truth: gt.clone(),
            subset: "validation".into(),
            class_scores: Some(scores),
            out: root.join("detections.json"),
            class_scores_out: None,
            evaluate: true,
            device: lofi_head::cpu_device(),
            skip_missing_features: false,
        },
    )?;
    assert_eq!(out.videos, 1);
    let (id, entry) = truth
        .database
        .iter()
        .find(|(_, e)| e.subset == "validation")
        .ok_or("no validation video")?;
    let index = FeatureIndex::read(&root.join("features/index.json"))?;
    let span = 16.0 * index.videos[id].step();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("detections.json"))?)?;
    let dets = file["results"][id].as_array().ok_or("no detections")?;
    assert!(!dets.is_empty() && dets.len() <= config.detect.top_k * config.detect.top_classes);
    let mut latest_start = 0.0f64;
    for d in dets {
        let s = d["segment"][0].as_f64().ok_or("start")?;
        let e = d["segment"][1].as_f64().ok_or("end")?;
        assert!(
            0.0 <= s && s < e && e <= entry.duration + 1e-9,
            "[{s}, {e}]"
        );
        assert!(
            e - s <= 8.0 * index.videos[id].step() + 1e-9,
            "longer than max_duration"
        );
        latest_start = latest_start.max(s);
    }
    assert!(
        latest_start > 2.0 * span,
        "detections only near the start ({latest_start} s; windows span {span} s)"
    );
    let report = out.report.ok_or("no report")?;
    assert!((0.0..=1.0).contains(&report.average_map));
    Ok(())
}

/// Issue 26, item 5: with windows, a validation subset none of whose windows holds an action gave
/// a validation loss of 0.0 every epoch, and epoch 0 was kept as the "lowest". No loss is
/// recorded now, the last epoch is kept, and `best.json` says why.
#[test]
fn no_usable_validation_window_keeps_the_last_epoch_and_says_why() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    short_long_videos(root)?;
    // The validation video's action now spans it whole: no window of 16 snippets holds 90 % of it.
    let gt_path = root.join("ground_truth.json");
    let mut gt: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&gt_path)?)?;
    for entry in gt["database"]
        .as_object_mut()
        .ok_or("database")?
        .values_mut()
    {
        if entry["subset"] == "validation" {
            let duration = entry["duration"].as_f64().ok_or("duration")?;
            let label = entry["annotations"][0]["label"].clone();
            entry["annotations"] =
                serde_json::json!([{"segment": [0.0, duration], "label": label}]);
        }
    }
    std::fs::write(&gt_path, serde_json::to_vec(&gt)?)?;
    extract_every_4_frames(root)?;
    let mut config = windows_head();
    config.validate_every = 1;
    config.classifier.enabled = false;
    let run = root.join("head");
    let outcome = train_head(
        &config,
        &HeadInputs {
            features: root.join("features"),
            ground_truth: gt_path,
            out: run.clone(),
            device: lofi_head::cpu_device(),
        },
        &lofi_engine::RunControl::default(),
    )?;
    assert_eq!(outcome.best_epoch, None);
    let best: lofi_head::BestEpoch =
        serde_json::from_str(&std::fs::read_to_string(run.join("best.json"))?)?;
    assert_eq!((best.epoch, best.validation_loss), (1, None));
    assert!(
        best.rule.starts_with("last epoch") && best.rule.contains("no window of 16 snippets"),
        "{}",
        best.rule
    );
    // And no validation loss of 0 in the metrics.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl"))?;
    assert!(!metrics.contains("\"loss\":0.0"), "{metrics}");
    Ok(())
}
