//! Feature files: our extraction output and the peers' published features, read into one shape.
//!
//! Exists because the head trainer must run on features from anywhere: ours (`<id>.npy`, `[L, C]`
//! float32 plus `index.json`, see the issue-5 contract), ActivityNet/OpenTAD-style `.npy` files
//! (`[T, C]` per video, any float width), G-TAD/BSN-style `.csv` files (a header line, then
//! `T` rows of `C` comma-separated values), and HDF5 (see [`crate::h5`]): one `.h5` file with a
//! dataset per video, as TSP and G-TAD write them (the store is then that file, not a folder),
//! one `<id>.h5` per video in a folder, or a folder of such many-video files (TSP publishes one
//! per subset, and `train-head` reads the training and validation subsets from one store).
//! Whatever the source, [`FeatureStore::load`] returns a `[T, C]` array and [`resample_linear`]
//! brings it to the head's temporal scale `L`.
//!
//! A folder with an `index.json` (lofi's own, or the Python package's) holds the videos it lists
//! and no other; each is read through lofi-eval's checked reader
//! (`lofi_eval::feature_folder::read_indexed`: its own `<id>.npy` inside the folder, the bytes the
//! index recorded, the recorded shape, finite values), the reader the Python package uses too.
//!
//! In a folder without an index, a video's own file wins; only a video without one is looked up
//! in the folder's HDF5 files (listed once, at the first such video; unreadable ones are named in
//! the error if the video is found nowhere), and a video found in two of them (G-TAD's THUMOS14
//! `rgb_val.h5` beside `flow_val.h5`) is refused rather than one stream picked.
//!
//! # Temporal rescaling
//! Linear interpolation along time only, aligning snippet centres: output step `i` of `L` reads
//! source position `(i + 0.5) T / L - 0.5`, clamped to `[0, T - 1]`, from its two neighbours.
//! With `T == L` this is the identity.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{HeadError, Result};
use crate::h5::{id_variants, H5File};
use crate::npy::{self, Array2};

pub use lofi_eval::feature_folder::{FailedVideo, FeatureIndex, IndexEntry, INDEX_FILE};

/// Parses a G-TAD/BSN-style CSV feature file: one header line, then `T` rows of `C` values.
pub fn parse_csv(text: &str) -> std::result::Result<Array2, String> {
    let mut lines = text.lines();
    if lines.next().is_none() {
        return Err(
            "the file is empty (expected a header line, then one row per time step)".into(),
        );
    }
    let mut data = Vec::new();
    let mut cols = 0;
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start = data.len();
        for field in line.split(',') {
            let v: f32 = field
                .trim()
                .parse()
                .map_err(|_| format!("line {}: {:?} is not a number", i + 2, field.trim()))?;
            data.push(v);
        }
        let n = data.len() - start;
        if rows == 0 {
            cols = n;
        } else if n != cols {
            return Err(format!(
                "line {}: {n} values, but the first row has {cols}",
                i + 2
            ));
        }
        rows += 1;
    }
    if rows == 0 {
        return Err("no data rows after the header line".into());
    }
    Ok(Array2 { rows, cols, data })
}

/// Resamples `[T, C]` to `[l, C]` by linear interpolation along time (see the module docs).
pub fn resample_linear(a: &Array2, l: usize) -> Vec<f32> {
    let (t, c) = (a.rows, a.cols);
    if t == l {
        return a.data.clone();
    }
    let mut out = vec![0f32; l * c];
    for i in 0..l {
        let pos = ((i as f64 + 0.5) * t as f64 / l as f64 - 0.5).clamp(0.0, (t - 1) as f64);
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(t - 1);
        let w = (pos - lo as f64) as f32;
        let (row_lo, row_hi) = (&a.data[lo * c..(lo + 1) * c], &a.data[hi * c..(hi + 1) * c]);
        for (k, o) in out[i * c..(i + 1) * c].iter_mut().enumerate() {
            *o = row_lo[k] * (1.0 - w) + row_hi[k] * w;
        }
    }
    out
}

/// Reads one per-video file of a folder by its extension: `.npy`, `.csv`, or an HDF5 file
/// holding that video (its dataset named by the id, or its only dataset).
fn read_file(id: &str, path: &Path) -> Result<Array2> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => npy::read_2d(path).map_err(|e| HeadError::features(id, path, e.0)),
        "csv" => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| HeadError::features(id, path, format!("cannot read: {e}")))?;
            parse_csv(&text).map_err(|e| HeadError::features(id, path, e))
        }
        _ => {
            let file = H5File::open(path).map_err(|e| HeadError::features(id, path, e))?;
            let name = file
                .find_single(id)
                .map_err(|e| HeadError::features(id, path, e))?;
            file.read_2d(&name)
                .map_err(|e| HeadError::features(id, path, e))
        }
    }
}

