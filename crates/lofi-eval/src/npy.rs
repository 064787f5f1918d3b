//! A small reader and writer for NumPy's `.npy` format (versions 1-3), 2-D float arrays only.
//!
//! Exists because feature files are the hand-off between extraction and head training, and the
//! peers (ActionFormer, OpenTAD, TSP) publish theirs as `.npy`: one `[T, C]` array per video. The
//! format is small (magic, version, a Python-dict header, raw data), so owning it avoids a
//! dependency and lets every error name the file and say exactly what is wrong. Reading accepts
//! little-endian `f32`, `f64` and `f16` in C order and converts to `f32`; Fortran order and
//! big-endian data are refused with a clear message. Writing produces version 1.0, `<f4`, C order,
//! through a temporary name and a rename so that an interrupted write never leaves a file that
//! looks complete.
//!
//! It lives in this dependency-light crate (rather than beside the extractor in `lofi-head`,
//! which pulls burn and FFmpeg) so that the Python bindings read and write feature folders
//! without the deep-learning stack; `lofi_head::npy` re-exports it.

use crate::write_atomic;
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element type of an `.npy` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `<f2`, IEEE half precision.
    F16,
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// What the header of an `.npy` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Dtype,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

impl NpyHeader {
    /// Number of data bytes the header promises.
    pub fn data_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// Why an `.npy` file was refused (the caller adds the file name and video id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NpyError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, NpyError> {
    Err(NpyError(message.into()))
}

/// The value of `key` in a Python dict literal such as `{'descr': '<f4', 'shape': (3, 4), }`.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pattern = format!("'{key}'");
    let at = header
        .find(&pattern)
        .or_else(|| header.find(&format!("\"{key}\"")));
    let Some(at) = at else {
        return bad(format!("header has no {key:?} entry: {header}"));
    };
    let rest = header[at + pattern.len()..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return bad(format!("header entry {key:?} has no value: {header}"));
    };
    let rest = rest.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q).map(|i| i + 2)
    } else {
        rest.find([',', '}'])
    };
    match end {
        Some(end) => Ok(rest[..end].trim()),
        None => bad(format!("header entry {key:?} is not terminated: {header}")),
    }
}

/// Parses the header of an `.npy` file from its first bytes.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return bad("not a .npy file (missing the \\x93NUMPY magic)");
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return bad("truncated header");
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        v => return bad(format!("unsupported .npy version {v}")),
    };
    let Some(raw) = bytes.get(start..start + len) else {
        return bad("truncated header");
    };
    let header = std::str::from_utf8(raw).map_err(|_| NpyError("header is not text".into()))?;
    let descr = dict_value(header, "descr")?.trim_matches(['\'', '"']);
    let dtype = match descr {
        "<f2" | "=f2" => Dtype::F16,
        "<f4" | "=f4" => Dtype::F32,
        "<f8" | "=f8" => Dtype::F64,
        ">f2" | ">f4" | ">f8" => {
            return bad(format!(
                "dtype {descr} is big-endian; convert it with numpy (a.astype('<f4'))"
            ))
        }
        other => {
            return bad(format!(
                "dtype {other} is not supported (little-endian float16, float32 or float64 only)"
            ))
        }
    };
    match dict_value(header, "fortran_order")? {
        "False" => {}
        "True" => {
            return bad(
                "array is in Fortran order; save it in C order (numpy.ascontiguousarray) first",
            )
        }
        other => return bad(format!("fortran_order is {other}, expected True or False")),
    }
    let shape_text = dict_value(header, "shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| NpyError(format!("shape {shape_text} is not a tuple")))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| NpyError(format!("shape {shape_text} is not a tuple of integers")))?;
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: start + len,
    })
}

/// Reads only the header of the file at `path`.
pub fn read_header(path: &Path) -> Result<NpyHeader, NpyError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| NpyError(format!("cannot open: {e}")))?;
    let mut head = vec![0u8; 4096];
    let mut filled = 0;
    while filled < head.len() {
        let n = file
            .read(&mut head[filled..])
            .map_err(|e| NpyError(format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    parse_header(&head)
}

/// Converts an IEEE 754 half-precision value to `f32`.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let out = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(out)
}

/// A 2-D array of `f32` read from a file, row-major `[rows, cols]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Array2 {
    /// Rows (time steps).
    pub rows: usize,
    /// Columns (channels).
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<f32>,
}

