//! Every head kind (`lofi_model::HeadKind::ALL`: a head added there is covered here too)
//! through the CLI: `train-head --head-kind K` on tiny features, then `detect` with nothing but
//! the head's card, and `eval`; LoFi end to end with BMN (`lofi train --head-kind bmn`, extract,
//! train-head, detect, eval); and a THUMOS-style layout (windows of stride features, `Test`
//! subset, G-TAD's THUMOS14 Soft-NMS) where `detect` takes the post-processing and the subset
//! from the card of a `train-head` head and of a `lofi train` head alike.

use std::path::Path;

mod common;
use common::{extract_tiny, lofi, s, tiny_dataset, train_head_tiny};
use lofi_model::HeadKind;

/// The `results` of a detection file (without `external_data`, which names the class scores'
/// source).
fn results(path: &Path) -> serde_json::Value {
    card(path)["results"].clone()
}

fn card(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("card")).expect("json")
}

fn run(args: &[&str]) -> String {
    let (ok, _, err) = lofi(args);
    assert!(ok, "lofi {args:?} failed: {err}");
    err
}

/// `lofi detect` of `head` on `features` into `out` (plus `extra`); returns the detections.
fn detect(head: &Path, features: &Path, gt: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "detect",
        "--head",
        s(head),
        "--features",
        s(features),
        "--ground-truth",
        s(gt),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    run(&args);
    std::fs::read_to_string(out).expect("detections")
}

#[test]
fn every_head_kind_trains_detects_and_evaluates_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 8);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "extract failed: {err}");
    for kind in HeadKind::ALL {
        let head = dir.path().join(format!("head-{kind}"));
        let (ok, _, err) = train_head_tiny(&feats, &gt, &head, &["--head-kind", kind.name()]);
        assert!(ok, "{kind}: train-head failed: {err}");
        let c = card(&head.join("head.json"));
        assert_eq!(c["model"]["arch"]["kind"], kind.name(), "{c}");
        let want = lofi_model::HeadArch::tiny(kind).detect_defaults();
        let recorded: lofi_model::DetectConfig =
            serde_json::from_value(c["model"]["detect"].clone()).expect("typed post-processing");
        assert_eq!(recorded, want, "{kind}");
        let det = dir.path().join(format!("det-{kind}.json"));
        let eval = dir.path().join(format!("eval-{kind}.json"));
        detect(&head, &feats, &gt, &det, &["--eval-out", s(&eval)]);
        let report = card(&eval);
        let m = report["average_mAP"].as_f64().expect("mAP");
        assert!((0.0..=1.0).contains(&m), "{kind}: {m}");
        // `detect` used the card's post-processing: the same as giving its values explicitly.
        let same = dir.path().join(format!("same-{kind}.json"));
        let sigma = want.soft_nms_sigma.to_string();
        let explicit = detect(&head, &feats, &gt, &same, &["--sigma", &sigma]);
        assert_eq!(
            explicit,
            std::fs::read_to_string(&det).expect("detections"),
            "{kind}"
        );
        run(&[
            "eval",
            "detection",
            "--ground-truth",
            s(&gt),
            "--predictions",
            s(&det),
        ]);
    }
    // A head of one kind is not loaded as the other.
    let mut c = card(&dir.path().join("head-bmn/head.json"));
    c["model"]["arch"] =
        serde_json::to_value(lofi_model::HeadArch::tiny(HeadKind::Gtad)).expect("json");
    std::fs::write(dir.path().join("head-bmn/head.json"), c.to_string()).expect("written");
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&dir.path().join("head-bmn")),
        "--features",
        s(&feats),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&dir.path().join("wrong.json")),
    ]);
    assert!(
        !ok && err.contains("does not hold the head its card describes"),
        "{err}"
    );
}

/// LoFi with BMN end to end: `lofi train --head-kind bmn`, extract with its encoder, a BMN
/// trained on the features, detect, eval; and the end-to-end BMN head detects from its card.
#[test]
fn lofi_with_bmn_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 9);
    let gt = data.join("ground_truth.json");
    let p = |name: &str| dir.path().join(name);
    run(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&p("lofi")),
        "--preset",
        "tiny",
        "--head-kind",
        "bmn",
        "--schedule",
        "short-cycle",
        "--epochs",
        "1",
    ]);
    let c = card(&p("lofi/head.json"));
    assert_eq!(c["model"]["arch"]["kind"], "bmn", "{c}");
    assert_eq!(
        c["model"]["detect"]["soft_nms"]["kind"], "width_gated",
        "{c}"
    );
    let config = std::fs::read_to_string(p("lofi/config.toml")).expect("config");
    assert!(config.contains("kind = \"bmn\""), "{config}");
    run(&[
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&data.join("videos")),
        "--encoder",
        s(&p("lofi")),
        "--out",
        s(&p("features")),
    ]);
    run(&[
        "train-head",
        "--features",
        s(&p("features")),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&p("head")),
        "--preset",
        "tiny",
        "--head-kind",
        "bmn",
        "--epochs",
        "2",
    ]);
    detect(
        &p("head"),
        &p("features"),
        &gt,
        &p("det.json"),
        &["--class-scores-out", s(&p("classes.json"))],
    );
    run(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&gt),
        "--predictions",
        s(&p("det.json")),
    ]);
    // The end-to-end head, with the train-head run's class scores.
    detect(
        &p("lofi/head.bpk"),
        &p("features"),
        &gt,
        &p("det-e2e.json"),
        &["--class-scores", s(&p("classes.json"))],
    );
}

