//! The compute device every model-running subcommand uses, chosen once with the global
//! `--device cpu|torch|torch-cuda[:N]|wgpu[:N]|vulkan[:N]|cuda[:N]` flag; `lofi train` also takes a
//! comma-separated list (`--device torch-cuda:0,torch-cuda:1`) and trains data parallel on it.
//!
//! Why this lives in the binary: burn 0.22 carries the backend in the [`Device`] value, so the
//! library crates (lofi-model, lofi-train, lofi-head) are backend-free and take a `&Device`; only
//! the program a person runs decides which backends are compiled in (cargo features `tch`, `wgpu`,
//! `vulkan`, `cuda`) and which one a run uses. A device that is not compiled in, or that cannot be
//! opened (no Vulkan adapter, no CUDA driver), is a clear error naming the choice, never a panic.
//! Before the first GPU device opens, cubecl is pointed at lofi's on-disk kernel cache
//! (`lofi_model::kernel_cache`), so compiled kernels and autotune results outlive the process.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use burn::tensor::Device;

/// A device as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// burn's flex backend on the CPU (always available; what tests and CI use).
    #[default]
    Cpu,
    /// wgpu on whichever graphics API the machine offers (Vulkan, Metal, DX12): the default
    /// adapter, or the discrete GPU with this index (`wgpu:N`).
    Wgpu(Option<usize>),
    /// wgpu pinned to Vulkan (SPIR-V kernels), the verified GPU path on NVIDIA Linux: the default
    /// adapter, or the discrete GPU with this index (`vulkan:N`).
    Vulkan(Option<usize>),
    /// CUDA device with this index (cubecl, kernels compiled at run time by NVRTC).
    Cuda(usize),
    /// burn's LibTorch backend on the CPU (ATen's CPU kernels; `--features tch`).
    Torch,
    /// burn's LibTorch backend on the CUDA device with this index (cuDNN, cuBLAS; the NVIDIA
    /// route that trains from the first step, no kernel compilation; `--features tch` built
    /// against libtorch's CUDA variant).
    TorchCuda(usize),
}

impl DeviceChoice {
    /// Device names this build can open, for error messages and `--help`.
    pub fn compiled() -> Vec<&'static str> {
        let mut names = vec!["cpu"];
        if cfg!(feature = "tch") {
            names.push("torch");
            names.push("torch-cuda[:N]");
        }
        if cfg!(feature = "wgpu") {
            names.push("wgpu[:N]");
        }
        if cfg!(feature = "vulkan") {
            names.push("vulkan[:N]");
        }
        if cfg!(feature = "cuda") {
            names.push("cuda[:N]");
        }
        names
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, i)) => {
                let i = i
                    .parse::<usize>()
                    .map_err(|_| format!("bad device index {i:?} in {s:?}"))?;
                (name, Some(i))
            }
            None => (lower.as_str(), None),
        };
        match (name, index) {
            ("cpu" | "flex", None) => Ok(Self::Cpu),
            ("wgpu", i) => Ok(Self::Wgpu(i)),
            ("vulkan", i) => Ok(Self::Vulkan(i)),
            ("cuda", i) => Ok(Self::Cuda(i.unwrap_or(0))),
            ("torch" | "libtorch", None) => Ok(Self::Torch),
            ("torch-cuda" | "libtorch-cuda", i) => Ok(Self::TorchCuda(i.unwrap_or(0))),
            _ => Err(format!(
                "unknown device {s:?}: use cpu, torch, torch-cuda[:N], wgpu[:N], vulkan[:N] or \
                 cuda[:N]"
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
            Self::Vulkan(None) => write!(f, "vulkan"),
            Self::Vulkan(Some(i)) => write!(f, "vulkan:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Torch => write!(f, "torch"),
            Self::TorchCuda(i) => write!(f, "torch-cuda:{i}"),
        }
    }
}

static CHOICES: OnceLock<Vec<DeviceChoice>> = OnceLock::new();
static OPENED: OnceLock<Vec<Device>> = OnceLock::new();

/// Records the `--device` list; called once by `main` before any subcommand runs.
pub fn select(choices: Vec<DeviceChoice>) {
    // A second call (tests) keeps the first choice, which is what every later `device()` saw.
    let _ = CHOICES.set(choices);
}

fn chosen() -> Vec<DeviceChoice> {
    match CHOICES.get() {
        Some(c) if !c.is_empty() => c.clone(),
        _ => vec![DeviceChoice::Cpu],
    }
}

/// Every device of the `--device` list, opened on first use and then shared (the same choice
/// listed twice is opened once and used twice). The first is the primary.
pub fn devices() -> Result<Vec<Device>> {
    if let Some(d) = OPENED.get() {
        return Ok(d.clone());
    }
    let choices = chosen();
    let mut opened: Vec<(DeviceChoice, Device)> = Vec::new();
    for &c in &choices {
        if !opened.iter().any(|(o, _)| *o == c) {
            opened.push((c, open(c)?));
        }
    }
    let list = choices
        .iter()
        .filter_map(|c| opened.iter().find(|(o, _)| o == c).map(|(_, d)| d.clone()))
        .collect();
    Ok(OPENED.get_or_init(|| list).clone())
}

/// The chosen device for subcommands that run on one. Wrap it with `.autodiff()` to train.
pub fn device() -> Result<Device> {
    let all = devices()?;
    match all.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "--device lists {} devices, but only `lofi train` uses several (data parallel); \
             give one here (to extract on several GPUs, run one process per GPU with \
             --device torch-cuda:K --shard K/N)",
            all.len()
        ),
    }
}

