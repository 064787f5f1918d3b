//! One LoFi training step (TSM-ResNet encoder + G-TAD head + loss + backward + SGD update) at each
//! fidelity, timed on the device the command line names, with the device's peak memory.
//!
//! Why this exists: issue 6 asks for step time and GPU memory per fidelity on a real card, next to
//! the same step in PyTorch (`bench/gpu/torch_step.py`). The device machine has no Rust toolchain,
//! so this bench is built here (`bench/gpu/prepare.sh`, release, `--features vulkan`) and carried
//! there; `bench/gpu/check.sh` runs it. On the CPU it runs with `--device cpu` (the flex backend)
//! and tiny sizes, which is how it is tested without a GPU.
//!
//! `--mode extract` times the encoder's forward pass alone (no autodiff, BatchNorm statistics
//! frozen), as `lofi extract` runs it, and reports frames per second.
//!
//! On a GPU build the compiled kernels and autotune results go to lofi's kernel cache
//! (`lofi_model::kernel_cache`; `LOFI_KERNEL_CACHE` moves it), so a second run shows the start-up
//! cost without compilation: each line carries `first_step_s`, the time of the first step.
//!
//! Output: one JSON object per fidelity on stdout (`{"impl": "burn", "fidelity": "s", ...}`), so
//! the check script can join it with the PyTorch numbers. Exit status 2 with a one-line error on
//! stderr when the device cannot be opened (for example no Vulkan adapter).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::DType;
use burn::tensor::{Device, Tensor, TensorData};
use lofi_model::precision::{compute_copy, master_grads};
use lofi_model::seed::initialized;
use lofi_model::{
    GtadConfig, GtadLoss, GtadTargets, Precision, ResNetConfig, Segment, TargetConfig,
};

/// Command-line options (plain `std::env::args`: this crate has no CLI dependency).
#[derive(Debug, Clone)]
struct Options {
    device: String,
    fidelities: Vec<(String, usize, usize)>,
    depth: usize,
    base_width: usize,
    tiny_head: bool,
    frames: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
    time_cap: Duration,
    precision: Precision,
    extract: bool,
    /// Draw the weights on the CPU (flex, seeded) and copy them to the device, so that two
    /// devices start from the same weights and their losses can be compared (the check's probe).
    init_on_cpu: bool,
}

const USAGE: &str =
    "usage: gpu_step [--device cpu|torch|torch-cuda[:N]|wgpu|vulkan|cuda[:N]] [--fidelity full,s,t,st|LxS,...] \
[--depth 18] [--base-width 64] [--tiny-head] [--frames 1] [--batch 1] [--warmup 2] [--steps 5] \
[--time-cap-s 120] [--precision f32|bf16] [--mode step|extract] [--init-on-cpu]";