/// THUMOS14's layout and post-processing at tiny sizes: both a `train-head` head and a `lofi
/// train` head, trained on windows of stride features with G-TAD's THUMOS14 Soft-NMS (sigma
/// 0.46), detect on `Test` with that sigma from their cards alone.
#[test]
fn thumos_style_heads_detect_with_their_cards_soft_nms_and_subset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 10);
    let text = std::fs::read_to_string(data.join("ground_truth.json")).expect("gt");
    let mut gt: serde_json::Value = serde_json::from_str(&text).expect("json");
    for (_, v) in gt["database"].as_object_mut().expect("database") {
        let renamed = match v["subset"].as_str() {
            Some("training") => "Validation",
            _ => "Test",
        };
        v["subset"] = renamed.into();
    }
    let gt_path = dir.path().join("thumos.json");
    std::fs::write(&gt_path, gt.to_string()).expect("written");
    let p = |name: &str| dir.path().join(name);
    let thumos_detect = lofi_head::detect_preset(
        lofi_engine::Preset::Thumos14,
        &lofi_model::HeadArch::tiny(HeadKind::Gtad),
    );
    assert_eq!(thumos_detect.soft_nms_sigma, 0.46);

    // LoFi on windows of 16 snippets every 8, snippets every 4 frames.
    let mut config = lofi_train::TrainConfig::tiny();
    config.full.size = 32;
    config.epochs = 1;
    config.head = config.head.with_max_duration(Some(8));
    config.sampling = lofi_video::Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    config.temporal = lofi_head::Temporal::Windows { window_stride: 8 };
    config.detect = thumos_detect.clone();
    let path = p("train.toml");
    lofi_train::config::write_config(&config, &path).expect("config");
    run(&[
        "train",
        "--ground-truth",
        s(&gt_path),
        "--videos",
        s(&data.join("videos")),
        "--config",
        s(&path),
        "--out",
        s(&p("lofi")),
    ]);
    run(&[
        "extract",
        "--ground-truth",
        s(&gt_path),
        "--videos",
        s(&data.join("videos")),
        "--encoder",
        s(&p("lofi")),
        "--out",
        s(&p("features")),
    ]);
    let mut head = lofi_head::HeadConfig::tiny(16);
    head.epochs = 1;
    head.head = head.head.with_max_duration(Some(8));
    head.temporal = lofi_head::Temporal::Windows { window_stride: 8 };
    head.detect = thumos_detect;
    let head_toml = p("head.toml");
    std::fs::write(&head_toml, toml::to_string(&head).expect("toml")).expect("written");
    run(&[
        "train-head",
        "--features",
        s(&p("features")),
        "--ground-truth",
        s(&gt_path),
        "--out",
        s(&p("head")),
        "--config",
        s(&head_toml),
    ]);
    let classes = p("classes.json");
    for (name, head, extra) in [
        (
            "train-head",
            p("head"),
            vec!["--class-scores-out", s(&classes)],
        ),
        (
            "train",
            p("lofi/head.bpk"),
            vec!["--class-scores", s(&classes)],
        ),
    ] {
        let out = p(&format!("det-{name}.json"));
        let (ok, _, err) = lofi(
            &[
                vec![
                    "detect",
                    "--head",
                    s(&head),
                    "--features",
                    s(&p("features")),
                    "--ground-truth",
                    s(&gt_path),
                    "--out",
                    s(&out),
                ],
                extra.clone(),
            ]
            .concat(),
        );
        assert!(ok, "{name}: detect failed: {err}");
        assert!(
            err.contains("detecting on subset \"Test\""),
            "{name}: {err}"
        );
        let got = results(&out);
        // The card's sigma 0.46, not the ActivityNet default.
        let features = p("features");
        let with = |sigma: &str, file: &str| {
            let o = p(file);
            let args = vec![
                "detect",
                "--head",
                s(&head),
                "--features",
                s(&features),
                "--ground-truth",
                s(&gt_path),
                "--out",
                s(&o),
                "--sigma",
                sigma,
                "--class-scores",
                s(&classes),
            ];
            run(&args);
            results(&o)
        };
        assert_eq!(got, with("0.46", &format!("{name}-046.json")), "{name}");
        assert_ne!(got, with("0.8", &format!("{name}-08.json")), "{name}");
    }
}
