//! lofi for Python: the exact ActivityNet/THUMOS evaluator, NMS / Soft-NMS / class fusion on
//! numpy arrays, and lofi feature folders, as the extension module `lofi._lofi` of an abi3 wheel
//! (CPython 3.9 and later).
//!
//! Why it exists: temporal action localization research runs in Python, and every peer carries
//! its own copy of the official ActivityNet evaluator, which takes minutes at ActivityNet scale.
//! This crate puts `lofi-eval` (the same code as `lofi eval`, bit-identical to the official
//! arithmetic) behind a Python API, including drop-in `ANETdetection` / `ANETproposal` classes,
//! so that a peer's script changes one import.
//!
//! Layout: the Python package is `python/lofi` (ergonomics, numpy and pandas handling, the
//! drop-in classes); the Rust side (`python` module, behind the `python` feature that maturin
//! turns on) converts Python objects to `lofi-eval`'s types with the same checks and messages as
//! the file readers, and runs the evaluation without the GIL. The feature-folder code
//! ([`features`]) is plain Rust, tested without Python; it depends on `lofi-eval` only, so the
//! wheel carries neither burn nor FFmpeg.

pub mod features;

#[cfg(feature = "python")]
mod python;
