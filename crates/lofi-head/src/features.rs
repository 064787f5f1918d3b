//! Feature files: our extraction output and the peers' published features, read into one shape.
//!
//! Exists because the head trainer must run on features from anywhere: ours (`<id>.npy`, `[L, C]`
//! float32 plus `index.json`, see the issue-5 contract), ActivityNet/OpenTAD-style `.npy` files
//! (`[T, C]` per video, any float width), and G-TAD/BSN-style `.csv` files (a header line, then
//! `T` rows of `C` comma-separated values). Whatever the source, [`FeatureStore::load`] returns a
//! `[T, C]` array and [`resample_linear`] brings it to the head's temporal scale `L`.
//!
//! HDF5 (`.h5`) is deliberately not read: the maintained Rust bindings need a matching system
//! libhdf5 and a build script we could not validate against Debian's `libhdf5-dev` offline; a
//! `.h5` file is refused with a message saying how to convert it.
//!
//! # Temporal rescaling
//! Linear interpolation along time only, aligning snippet centres: output step `i` of `L` reads
//! source position `(i + 0.5) T / L - 0.5`, clamped to `[0, T - 1]`, from its two neighbours.
//! With `T == L` this is the identity.

use std::path::{Path, PathBuf};

use crate::error::{HeadError, Result};
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

/// A folder of feature files, ours or a peer's.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    /// The folder.
    pub dir: PathBuf,
    /// Its `index.json`, when it has one.
    pub index: Option<FeatureIndex>,
}

impl FeatureStore {
    /// Opens a feature folder (reads `index.json` when present).
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(HeadError::format(dir, "feature folder does not exist"));
        }
        let index_path = dir.join(INDEX_FILE);
        let index = if index_path.is_file() {
            Some(FeatureIndex::read(&index_path)?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
        })
    }

    /// The file holding the features of `id`, if any: the index's entry, else `<id>.npy`,
    /// `<id>.csv` (also with the `v_` prefix added or removed), else a `.h5` of that name (which
    /// [`load`](Self::load) then refuses with a conversion hint).
    pub fn locate(&self, id: &str) -> Option<PathBuf> {
        if let Some(entry) = self.index.as_ref().and_then(|i| i.videos.get(id)) {
            let p = self.dir.join(&entry.file);
            if p.is_file() {
                return Some(p);
            }
        }
        let mut names = vec![id.to_string()];
        match id.strip_prefix("v_") {
            Some(bare) => names.push(bare.to_string()),
            None => names.push(format!("v_{id}")),
        }
        for ext in ["npy", "csv", "h5", "hdf5"] {
            for name in &names {
                let p = self.dir.join(format!("{name}.{ext}"));
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// Loads the raw `[T, C]` features of `id`; errors name the file and the video.
    pub fn load(&self, id: &str) -> Result<Array2> {
        let Some(path) = self.locate(id) else {
            return Err(HeadError::features(
                id,
                self.dir.join(format!("{id}.npy")),
                "no feature file (looked for <id>.npy / <id>.csv, with and without the v_ prefix)",
            ));
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let array = match ext.as_str() {
            "npy" => npy::read_2d(&path).map_err(|e| HeadError::features(id, &path, e.0))?,
            "csv" => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| HeadError::features(id, &path, format!("cannot read: {e}")))?;
                parse_csv(&text).map_err(|e| HeadError::features(id, &path, e))?
            }
            _ => {
                return Err(HeadError::features(
                    id,
                    &path,
                    "HDF5 feature files are not supported; convert them to one .npy per video \
                     (e.g. numpy.save(f'{id}.npy', h5file[id][()].astype('float32')))",
                ))
            }
        };
        if array.rows == 0 || array.cols == 0 {
            return Err(HeadError::features(
                id,
                &path,
                format!("empty array [{}, {}]", array.rows, array.cols),
            ));
        }
        if let Some(i) = array.data.iter().position(|v| !v.is_finite()) {
            return Err(HeadError::features(
                id,
                &path,
                format!(
                    "value at time step {}, channel {} is {} (not finite)",
                    i / array.cols,
                    i % array.cols,
                    array.data[i]
                ),
            ));
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
                let path = self.locate(id).unwrap_or_else(|| self.dir.clone());
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
