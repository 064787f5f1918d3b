//! The real crate narrows a device's advertised features to what its LLVM lowering handles.
//! cubecl-cuda calls [`restrict_features`] only when the LLVM backend is the selected one; in this
//! build that backend refuses every kernel, so there is nothing to narrow for.

use cubecl_core::ir::DeviceProperties;

/// The GPU a device's features would be narrowed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    /// NVIDIA PTX.
    Nvptx,
}

/// Leaves `props` as the runtime probed them: the LLVM backend, which the narrowing serves, is
/// not built (its compiler fails every kernel with [`crate::NOT_BUILT`]).
pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
    let _ = (props, target);
}
