//! The compute device every model-running subcommand uses, chosen once with the global
//! `--device cpu|wgpu[:N]|vulkan[:N]|cuda[:N]` flag; `lofi train` also takes a comma-separated list
//! (`--device cuda:0,cuda:1,cuda:2,cuda:3`) and trains data parallel on it.
//!
//! Why this lives in the binary: burn 0.22 carries the backend in the [`Device`] value, so the
//! library crates (lofi-model, lofi-train, lofi-head) are backend-free and take a `&Device`; only
//! the program a person runs decides which backends are compiled in (cargo features `wgpu`,
//! `vulkan`, `cuda`) and which one a run uses. A device that is not compiled in, or that cannot be
//! opened (no Vulkan adapter, no CUDA driver), is a clear error naming the choice, never a panic.

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
    /// CUDA device with this index.
    Cuda(usize),
}

impl DeviceChoice {
    /// Device names this build can open, for error messages and `--help`.
    pub fn compiled() -> Vec<&'static str> {
        let mut names = vec!["cpu"];
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
            _ => Err(format!(
                "unknown device {s:?}: use cpu, wgpu[:N], vulkan[:N] or cuda[:N]"
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
             --device cuda:K --shard K/N)",
            all.len()
        ),
    }
}

/// The error for a device whose cargo feature is off.
#[cfg_attr(
    all(feature = "wgpu", feature = "vulkan", feature = "cuda"),
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
                // burn opens CUDA lazily and panics inside its runtime when the driver is missing;
                // catch that here so the user gets an error naming the device.
                let d = Device::cuda(index);
                let probe = d.clone();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    let t = burn::tensor::Tensor::<1>::zeros([1], &probe);
                    t.into_data()
                }))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "cannot open --device {choice}: the CUDA runtime failed to start \
                         (driver missing or index {index} out of range?)"
                    )
                })?;
                Ok(d)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(not_built(choice, "cuda"))
            }
        }
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
    }

    #[test]
    fn cpu_device_computes() {
        let d = open(DeviceChoice::Cpu).expect("flex is always built");
        assert_eq!(check(&d).expect("matmul"), 262144.0);
    }

    #[test]
    fn devices_not_compiled_in_are_named_errors() {
        if !cfg!(feature = "cuda") {
            let e = open(DeviceChoice::Cuda(0)).expect_err("cuda not built");
            let msg = format!("{e:#}");
            assert!(msg.contains("--features cuda"), "{msg}");
        }
        if !cfg!(feature = "vulkan") {
            let e = open(DeviceChoice::Vulkan(Some(1))).expect_err("vulkan not built");
            assert!(format!("{e:#}").contains("cpu"));
        }
    }
}
