//! NVIDIA specifics cubecl-cuda reads even when NVRTC compiles its kernels.

pub mod ptx_version;