/// Parses a whole `.npy` file holding a 2-D float array.
pub fn parse_2d(bytes: &[u8]) -> Result<Array2, NpyError> {
    let header = parse_header(bytes)?;
    if header.shape.len() != 2 {
        return bad(format!(
            "array has shape {:?}; expected 2 dimensions [T, C]",
            header.shape
        ));
    }
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let need = header.data_bytes();
    let data = &bytes[header.data_offset.min(bytes.len())..];
    if data.len() != need {
        return bad(format!(
            "data has {} bytes but shape {:?} of {:?} needs {need} (truncated or corrupt file)",
            data.len(),
            header.shape,
            header.dtype
        ));
    }
    let values: Vec<f32> = match header.dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
    };
    Ok(Array2 {
        rows,
        cols,
        data: values,
    })
}

/// Reads a 2-D float array from `path`.
pub fn read_2d(path: &Path) -> Result<Array2, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| NpyError(format!("cannot read: {e}")))?;
    parse_2d(&bytes)
}

/// Encodes a `[rows, cols]` `f32` array as `.npy` version 1.0 bytes.
pub fn encode_f32_2d(rows: usize, cols: usize, data: &[f32]) -> Result<Vec<u8>, NpyError> {
    if data.len() != rows * cols {
        return bad(format!("{} values for shape [{rows}, {cols}]", data.len()));
    }
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut header = dict.into_bytes();
    header.resize(total - 10 - 1, b' ');
    header.push(b'\n');
    let len = u16::try_from(header.len()).map_err(|_| NpyError("header too long".into()))?;
    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes a `[rows, cols]` `f32` array to `path` atomically (version 1.0, `<f4`, C order).
pub fn write_f32_2d(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result<(), NpyError> {
    let bytes = encode_f32_2d(rows, cols, data)?;
    write_atomic(path, &bytes).map_err(|e| NpyError(format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(dict: &str, version: u8) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        let mut h = dict.as_bytes().to_vec();
        h.push(b'\n');
        if version == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&h);
        out
    }

    #[test]
    fn round_trip_f32_and_header_alignment() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bytes = encode_f32_2d(3, 4, &data).expect("valid");
        let h = parse_header(&bytes).expect("header");
        assert_eq!(h.data_offset % 64, 0);
        assert_eq!((h.dtype, h.shape.clone()), (Dtype::F32, vec![3, 4]));
        let a = parse_2d(&bytes).expect("parse");
        assert_eq!((a.rows, a.cols, a.data), (3, 4, data));
    }

    #[test]
    fn reads_f64_f16_and_version_2() {
        let mut b = header_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }",
            2,
        );
        b.extend_from_slice(&1.5f64.to_le_bytes());
        b.extend_from_slice(&(-3.25f64).to_le_bytes());
        assert_eq!(parse_2d(&b).expect("f64").data, vec![1.5, -3.25]);
        let mut h = header_bytes(
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 4), }",
            1,
        );
        // 1.0, -2.0, 0.5, 65504 (largest half)
        for bits in [0x3c00u16, 0xc000, 0x3800, 0x7bff] {
            h.extend_from_slice(&bits.to_le_bytes());
        }
        assert_eq!(
            parse_2d(&h).expect("f16").data,
            vec![1.0, -2.0, 0.5, 65504.0]
        );
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    }

    #[test]
    fn refuses_fortran_big_endian_ints_wrong_rank_and_truncation() {
        let cases = [
            (
                "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                "Fortran order",
            ),
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
                "big-endian",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
                "not supported",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
                "2 dimensions",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                "truncated",
            ),
        ];
        for (dict, expected) in cases {
            let mut b = header_bytes(dict, 1);
            b.extend_from_slice(&[0u8; 12]);
            let message = parse_2d(&b).expect_err(dict).0;
            assert!(message.contains(expected), "{dict}: {message}");
        }
        assert!(parse_2d(b"hello world").is_err());
    }
}
