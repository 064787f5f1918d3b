//! End to end at tiny sizes on the CPU: synthetic videos -> extract (resumable, sharded,
//! verified) -> train-head -> detect -> ActivityNet evaluation.

use std::path::Path;

use lofi_engine::Settings;
use lofi_head::{
    detect, extract, train_head, verify, DetectConfig, DetectInputs, EncoderSpec, ExtractConfig,
    ExtractInputs, FeatureIndex, HeadConfig, HeadInputs, Shard,
};
use lofi_model::{EncoderArch, EncoderKind};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const L: usize = 16;

fn tiny_extract() -> ExtractConfig {
    let mut c = ExtractConfig::new(EncoderSpec {
        model: EncoderArch::tiny(EncoderKind::Tsm, 18, 8),
        num_classes: None,
        checkpoint: None,
        seed: 3,
    });
    c.snippets = L;
    c.size = 32;
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

#[test]
fn extract_train_detect_evaluate() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let synth = SynthConfig::preset(SynthPreset::Tiny, 11);
    write_dataset(root, &synth, 2, &|_| {})?;
    let n = synth.videos;
    let config = tiny_extract();

    // Extraction.
    let t0 = std::time::Instant::now();
    let first = extract(&config, &inputs(root, "features", None), &|_, _| {})?;
    assert_eq!((first.videos, first.extracted, first.skipped), (n, n, 0));
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    let index = FeatureIndex::read(&root.join("features/index.json"))?;
    assert_eq!(index.videos.len(), n);
    assert_eq!(
        (index.snippets, index.frames_per_snippet, index.size),
        (L, 1, 32)
    );
    for (id, e) in &index.videos {
        assert_eq!(e.shape, [L, 64]);
        let a = lofi_head::npy::read_2d(&root.join("features").join(&e.file))?;
        assert_eq!((a.rows, a.cols), (L, 64), "{id}");
        assert!(a.data.iter().all(|v| v.is_finite()));
        assert!(a.data.iter().any(|v| *v != 0.0));
    }
    // No temporary files left behind.
    assert!(std::fs::read_dir(root.join("features"))?
        .filter_map(|e| e.ok())
        .all(|e| !e.file_name().to_string_lossy().ends_with(".partial")));

    eprintln!("extract: {:.1} s", t0.elapsed().as_secs_f64());
    // Resume: everything is skipped; a truncated output is not lofi's any more (its bytes are not
    // the ones written): refused, naming it, and extracted again once it is moved away.
    let again = extract(&config, &inputs(root, "features", None), &|_, _| {})?;
    assert_eq!((again.extracted, again.skipped, again.redone), (0, n, 0));
    let victim = index
        .videos
        .values()
        .next()
        .map(|e| e.file.clone())
        .unwrap_or_default();
    let path = root.join("features").join(&victim);
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    let refused = extract(&config, &inputs(root, "features", None), &|_, _| {})
        .err()
        .ok_or("a truncated file was replaced")?;
    assert!(refused.to_string().contains(&victim), "{refused}");
    std::fs::remove_file(&path)?;
    let redo = extract(&config, &inputs(root, "features", None), &|_, _| {})?;
    assert_eq!((redo.extracted, redo.skipped, redo.redone), (1, n - 1, 0));
    assert_eq!(
        std::fs::read(&path)?,
        bytes,
        "redone output equals the original"
    );

    // Sharding (validation subset only, to keep the test short): three shards cover every
    // video exactly once.
    let mut val_config = config.clone();
    val_config.subset = Some("validation".into());
    let mut seen: Vec<String> = Vec::new();
    for k in 0..3 {
        let shard = Shard { index: k, count: 3 };
        let out = extract(
            &val_config,
            &inputs(root, "sharded", Some(shard)),
            &|_, _| {},
        )?;
        let idx = FeatureIndex::read(&out.index_path)?;
        assert!(out
            .index_path
            .ends_with(format!("index.shard-{k}-of-3.json")));
        assert_eq!(idx.videos.len(), out.extracted);
        seen.extend(idx.videos.keys().cloned());
    }
    seen.sort();
    let gt = root.join("ground_truth.json");
    let truth = lofi_video::ground_truth::GroundTruth::read(&gt)?;
    let all: Vec<String> = truth
        .database
        .iter()
        .filter(|(_, e)| e.subset == "validation")
        .map(|(id, _)| id.clone())
        .collect();
    assert!(all.len() >= 3);
    assert_eq!(seen, all);

    // Verify: complete after the merge; then a deleted and a truncated file are caught.
    let report = verify(&root.join("sharded"), &gt, Some("validation"))?;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.ok, all.len());
    assert_eq!(
        FeatureIndex::read(&report.index_path)?.videos.len(),
        all.len()
    );
    // Against the whole ground truth, the training videos are reported missing.
    let whole = verify(&root.join("sharded"), &gt, None)?;
    assert_eq!(whole.missing.len(), n - all.len());
    std::fs::remove_file(root.join("sharded").join(&all[0]).with_extension("npy"))?;
    let t = root.join("sharded").join(format!("{}.npy", all[1]));
    let b = std::fs::read(&t)?;
    std::fs::write(&t, &b[..b.len() - 8])?;
    let report = verify(&root.join("sharded"), &gt, Some("validation"))?;
    assert!(!report.is_complete());
    assert_eq!(report.missing, vec![all[0].clone()]);
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].id, all[1]);
    assert!(
        report.corrupt[0].reason.contains("truncated"),
        "{:?}",
        report.corrupt
    );

    eprintln!("shards+verify: {:.1} s", t0.elapsed().as_secs_f64());
    // Head training on our features.
    let mut head_cfg = HeadConfig::tiny(L);
    head_cfg.epochs = 4;
    head_cfg.lr_step_epochs = 3;
    let run = root.join("head");
    let outcome = train_head(
        &head_cfg,
        &HeadInputs {
            device: lofi_head::cpu_device(),
            features: root.join("features"),
            ground_truth: gt.clone(),
            out: run.clone(),
        },
        &lofi_engine::RunControl::default(),
    )?;
    assert_eq!(outcome.train_videos + outcome.val_videos, n);
    assert_eq!(outcome.epoch_loss.len(), 4);
    assert!(outcome.epoch_loss.iter().all(|l| l.is_finite()));
    assert!(
        outcome.epoch_loss[3] < outcome.epoch_loss[0],
        "loss did not go down: {:?}",
        outcome.epoch_loss
    );
    let val = outcome.val_average_map.ok_or("no validation ran")?;
    assert!((0.0..=1.0).contains(&val));
    for f in [
        "config.toml",
        "metrics.jsonl",
        "head.bpk",
        "head.json",
        "checkpoints/epoch-3.bpk",
        "checkpoints/epoch-3.optim",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let last = lofi_engine::Checkpointer::new(run.join("checkpoints"))
        .last()?
        .ok_or("no checkpoint pointer")?;
    assert_eq!((last.epoch, last.model.as_str()), (3, "epoch-3.bpk"));
    let records = lofi_engine::metrics::read(&run.join("metrics.jsonl"))?;
    let epochs = lofi_engine::metrics::epoch_summaries(&records);
    assert_eq!(epochs.len(), 4);
    assert!(epochs[3]
        .validation
        .as_ref()
        .is_some_and(|v| v.average_map.is_some()));
    // The kept head is the epoch with the lowest validation loss (G-TAD's GTAD_best).
    let val_loss: Vec<f64> = epochs
        .iter()
        .map(|e| e.validation.as_ref().and_then(|v| v.loss).ok_or("no loss"))
        .collect::<Result<_, _>>()?;
    let lowest = (0..val_loss.len())
        .min_by(|&a, &b| val_loss[a].total_cmp(&val_loss[b]))
        .ok_or("no epoch")?;
    let best: lofi_head::BestEpoch =
        serde_json::from_str(&std::fs::read_to_string(run.join("best.json"))?)?;
    assert_eq!((best.epoch, outcome.best_epoch), (lowest, Some(lowest)));
    assert_eq!(best.validation_loss, Some(val_loss[lowest]));
    // head.bpk holds the network itself, a checkpoint the run's module: the same weights give
    // the same outputs.
    let meta = lofi_head::HeadMeta::read(&run)?;
    let device = burn::tensor::Device::flex();
    let kept = meta
        .arch
        .load(meta.in_channels, &run.join("head.bpk"), &device)?;
    let epoch = lofi_model::checkpoint::load(
        meta.arch.init(meta.in_channels, &device)?,
        &run.join(format!("checkpoints/epoch-{lowest}.bpk")),
    )?;
    let x = burn::tensor::Tensor::<3>::random(
        [1, meta.in_channels, meta.snippets],
        burn::tensor::Distribution::Default,
        &device,
    );
    let maps = |h: &lofi_model::Head| -> Result<Vec<f32>, Box<dyn std::error::Error>> {
        Ok(h.forward(x.clone())?
            .maps
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?)
    };
    assert_eq!(
        maps(&kept)?,
        maps(&epoch)?,
        "head.bpk is not the best epoch's weights (validation losses {val_loss:?})"
    );
    let steps: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            lofi_engine::MetricsRecord::Step(s) => Some(s),
            _ => None,
        })
        .collect();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|s| s.stage == "train-head"
        && s.loss.is_finite()
        && s.loss_parts.is_some_and(|p| p.regression.is_finite())));

    eprintln!("train: {:.1} s", t0.elapsed().as_secs_f64());
    // Detection with our classifier, then evaluation.
    let det_path = root.join("detections.json");
    let cls_path = root.join("class_scores.json");
    let det = detect(
        &DetectConfig::default(),
        &DetectInputs {
            device: lofi_head::cpu_device(),
            skip_missing_features: false,
            head_dir: run.clone(),
            features: root.join("features"),
            ground_truth: gt.clone(),
            subset: "validation".into(),
            class_scores: None,
            out: det_path.clone(),
            class_scores_out: Some(cls_path.clone()),
            evaluate: true,
        },
    )?;
    assert_eq!(det.videos, outcome.val_videos);
    let report = det.report.ok_or("no report")?;
    assert_eq!(report.map.len(), 10);
    assert!(
        (report.average_map - val).abs() < 1e-9,
        "detect and validation agree"
    );
    // The written file is what `lofi eval` reads.
    let truth = lofi_eval::GroundTruth::from_path(&gt, &lofi_eval::GroundTruthOptions::default())?;
    let preds = lofi_eval::Predictions::from_path(
        &det_path,
        &truth,
        lofi_eval::PredictionKind::Detections,
    )?;
    let again = lofi_eval::evaluate_detection(
        &truth,
        &preds,
        &lofi_eval::Thresholds::ACTIVITYNET.values(),
    )?;
    assert!((again.average_map - report.average_map).abs() < 1e-12);
    for (video, items) in &det.detections.results.0 {
        assert!(items.len() <= 200, "{video}: top-100 x 2 classes");
        assert!(items
            .iter()
            .all(|d| d.segment.start >= 0.0 && d.segment.end >= d.segment.start));
    }
    // The class scores used can be fed back as an external file with the same result.
    let det2 = detect(
        &DetectConfig::default(),
        &DetectInputs {
            device: lofi_head::cpu_device(),
            skip_missing_features: false,
            class_scores: Some(cls_path),
            class_scores_out: None,
            out: root.join("detections2.json"),
            head_dir: run,
            features: root.join("features"),
            ground_truth: gt,
            subset: "validation".into(),
            evaluate: true,
        },
    )?;
    assert_eq!(det2.detections.results, det.detections.results);
    // Only the record of what was used differs: external scores this time (the official
    // evaluator insists on the key).
    let used =
        |d: &lofi_eval::DetectionFile| d.external_data.as_ref().and_then(|e| e["used"].as_bool());
    assert_eq!(
        (used(&det.detections), used(&det2.detections)),
        (Some(false), Some(true))
    );
    eprintln!("detect: {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn failed_videos_are_listed_and_do_not_stop_the_run() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir(root.join("videos"))?;
    std::fs::write(root.join("videos/garbage.mp4"), b"this is not a video")?;
    std::fs::write(
        root.join("ground_truth.json"),
        r#"{"version": "t", "database": {
            "absent": {"subset": "validation", "duration": 5.0, "annotations": []},
            "garbage": {"subset": "validation", "duration": 5.0, "annotations": []}}}"#,
    )?;
    // A listed video without a file is an error naming it, before any work ...
    let message = extract(&tiny_extract(), &inputs(root, "features", None), &|_, _| {})
        .expect_err("a video is missing")
        .to_string();
    assert!(
        message.contains("1 of 2 videos listed in") && message.contains(": absent;"),
        "{message}"
    );
    assert!(!root.join("features").exists(), "nothing written");
    // ... and, when asked to skip it, listed as failed with the unreadable one.
    let mut skipping = inputs(root, "features", None);
    skipping.skip_missing_videos = true;
    let out = extract(&tiny_extract(), &skipping, &|_, _| {})?;
    assert_eq!((out.videos, out.extracted), (2, 0));
    let ids: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, vec!["absent", "garbage"]);
    assert!(
        out.failed[0].reason.contains("no video file"),
        "{:?}",
        out.failed
    );
    let index = FeatureIndex::read(&out.index_path)?;
    assert_eq!(index.failed, out.failed);
    assert!(index.videos.is_empty());
    // Settings used are recorded beside the features.
    let used = std::fs::read_to_string(root.join("features/config.toml"))?;
    let back = ExtractConfig::from_toml(&used, &root.join("features/config.toml"))?;
    assert_eq!(back, tiny_extract());
    Ok(())
}
