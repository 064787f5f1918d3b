//! The PyO3 glue: the functions of `lofi._lofi` and how `lofi-eval`'s errors become Python
//! exceptions.
//!
//! Errors about the content of an input (bad JSON layout, a segment ending before it starts, an
//! unknown label, out-of-range arguments) become `ValueError` with exactly the message `lofi eval`
//! prints, except that an in-memory input is named `<predictions dict>`, `<ground truth
//! DataFrame>`, ... where the CLI names the file. A file that cannot be opened raises `OSError`
//! (`FileNotFoundError` when it does not exist), as Python's own `open` would.

mod eval;
mod features;
mod inputs;
mod post;

use lofi_eval::EvalError;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;

/// Converts an evaluation error into the Python exception described in the module docs.
pub(crate) fn to_py(error: EvalError) -> PyErr {
    match &error {
        EvalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(error.to_string())
        }
        EvalError::Io { .. } => PyOSError::new_err(error.to_string()),
        _ => PyValueError::new_err(error.to_string()),
    }
}

/// The extension module `lofi._lofi`; the public API is the `lofi` package around it.
#[pymodule]
#[pyo3(name = "_lofi")]
fn lofi_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "THUMOS14_DISPUTED_TEST_VIDEOS",
        lofi_eval::THUMOS14_DISPUTED_TEST_VIDEOS.to_vec(),
    )?;
    m.add(
        "THUMOS14_AMBIGUOUS_LABEL",
        lofi_eval::THUMOS14_AMBIGUOUS_LABEL,
    )?;
    m.add_function(wrap_pyfunction!(eval::evaluate_detection, m)?)?;
    m.add_function(wrap_pyfunction!(eval::analyze_detection, m)?)?;
    m.add_function(wrap_pyfunction!(eval::evaluate_proposals, m)?)?;
    m.add_function(wrap_pyfunction!(eval::tables, m)?)?;
    m.add_function(wrap_pyfunction!(eval::parse_thresholds, m)?)?;
    m.add_function(wrap_pyfunction!(post::nms, m)?)?;
    m.add_function(wrap_pyfunction!(post::soft_nms, m)?)?;
    m.add_function(wrap_pyfunction!(post::fuse_classes, m)?)?;
    m.add_class::<features::FeatureFolderReader>()?;
    m.add_function(wrap_pyfunction!(features::write_feature_folder, m)?)?;
    Ok(())
}
