//! Failure class: stale outputs. A folder a stage wrote is never silently mixed with the outputs
//! of another job: a rerun with other settings, another encoder or other inputs is refused with
//! what differs (or redone entirely with `--overwrite`), a refused rerun leaves the folder as it
//! was, and a feature file changed after extraction is caught by the rerun and by `--verify`.

mod common;

use common::{extract_tiny, lofi, s, tiny_dataset};
use std::path::{Path, PathBuf};

fn npy_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    v.sort();
    v
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.ends_with(".lofi-lock"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

/// Issue 11, problem 1: a rerun of `lofi extract` with another `--size` or another encoder into
/// a complete folder kept the old files ("16 already done") while rewriting config.toml.
#[test]
fn extract_rerun_with_other_settings_or_encoder_is_refused_and_overwrite_redoes_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 3);
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok, "first extraction: {err}");
    let before = snapshot(&feats);
    assert!(feats.join("fingerprint.json").is_file());

    // Another frame size: refused, naming the difference; nothing in the folder changes.
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "48"]);
    assert!(!ok, "another size must be refused");
    assert!(
        err.contains("sampling.size: 32 (recorded) vs 48 (this run)")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        snapshot(&feats),
        before,
        "a refused rerun changed the folder"
    );

    // Another encoder (other weights, same architecture): refused by the weights' hash.
    let device = lofi_head::cpu_device();
    let enc = dir.path().join("enc.bpk");
    let model = lofi_model::ResNetConfig::tiny(18, 4)
        .init(&device)
        .expect("tiny encoder");
    lofi_model::checkpoint::save(&model, &enc).expect("save");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32", "--encoder", s(&enc)]);
    assert!(!ok && err.contains("weights:"), "{err}");
    assert_eq!(snapshot(&feats), before);

    // The same job again: a resume that keeps every file.
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok && err.contains("16 already done"), "{err}");

    // --overwrite: every file redone with the new settings.
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "48", "--overwrite"]);
    assert!(
        ok && err.contains("16 extracted") && err.contains("0 already done"),
        "{err}"
    );
    let config = std::fs::read_to_string(feats.join("config.toml")).expect("config");
    assert!(config.contains("size = 48"), "{config}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(feats.join("index.json")).expect("index"))
            .expect("index parses");
    assert_eq!(index["size"], 48);
    for (path, old) in &before {
        if path.extension().is_some_and(|e| e == "npy") {
            assert_ne!(&std::fs::read(path).expect("read"), old, "{path:?} kept");
        }
    }
}

/// A folder of features without a fingerprint (an older lofi, or copied by hand) cannot be
/// resumed blindly: what made it is unknown.
#[test]
fn features_without_a_fingerprint_are_refused_unless_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 4);
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok, "{err}");
    std::fs::remove_file(feats.join("fingerprint.json")).expect("remove");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(!ok && err.contains("no fingerprint.json"), "{err}");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32", "--overwrite"]);
    assert!(ok && err.contains("16 extracted"), "{err}");
}

