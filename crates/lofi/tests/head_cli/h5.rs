//! `lofi train-head` and `lofi detect` on one HDF5 feature file (`--features FILE.h5`, TSP's
//! layout: a float32 `[T, C]` dataset per video, named `v_<id>`), and their refusal of a file
//! missing a video, naming the file and the dataset.

use crate::common::{lofi, s};

use hdf5_metno as hdf5;

const T: usize = 16;
const C: usize = 8;

/// Writes the ground truth (6 videos of 20 s, 4 training) and the HDF5 features; video `skip`
/// (if any) gets no dataset.
fn write_inputs(
    dir: &std::path::Path,
    skip: Option<usize>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut db = serde_json::Map::new();
    let h5 = dir.join("features.h5");
    let file = hdf5::File::create(&h5).expect("create h5");
    for v in 0..6 {
        let (s, e) = (2.0 + v as f64, 10.0 + v as f64);
        db.insert(
            format!("vid{v}"),
            serde_json::json!({
                "subset": if v < 4 { "training" } else { "validation" },
                "duration": 20.0,
                "annotations": [{"segment": [s, e], "label": if v % 2 == 0 { "jump" } else { "run" }}]
            }),
        );
        if skip == Some(v) {
            continue;
        }
        let data: Vec<f32> = (0..T * C)
            .map(|i| {
                let (t, c) = (i / C, i % C);
                let time = (t as f64 + 0.5) * 20.0 / T as f64;
                let inside = if (s..e).contains(&time) { 1.0 } else { 0.0 };
                match c {
                    0 => inside,
                    1 => inside * if v % 2 == 0 { 1.0 } else { -1.0 },
                    _ => ((c * 3 + t + v) % 4) as f32 / 4.0,
                }
            })
            .collect();
        file.new_dataset::<f32>()
            .chunk((T, C))
            .deflate(9)
            .shape((T, C))
            .create(format!("v_vid{v}").as_str())
            .expect("create dataset")
            .write_raw(&data)
            .expect("write dataset");
    }
    let gt = dir.join("gt.json");
    std::fs::write(
        &gt,
        serde_json::json!({"version": "t", "database": db}).to_string(),
    )
    .expect("write gt");
    (h5, gt)
}

#[test]
fn train_head_and_detect_read_one_h5_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h5, gt) = write_inputs(dir.path(), None);
    let run = dir.path().join("head");
    let (ok, _, err) = lofi(&[
        "train-head",
        "--features",
        s(&h5),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&run),
        "--preset",
        "tiny",
        "--snippets",
        "8",
        "--epochs",
        "2",
    ]);
    assert!(ok, "train-head failed: {err}");
    let meta = lofi_head::HeadMeta::read(&run).expect("head.json");
    assert_eq!((meta.in_channels, meta.snippets), (C, 8));

    let det = dir.path().join("detections.json");
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&run),
        "--features",
        s(&h5),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&det),
    ]);
    assert!(ok, "detect failed: {err}");
    let detections: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&det).expect("detections")).expect("json");
    let results = detections["results"].as_object().expect("results");
    assert!(
        results.contains_key("vid4") && results.contains_key("vid5"),
        "{results:?}"
    );

    // The same file without video 5: detect stops, naming the file and what it looked for.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let (partial, _) = write_inputs(&other, Some(5));
    let (ok, _, err) = lofi(&[
        "detect",
        "--head",
        s(&run),
        "--features",
        s(&partial),
        "--ground-truth",
        s(&gt),
        "--out",
        s(&other.join("det.json")),
    ]);
    assert!(!ok, "a missing video must fail");
    assert!(
        err.contains(s(&partial)) && err.contains("no dataset \"vid5\" (nor \"v_vid5\")"),
        "{err}"
    );
}
