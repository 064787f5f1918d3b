//! Failure class: a user's files. lofi deletes or replaces only files it can show it wrote (the
//! folder's `.lofi-owned.jsonl`): every command that writes a folder leaves a user's files as
//! they were, with and without `--overwrite` / `--fresh`, refuses before any work where they are
//! in its way, never writes where its inputs are, and never crosses folder kinds; and resume and
//! overwrite of lofi's own run still work beside a user's files.

mod common;

use common::{extract_tiny, lofi, s, tiny_dataset, train_head_tiny};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file below `dir` with its bytes (lock files left out: a refused command may create
/// one, and it holds no data).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let p = entry.expect("entry").path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".lofi-lock"))
            {
                continue;
            }
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

/// A folder as a user keeps it: their own files, some named like lofi's outputs.
fn users_folder(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("subfolder")).expect("mkdir");
    std::fs::create_dir_all(dir.join("checkpoints")).expect("mkdir");
    for (file, text) in [
        ("notes.txt", "my notes\n"),
        ("results.json", "{\"mine\": true}\n"),
        ("my_gt.json", "{\"database\": {}}\n"),
        ("subfolder/keep.txt", "keep\n"),
        ("config.toml", "# my config\n"),
        ("index.json", "{\"my\": \"index\"}\n"),
        ("encoder.bpk", "my weights"),
        ("metrics.jsonl", "{\"my\": 1}\n"),
        ("checkpoints/mine.bin", "mine"),
    ] {
        std::fs::write(dir.join(file), text).expect("write");
    }
    dir
}

/// The user's files of [`users_folder`] are all there, byte for byte.
fn assert_kept(before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path, what: &str) {
    let after = snapshot(dir);
    for (path, bytes) in before {
        assert_eq!(
            after.get(path),
            Some(bytes),
            "{what}: {} was changed or removed",
            path.display()
        );
    }
}

/// What every command needs: the tiny dataset, its features (4 snippets) and a head trained on
/// them.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    feats: PathBuf,
    head: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let data = tiny_dataset(&root, 5);
    let feats = root.join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "extract: {err}");
    let head = root.join("head");
    let gt = data.join("ground_truth.json");
    let (ok, _, err) = train_head_tiny(&feats, &gt, &head, &[]);
    assert!(ok, "train-head: {err}");
    Setup {
        _dir: dir,
        root,
        data,
        feats,
        head,
    }
}

/// Issue 26, the walk: every command that writes a folder, pointed at a user's folder, with and
/// without `--overwrite` / `--fresh`. Before ownership records, `extract --overwrite` removed
/// `config.toml`, `index.json`, `results.json` and `my_gt.json`, `train --overwrite` every
/// top-level JSON/TOML file and `checkpoints/`, and `demo --fresh` the whole folder.
#[test]
fn no_command_changes_or_removes_a_users_files() {
    let t = setup();
    let gt = t.data.join("ground_truth.json");
    let videos = t.data.join("videos");
    let mine = users_folder(&t.root, "mine");
    let before = snapshot(&mine);
    let out = s(&mine);
    let extract = vec![
        "extract",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos),
        "--out",
        out,
        "--depth",
        "18",
        "--base-width",
        "4",
        "--snippets",
        "4",
        "--size",
        "32",
    ];
    let commands: Vec<(&str, Vec<&str>)> = vec![
        (
            "pretrain",
            vec![
                "pretrain",
                "--data",
                s(&t.data),
                "--out",
                out,
                "--preset",
                "tiny",
                "--epochs",
                "1",
            ],
        ),
        (
            "train",
            vec![
                "train",
                "--data",
                s(&t.data),
                "--out",
                out,
                "--preset",
                "tiny",
                "--schedule",
                "t",
                "--epochs",
                "1",
            ],
        ),
        ("extract", extract.clone()),
        (
            "extract shard",
            [&extract[..], &["--shard", "0/2"]].concat(),
        ),
        (
            "train-head",
            vec![
                "train-head",
                "--features",
                s(&t.feats),
                "--ground-truth",
                s(&gt),
                "--out",
                out,
                "--preset",
                "tiny",
                "--snippets",
                "4",
                "--epochs",
                "1",
            ],
        ),
    ];
    for (what, args) in &commands {
        for extra in [&[][..], &["--overwrite"][..]] {
            if what.contains("shard") && !extra.is_empty() {
                continue; // --overwrite is refused for a shard on its own.
            }
            let args = [&args[..], extra].concat();
            let (ok, _, err) = lofi(&args);
            assert!(!ok, "{what} {extra:?} ran in a user's folder");
            assert!(
                err.contains("not written by lofi") && err.contains("never deletes or replaces"),
                "{what} {extra:?}: {err}"
            );
            assert_kept(&before, &mine, &format!("{what} {extra:?}"));
        }
    }
    // detect: the user's results.json is not replaced; a new name beside it is fine.
    let detect = |target: &Path| {
        lofi(&[
            "detect",
            "--head",
            s(&t.head),
            "--features",
            s(&t.feats),
            "--ground-truth",
            s(&gt),
            "--out",
            s(target),
        ])
    };
    let (ok, _, err) = detect(&mine.join("results.json"));
    assert!(!ok && err.contains("results.json"), "{err}");
    assert_kept(&before, &mine, "detect over results.json");
    let (ok, _, err) = detect(&mine.join("detections.json"));
    assert!(ok, "detect beside a user's files: {err}");
    let (ok, _, err) = detect(&mine.join("detections.json"));
    assert!(ok, "detect replaces its own file: {err}");
    assert_kept(&before, &mine, "detect");
    // demo --fresh: the folder is not a demo's, so nothing is deleted.
    let (ok, _, err) = lofi(&["demo", "--size", "smoke", "--fresh", "--out", out]);
    assert!(
        !ok && err.contains("not a demo folder") && err.contains("notes.txt"),
        "{err}"
    );
    assert_kept(&before, &mine, "demo --fresh");
    // synth: its names (videos/, clips/, ground_truth.json, clips.json) are free here; it writes
    // beside the user's files, and a rerun replaces only its own.
    for _ in 0..2 {
        let (ok, _, err) = lofi(&["synth", "--out", out, "--preset", "tiny", "--seed", "1"]);
        assert!(ok, "synth beside a user's files: {err}");
    }
    assert_kept(&before, &mine, "synth");
    assert!(mine.join("ground_truth.json").is_file());
    assert!(
        mine.join("detections.json").is_file(),
        "a rerun of synth removed another command's output"
    );
}