/// A feature file whose bytes changed after extraction is reported by a rerun and by `--verify`,
/// which check each file against the hash the extraction recorded; lofi does not replace bytes
/// it did not write, so the rerun refuses until the file is moved away, then redoes it.
#[test]
fn a_feature_file_changed_after_extraction_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 6);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok, "{err}");
    let files = npy_files(&feats);
    let flip = |path: &Path| {
        let mut bytes = std::fs::read(path).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 0x01; // a valid, finite float with other bits: only the hash sees it
        std::fs::write(path, &bytes).expect("write");
    };
    // Changed, then the extraction rerun: refused, naming the file; once it is moved away,
    // extracted again.
    flip(&files[0]);
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    let name = files[0].file_name().expect("name").to_string_lossy();
    assert!(
        !ok && err.contains("changed since lofi wrote it") && err.contains(&*name),
        "{err}"
    );
    std::fs::rename(&files[0], dir.path().join("moved.npy")).expect("move");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok && err.contains("1 extracted"), "{err}");
    // Changed, then verified: reported; the rerun redoes what verify listed.
    flip(&files[1]);
    let (ok, _, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(
        !ok && err.contains("differ from what the index recorded"),
        "{err}"
    );
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(!ok && err.contains("changed since lofi wrote it"), "{err}");
    std::fs::remove_file(&files[1]).expect("remove");
    let (ok, err) = extract_tiny(&data, &feats, &["--size", "32"]);
    assert!(ok && err.contains("1 extracted"), "{err}");
    let (ok, _, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
    assert!(ok, "{err}");
}

/// Issue 26, item 3: the readers read a video's features only from its own file, with the bytes
/// the index recorded (lofi-eval's one checked reader); `--verify` checks the file that is read.
#[test]
fn readers_read_only_the_recorded_bytes_of_a_videos_own_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 6);
    let gt = data.join("ground_truth.json");
    let feats = dir.path().join("features");
    let (ok, err) = extract_tiny(&data, &feats, &[]);
    assert!(ok, "{err}");
    let files = npy_files(&feats);
    let id = |p: &Path| p.file_stem().expect("stem").to_string_lossy().into_owned();
    let (a, b) = (id(&files[0]), id(&files[1]));
    // Another video's bytes under a's name: a valid array of the right shape, caught by the hash.
    let original = std::fs::read(&files[0]).expect("read");
    std::fs::copy(&files[1], &files[0]).expect("copy");
    let (ok, _, err) = common::train_head_tiny(&feats, &gt, &dir.path().join("head"), &[]);
    assert!(
        !ok && err.contains(&format!("features of video {a:?}"))
            && err.contains("differ from what the index recorded"),
        "{err}"
    );
    std::fs::write(&files[0], &original).expect("restore");
    // An index naming b's file (or a path outside the folder) for a: refused, naming both.
    let index_path = feats.join("index.json");
    let text = std::fs::read_to_string(&index_path).expect("index");
    for file in [format!("{b}.npy"), format!("../{a}.npy")] {
        let mut index: serde_json::Value = serde_json::from_str(&text).expect("json");
        index["videos"][&a]["file"] = serde_json::Value::String(file.clone());
        std::fs::write(&index_path, index.to_string()).expect("edit");
        let (ok, _, err) =
            common::train_head_tiny(&feats, &gt, &dir.path().join("head"), &["--overwrite"]);
        assert!(
            !ok && err.contains(&format!("names file {file:?}"))
                && err.contains(&format!("\"{a}.npy\"")),
            "{file}: {err}"
        );
        let (ok, out, err) = lofi(&["extract", "--ground-truth", s(&gt), "--verify", s(&feats)]);
        assert!(
            !ok && (out + &err).contains(&format!("names file {file:?}")),
            "{err}"
        );
    }
}

/// A run folder is continued only by the same job: `--resume` with other inputs is refused with
/// what differs, and `--overwrite` starts a fresh run in a folder that holds one.
#[test]
fn a_head_run_resumes_only_with_its_inputs_and_overwrite_starts_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 7);
    let gt = data.join("ground_truth.json");
    let (a, b) = (dir.path().join("fa"), dir.path().join("fb"));
    assert!(extract_tiny(&data, &a, &["--size", "32"]).0);
    assert!(extract_tiny(&data, &b, &["--size", "40"]).0);
    let run = dir.path().join("head");
    let head = |feats: &Path, extra: &[&str]| {
        let mut args = vec![
            "train-head",
            "--features",
            s(feats),
            "--ground-truth",
            s(&gt),
            "--out",
            s(&run),
            "--preset",
            "tiny",
            "--snippets",
            "4",
            "--epochs",
            "2",
        ];
        args.extend_from_slice(extra);
        lofi(&args)
    };
    let (ok, _, err) = head(&a, &["--stop-after-batches", "2"]);
    assert!(!ok && err.contains("--resume"), "{err}");
    let (ok, _, err) = head(&b, &["--resume"]);
    assert!(
        !ok && err.contains("features.sampling.size: 32 (recorded) vs 40 (this run)"),
        "{err}"
    );
    let (ok, _, err) = head(&a, &["--resume"]);
    assert!(ok, "{err}");
    let (ok, _, err) = head(&b, &[]);
    assert!(!ok && err.contains("--overwrite"), "{err}");
    let (ok, _, err) = head(&b, &["--overwrite"]);
    assert!(ok, "{err}");
    let fp = std::fs::read_to_string(run.join("fingerprint.json")).expect("fingerprint");
    assert!(fp.contains("\"size\": 40"), "{fp}");
}

/// The demo continues only its own folder: one of another size, or of an older lofi (no
/// fingerprint), would lend it its data and finished rows.
#[test]
fn a_demo_folder_of_another_demo_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    std::fs::create_dir_all(out.join("data")).expect("mkdir");
    let (ok, _, err) = lofi(&["demo", "--size", "smoke", "--out", s(&out)]);
    assert!(
        !ok && err.contains("without a fingerprint.json") && err.contains("move it away"),
        "{err}"
    );
    std::fs::remove_dir_all(out.join("data")).expect("rmdir");
    std::fs::write(
        out.join("fingerprint.json"),
        r#"{"parts": {"size": "Tiny", "dataset_seed": 0}}"#,
    )
    .expect("fingerprint");
    let (ok, _, err) = lofi(&["demo", "--size", "smoke", "--out", s(&out)]);
    assert!(
        !ok && err.contains("size: \"Tiny\" (recorded) vs \"Smoke\" (this run)"),
        "{err}"
    );
}
