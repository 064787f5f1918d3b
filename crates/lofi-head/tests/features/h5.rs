//! HDF5 features as TSP and G-TAD write them, written here with the same HDF5 library: one file
//! with a gzip-compressed float32 `[T, C]` dataset per video (`v_<id>`, as TSP names ActivityNet
//! videos), and G-TAD's one-file-per-video folder. The same numbers as `.npy` files must give the
//! same head (losses, weights' effect: detections), and bad files are refused naming the file and
//! the dataset.

use std::path::{Path, PathBuf};

use hdf5_metno as hdf5;
use lofi_head::features::FeatureStore;
use lofi_head::{
    detect, train_head, DetectConfig, DetectInputs, HeadConfig, HeadError, HeadInputs,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VIDEOS: usize = 6;
const T: usize = 24;
const C: usize = 8;

/// The `[T, C]` features of video `v`: channel 0 marks the action, channel 1 its class.
fn features(v: usize) -> Vec<f32> {
    let (s, e) = action(v);
    let mut out = Vec::with_capacity(T * C);
    for t in 0..T {
        let time = (t as f64 + 0.5) * 20.0 / T as f64;
        let inside = if (s..e).contains(&time) { 1.0f32 } else { 0.0 };
        for c in 0..C {
            out.push(match c {
                0 => inside,
                1 if v.is_multiple_of(2) => inside,
                1 => -inside,
                _ => ((c * 7 + t * 3 + v) % 5) as f32 / 5.0 + 0.01 * t as f32,
            });
        }
    }
    out
}

fn action(v: usize) -> (f64, f64) {
    (2.0 + v as f64, 9.0 + v as f64)
}

/// Ground truth with ActivityNet's ids (no `v_` prefix): four training, two validation videos.
fn write_ground_truth(path: &Path) -> std::io::Result<()> {
    let mut db = serde_json::Map::new();
    for v in 0..VIDEOS {
        let (s, e) = action(v);
        db.insert(
            format!("vid{v}"),
            serde_json::json!({
                "subset": if v < 4 { "training" } else { "validation" },
                "duration": 20.0,
                "annotations": [{"segment": [s, e], "label": if v % 2 == 0 { "jump" } else { "run" }}]
            }),
        );
    }
    std::fs::write(
        path,
        serde_json::json!({"version": "t", "database": db}).to_string(),
    )
}

/// TSP's layout: one dataset per video at the root, chunked and gzip-compressed (level 9).
fn write_tsp_h5(path: &Path) -> hdf5::Result<()> {
    write_tsp_videos(path, 0..VIDEOS)
}

/// [`write_tsp_h5`] for some of the videos (TSP publishes one file per subset).
fn write_tsp_videos(path: &Path, videos: std::ops::Range<usize>) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    for v in videos {
        file.new_dataset::<f32>()
            .chunk((T / 2, C))
            .deflate(9)
            .shape((T, C))
            .create(format!("v_vid{v}").as_str())?
            .write_raw(&features(v))?;
    }
    Ok(())
}

/// An uncompressed dataset `name` of `shape` holding `data` (row-major).
fn put<D: hdf5::H5Type>(
    group: &hdf5::Group,
    name: &str,
    shape: &[usize],
    data: &[D],
) -> hdf5::Result<()> {
    let dataset = group.new_dataset::<D>().shape(shape).create(name)?;
    if !data.is_empty() {
        dataset.write_raw(data)?;
    }
    Ok(())
}

fn write_npy_folder(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    for v in 0..VIDEOS {
        lofi_head::npy::write_f32_2d(&dir.join(format!("vid{v}.npy")), T, C, &features(v))?;
    }
    Ok(())
}

/// Runs `f` on a one-thread pool, so that two runs on equal inputs are bit-identical (the CPU
/// backend's parallel reductions otherwise agree only to rounding), and alone in the process
/// (see [`super::one_head_at_a_time`]).
fn one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let _serial = super::one_head_at_a_time();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(f)
}

fn train(features: &Path, gt: &Path, out: PathBuf) -> lofi_head::Result<lofi_head::HeadOutcome> {
    let mut config = HeadConfig::tiny(12);
    config.epochs = 3;
    one_thread(|| {
        train_head(
            &config,
            &HeadInputs {
                device: lofi_head::cpu_device(),
                features: features.to_path_buf(),
                ground_truth: gt.to_path_buf(),
                out,
            },
            &lofi_engine::RunControl::default(),
        )
    })
}

fn detect_with(
    head: &Path,
    features: &Path,
    gt: &Path,
    out: PathBuf,
) -> lofi_head::Result<lofi_head::DetectOutcome> {
    one_thread(|| {
        detect(
            &DetectConfig::default(),
            &DetectInputs {
                head_dir: head.to_path_buf(),
                features: features.to_path_buf(),
                ground_truth: gt.to_path_buf(),
                subset: "validation".into(),
                class_scores: None,
                out,
                class_scores_out: None,
                evaluate: true,
                device: lofi_head::cpu_device(),
                skip_missing_features: false,
            },
        )
    })
}

