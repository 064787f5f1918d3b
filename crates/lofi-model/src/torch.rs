//! What lofi needs to know about burn's LibTorch backend (`--features tch`) outside the model:
//! which devices it runs on, which libtorch the build linked and the process loaded, whether CUDA
//! and cuDNN are there, and the cuDNN autotuning setting.
//!
//! Why here: the library crates are backend-free and take a `&Device` (see the crate docs); the
//! few decisions that depend on the backend (does a device's memory show up in the process's
//! resident set? may cuDNN autotune?) are answered in one place, and compile to "no" without the
//! feature.

use burn::tensor::Device;

/// A backend whose device computes in the process's host memory, so that the CPU memory meter
/// (the resident set) measures its steps and the memory planner's child processes can probe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum HostBackend {
    /// burn's flex backend (`--device cpu`).
    #[default]
    Flex,
    /// burn's LibTorch backend on the CPU (`--device torch`).
    Libtorch,
}

impl HostBackend {
    /// The host backend of `device`, or `None` for a GPU.
    pub fn of(device: &Device) -> Option<Self> {
        if *device == Device::flex() {
            return Some(Self::Flex);
        }
        #[cfg(feature = "tch")]
        {
            #[allow(deprecated)] // burn-tch is deprecated upstream; lofi pins burn 0.22.x for it
            let cpu = Device::libtorch();
            if *device == cpu {
                return Some(Self::Libtorch);
            }
        }
        None
    }

    /// The (non-autodiff) device of this backend; `None` for libtorch in a build without
    /// `--features tch`.
    pub fn device(self) -> Option<Device> {
        match self {
            Self::Flex => Some(Device::flex()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            Self::Libtorch => Some(Device::libtorch()),
            #[cfg(not(feature = "tch"))]
            Self::Libtorch => None,
        }
    }
}

/// Whether `device` computes in this process's host memory ([`HostBackend::of`]).
pub fn uses_host_memory(device: &Device) -> bool {
    HostBackend::of(device).is_some()
}

/// libtorch as built and as loaded (`lofi device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibtorchInfo {
    /// The version whose headers this build compiled against (from `LIBTORCH`).
    pub built_against: String,
    /// Whether the build linked the CUDA variant (`libtorch_cuda.so` was in `LIBTORCH/lib`).
    pub cuda_build: bool,
    /// The version of the libtorch this process loaded, when it can be read (the wheel's
    /// `torch/version.py` beside the loaded `lib/libtorch_cpu.so`).
    pub runtime: Option<String>,
    /// The folder the loaded `libtorch_cpu.so` came from.
    pub loaded_from: Option<String>,
    /// Whether libtorch sees a usable CUDA device, and how many.
    pub cuda_devices: usize,
    /// Whether cuDNN is available to libtorch, and its version (`major*10000 + minor*100 + patch`
    /// in recent releases, as libtorch reports it).
    pub cudnn: Option<i64>,
}

/// What this build and process know about libtorch; `None` without `--features tch`.
pub fn libtorch_info() -> Option<LibtorchInfo> {
    #[cfg(feature = "tch")]
    {
        let loaded = loaded_libtorch_dir();
        let runtime = loaded.as_deref().and_then(runtime_version);
        let cuda_devices = if tch::Cuda::is_available() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        let cudnn =
            (cuda_devices > 0 && tch::Cuda::cudnn_is_available()).then(tch::utils::version_cudnn);
        Some(LibtorchInfo {
            built_against: env!("LOFI_LIBTORCH_BUILT").to_string(),
            cuda_build: env!("LOFI_LIBTORCH_CUDA") == "1",
            runtime,
            loaded_from: loaded.map(|p| p.display().to_string()),
            cuda_devices,
            cudnn,
        })
    }
    #[cfg(not(feature = "tch"))]
    None
}

impl std::fmt::Display for LibtorchInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "libtorch: built against {} ({} variant); loaded {}{}; CUDA: {}; cuDNN: {}",
            self.built_against,
            if self.cuda_build { "CUDA" } else { "CPU" },
            self.runtime.as_deref().unwrap_or("version unknown"),
            self.loaded_from
                .as_deref()
                .map(|d| format!(" from {d}"))
                .unwrap_or_default(),
            match self.cuda_devices {
                0 => "not available".to_string(),
                n => format!("{n} device(s)"),
            },
            match self.cudnn {
                Some(v) => format!("available (version {v})"),
                None => "not available".to_string(),
            }
        )
    }
}

/// The folder of the `libtorch_cpu.so` mapped into this process (Linux: /proc/self/maps).
#[cfg(feature = "tch")]
fn loaded_libtorch_dir() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(|d| d.to_path_buf()))
}

/// `__version__` from the wheel's `torch/version.py` next to `lib/` (e.g. `2.11.0+cu130`).
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
fn runtime_version(lib: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(lib.parent()?.join("version.py")).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("__version__")?.trim_start();
        let v = v
            .strip_prefix(':')
            .map_or(v, |r| r.split_once('=').map_or(r, |(_, v)| v));
        let v = v.strip_prefix('=').unwrap_or(v).trim();
        Some(v.trim_matches(|c| c == '\'' || c == '"').to_string())
    })
}

/// Whether cuDNN may autotune convolution algorithms (`torch.backends.cudnn.benchmark`): off
/// unless `LOFI_CUDNN_BENCHMARK=1`. Autotuning benchmarks every new shape on first use, which
/// costs seconds per shape (and LoFi changes shapes every epoch) for faster later steps.
pub fn cudnn_benchmark_requested() -> bool {
    std::env::var("LOFI_CUDNN_BENCHMARK").is_ok_and(|v| v.trim() == "1")
}

/// Applies [`cudnn_benchmark_requested`] to libtorch (once per process, before the first CUDA
/// step); a no-op without `--features tch`.
pub fn configure_cudnn() {
    #[cfg(feature = "tch")]
    tch::Cuda::cudnn_set_benchmark(cudnn_benchmark_requested());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_wheels_version_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("lib")).expect("mkdir");
        std::fs::write(
            dir.path().join("version.py"),
            "from typing import Optional\n__version__ = '2.11.0+cu130'\ndebug = False\n",
        )
        .expect("write");
        assert_eq!(
            runtime_version(&dir.path().join("lib")).as_deref(),
            Some("2.11.0+cu130")
        );
        std::fs::write(
            dir.path().join("version.py"),
            "__version__: str = \"2.9.0\"\n",
        )
        .expect("write");
        assert_eq!(
            runtime_version(&dir.path().join("lib")).as_deref(),
            Some("2.9.0")
        );
        assert_eq!(runtime_version(&dir.path().join("none/lib")), None);
    }

    #[test]
    fn the_flex_device_uses_host_memory() {
        assert!(uses_host_memory(&Device::flex()));
        assert!(uses_host_memory(&Device::flex().autodiff()));
        assert_eq!(HostBackend::of(&Device::flex()), Some(HostBackend::Flex));
        assert_eq!(HostBackend::Flex.device(), Some(Device::flex()));
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        {
            assert_eq!(
                HostBackend::of(&Device::libtorch().autodiff()),
                Some(HostBackend::Libtorch)
            );
            assert_eq!(HostBackend::of(&Device::libtorch_cuda(0)), None);
        }
    }
}
