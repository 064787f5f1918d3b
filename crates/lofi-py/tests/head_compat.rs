//! A feature folder written the way the Python package writes it is one that `lofi train-head`
//! reads (`lofi_head::FeatureStore`), and one written by the extractor's code path reads back
//! through the package's reader: the two sides share `lofi_eval::npy` and
//! `lofi_eval::feature_folder`, and this test keeps it so.

use lofi_eval::feature_folder::{FeatureIndex, IndexEntry, INDEX_FILE};
use lofi_eval::npy::Array2;
use lofi_head::features::FeatureStore;
use lofi_py::features::{read_index, read_video, write_folder, FolderMeta, VideoToWrite};
use std::collections::BTreeMap;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn features(rows: usize, cols: usize, offset: f32) -> Array2 {
    Array2 {
        rows,
        cols,
        data: (0..rows * cols).map(|i| offset + i as f32 * 0.5).collect(),
    }
}

#[test]
fn folders_written_for_python_are_read_by_the_head_trainer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let videos = vec![
        VideoToWrite {
            id: "v_a".into(),
            duration: 30.0,
            features: features(6, 4, 0.0),
        },
        VideoToWrite {
            id: "b".into(),
            duration: 12.0,
            features: features(6, 4, 100.0),
        },
    ];
    let meta = FolderMeta {
        frames_per_snippet: 8,
        size: 112,
        encoder: "python".into(),
        failed: Vec::new(),
    };
    write_folder(dir.path(), &videos, &meta)?;
    let store = FeatureStore::open(dir.path())?;
    let index = store.index.as_ref().ok_or("the store found no index")?;
    assert_eq!(index.snippets, 6);
    for video in &videos {
        let loaded = store.load(&video.id)?;
        assert_eq!(loaded, video.features);
        // At the folder's own L, the head sees exactly the written values.
        let at_l = store.load_at(&video.id, video.duration, 6, Some(4))?;
        assert_eq!(at_l.data, video.features.data);
    }
    Ok(())
}

#[test]
fn folders_written_by_the_extractor_path_read_back_for_python() -> TestResult {
    let dir = tempfile::tempdir()?;
    // What `lofi extract` does per video and at the end (lofi_head::npy is lofi_eval::npy).
    let a = features(5, 3, 1.0);
    lofi_head::npy::write_f32_2d(&dir.path().join("x.npy"), a.rows, a.cols, &a.data)?;
    FeatureIndex {
        snippets: 5,
        frames_per_snippet: 4,
        size: 64,
        encoder: "enc.bpk".into(),
        sampling: Default::default(),
        videos: BTreeMap::from([(
            "x".to_string(),
            IndexEntry {
                file: "x.npy".into(),
                duration: 9.5,
                sha256: None,
                shape: [5, 3],
                snippet_seconds: None,
            },
        )]),
        failed: Vec::new(),
    }
    .write(&dir.path().join(INDEX_FILE))?;
    let index = read_index(dir.path())?.ok_or("no index")?;
    assert_eq!(index.videos["x"].duration, 9.5);
    assert_eq!(read_video(dir.path(), Some(&index), "x")?, a);
    Ok(())
}