/// Issue 26, item 1: a run stopped before its first checkpoint left `fingerprint.json`, and the
/// next run deleted every top-level `*.json` / `*.toml` of the folder (the user's `train.toml`,
/// `results.json`); `--overwrite` of lofi's own run must still remove that run's outputs, and
/// `--resume` continue it, beside the user's files.
#[test]
fn resume_and_overwrite_of_lofis_run_work_beside_a_users_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 6);
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("subfolder")).expect("mkdir");
    for (file, text) in [
        ("train.toml", "# my settings\n"),
        ("results.json", "{\"mine\": true}\n"),
        ("notes.txt", "notes\n"),
    ] {
        std::fs::write(run.join(file), text).expect("write");
    }
    let before = snapshot(&run);
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--preset",
            "tiny",
            "--schedule",
            "t",
        ];
        args.extend_from_slice(extra);
        lofi(&args)
    };
    // A failed start (stopped before any checkpoint), then a fresh start over it.
    let (ok, _, _) = train(&["--epochs", "2", "--stop-after-batches", "1"]);
    assert!(!ok);
    assert!(run.join("fingerprint.json").is_file());
    let (ok, _, err) = train(&["--epochs", "2", "--stop-after-batches", "3"]);
    assert!(!ok, "{err}");
    assert_kept(&before, &run, "a fresh start over a failed one");
    let (ok, _, err) = train(&["--epochs", "2", "--resume"]);
    assert!(ok, "resume beside a user's files: {err}");
    assert!(run.join("checkpoints/epoch-1.bpk").is_file());
    assert_kept(&before, &run, "resume");
    // --overwrite with one epoch: the old run's second epoch goes, the user's files stay.
    let (ok, _, err) = train(&["--epochs", "1", "--overwrite"]);
    assert!(ok, "overwrite: {err}");
    assert!(
        !run.join("checkpoints/epoch-1.bpk").exists(),
        "the old run's checkpoint was kept"
    );
    assert!(run.join("checkpoints/epoch-0.bpk").is_file() && run.join("encoder.bpk").is_file());
    assert_kept(&before, &run, "overwrite");
}

/// Issue 26, items 1 and 2: inputs inside `--out` and folders of another kind. `train-head --out`
/// its own features folder deleted the features; `extract --out` a train run was refused and
/// the suggested `--overwrite` deleted `encoder.bpk` and `head.bpk`; `extract --out .
/// --overwrite` in a dataset folder removed `ground_truth.json` and `clips.json`.
#[test]
fn inputs_inside_the_output_and_folders_of_another_kind_are_refused() {
    let t = setup();
    let gt = t.data.join("ground_truth.json");
    let feats_before = snapshot(&t.feats);
    let (ok, _, err) = train_head_tiny(&t.feats, &gt, &t.feats, &[]);
    assert!(!ok && err.contains("inside the output folder"), "{err}");
    assert!(snapshot(&t.feats) == feats_before, "the features changed");

    let data_before = snapshot(&t.data);
    for extra in [&[][..], &["--overwrite"][..]] {
        let (ok, err) = extract_tiny(&t.data, &t.data, extra);
        assert!(
            !ok && err.contains("the ground truth") && err.contains("inside the output folder"),
            "{err}"
        );
    }
    assert!(snapshot(&t.data) == data_before, "the dataset changed");

    let head_before = snapshot(&t.head);
    for extra in [&[][..], &["--overwrite"][..]] {
        let (ok, err) = extract_tiny(&t.data, &t.head, extra);
        assert!(
            !ok && err.contains("is a head run") && err.contains("with or without --overwrite"),
            "{err}"
        );
    }
    for extra in [&[][..], &["--overwrite"][..]] {
        let args = [
            &[
                "pretrain",
                "--data",
                s(&t.data),
                "--out",
                s(&t.feats),
                "--preset",
                "tiny",
            ][..],
            extra,
        ]
        .concat();
        let (ok, _, err) = lofi(&args);
        assert!(!ok && err.contains("is a feature folder"), "{err}");
    }
    assert!(snapshot(&t.head) == head_before, "the head run changed");
    assert!(snapshot(&t.feats) == feats_before, "the features changed");
}