#[test]
fn tsp_h5_file_trains_and_detects_exactly_as_the_same_features_in_npy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let gt = d.join("gt.json");
    write_ground_truth(&gt)?;
    let h5 = d.join("tsp_features.h5");
    write_tsp_h5(&h5)?;
    let npy = d.join("npy");
    write_npy_folder(&npy)?;

    // The store reads the compressed datasets back bit for bit, under the ground truth's ids.
    let store = FeatureStore::open(&h5)?;
    assert!(store.is_h5_file());
    assert_eq!(store.locate("vid3"), Some(h5.clone()));
    assert_eq!(store.locate("v_vid3"), Some(h5.clone()));
    assert_eq!(store.locate("vid9"), None);
    for v in 0..VIDEOS {
        let a = store.load(&format!("vid{v}"))?;
        assert_eq!((a.rows, a.cols), (T, C));
        assert_eq!(a.data, features(v), "video {v}");
    }

    // TSP's release: one file per subset, side by side in a folder that serves both subsets.
    let split = d.join("split");
    std::fs::create_dir(&split)?;
    write_tsp_videos(&split.join("train_features.h5"), 0..4)?;
    write_tsp_videos(&split.join("valid_features.h5"), 4..VIDEOS)?;

    let from_npy = train(&npy, &gt, d.join("head-npy"))?;
    let from_h5 = train(&h5, &gt, d.join("head-h5"))?;
    let from_split = train(&split, &gt, d.join("head-split"))?;
    assert_eq!(from_split.epoch_loss, from_npy.epoch_loss);
    assert_eq!(from_split.val_average_map, from_npy.val_average_map);
    assert_eq!((from_h5.train_videos, from_h5.val_videos), (4, 2));
    assert_eq!(from_h5.epoch_loss.len(), 3);
    assert!(from_h5.epoch_loss.iter().all(|l| l.is_finite()));
    assert_eq!(from_h5.epoch_loss, from_npy.epoch_loss);
    assert_eq!(from_h5.val_average_map, from_npy.val_average_map);
    assert_eq!(from_h5.best_epoch, from_npy.best_epoch);
    assert_eq!(
        from_h5.classifier_train_accuracy,
        from_npy.classifier_train_accuracy
    );

    let det_npy = detect_with(&d.join("head-npy"), &npy, &gt, d.join("det-npy.json"))?;
    let det_h5 = detect_with(&d.join("head-h5"), &h5, &gt, d.join("det-h5.json"))?;
    assert_eq!(det_h5.videos, 2);
    assert!(det_h5
        .detections
        .results
        .0
        .iter()
        .any(|(_, d)| !d.is_empty()));
    assert_eq!(
        serde_json::to_value(&det_h5.detections)?,
        serde_json::to_value(&det_npy.detections)?
    );
    let (r_h5, r_npy) = (
        det_h5.report.ok_or("no report")?,
        det_npy.report.ok_or("no report")?,
    );
    assert_eq!(r_h5.average_map, r_npy.average_map);
    Ok(())
}

#[test]
fn other_float_widths_and_per_video_files_read_the_same() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let reference = features(1);
    let as_f64: Vec<f64> = reference.iter().map(|v| f64::from(*v)).collect();
    // Every value here is a multiple of 0.01 below 3: not exact in f16, so f16 is compared with
    // the rounding of half precision.
    let as_f16: Vec<half::f16> = reference.iter().map(|v| half::f16::from_f32(*v)).collect();
    let wide = d.join("wide.h5");
    {
        let file = hdf5::File::create(&wide)?;
        put(&file, "v_vid1", &[T, C], &as_f64)?;
        put(&file, "half", &[T, C], &as_f16)?;
    }
    let store = FeatureStore::open(&wide)?;
    assert_eq!(store.load("vid1")?.data, reference);
    let half = store.load("half")?;
    assert_eq!((half.rows, half.cols), (T, C));
    for (h, r) in half.data.iter().zip(&reference) {
        assert!((h - r).abs() <= r.abs() / 1024.0 + 1e-7, "{h} vs {r}");
    }

    // G-TAD's separated layout: a folder of `<id>.h5`, each holding a dataset named by the id
    // (or a single dataset of another name); rescaled to L like any other per-video file.
    let folder = d.join("per-video");
    std::fs::create_dir(&folder)?;
    for (file, dataset) in [("vid1.h5", "vid1"), ("v_vid2.hdf5", "features")] {
        let f = hdf5::File::create(folder.join(file))?;
        put(&f, dataset, &[T, C], &reference)?;
    }
    let store = FeatureStore::open(&folder)?;
    assert!(!store.is_h5_file());
    assert_eq!(store.load("vid1")?.data, reference);
    assert_eq!(store.load("vid2")?.data, reference);
    let at_l = store.load_at("vid2", 20.0, T / 2, Some(C))?;
    assert_eq!((at_l.l, at_l.c), (T / 2, C));
    Ok(())
}