fn fidelity(name: &str) -> Result<(String, usize, usize), String> {
    let (l, s) = match name {
        "full" => (100, 224),
        "s" => (100, 112),
        "t" => (25, 224),
        "st" => (50, 158),
        other => {
            let (l, s) = other
                .split_once('x')
                .ok_or_else(|| format!("unknown fidelity {other:?} (full, s, t, st or LxS)"))?;
            let parse = |v: &str| {
                v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("bad fidelity {other:?}: {v:?} is not a positive integer")
                })
            };
            (parse(l)?, parse(s)?)
        }
    };
    Ok((name.to_string(), l, s))
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        device: "cpu".into(),
        fidelities: Vec::new(),
        depth: 18,
        base_width: 64,
        tiny_head: false,
        frames: 1,
        batch: 1,
        warmup: 2,
        steps: 5,
        time_cap: Duration::from_secs(120),
        precision: Precision::F32,
        extract: false,
        init_on_cpu: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        // `cargo bench` passes `--bench`; ignore it.
        if a == "--bench" {
            continue;
        }
        if a == "--tiny-head" {
            o.tiny_head = true;
            continue;
        }
        if a == "--init-on-cpu" {
            o.init_on_cpu = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            return Err(USAGE.into());
        }
        let v = args
            .next()
            .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{a}: {v:?} is not a non-negative integer"))
        };
        match a.as_str() {
            "--device" => o.device = v,
            "--fidelity" => {
                for f in v.split(',') {
                    o.fidelities.push(fidelity(f.trim())?);
                }
            }
            "--depth" => o.depth = num(&v)?,
            "--base-width" => o.base_width = num(&v)?,
            "--frames" => o.frames = num(&v)?,
            "--batch" => o.batch = num(&v)?,
            "--warmup" => o.warmup = num(&v)?,
            "--steps" => o.steps = num(&v)?,
            "--time-cap-s" => o.time_cap = Duration::from_secs(num(&v)? as u64),
            "--mode" => {
                o.extract = match v.as_str() {
                    "step" => false,
                    "extract" => true,
                    other => return Err(format!("--mode {other:?}: use step or extract")),
                }
            }
            "--precision" => {
                o.precision = match v.as_str() {
                    "f32" => Precision::F32,
                    "bf16" => Precision::Bf16,
                    other => return Err(format!("--precision {other:?}: use f32 or bf16")),
                }
            }
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        }
    }
    if o.fidelities.is_empty() {
        o.fidelities = ["full", "s", "t", "st"]
            .iter()
            .map(|f| fidelity(f))
            .collect::<Result<_, _>>()?;
    }
    if o.steps == 0 || o.frames == 0 || o.batch == 0 {
        return Err("--steps, --frames and --batch must be at least 1".into());
    }
    Ok(o)
}

/// Opens the device the option names; `Err` carries a one-line reason.
fn open_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" | "vulkan" => {
            let opts = Device::wgpu_options();
            #[cfg(feature = "vulkan")]
            let opts = if name == "vulkan" {
                opts.graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
            } else {
                opts
            };
            opts.init()
                .map_err(|e| format!("cannot open a wgpu ({name}) device: {e}"))
        }
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        // burn-tch is deprecated upstream; lofi pins burn 0.22.x for it
        "torch" => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        n if n == "torch-cuda" || n.starts_with("torch-cuda:") => {
            let index = match n.split_once(':') {
                Some((_, i)) => i
                    .parse::<usize>()
                    .map_err(|_| format!("bad CUDA index in {n:?}"))?,
                None => 0,
            };
            let info = lofi_model::torch::libtorch_info()
                .ok_or_else(|| "no libtorch in this build".to_string())?;
            if !info.cuda_build {
                return Err(format!(
                    "{n}: this gpu_step was built against a CPU libtorch ({})",
                    info.built_against
                ));
            }
            if index >= info.cuda_devices {
                return Err(format!(
                    "{n}: libtorch sees {} CUDA device(s)",
                    info.cuda_devices
                ));
            }
            lofi_model::torch::configure_cudnn();
            Ok(Device::libtorch_cuda(index))
        }
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index = match n.split_once(':') {
                Some((_, i)) => i
                    .parse::<usize>()
                    .map_err(|_| format!("bad CUDA index in {n:?}"))?,
                None => 0,
            };
            Ok(Device::cuda(index))
        }
        other => {
            let mut built = vec!["cpu"];
            if cfg!(feature = "tch") {
                built.push("torch");
                built.push("torch-cuda[:N]");
            }
            if cfg!(feature = "wgpu") {
                built.push("wgpu");
            }
            if cfg!(feature = "vulkan") {
                built.push("vulkan");
            }
            if cfg!(feature = "cuda") {
                built.push("cuda[:N]");
            }
            Err(format!(
                "device {other:?} is not available in this build (compiled: {})",
                built.join(", ")
            ))
        }
    }
}

/// Bytes the device's allocator holds now (reserved pages, which is what the driver sees), or
/// `None` where the backend does not report it (flex).
fn reserved(device: &Device) -> Option<u64> {
    device
        .memory_pool_usage()
        .map(|u| u.bytes_reserved.max(u.bytes_in_use))
}

