//! The synthetic dataset end to end: real files, ActivityNet layout, determinism, and the
//! loader reading it back.

use lofi_video::ground_truth::{find_video, GroundTruth};
use lofi_video::synth::{write_dataset, ClipIndex, SynthConfig, SynthPreset, CLASSES};
use lofi_video::{Fidelity, Loader, LoaderConfig, SamplingPlan, VideoIndex, VideoJob};

#[test]
fn tiny_dataset_is_complete_deterministic_and_loadable() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let config = SynthConfig::preset(SynthPreset::Tiny, 7);
    let summary = write_dataset(a.path(), &config, 2, &|_| {}).expect("synth a");
    write_dataset(b.path(), &config, 1, &|_| {}).expect("synth b");
    assert_eq!(summary.videos, 16);

    let gt_a = std::fs::read(a.path().join("ground_truth.json")).expect("gt a");
    let gt_b = std::fs::read(b.path().join("ground_truth.json")).expect("gt b");
    assert!(gt_a == gt_b, "ground truth differs between runs");
    let clips_a = std::fs::read(a.path().join("clips.json")).expect("clips a");
    assert!(clips_a == std::fs::read(b.path().join("clips.json")).expect("clips b"));

    let json: serde_json::Value = serde_json::from_slice(&gt_a).expect("json");
    let db = json["database"].as_object().expect("database");
    assert_eq!(db.len(), 16);
    for entry in db.values() {
        let keys: Vec<&String> = entry.as_object().expect("entry").keys().collect();
        assert_eq!(keys, ["annotations", "duration", "fps", "subset"]);
        let seg = &entry["annotations"][0];
        assert!(seg["segment"].as_array().map(|s| s.len()) == Some(2));
        assert!(CLASSES.contains(&seg["label"].as_str().expect("label")));
    }

    let gt = GroundTruth::read(&a.path().join("ground_truth.json")).expect("read gt");
    let subsets: Vec<&str> = gt.database.values().map(|v| v.subset.as_str()).collect();
    assert_eq!(subsets.iter().filter(|s| **s == "validation").count(), 4);
    let mut jobs = Vec::new();
    for (id, entry) in &gt.database {
        let path = find_video(&a.path().join("videos"), id).expect("video file");
        let twin = b.path().join("videos").join(format!("{id}.mp4"));
        assert!(
            std::fs::read(&path).expect("a") == std::fs::read(&twin).expect("b"),
            "{id} differs between runs"
        );
        let index = VideoIndex::build(&path).expect("index");
        assert!((index.duration() - entry.duration).abs() < 1e-6, "{id}");
        assert_eq!(index.codec, "h264");
        assert_eq!(index.width, 64);
        jobs.push(VideoJob {
            id: id.clone(),
            path,
            annotated_duration: Some(entry.duration),
        });
    }

    let clips: ClipIndex = serde_json::from_slice(&clips_a).expect("clips json");
    assert_eq!(summary.clips, clips.clips.len());
    let annotated: usize = gt.database.values().map(|v| v.annotations.len()).sum();
    assert_eq!(clips.clips.len(), annotated);
    for clip in &clips.clips {
        let index = VideoIndex::build(&a.path().join(&clip.file)).expect("clip index");
        let want = clip.segment[1] - clip.segment[0];
        assert!((index.duration() - want).abs() < 1e-6, "{}", clip.file);
        assert_eq!(CLASSES[clip.label_index], clip.label);
    }

    let plan = Fidelity::new(16, 32)
        .expect("fidelity")
        .apply(&SamplingPlan::new(1).expect("plan"));
    let mut loader = Loader::new(jobs, LoaderConfig::new(plan)).expect("loader");
    let n = loader.by_ref().count();
    let report = loader.finish();
    assert_eq!(n, 16);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // No temporary files left behind.
    for sub in ["videos", "clips"] {
        for e in std::fs::read_dir(a.path().join(sub)).expect("dir") {
            let name = e.expect("entry").file_name();
            assert!(!name.to_string_lossy().ends_with(".partial"));
        }
    }
}
