//! `lofi pretrain --ground-truth GT --videos DIR` through the real binary: clips sampled at the
//! annotated segments of the untrimmed videos train the encoder (the loss falls) and give a run
//! of the same shape as pre-training on the clip files of `clips.json`, without writing a clip.

mod common;
use common::{lofi_env, s, tiny_dataset};
use std::collections::BTreeSet;
use std::path::Path;

/// Every file under `dir`, relative, with its size.
fn files(dir: &Path) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                out.insert((name, std::fs::metadata(&path).expect("size").len()));
            }
        }
    }
    out
}

/// (mean loss, training clips) of each epoch, from `metrics.jsonl`.
fn epochs(run: &Path) -> Vec<(f64, u64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    let mut clips = 0;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        match v["event"].as_str() {
            Some("step") => clips += v["videos"].as_u64().expect("videos"),
            Some("epoch_end") => {
                out.push((v["loss"].as_f64().expect("loss"), clips));
                clips = 0;
            }
            _ => {}
        }
    }
    out
}

#[test]
fn pretrain_from_annotations_trains_and_matches_the_clip_file_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tiny_dataset(dir.path(), 2);
    let (from_gt, from_clips) = (dir.path().join("gt"), dir.path().join("clips"));
    // One thread: every reduction in a fixed order, so the loss curve is reproducible.
    let one_thread = [("RAYON_NUM_THREADS", "1")];
    let common = ["--preset", "tiny", "--epochs", "2"];
    let (gt, videos) = (data.join("ground_truth.json"), data.join("videos"));
    let mut args = vec![
        "pretrain",
        "--ground-truth",
        s(&gt),
        "--videos",
        s(&videos),
        "--out",
        s(&from_gt),
    ];
    args.extend(common);
    let (ok, out, err) = lofi_env(&args, &one_thread);
    assert!(ok, "pretrain --ground-truth failed: {err}");
    assert!(out.contains("validation accuracy"), "{out}");
    let mut args = vec!["pretrain", "--data", s(&data), "--out", s(&from_clips)];
    args.extend(common);
    let (ok, _, err) = lofi_env(&args, &one_thread);
    assert!(ok, "pretrain --data failed: {err}");

    let gt_epochs = epochs(&from_gt);
    assert_eq!(gt_epochs.len(), 2);
    assert!(
        gt_epochs[1].0 < gt_epochs[0].0,
        "the loss does not fall: {gt_epochs:?}"
    );
    // The same clips (one per annotated segment) and the same run layout, file for file, with
    // models of the same size (same architecture and class count), as from the clip files.
    let clip_epochs = epochs(&from_clips);
    let count = |e: &[(f64, u64)]| e.iter().map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(count(&gt_epochs), count(&clip_epochs));
    let sizes = |dir: &Path| -> Vec<(String, u64)> {
        files(dir)
            .into_iter()
            .filter(|(name, _)| name.ends_with(".bpk"))
            .collect()
    };
    assert_eq!(sizes(&from_gt), sizes(&from_clips));
    let names = |dir: &Path| -> Vec<String> { files(dir).into_iter().map(|(n, _)| n).collect() };
    assert_eq!(names(&from_gt), names(&from_clips));
    // No clip was cut: the data folder holds what synth wrote, nothing more.
    let clips_dir: Vec<_> = std::fs::read_dir(data.join("clips"))
        .expect("clips")
        .collect();
    let listed = std::fs::read_to_string(data.join("clips.json")).expect("clips.json");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(
        clips_dir.len(),
        listed["clips"].as_array().map_or(0, Vec::len)
    );
}