/// Bytes of live allocations now (comparable with PyTorch's `memory_allocated`).
fn in_use(device: &Device) -> Option<u64> {
    device.memory_pool_usage().map(|u| u.bytes_in_use)
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn scalar(t: Tensor<1>) -> Result<f32, String> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("cannot read the loss: {e:?}"))?
        .first()
        .copied()
        .ok_or_else(|| "empty loss tensor".to_string())
}

/// Deterministic pseudo-random pixels in [-2, 2] (roughly normalised RGB): the tests' LCG values
/// in [-1, 1), doubled.
fn pixels(n: usize, seed: u64) -> Vec<f32> {
    lofi_model::test_util::lcg_vec(n, seed)
        .into_iter()
        .map(|v| v * 2.0)
        .collect()
}

/// Seconds since the Unix epoch.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Measured {
    first_step_s: f64,
    /// When the first step (or pass) ended, in seconds since the Unix epoch: the check script
    /// subtracts the process's launch time to get "process start to end of step 1", which
    /// includes loading the libraries and opening the device.
    first_step_end_unix: f64,
    median_s: f64,
    min_s: f64,
    steps: usize,
    warmup_s: f64,
    peak_reserved: Option<u64>,
    peak_in_use: Option<u64>,
    loss: f32,
}

fn run_fidelity(o: &Options, device: &Device, l: usize, size: usize) -> Result<Measured, String> {
    let p = o.precision;
    p.check(device).map_err(|e| e.to_string())?;
    let train = device.clone().autodiff();
    train.seed(7);
    let enc_cfg = ResNetConfig::tiny(o.depth, o.base_width);
    let c = enc_cfg.out_channels();
    let head_cfg = if o.tiny_head {
        GtadConfig::tiny(c)
    } else {
        GtadConfig::new(c)
    };
    let (mut encoder, mut head) = if o.init_on_cpu {
        let cpu = Device::flex().autodiff();
        cpu.seed(7);
        // Created now (burn creates parameters lazily, and a lazy parameter forked to another
        // device would be drawn there, from that backend's generator).
        let encoder = initialized(enc_cfg.init(&cpu).map_err(|e| e.to_string())?);
        let head = initialized(head_cfg.init(&cpu).map_err(|e| e.to_string())?);
        (encoder.fork(&train), head.fork(&train))
    } else {
        (
            enc_cfg.init(&train).map_err(|e| e.to_string())?,
            head_cfg.init(&train).map_err(|e| e.to_string())?,
        )
    };
    let mut opt_enc = SgdConfig::new().init();
    let mut opt_head = SgdConfig::new().init();
    let loss_fn = GtadLoss::default();
    let segs = [Segment::new(0.1, 0.35), Segment::new(0.5, 0.9)];
    let target = GtadTargets::new(&segs, l, &TargetConfig::default()).map_err(|e| e.to_string())?;
    let targets = vec![target; o.batch];
    let shape = [o.batch, l, o.frames, 3, size, size];
    let data = pixels(shape.iter().product(), 11);
    let video = Tensor::<6>::from_data(TensorData::new(data, shape), &train);

    let mut times = Vec::new();
    let mut peak: Option<u64> = reserved(device);
    let mut peak_live: Option<u64> = None;
    let mut loss = f32::NAN;
    let mut timed_from = Instant::now();
    let mut warmup_s = 0.0;
    let mut first_step_s = 0.0;
    let mut first_step_end_unix = 0.0;
    for step in 0..(o.warmup + o.steps) {
        // The cap counts the timed steps only: compilation in the warm-up must not eat them.
        if step == o.warmup {
            timed_from = Instant::now();
        }
        if step > o.warmup && timed_from.elapsed() > o.time_cap && !times.is_empty() {
            break;
        }
        let t0 = Instant::now();
        // Mixed precision: a bf16 working copy of the encoder (BatchNorm stays f32), the head and
        // the loss in f32; a plain clone in f32.
        let enc = compute_copy(&encoder, p);
        let feats = enc
            .forward(p.cast_input(video.clone()))
            .map_err(|e| e.to_string())?;
        let feats = if feats.dtype() == DType::F32 {
            feats
        } else {
            feats.cast(DType::F32)
        };
        let out = head
            .forward(feats.swap_dims(1, 2))
            .map_err(|e| e.to_string())?;
        let parts = loss_fn
            .compute(&out, &targets, step as u64)
            .map_err(|e| e.to_string())?;
        // Memory is sampled in the warm-up steps only, with a sync after the forward pass (when
        // the saved activations are all alive), so the timed steps run without extra syncs.
        let measuring = step < o.warmup || o.warmup == 0;
        if measuring {
            device
                .sync()
                .map_err(|e| format!("device sync failed: {e:?}"))?;
            peak = max_opt(peak, reserved(device));
            peak_live = max_opt(peak_live, in_use(device));
        }
        let mut grads = parts.total.backward();
        let g_enc = master_grads(GradientsParams::from_module(&mut grads, &enc), &encoder);
        let g_head = GradientsParams::from_module(&mut grads, &head);
        encoder = opt_enc.step(0.01, encoder, g_enc);
        head = opt_head.step(0.01, head, g_head);
        loss = scalar(parts.total)?;
        device
            .sync()
            .map_err(|e| format!("device sync failed: {e:?}"))?;
        let dt = t0.elapsed().as_secs_f64();
        if measuring {
            peak = max_opt(peak, reserved(device));
            peak_live = max_opt(peak_live, in_use(device));
        }
        eprintln!(
            "gpu_step: {l}x{size} step {step}{} {:.1} ms, loss {loss:.4}",
            if step < o.warmup { " (warm-up)" } else { "" },
            dt * 1e3
        );
        if step == 0 {
            first_step_s = dt;
            first_step_end_unix = unix_now();
        }
        if step < o.warmup {
            warmup_s += dt;
        } else {
            times.push(dt);
        }
        if !loss.is_finite() {
            return Err(format!("loss is {loss} at step {step}"));
        }
    }
    times.sort_by(f64::total_cmp);
    let median_s = times[times.len() / 2];
    Ok(Measured {
        first_step_s,
        first_step_end_unix,
        median_s,
        min_s: times[0],
        steps: times.len(),
        warmup_s,
        peak_reserved: peak,
        peak_in_use: peak_live,
        loss,
    })
}

