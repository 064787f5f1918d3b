//! Offline stand-in for cubecl-llvm 0.11.3 (see this crate's README.md).
//!
//! Why it exists: cubecl-cuda 0.11.3 depends on cubecl-llvm unconditionally, and the real crate's
//! build downloads LLVM from GitHub, which machines that reach only package registries cannot do.
//! lofi compiles CUDA kernels with NVRTC (cubecl's `cuda-cpp`), so it needs from cubecl-llvm only
//! the names cubecl-cuda refers to. This crate defines exactly those; its compiler refuses every
//! kernel with an error that says the LLVM backend is not part of this build, so choosing that
//! backend by mistake is a clear failure, never wrong code.

pub mod nvptx;
pub mod shared;

use cubecl_core::ir::nvidia::SmArch;
use cubecl_environment::backtrace::BackTrace;
use cubecl_runtime::compiler::{CompilationError, Compiler};
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};

use crate::nvptx::ptx_version::PtxVersion;

/// What the message of every refused compilation says.
pub const NOT_BUILT: &str = "cubecl's LLVM (pliron) kernel compiler is not part of this build: \
     lofi replaces cubecl-llvm with an offline stand-in and compiles CUDA kernels with NVRTC \
     (cubecl's `cuda-cpp` feature). Build with the `cuda` feature, which selects NVRTC, or use \
     upstream cubecl-llvm (README: GPUs and scale)";

/// The code generation target the real crate lowers to. Only NVPTX is named here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    /// NVIDIA PTX, the only target cubecl-cuda configures.
    #[default]
    Nvptx,
}

/// The LLVM compiler's options, with the fields cubecl-cuda fills in.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMD GPU architecture (unused by the CUDA runtime, which sets `None`).
    pub arch: Option<String>,
    /// The NVIDIA compute capability to compile for.
    pub sm_arch: Option<SmArch>,
    /// The PTX version to emit.
    pub ptx_version: Option<PtxVersion>,
    /// Whether scalars travel in the kernel parameter block.
    pub grid_constants: bool,
}

/// A compiled PTX module, as cubecl-cuda's LLVM path loads it. This crate never produces one.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX text.
    pub ptx: Vec<core::ffi::c_char>,
    /// The kernel's entry point.
    pub entrypoint: String,
    /// Intermediate representation, for logs and cache keys.
    pub ir: String,
    /// Dynamic shared memory per launch, in bytes.
    pub shared_memory_size: usize,
    /// How the kernel uses each buffer binding.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM compiler returns.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    /// PTX for the CUDA driver.
    NvptxCode(NvptxModule),
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

/// The LLVM kernel compiler's place in cubecl's [`Compiler`] interface. Every `compile` fails
/// with [`NOT_BUILT`].
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// The target cubecl-cuda asks for.
    pub target: LlvmTarget,
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: NOT_BUILT.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match repr {
            PlironArtifact::NvptxCode(module) => Some(module.io.clone()),
        }
    }

    fn extension(&self) -> &'static str {
        "ll"
    }

    fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiler_names_what_to_build_instead() {
        let c = PlironCompiler::default();
        assert_eq!(c.target, LlvmTarget::Nvptx);
        assert_eq!(c.lang_tag(), "llvm");
        assert!(NOT_BUILT.contains("cuda-cpp"));
    }
}