#[test]
fn bad_h5_input_is_refused_naming_the_file_and_the_dataset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let path = d.join("bad.h5");
    {
        let file = hdf5::File::create(&path)?;
        put(&file, "v_ints", &[2, 2], &[1i32, 2, 3, 4])?;
        put(&file, "v_cube", &[2, 3, 4], &[0f32; 24])?;
        put(&file, "flat", &[5], &[0f32; 5])?;
        put(&file, "nan", &[1, 2], &[1f32, f32::NAN])?;
        put::<f32>(&file, "empty", &[0, 4], &[])?;
        file.create_group("grouped")?;
    }
    let store = FeatureStore::open(&path)?;
    let cases = [
        ("ints", "\"/v_ints\"", "element type int32 is not supported"),
        ("cube", "\"/v_cube\"", "has 3 dimension(s), expected 2"),
        ("flat", "\"/flat\"", "has 1 dimension(s), expected 2"),
        ("nan", "\"/nan\"", "not finite"),
        ("empty", "\"/empty\"", "empty array [0, 4]"),
        ("grouped", "\"/grouped\"", "is a group, not a dataset"),
        (
            "absent",
            "no dataset \"absent\" (nor \"v_absent\")",
            "holds 5 datasets",
        ),
    ];
    for (id, dataset, expected) in cases {
        let e = store.load(id).expect_err(id);
        let text = e.to_string();
        assert!(matches!(e, HeadError::Features { .. }), "{id}: {text}");
        assert!(text.contains(&format!("video {id:?}")), "{id}: {text}");
        assert!(text.contains(&path.display().to_string()), "{id}: {text}");
        assert!(text.contains(dataset), "{id}: {text}");
        assert!(text.contains(expected), "{id}: {text}");
    }

    // A missing video stops training, naming the file and the dataset looked for.
    let gt = d.join("gt.json");
    write_ground_truth(&gt)?;
    let partial = d.join("partial.h5");
    write_tsp_h5(&partial)?;
    {
        let file = hdf5::File::open_rw(&partial)?;
        file.unlink("v_vid2")?;
    }
    let e = train(&partial, &gt, d.join("run")).expect_err("missing video");
    let text = e.to_string();
    assert!(
        text.contains("\"vid2\"")
            && text.contains("no dataset \"vid2\" (nor \"v_vid2\")")
            && text.contains(&partial.display().to_string()),
        "{text}"
    );

    // Not HDF5 at all, or not a feature store at all.
    let fake = d.join("fake.h5");
    std::fs::write(&fake, b"\x89HDF\r\n\x1a\nnot really")?;
    let e = FeatureStore::open(&fake).expect_err("fake");
    assert!(
        e.to_string().contains("not a readable HDF5 file") && e.to_string().contains("fake.h5"),
        "{e}"
    );
    let npy_file = d.join("one.npy");
    std::fs::write(&npy_file, b"")?;
    let e = FeatureStore::open(&npy_file).expect_err("a file");
    assert!(
        e.to_string().contains("is a file, not a feature folder"),
        "{e}"
    );
    let e = FeatureStore::open(&d.join("nowhere.h5")).expect_err("absent");
    assert!(e.to_string().contains("does not exist"), "{e}");

    // A per-video file with several datasets, none named by the id.
    let folder = d.join("per-video");
    std::fs::create_dir(&folder)?;
    {
        let f = hdf5::File::create(folder.join("vid0.h5"))?;
        for name in ["rgb", "flow"] {
            put(&f, name, &[2, 2], &[0f32; 4])?;
        }
    }
    let e = FeatureStore::open(&folder)?
        .load("vid0")
        .expect_err("ambiguous");
    assert!(
        e.to_string().contains("vid0.h5") && e.to_string().contains("\"flow\", \"rgb\""),
        "{e}"
    );

    // G-TAD's THUMOS14 folder: rgb and flow files hold the same videos; lofi does not guess.
    let streams = d.join("streams");
    std::fs::create_dir(&streams)?;
    write_tsp_h5(&streams.join("rgb_val.h5"))?;
    write_tsp_h5(&streams.join("flow_val.h5"))?;
    let e = FeatureStore::open(&streams)?
        .load("vid1")
        .expect_err("two streams");
    let text = e.to_string();
    assert!(
        text.contains("2 HDF5 files of this folder hold a dataset for it")
            && text.contains("(flow_val.h5, rgb_val.h5)"),
        "{text}"
    );
    // An unreadable HDF5 file in the folder is skipped, and named when a video is found nowhere.
    std::fs::remove_file(streams.join("flow_val.h5"))?;
    std::fs::write(streams.join("broken.h5"), b"not hdf5")?;
    let store = FeatureStore::open(&streams)?;
    assert_eq!(store.load("vid1")?.data, features(1));
    let e = store.load("vid7").expect_err("absent");
    let text = e.to_string();
    assert!(
        text.contains("no feature file")
            && text.contains("unreadable HDF5 files skipped")
            && text.contains("broken.h5: not a readable HDF5 file"),
        "{text}"
    );
    Ok(())
}