/// The encoder's forward pass alone on the plain device (inference: no autodiff, BatchNorm
/// running statistics), `batch` videos of `l` snippets at `size` pixels; the loss field carries
/// the features' mean, a check that the output is finite.
fn run_extract(o: &Options, device: &Device, l: usize, size: usize) -> Result<Measured, String> {
    device.seed(7);
    let encoder = ResNetConfig::tiny(o.depth, o.base_width)
        .init(device)
        .map_err(|e| e.to_string())?;
    let shape = [o.batch, l, o.frames, 3, size, size];
    let data = pixels(shape.iter().product(), 11);
    let video = Tensor::<6>::from_data(TensorData::new(data, shape), device);
    let mut times = Vec::new();
    let mut peak = reserved(device);
    let mut peak_live = None;
    let mut mean = f32::NAN;
    let mut warmup_s = 0.0;
    let mut first_step_s = 0.0;
    let mut first_step_end_unix = 0.0;
    let mut timed_from = Instant::now();
    for step in 0..(o.warmup + o.steps) {
        // The cap counts the timed steps only: compilation in the warm-up must not eat them.
        if step == o.warmup {
            timed_from = Instant::now();
        }
        if step > o.warmup && timed_from.elapsed() > o.time_cap && !times.is_empty() {
            break;
        }
        let t0 = Instant::now();
        let feats = encoder.forward(video.clone()).map_err(|e| e.to_string())?;
        mean = scalar(feats.mean().reshape([1]))?;
        let dt = t0.elapsed().as_secs_f64();
        peak = max_opt(peak, reserved(device));
        peak_live = max_opt(peak_live, in_use(device));
        eprintln!(
            "gpu_step: extract {l}x{size} pass {step}{} {:.1} ms",
            if step < o.warmup { " (warm-up)" } else { "" },
            dt * 1e3
        );
        if step == 0 {
            first_step_s = dt;
            first_step_end_unix = unix_now();
        }
        if step < o.warmup {
            warmup_s += dt;
        } else {
            times.push(dt);
        }
        if !mean.is_finite() {
            return Err(format!("features are not finite at pass {step}"));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Measured {
        first_step_s,
        first_step_end_unix,
        median_s: times[times.len() / 2],
        min_s: times[0],
        steps: times.len(),
        warmup_s,
        peak_reserved: peak,
        peak_in_use: peak_live,
        loss: mean,
    })
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gpu_step: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if !matches!(o.device.as_str(), "cpu" | "flex") {
        eprintln!(
            "gpu_step: kernel cache {}",
            lofi_model::kernel_cache::configure()
        );
    }
    let device = match open_device(&o.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu_step: {e}");
            return ExitCode::from(2);
        }
    };
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let name = device
        .identity()
        .map(|i| format!("{i:?}"))
        .unwrap_or_else(|| o.device.clone());
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let name = o.device.clone();
    eprintln!("gpu_step: device {name}");
    let kind = if o.extract { "extract" } else { "step" };
    // On the LibTorch backend: whether lofi's bridge operations ran (LOFI_TORCH_BRIDGE) and
    // whether cuDNN autotuned (LOFI_CUDNN_BENCHMARK); `null` elsewhere.
    let on_torch = o.device.starts_with("torch");
    #[cfg(feature = "tch")]
    let bridge = lofi_model::torchops::enabled();
    #[cfg(not(feature = "tch"))]
    let bridge = false;
    let (bridge, autotune) = if on_torch {
        (
            bridge.to_string(),
            lofi_model::torch::cudnn_benchmark_requested().to_string(),
        )
    } else {
        ("null".to_string(), "null".to_string())
    };
    let mut failed = false;
    for (fname, l, size) in &o.fidelities {
        let run = if o.extract {
            run_extract(&o, &device, *l, *size)
        } else {
            run_fidelity(&o, &device, *l, *size)
        };
        match run {
            Ok(m) => println!(
                "{{\"impl\":\"burn\",\"kind\":{kind:?},\"device\":{:?},\"precision\":{:?},\"fidelity\":{:?},\"snippets\":{},\"size\":{},\
\"frames\":{},\"batch\":{},\"depth\":{},\"step_s_median\":{:.6},\"step_s_min\":{:.6},\"steps\":{},\
\"warmup_s\":{:.3},\"first_step_s\":{:.3},\"frames_per_s\":{:.2},\"peak_bytes\":{},\"peak_in_use_bytes\":{},\"loss\":{},\
\"torch_bridge\":{bridge},\"cudnn_benchmark\":{autotune},\"first_step_end_unix\":{:.3}}}",
                o.device,
                o.precision.name(),
                fname,
                l,
                size,
                o.frames,
                o.batch,
                o.depth,
                m.median_s,
                m.min_s,
                m.steps,
                m.warmup_s,
                m.first_step_s,
                (o.batch * l * o.frames) as f64 / m.median_s,
                m.peak_reserved
                    .map_or_else(|| "null".to_string(), |b| b.to_string()),
                m.peak_in_use
                    .map_or_else(|| "null".to_string(), |b| b.to_string()),
                m.loss,
                m.first_step_end_unix
            ),
            Err(e) => {
                failed = true;
                eprintln!("gpu_step: fidelity {fname} ({l}x{size}) failed: {e}");
                println!(
                    "{{\"impl\":\"burn\",\"kind\":{kind:?},\"device\":{:?},\"precision\":{:?},\"fidelity\":{:?},\"error\":{:?}}}",
                    o.device,
                    o.precision.name(),
                    fname,
                    e
                );
            }
        }
        device.memory_cleanup();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
