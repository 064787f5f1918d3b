//! The README's stage-by-stage recipe, run exactly as written there: the ```sh block of the
//! section "The pipeline, stage by stage" is read from README.md, its bracketed optional flags
//! (`[--resume]`) and comments are dropped, `lofi` becomes the built binary, and every command
//! runs in a fresh folder and must succeed. Then, on the runs it leaves, the model cards: the
//! encoder given as a run folder, a wrong `--base-width` against the card, weights without a card
//! (old runs, imported `.safetensors`) and a detection from a head file.
//!
//! Exists because the recipe broke silently once (`lofi extract --encoder runs/lofi/encoder.bpk`
//! failed with a per-tensor dump when the encoder was tiny): a README command is only right when
//! a test runs it.

mod common;
use common::{lofi, s};

use std::path::{Path, PathBuf};
use std::process::Command;

/// The commands of the recipe block, one per entry, as argument lists (`lofi` first).
fn recipe_commands(readme: &str) -> Vec<Vec<String>> {
    let section = readme
        .split("## The pipeline, stage by stage")
        .nth(1)
        .expect("README has the section \"The pipeline, stage by stage\"");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a ```sh block");
    // Join continuation lines, then drop comments and bracketed optional flags.
    let joined = block.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let line = line.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut text = String::new();
        let mut depth = 0usize;
        for ch in line.chars() {
            match ch {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                _ if depth == 0 => text.push(ch),
                _ => {}
            }
        }
        assert!(
            !text.contains(['"', '\'', '$', '|', '>', '<', '&', ';']),
            "the recipe test runs plain commands only: {line}"
        );
        let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        assert_eq!(args.first().map(String::as_str), Some("lofi"), "{line}");
        commands.push(args);
    }
    commands
}

fn run_in(dir: &Path, args: &[String]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lofi"))
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .expect("run lofi");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `lofi args` in `dir` (paths relative to it).
fn lofi_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut full = vec!["lofi".to_string()];
    full.extend(args.iter().map(|a| a.to_string()));
    run_in(dir, &full)
}

fn feature_width(features: &Path) -> Vec<usize> {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(features.join("index.json")).expect("index.json"),
    )
    .expect("json");
    let videos = index["videos"].as_object().expect("videos");
    assert!(!videos.is_empty());
    videos
        .values()
        .map(|v| v["shape"][1].as_u64().expect("shape") as usize)
        .collect()
}

/// A TSM-R18 of width 8 with a 5-class classifier, saved as a PyTorch-layout `.safetensors`
/// (no card), as an imported checkpoint would be.
fn foreign_safetensors(path: &Path) {
    use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
    let device = burn::tensor::Device::flex();
    let arch = lofi_model::EncoderArch::tiny(lofi_model::EncoderKind::Tsm, 18, 8);
    let lofi_model::Encoder::Tsm(net) = arch.init(Some(5), &device).expect("encoder") else {
        panic!("a TSM encoder");
    };
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .remap(
            KeyRemapper::from_patterns(vec![
                (r"\.downsample\.conv\.", ".downsample.0."),
                (r"\.downsample\.bn\.", ".downsample.1."),
            ])
            .expect("patterns"),
        );
    net.save_into(&mut store).expect("written");
}

#[test]
fn the_readme_recipe_runs_as_written_and_its_runs_describe_themselves() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let commands = recipe_commands(&readme);
    let stages: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    for stage in [
        "synth",
        "pretrain",
        "train",
        "extract",
        "train-head",
        "detect",
        "eval",
    ] {
        assert!(stages.contains(&stage), "the recipe has no `lofi {stage}`");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for args in &commands {
        let started = std::time::Instant::now();
        let (ok, err) = run_in(root, args);
        assert!(ok, "`{}` failed:\n{err}", args.join(" "));
        eprintln!(
            "{:>6.1} s  {}",
            started.elapsed().as_secs_f64(),
            args.join(" ")
        );
    }

    // Every model file has its card.
    for f in [
        "runs/pretrain/encoder.json",
        "runs/pretrain/classifier.json",
        "runs/lofi/encoder.json",
        "runs/lofi/head.json",
        "runs/lofi/head/head.json",
        "runs/lofi/head/classifier.json",
    ] {
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(f)).expect(f)).expect(f);
        assert_eq!(card["format"], "lofi-model-card", "{f}");
        assert!(root.join(f).with_extension("bpk").is_file(), "{f}");
    }
    let head_card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("runs/lofi/head/head.json")).expect("head card"),
    )
    .expect("json");
    assert_eq!(head_card["model"]["kind"], "head");
    assert_eq!(head_card["model"]["snippets"], 16, "L from the features");
    assert_eq!(head_card["producer"]["command"], "train-head");
    assert_eq!(head_card["producer"]["features"]["snippets"], 16);
    let width = feature_width(&root.join("runs/lofi/features"));

    // `--encoder` takes a run folder; the card gives architecture and fidelity.
    let gt = "data/ground_truth.json";
    let extract = |encoder: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "extract",
            "--ground-truth",
            gt,
            "--videos",
            "data/videos",
            "--subset",
            "validation",
            "--encoder",
            encoder,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        lofi_in(root, &args)
    };
    let (ok, err) = extract("runs/lofi", "f-folder", &[]);
    assert!(ok, "--encoder RUN_DIR: {err}");
    assert_eq!(feature_width(&root.join("f-folder"))[0], width[0]);

    // `lofi train` takes the pre-training run folder too; a `--config` asking for another width
    // than the encoder's card says (it overrides the card) is refused in one line.
    std::fs::write(root.join("wide.toml"), "[encoder]\nbase_width = 64\n").expect("config");
    let (ok, err) = lofi_in(
        root,
        &[
            "train",
            "--data",
            "data",
            "--encoder",
            "runs/pretrain",
            "--config",
            "wide.toml",
            "--out",
            "t-paper",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("encoder.bpk holds a TSM-R18 width 4, the config asks for a TSM-R18 width 64"),
        "{err}"
    );

    // An explicit flag against the card: one line naming both architectures.
    let (ok, err) = extract("runs/lofi", "f-wide", &["--base-width", "64"]);
    assert!(!ok);
    assert!(
        err.contains("encoder.bpk holds a TSM-R18 width 4, the config asks for a TSM-R18 width 64"),
        "{err}"
    );
    assert!(err.len() < 600 && !err.contains("ShapeMismatch"), "{err}");
    assert!(
        !root.join("f-wide").exists(),
        "nothing written on a mismatch"
    );

    // Weights without a card (a run of an older lofi): the error says which flags to pass, and
    // with them it works.
    let old = root.join("old");
    std::fs::create_dir_all(&old).expect("mkdir");
    std::fs::copy(root.join("runs/lofi/encoder.bpk"), old.join("encoder.bpk")).expect("copy");
    let (ok, err) = extract("old/encoder.bpk", "f-old", &[]);
    assert!(!ok);
    assert!(
        err.contains("holds a TSM-R18 width 4")
            && err.contains("no card")
            && err.contains("--kind tsm --depth 18 --base-width 4"),
        "{err}"
    );
    let (ok, err) = extract(
        "old/encoder.bpk",
        "f-old",
        &["--base-width", "4", "--snippets", "16", "--size", "64"],
    );
    assert!(ok, "explicit flags: {err}");

    // An imported .safetensors of another width: the same short message, from its shapes.
    let st: PathBuf = root.join("kinetics.safetensors");
    foreign_safetensors(&st);
    let (ok, err) = extract(s(&st), "f-st", &["--preset", "tiny"]);
    assert!(!ok);
    assert!(
        err.contains(
            "kinetics.safetensors holds a TSM-R18 width 8 with 5 classes, the config asks for a \
             TSM-R18 width 4"
        ),
        "{err}"
    );
    assert!(err.len() < 800 && !err.contains("ShapeMismatch"), "{err}");

    // `--head` takes a head file too: the head run's own, or the end-to-end head of `lofi train`
    // (with class scores from the first).
    let (ok, err) = lofi_in(
        root,
        &[
            "detect",
            "--head",
            "runs/lofi/head/head.bpk",
            "--features",
            "runs/lofi/features",
            "--ground-truth",
            gt,
            "--out",
            "det-file.json",
            "--class-scores-out",
            "scores.json",
        ],
    );
    assert!(ok, "--head FILE: {err}");
    let (ok, err) = lofi_in(
        root,
        &[
            "detect",
            "--head",
            "runs/lofi/head.bpk",
            "--features",
            "runs/lofi/features",
            "--ground-truth",
            gt,
            "--out",
            "det-e2e.json",
            "--class-scores",
            "scores.json",
        ],
    );
    assert!(ok, "the end-to-end head of lofi train: {err}");
    let (ok, _, err) = lofi(&[
        "eval",
        "detection",
        "--ground-truth",
        s(&root.join(gt)),
        "--predictions",
        s(&root.join("det-e2e.json")),
    ]);
    assert!(ok, "{err}");
}
