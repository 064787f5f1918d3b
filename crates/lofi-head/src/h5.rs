//! HDF5 feature files, as the peers publish them: one dataset per video id, `[T, C]`.
//!
//! Exists because the features people already have for ActivityNet and THUMOS14 often come as
//! HDF5 rather than one `.npy` per video, in two layouts:
//! - one file for a whole subset, holding a dataset per video at its root, named by the video id
//!   (TSP's `merge_pkl_files_into_one_h5_file.py` writes float32 `[T, C]` datasets, chunked and
//!   gzip-compressed; G-TAD's ActivityNet `csv_mean_100.hdf5` and its THUMOS14 `rgb_val.h5` /
//!   `flow_test.h5` have the same layout, the THUMOS14 ones with a row per frame, one stream per
//!   file);
//! - one `<id>.h5` per video in a folder, whose dataset is again named by the id (G-TAD's
//!   "separated files" option).
//!
//! Reading goes through `hdf5-metno` (the maintained fork of the `hdf5` crate) and the system
//! libhdf5, so every filter the library was built with (gzip on Debian) is understood. Float
//! datasets (16, 32 or 64 bit) are converted to `f32` by the library; integer or other element types, and ranks other than 2, are refused with a message
//! naming the dataset, as the `.npy` reader refuses them.

use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;
use hdf5::LocationType;
use hdf5_metno as hdf5;

use crate::npy::Array2;

/// The names a video's features may be stored under: the id itself, then with the ActivityNet
/// `v_` prefix removed (or added when it has none), as peers differ on that prefix.
pub fn id_variants(id: &str) -> [String; 2] {
    let other = match id.strip_prefix("v_") {
        Some(bare) => bare.to_string(),
        None => format!("v_{id}"),
    };
    [id.to_string(), other]
}

/// An open HDF5 file of features.
#[derive(Debug, Clone)]
pub struct H5File {
    path: PathBuf,
    file: hdf5::File,
}

impl H5File {
    /// Opens `path` read-only; the error says why it is not a readable HDF5 file.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = hdf5::File::open(path).map_err(|e| format!("not a readable HDF5 file: {e}"))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first of `id`'s [`id_variants`] that names something at the file's root.
    pub fn find(&self, id: &str) -> Option<String> {
        id_variants(id)
            .into_iter()
            .find(|name| !name.contains('/') && self.file.link_exists(name))
    }

    /// The names of the datasets at the file's root, sorted.
    pub fn dataset_names(&self) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .file
            .member_names()
            .map_err(|e| format!("cannot list the file's members: {e}"))?
            .into_iter()
            .filter(|n| matches!(self.file.loc_type_by_name(n), Ok(LocationType::Dataset)))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The dataset holding `id` in a single-video file (G-TAD's separated layout): the one named
    /// by the id, else the file's only dataset.
    pub fn find_single(&self, id: &str) -> Result<String, String> {
        if let Some(name) = self.find(id) {
            return Ok(name);
        }
        let names = self.dataset_names()?;
        match names.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(format!(
                "no dataset named {id:?} and no dataset at all in this HDF5 file"
            )),
            _ => Err(format!(
                "no dataset named {id:?} in this HDF5 file, and it holds {} others ({}), so \
                 none can be taken for it",
                names.len(),
                sample_names(&names)
            )),
        }
    }

    /// Why `id` is absent, for the error message: what was looked for and what the file holds.
    pub fn missing_message(&self, id: &str) -> String {
        let [a, b] = id_variants(id);
        let held = match self.dataset_names() {
            Ok(names) if names.is_empty() => "it holds no dataset at its root".to_string(),
            Ok(names) => format!(
                "it holds {} datasets at its root ({})",
                names.len(),
                sample_names(&names)
            ),
            Err(e) => e,
        };
        format!("no dataset {a:?} (nor {b:?}) in this HDF5 file; {held}")
    }

    /// Reads dataset `name` as a `[T, C]` float array; errors name the dataset.
    pub fn read_2d(&self, name: &str) -> Result<Array2, String> {
        let what = format!("dataset {:?}", format!("/{name}"));
        match self.file.loc_type_by_name(name) {
            Ok(LocationType::Dataset) => {}
            Ok(other) => {
                let kind = format!("{other:?}").to_lowercase();
                return Err(format!(
                    "{:?} is a {kind}, not a dataset",
                    format!("/{name}")
                ));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
        let dataset = self
            .file
            .dataset(name)
            .map_err(|e| format!("{what}: cannot open: {e}"))?;
        let dtype = dataset
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| format!("{what}: unsupported element type ({e}); expected float"))?;
        if !matches!(dtype, TypeDescriptor::Float(_)) {
            return Err(format!(
                "{what}: element type {dtype} is not supported; expected float16, float32 or \
                 float64"
            ));
        }
        let shape = dataset.shape();
        let [rows, cols] = shape[..] else {
            return Err(format!(
                "{what}: shape {shape:?} has {} dimension(s), expected 2 ([T, C]: time steps x \
                 channels)",
                shape.len()
            ));
        };
        let data: Vec<f32> = dataset
            .read_raw()
            .map_err(|e| format!("{what}: cannot read: {e}"))?;
        if data.len() != rows * cols {
            return Err(format!(
                "{what}: read {} values for shape [{rows}, {cols}]",
                data.len()
            ));
        }
        Ok(Array2 { rows, cols, data })
    }
}

/// Up to three names, quoted, then "...".
fn sample_names(names: &[String]) -> String {
    let mut out: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
    if names.len() > 3 {
        out.push("...".into());
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_add_or_remove_the_activitynet_prefix() {
        assert_eq!(id_variants("v_abc"), ["v_abc".to_string(), "abc".into()]);
        assert_eq!(id_variants("abc"), ["abc".to_string(), "v_abc".into()]);
    }

    #[test]
    fn names_are_sampled_with_an_ellipsis() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(sample_names(&names[..2]), "\"a\", \"b\"");
        assert_eq!(sample_names(&names), "\"a\", \"b\", \"c\", ...");
    }
}
