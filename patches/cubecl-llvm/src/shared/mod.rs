//! Items cubecl-cuda imports from the real crate's `shared` module.

pub mod lowered_features;