/// One video's features at the head's temporal scale.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFeatures {
    /// Video id.
    pub id: String,
    /// Seconds the features cover.
    pub duration: f64,
    /// Temporal length `L`.
    pub l: usize,
    /// Channels `C`.
    pub c: usize,
    /// `[L, C]` row-major.
    pub data: Vec<f32>,
}

/// Where a [`FeatureStore`] reads from.
#[derive(Debug, Clone)]
enum Source {
    /// A folder of per-video files (and perhaps of HDF5 files holding many videos).
    Folder {
        /// Which of the folder's HDF5 files hold which datasets, listed at the first video that
        /// has no per-video file.
        collections: OnceLock<std::result::Result<Collections, String>>,
    },
    /// One HDF5 file with a dataset per video.
    H5(H5File),
}

/// The root datasets of a folder's HDF5 files, so that a folder with TSP's `train` / `valid` /
/// `test` files side by side serves every subset.
#[derive(Debug, Clone, Default)]
struct Collections {
    /// Dataset name -> the files holding a dataset of that name at their root.
    by_name: HashMap<String, Vec<PathBuf>>,
    /// The folder's HDF5 files that could not be read, with why.
    unreadable: Vec<String>,
}

/// Where one video's features are.
enum Found {
    /// The file the folder's index lists for the video, read through lofi-eval's checked reader.
    Indexed(PathBuf, IndexEntry),
    /// A per-video file in a folder without an index (a peer's features).
    File(PathBuf),
    /// Dataset `name` of an HDF5 file holding many videos.
    Dataset {
        /// The file.
        file: H5File,
        /// The dataset's name at the file's root.
        name: String,
    },
    /// Datasets for the video in several of the folder's HDF5 files (sorted).
    Ambiguous(Vec<PathBuf>),
    /// The folder's HDF5 files could not be listed.
    Unreadable(String),
}

/// Feature files, ours or a peer's: a folder of per-video files, or one HDF5 file.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    /// The folder, or the HDF5 file.
    pub path: PathBuf,
    /// The folder's `index.json`, when it has one (never for an HDF5 file).
    pub index: Option<FeatureIndex>,
    source: Source,
}

/// Whether `path` names an HDF5 file by its extension (`.h5`, `.hdf5`, `.hdf`).
fn is_h5_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["h5", "hdf5", "hdf"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Lists the root datasets of every HDF5 file in `dir`.
fn list_collections(dir: &Path) -> std::result::Result<Collections, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_h5_name(p))
        .collect();
    files.sort();
    let mut out = Collections::default();
    for path in files {
        match H5File::open(&path).and_then(|f| f.dataset_names()) {
            Ok(names) => {
                for name in names {
                    out.by_name.entry(name).or_default().push(path.clone());
                }
            }
            Err(e) => out.unreadable.push(format!("{}: {e}", path.display())),
        }
    }
    Ok(out)
}