/// The error for a device whose cargo feature is off.
#[cfg_attr(
    all(
        feature = "wgpu",
        feature = "vulkan",
        feature = "cuda",
        feature = "tch"
    ),
    allow(dead_code)
)]
fn not_built(choice: DeviceChoice, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--device {choice} is not compiled into this lofi (build with `--features {feature}`); \
         this build has: {}",
        DeviceChoice::compiled().join(", ")
    )
}

/// wgpu options for the default adapter or the discrete GPU `index` (in wgpu's list of discrete
/// GPUs, which follows the driver's order).
#[cfg(feature = "wgpu")]
fn wgpu_options(index: Option<usize>) -> burn::tensor::wgpu::WgpuOptions {
    let options = Device::wgpu_options();
    match index {
        Some(i) => options.device_kind(burn::tensor::DeviceKind::DiscreteGpu(i)),
        None => options,
    }
}

/// Opens `choice`, failing with a message that names it and what this build offers.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::flex()),
        DeviceChoice::Wgpu(index) => {
            #[cfg(feature = "wgpu")]
            {
                use anyhow::Context as _;
                configure_kernel_cache();
                wgpu_options(index).init().with_context(|| {
                    format!("cannot open --device {choice} (no usable GPU adapter?)")
                })
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = index;
                Err(not_built(choice, "wgpu"))
            }
        }
        DeviceChoice::Vulkan(index) => {
            #[cfg(feature = "vulkan")]
            {
                use anyhow::Context as _;
                configure_kernel_cache();
                wgpu_options(index)
                    .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
                    .init()
                    .with_context(|| {
                        format!(
                            "cannot open --device {choice} (is a Vulkan loader (libvulkan.so.1) and a \
                             GPU driver ICD installed? see VK_DRIVER_FILES)"
                        )
                    })
            }
            #[cfg(not(feature = "vulkan"))]
            {
                let _ = index;
                Err(not_built(choice, "vulkan"))
            }
        }
        DeviceChoice::Cuda(index) => {
            #[cfg(feature = "cuda")]
            {
                open_cuda(choice, index)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(not_built(choice, "cuda"))
            }
        }
        DeviceChoice::Torch => {
            #[cfg(feature = "tch")]
            {
                open_torch(choice, None)
            }
            #[cfg(not(feature = "tch"))]
            {
                Err(not_built(choice, "tch"))
            }
        }
        DeviceChoice::TorchCuda(index) => {
            #[cfg(feature = "tch")]
            {
                open_torch(choice, Some(index))
            }
            #[cfg(not(feature = "tch"))]
            {
                let _ = index;
                Err(not_built(choice, "tch"))
            }
        }
    }
}

/// Opens burn's LibTorch device on the CPU (`cuda: None`) or CUDA device `cuda`. libtorch's CUDA
/// variant is chosen when lofi is built (burn-tch links `libtorch_cuda.so` when `LIBTORCH/lib`
/// has it), so a CPU-variant build, a machine without a usable GPU and a bad index are each one
/// clear line here, before anything touches the device (burn-tch would panic).
#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream; lofi pins burn 0.22.x for it (README)
fn open_torch(choice: DeviceChoice, cuda: Option<usize>) -> Result<Device> {
    let Some(index) = cuda else {
        return Ok(Device::libtorch());
    };
    let info = lofi_model::torch::libtorch_info();
    let info =
        info.ok_or_else(|| anyhow::anyhow!("--device {choice}: no libtorch in this build"))?;
    if !info.cuda_build {
        bail!(
            "cannot open --device {choice}: this lofi was built against a CPU libtorch ({}); \
             rebuild with LIBTORCH at the CUDA layout (scripts/libtorch.sh cuda), or use --device torch",
            info.built_against
        );
    }
    torch_cuda_check(choice, index, info.cuda_devices)?;
    lofi_model::torch::configure_cudnn();
    Ok(Device::libtorch_cuda(index))
}

