//! Feature folders from Python: the index as a dict, one video's features as float32 bytes
//! (which the Python side wraps in a numpy array without copying), and the writer.

use crate::features::{self as folder, FeatureError, FolderMeta, VideoToWrite};
use lofi_eval::feature_folder::FeatureIndex;
use lofi_eval::npy::Array2;
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};
use std::path::{Path, PathBuf};

fn value_error(error: FeatureError) -> PyErr {
    PyValueError::new_err(error.0)
}

fn index_dict<'py>(py: Python<'py>, index: &FeatureIndex) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("snippets", index.snippets)?;
    dict.set_item("frames_per_snippet", index.frames_per_snippet)?;
    dict.set_item("size", index.size)?;
    dict.set_item("encoder", &index.encoder)?;
    let videos = PyDict::new(py);
    for (id, entry) in &index.videos {
        let item = PyDict::new(py);
        item.set_item("file", &entry.file)?;
        item.set_item("duration", entry.duration)?;
        item.set_item("shape", (entry.shape[0], entry.shape[1]))?;
        videos.set_item(id, item)?;
    }
    dict.set_item("videos", videos)?;
    let failed = PyList::empty(py);
    for f in &index.failed {
        let item = PyDict::new(py);
        item.set_item("id", &f.id)?;
        item.set_item("reason", &f.reason)?;
        failed.append(item)?;
    }
    dict.set_item("failed", failed)?;
    Ok(dict)
}

/// An open feature folder: its index (if any) read once, videos read on demand.
#[pyclass(module = "lofi._lofi", name = "FeatureFolderReader", frozen)]
pub(crate) struct FeatureFolderReader {
    dir: PathBuf,
    index: Option<FeatureIndex>,
    ids: Vec<String>,
}

#[pymethods]
impl FeatureFolderReader {
    /// Opens a folder: reads `index.json`, or lists the `.npy` files of a folder without one.
    /// Refuses a folder that a lofi process is writing now, naming it.
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        if !path.is_dir() {
            return Err(PyFileNotFoundError::new_err(format!(
                "{}: feature folder does not exist",
                path.display()
            )));
        }
        folder::check_no_writer(&path).map_err(value_error)?;
        let index = folder::read_index(&path).map_err(value_error)?;
        let ids = match &index {
            Some(index) => index.videos.keys().cloned().collect(),
            None => npy_stems(&path)?,
        };
        Ok(FeatureFolderReader {
            dir: path,
            index,
            ids,
        })
    }

    /// The index as a dict, or `None` for a folder without `index.json`.
    fn index<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.index.as_ref().map(|i| index_dict(py, i)).transpose()
    }

    /// The video ids, sorted.
    fn ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    /// One video's features: `(rows, cols, float32 bytes)`, checked against the index.
    fn read<'py>(
        &self,
        py: Python<'py>,
        id: &str,
    ) -> PyResult<(usize, usize, Bound<'py, PyByteArray>)> {
        let array = py
            .detach(|| folder::read_video(&self.dir, self.index.as_ref(), id))
            .map_err(value_error)?;
        let mut bytes = Vec::with_capacity(array.data.len() * 4);
        for v in &array.data {
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        Ok((array.rows, array.cols, PyByteArray::new(py, &bytes)))
    }
}

/// The `.npy` files of a folder without an index, by name (a peer's feature folder).
fn npy_stems(dir: &Path) -> PyResult<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", dir.display())))?;
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "npy"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Writes a feature folder. `videos`: `(id, duration, rows, cols, float32 bytes)` each;
/// `failed`: `(id, reason)` each.
#[pyfunction]
#[pyo3(signature = (path, videos, frames_per_snippet, size, encoder, failed))]
pub(crate) fn write_feature_folder(
    py: Python<'_>,
    path: PathBuf,
    videos: Vec<(String, f64, usize, usize, Bound<'_, PyBytes>)>,
    frames_per_snippet: usize,
    size: usize,
    encoder: String,
    failed: Vec<(String, String)>,
) -> PyResult<()> {
    let mut to_write = Vec::with_capacity(videos.len());
    for (id, duration, rows, cols, bytes) in videos {
        let data: Vec<f32> = bytes
            .as_bytes()
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        to_write.push(VideoToWrite {
            id,
            duration,
            features: Array2 { rows, cols, data },
        });
    }
    let meta = FolderMeta {
        frames_per_snippet,
        size,
        encoder,
        failed,
    };
    py.detach(|| folder::write_folder(&path, &to_write, &meta))
        .map(|_| ())
        .map_err(value_error)
}