impl FeatureStore {
    /// Opens a feature folder (reading `index.json` when present) or an HDF5 file (`.h5`,
    /// `.hdf5`) holding one dataset per video.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            if !is_h5_name(path) {
                return Err(HeadError::format(
                    path,
                    "is a file, not a feature folder; features are a folder of per-video files \
                     (.npy, .csv, .h5) or one HDF5 file (.h5, .hdf5) with a dataset per video",
                ));
            }
            let file = H5File::open(path).map_err(|e| HeadError::format(path, e))?;
            return Ok(Self {
                path: path.to_path_buf(),
                index: None,
                source: Source::H5(file),
            });
        }
        if !path.is_dir() {
            return Err(HeadError::format(
                path,
                "feature folder (or .h5 file) does not exist",
            ));
        }
        let index_path = path.join(INDEX_FILE);
        let index = if index_path.is_file() {
            Some(FeatureIndex::read(&index_path)?)
        } else {
            None
        };
        Ok(Self {
            path: path.to_path_buf(),
            index,
            source: Source::Folder {
                collections: OnceLock::new(),
            },
        })
    }

    /// Whether this store is one HDF5 file (rather than a folder).
    pub fn is_h5_file(&self) -> bool {
        matches!(self.source, Source::H5(_))
    }

    fn find(&self, id: &str) -> Option<Found> {
        let (dir, collections) = match &self.source {
            Source::H5(file) => {
                return file.find(id).map(|name| Found::Dataset {
                    file: file.clone(),
                    name,
                })
            }
            Source::Folder { collections } => (&self.path, collections),
        };
        // A folder with an index holds the videos it lists, in the files it names, and no
        // other: a stray `<id>.npy` beside it (a video the index lists as failed, or left by a
        // stopped writer) is not read.
        if let Some(index) = &self.index {
            let entry = index.videos.get(id)?;
            let p = dir.join(&entry.file);
            return (entry.check_file(id).is_err() || p.is_file())
                .then(|| Found::Indexed(p, entry.clone()));
        }
        let names = id_variants(id);
        for ext in ["npy", "csv", "h5", "hdf5"] {
            for name in &names {
                let p = dir.join(format!("{name}.{ext}"));
                if p.is_file() {
                    return Some(Found::File(p));
                }
            }
        }
        // No per-video file: a dataset of that name in one of the folder's HDF5 files.
        let map = match collections.get_or_init(|| list_collections(dir)) {
            Ok(c) => &c.by_name,
            Err(e) => return Some(Found::Unreadable(e.clone())),
        };
        let name = names.into_iter().find(|n| map.contains_key(n))?;
        match map[&name].as_slice() {
            [one] => Some(match H5File::open(one) {
                Ok(file) => Found::Dataset { file, name },
                Err(e) => Found::Unreadable(format!("{}: {e}", one.display())),
            }),
            several => Some(Found::Ambiguous(several.to_vec())),
        }
    }

    /// The file holding the features of `id`, if any. In a folder: the index's entry, else
    /// `<id>.npy`, `<id>.csv`, `<id>.h5`, `<id>.hdf5` (also with the `v_` prefix added or
    /// removed), else the folder's HDF5 file that has a dataset named so at its root. In an
    /// HDF5 store: the file itself when it has a dataset for `id` (named `id`, or with the
    /// prefix added or removed).
    pub fn locate(&self, id: &str) -> Option<PathBuf> {
        match self.find(id)? {
            Found::Indexed(p, _) | Found::File(p) => Some(p),
            Found::Dataset { file, .. } => Some(file.path().to_path_buf()),
            Found::Ambiguous(files) => files.first().cloned(),
            Found::Unreadable(_) => None,
        }
    }

    /// Loads the raw `[T, C]` features of `id`; errors name the file (and, in HDF5, the
    /// dataset) and the video.
    pub fn load(&self, id: &str) -> Result<Array2> {
        // Read from an HDF5 file holding many videos, every message also names the dataset.
        let (path, array, within) = match (&self.source, self.find(id)) {
            (_, Some(Found::Dataset { file, name })) => {
                let path = file.path().to_path_buf();
                let array = file
                    .read_2d(&name)
                    .map_err(|e| HeadError::features(id, &path, e))?;
                (path, array, format!("dataset {:?}: ", format!("/{name}")))
            }
            (_, Some(Found::Indexed(_, entry))) => {
                // Every check (file, recorded hash, shape, finite values) is the shared reader's.
                return lofi_eval::feature_folder::read_indexed(&self.path, id, &entry)
                    .map_err(|e| HeadError::features(id, e.path, e.problem));
            }
            (_, Some(Found::File(path))) => {
                let array = read_file(id, &path)?;
                (path, array, String::new())
            }
            (_, Some(Found::Ambiguous(files))) => {
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                return Err(HeadError::features(
                    id,
                    &self.path,
                    format!(
                        "{} HDF5 files of this folder hold a dataset for it ({}); lofi reads one \
                         stream per video, so keep one file per subset (not rgb and flow side by \
                         side)",
                        files.len(),
                        names.join(", ")
                    ),
                ));
            }
            (_, Some(Found::Unreadable(e))) => {
                return Err(HeadError::features(
                    id,
                    &self.path,
                    format!(
                        "no per-video file, and the folder's HDF5 files could not be read: {e}"
                    ),
                ))
            }
            (Source::H5(file), None) => {
                return Err(HeadError::features(
                    id,
                    &self.path,
                    file.missing_message(id),
                ))
            }
            (Source::Folder { .. }, None) if self.index.is_some() => {
                let index = self.index.as_ref();
                let message = index.map(|i| i.missing_reason(id)).unwrap_or_default();
                let file = index
                    .and_then(|i| i.videos.get(id))
                    .map_or_else(|| format!("{id}.npy"), |e| e.file.clone());
                return Err(HeadError::features(id, self.path.join(file), message));
            }
            (Source::Folder { collections }, None) => {
                let mut message = "no feature file (looked for <id>.npy / <id>.csv / <id>.h5, \
                                   with and without the v_ prefix, and for a dataset of that name \
                                   in the folder's HDF5 files)"
                    .to_string();
                match collections.get() {
                    Some(Ok(c)) if !c.unreadable.is_empty() => message.push_str(&format!(
                        "; unreadable HDF5 files skipped: {}",
                        c.unreadable.join("; ")
                    )),
                    _ => {}
                }
                return Err(HeadError::features(
                    id,
                    self.path.join(format!("{id}.npy")),
                    message,
                ));
            }
        };
        if array.rows == 0 || array.cols == 0 {
            return Err(HeadError::features(
                id,
                &path,
                format!("{within}empty array [{}, {}]", array.rows, array.cols),
            ));
        }
        if let Err(problem) = lofi_eval::feature_folder::check_finite(&array) {
            return Err(HeadError::features(id, &path, format!("{within}{problem}")));
        }
        if let Some(entry) = self.index.as_ref().and_then(|i| i.videos.get(id)) {
            if entry.shape != [array.rows, array.cols] {
                return Err(HeadError::features(
                    id,
                    &path,
                    format!(
                        "shape [{}, {}] differs from the index's {:?}",
                        array.rows, array.cols, entry.shape
                    ),
                ));
            }
        }
        Ok(array)
    }

    /// Loads `id` as it is (`[T, C]`, no resampling) with its seconds per snippet: the index's
    /// `snippet_seconds` (stride features), else `duration / T` (features spread over the
    /// video); `channels`, when given, must match.
    pub fn load_timed(
        &self,
        id: &str,
        duration: f64,
        channels: Option<usize>,
    ) -> Result<crate::windows::TimedFeatures> {
        let a = self.load(id)?;
        self.check_channels(id, a.cols, channels)?;
        let step = self
            .index
            .as_ref()
            .and_then(|i| i.videos.get(id))
            .and_then(|e| e.snippet_seconds)
            .unwrap_or(duration / a.rows as f64);
        Ok(crate::windows::TimedFeatures {
            features: VideoFeatures {
                id: id.to_string(),
                duration,
                l: a.rows,
                c: a.cols,
                data: a.data,
            },
            step,
        })
    }

    fn check_channels(&self, id: &str, cols: usize, channels: Option<usize>) -> Result<()> {
        match channels {
            Some(c) if c != cols => {
                let path = self.locate(id).unwrap_or_else(|| self.path.clone());
                Err(HeadError::features(
                    id,
                    path,
                    format!("has {cols} channels, expected {c}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Loads `id` and resamples it to `l` steps; `channels`, when given, must match.
    pub fn load_at(
        &self,
        id: &str,
        duration: f64,
        l: usize,
        channels: Option<usize>,
    ) -> Result<VideoFeatures> {
        let a = self.load(id)?;
        self.check_channels(id, a.cols, channels)?;
        Ok(VideoFeatures {
            id: id.to_string(),
            duration,
            l,
            c: a.cols,
            data: resample_linear(&a, l),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_reads_rows_and_names_bad_lines() {
        let a = parse_csv("f0,f1,f2\n1,2,3\n4,5,6.5\n").expect("valid");
        assert_eq!((a.rows, a.cols), (2, 3));
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        assert!(parse_csv("h\n1,2\n3\n")
            .expect_err("ragged")
            .contains("line 3"));
        assert!(parse_csv("h\n1,x\n").expect_err("nan").contains("\"x\""));
        assert!(parse_csv("").is_err());
        assert!(parse_csv("header only\n").is_err());
    }

    #[test]
    fn resampling_is_identity_at_equal_length_and_linear_otherwise() {
        let a = Array2 {
            rows: 4,
            cols: 2,
            data: vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0],
        };
        assert_eq!(resample_linear(&a, 4), a.data);
        // Doubling: centres at (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, ... clamped at the ends.
        let up = resample_linear(&a, 8);
        let ch0: Vec<f32> = up.chunks(2).map(|r| r[0]).collect();
        assert_eq!(ch0, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        // Halving: positions 0.5 and 2.5.
        let down = resample_linear(&a, 2);
        assert_eq!(down, vec![0.5, 10.5, 2.5, 12.5]);
        // Channels never mix.
        assert!(up.chunks(2).all(|r| (r[1] - r[0] - 10.0).abs() < 1e-5));
    }
}