/// The error for a libtorch CUDA device that libtorch does not see: no GPU or driver at all, or
/// an index past the last device.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
fn torch_cuda_check(choice: DeviceChoice, index: usize, devices: usize) -> Result<()> {
    if devices == 0 {
        bail!(
            "cannot open --device {choice}: libtorch sees no CUDA device (no NVIDIA GPU or driver \
             here, or CUDA_VISIBLE_DEVICES hides it; TCH_PRINT_CUDA_INIT_ERROR=1 prints why); \
             --device torch runs on the CPU"
        );
    }
    if index >= devices {
        bail!(
            "cannot open --device {choice}: libtorch sees {devices} CUDA device(s), numbered 0 to {}",
            devices - 1
        );
    }
    Ok(())
}

static KERNEL_CACHE: OnceLock<lofi_model::kernel_cache::KernelCache> = OnceLock::new();

/// Sets where cubecl keeps compiled kernels and autotune results (once, before the first GPU
/// device opens; see `lofi_model::kernel_cache`) and says where that is.
#[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
fn configure_kernel_cache() -> &'static lofi_model::kernel_cache::KernelCache {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        KERNEL_CACHE.get_or_init(lofi_model::kernel_cache::configure)
    }
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    {
        KERNEL_CACHE.get_or_init(|| lofi_model::kernel_cache::KernelCache::Off)
    }
}

/// The kernel cache of this process when a GPU device was opened (for `lofi device`).
pub fn kernel_cache() -> Option<&'static lofi_model::kernel_cache::KernelCache> {
    KERNEL_CACHE.get()
}

/// Opens CUDA device `index`. burn opens CUDA lazily and its runtime panics when the driver
/// library (libcuda) or NVRTC cannot be loaded, so a small computation runs here under
/// `catch_unwind` with the panic message captured, and the failure becomes an error that says
/// what is missing instead of a panic.
#[cfg(feature = "cuda")]
fn open_cuda(choice: DeviceChoice, index: usize) -> Result<Device> {
    configure_kernel_cache();
    let d = Device::cuda(index);
    let probe = d.clone();
    let (ran, panic) = catch_panic(move || {
        let t = burn::tensor::Tensor::<1>::ones([4], &probe).sum();
        t.into_data()
    });
    match ran {
        Some(_) => Ok(d),
        None => Err(cuda_open_error(choice, panic.as_deref())),
    }
}

/// Runs `f`, turning a panic (on this thread or one it waits on) into `None` plus the first panic
/// message, which is kept off stderr while `f` runs.
#[cfg(feature = "cuda")]
fn catch_panic<T>(f: impl FnOnce() -> T) -> (Option<T>, Option<String>) {
    use std::sync::{Arc, Mutex};
    let message: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = Arc::clone(&message);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| info.to_string());
        if let Ok(mut m) = seen.lock() {
            m.get_or_insert(text);
        }
    }));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    std::panic::set_hook(previous);
    let text = message.lock().ok().and_then(|m| m.clone());
    (ran, text)
}

/// The error for a CUDA device that failed to start, from the runtime's panic message: a missing
/// driver, a missing NVRTC and a bad index each get their own advice.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn cuda_open_error(choice: DeviceChoice, panic: Option<&str>) -> anyhow::Error {
    let text = panic.unwrap_or("no message");
    let lower = text.to_ascii_lowercase();
    let advice = if lower.contains("dynamically load") && lower.contains("\"nvrtc") {
        "the NVIDIA driver loaded, but NVRTC, which compiles lofi's CUDA kernels at run time, did \
         not: install the CUDA toolkit (or PyTorch's nvidia-cuda-nvrtc wheel) and put the folder \
         holding libnvrtc.so on LD_LIBRARY_PATH"
            .to_string()
    } else if lower.contains("dynamically load") {
        "no NVIDIA CUDA driver found: the driver library libcuda.so could not be loaded (is this \
         a machine with an NVIDIA GPU and its driver installed? if so, put the folder holding \
         libcuda.so.1 on LD_LIBRARY_PATH); --device vulkan or cpu may work instead"
            .to_string()
    } else if lower.contains("cuda_error_invalid_device") || lower.contains("invalid device") {
        format!(
            "there is no CUDA device with index {} here",
            cuda_index(choice)
        )
    } else if lower.contains("cuda_error_no_device") {
        "the CUDA driver found no GPU (check CUDA_VISIBLE_DEVICES and nvidia-smi)".to_string()
    } else {
        // Unrecognised: the runtime's own words are the best clue.
        format!("the CUDA runtime failed to start ({text})")
    };
    anyhow::anyhow!("cannot open --device {choice}: {advice}")
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn cuda_index(choice: DeviceChoice) -> usize {
    match choice {
        DeviceChoice::Cuda(i) => i,
        _ => 0,
    }
}

/// Fails early when the chosen device cannot run a small computation (used by `lofi device`).
pub fn check(device: &Device) -> Result<f32> {
    let a = burn::tensor::Tensor::<2>::ones([64, 64], device);
    let s = a.clone().matmul(a).sum();
    let v = s
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read back from the device: {e:?}"))?;
    match v.first() {
        Some(&x) if x == 64.0 * 64.0 * 64.0 => Ok(x),
        Some(&x) => bail!("device computed a wrong 64x64 matmul sum ({x}, expected 262144)"),
        None => bail!("device returned no data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert_eq!("vulkan".parse(), Ok(DeviceChoice::Vulkan(None)));
        assert_eq!("Vulkan:1".parse(), Ok(DeviceChoice::Vulkan(Some(1))));
        assert_eq!("wgpu:0".parse(), Ok(DeviceChoice::Wgpu(Some(0))));
        assert_eq!(DeviceChoice::Vulkan(Some(3)).to_string(), "vulkan:3");
        assert!("cpu:1".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
        assert_eq!("torch".parse(), Ok(DeviceChoice::Torch));
        assert_eq!("Torch-CUDA".parse(), Ok(DeviceChoice::TorchCuda(0)));
        assert_eq!("torch-cuda:1".parse(), Ok(DeviceChoice::TorchCuda(1)));
        assert_eq!(DeviceChoice::TorchCuda(1).to_string(), "torch-cuda:1");
        assert_eq!(DeviceChoice::Torch.to_string(), "torch");
        assert!("torch:1".parse::<DeviceChoice>().is_err());
        assert!("torch-cuda:-1".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn torch_cuda_without_a_gpu_or_past_the_last_is_one_line() {
        let c = DeviceChoice::TorchCuda(2);
        let msg = format!("{:#}", torch_cuda_check(c, 2, 0).expect_err("no gpu"));
        assert!(msg.contains("--device torch-cuda:2"), "{msg}");
        assert!(msg.contains("sees no CUDA device"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let msg = format!("{:#}", torch_cuda_check(c, 2, 2).expect_err("index"));
        assert!(msg.contains("numbered 0 to 1"), "{msg}");
        assert!(torch_cuda_check(c, 2, 3).is_ok());
    }

    #[test]
    fn cpu_device_computes() {
        let d = open(DeviceChoice::Cpu).expect("flex is always built");
        assert_eq!(check(&d).expect("matmul"), 262144.0);
    }

    #[test]
    fn cuda_start_failures_say_what_is_missing() {
        let c = DeviceChoice::Cuda(1);
        // What cudarc panics with when libcuda (or libnvrtc) cannot be loaded.
        let no_driver = "Unable to dynamically load the \"cuda\" shared library - searched for \
                         library names: [\"libcuda.so\", \"libcuda.so.1\"].";
        let msg = format!("{:#}", cuda_open_error(c, Some(no_driver)));
        assert!(msg.contains("--device cuda:1"), "{msg}");
        assert!(msg.contains("no NVIDIA CUDA driver found"), "{msg}");
        assert!(msg.contains("libcuda.so.1"), "{msg}");
        let no_nvrtc = no_driver.replace("\"cuda\"", "\"nvrtc\"");
        let msg = format!("{:#}", cuda_open_error(c, Some(&no_nvrtc)));
        assert!(msg.contains("NVRTC"), "{msg}");
        assert!(!msg.contains("no NVIDIA CUDA driver"), "{msg}");
        let msg = format!(
            "{:#}",
            cuda_open_error(
                c,
                Some("called `Result::unwrap()`: CUDA_ERROR_INVALID_DEVICE")
            )
        );
        assert!(msg.contains("no CUDA device with index 1"), "{msg}");
        let msg = format!("{:#}", cuda_open_error(c, None));
        assert!(msg.contains("failed to start"), "{msg}");
    }

    #[test]
    fn devices_not_compiled_in_are_named_errors() {
        if !cfg!(feature = "cuda") {
            let e = open(DeviceChoice::Cuda(0)).expect_err("cuda not built");
            let msg = format!("{e:#}");
            assert!(msg.contains("--features cuda"), "{msg}");
        }
        if !cfg!(feature = "tch") {
            let e = open(DeviceChoice::TorchCuda(0)).expect_err("tch not built");
            assert!(format!("{e:#}").contains("--features tch"), "{e:#}");
        }
        if !cfg!(feature = "vulkan") {
            let e = open(DeviceChoice::Vulkan(Some(1))).expect_err("vulkan not built");
            assert!(format!("{e:#}").contains("cpu"));
        }
    }
}
