//! One LoFi training step (forward + backward + SGD) of TSM-ResNet + G-TAD on one video, on the
//! CPU (flex backend): wall time per step and peak resident-memory growth of the process.
//!
//! Run one configuration per process so that the memory high-water mark belongs to it:
//! `cargo bench -p lofi-model --bench train_step -- --snippets 100 --size 224 [--frames 1]
//! [--depth 18] [--steps 2]`. `bench/model/run.sh` runs every LoFi preset and the PyTorch
//! counterpart and prints the table for BENCHMARKS.md.
//!
//! `--extract` measures feature extraction instead: the encoder's forward pass alone, without
//! autodiff (BatchNorm on running statistics), one video of `L x F` frames per pass; it prints
//! seconds per video and frames per second.
//!
//! `--ops` times the encoder's operations one by one at the given `L x S` (no autodiff): every
//! convolution of ResNet-18 forward, input gradient and weight gradient, with burn's kernels and
//! with `lofi_model::fastconv`, and BatchNorm and the temporal shift; it prints one line per
//! operation kind with the seconds a training step spends in it (a layer's time times its count).

use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lofi_model::{GtadConfig, GtadLoss, GtadTargets, ResNetConfig, Segment, TargetConfig};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system, all threads) the process has used so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s). On a shared machine this is steadier than wall
/// time: it does not count the time other jobs hold the cores.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let utime: f64 = rest.get(11)?.parse().ok()?;
            let stime: f64 = rest.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Best of `reps` timings of `f` (after one untimed call), in seconds.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let _ = f();
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            let _ = f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Per-operation times of the encoder at `n` frames of `s` px (see the module docs).
fn ops(n: usize, s: usize, reps: usize) {
    use burn::tensor::module::{
        batch_norm_train, conv2d, conv2d_weight_backward, conv_transpose2d,
    };
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use lofi_model::fastconv;
    let device = Device::flex();
    device.seed(0);
    // ResNet-18: (c_in, c_out, kernel, stride, pad, input size, count).
    let (s2, s4, s8, s16) = (s.div_ceil(2), s.div_ceil(4), s.div_ceil(8), s.div_ceil(16));
    let layers = [
        (3, 64, 7, 2, 3, s, 1),
        (64, 64, 3, 1, 1, s4, 4),
        (64, 128, 3, 2, 1, s4, 1),
        (64, 128, 1, 2, 0, s4, 1),
        (128, 128, 3, 1, 1, s8, 3),
        (128, 256, 3, 2, 1, s8, 1),
        (128, 256, 1, 2, 0, s8, 1),
        (256, 256, 3, 1, 1, s16, 3),
        (256, 512, 3, 2, 1, s16, 1),
        (256, 512, 1, 2, 0, s16, 1),
        (512, 512, 3, 1, 1, s16.div_ceil(2), 3),
    ];
    let mut tot = [0.0f64; 5];
    let mut max_diff = 0.0f32;
    for (ci, co, k, st, p, hw, count) in layers {
        let x = Tensor::<4>::random([n, ci, hw, hw], Distribution::Default, &device);
        let w = Tensor::<4>::random([co, ci, k, k], Distribution::Default, &device);
        let opts = ConvOptions::new([st, st], [p, p], [1, 1], 1);
        let y = conv2d(x.clone(), w.clone(), None, opts.clone());
        let dy = y.clone().random_like(Distribution::Default);
        let pad_out = (hw + 2 * p - k) % st;
        let topts = ConvTransposeOptions::new([st, st], [p, p], [pad_out, pad_out], [1, 1], 1);
        let c = count as f64;
        let bf = time(reps, || {
            conv2d(x.clone(), w.clone(), None, opts.clone()).into_data()
        });
        let bx = time(reps, || {
            conv_transpose2d(dy.clone(), w.clone(), None, topts.clone()).into_data()
        });
        let bw = time(reps, || {
            conv2d_weight_backward(x.clone(), w.clone(), dy.clone(), opts.clone()).into_data()
        });
        let ff = time(reps, || {
            fastconv::conv2d(x.clone(), w.clone(), None, [st, st], [p, p]).into_data()
        });
        let fb = time(reps, || {
            let (a, b) =
                fastconv::conv2d_backward(x.clone(), w.clone(), dy.clone(), [st, st], [p, p]);
            (a.into_data(), b.into_data())
        });
        let yf = fastconv::conv2d(x.clone(), w.clone(), None, [st, st], [p, p]);
        let d = (yf - y.clone()).abs().max().into_scalar::<f32>()
            / y.abs().max().into_scalar::<f32>().max(1e-12);
        max_diff = max_diff.max(d);
        println!(
            "conv {ci}->{co} k{k} s{st} @{hw} x{count}: burn fwd {bf:.4} x-grad {bx:.4} w-grad {bw:.4} | fastconv fwd {ff:.4} both grads {fb:.4} (s per layer)"
        );
        for (t, v) in tot.iter_mut().zip([bf, bx, bw, ff, fb]) {
            *t += v * c;
        }
    }
    println!(
        "ops L*F={n} S={s}: conv burn fwd={:.3} burn_xgrad={:.3} burn_wgrad={:.3} fastconv fwd={:.3} fastconv_grads={:.3} (s per step) max_rel_diff_fwd={max_diff:.2e}",
        tot[0], tot[1], tot[2], tot[3], tot[4]
    );
    // BatchNorm (training statistics) forward, and the temporal shift, at every BN / block input.
    let bns = [
        (64, s2, 1),
        (64, s4, 4),
        (128, s8, 5),
        (256, s16, 5),
        (512, s16.div_ceil(2), 5),
    ];
    let mut bn_t = 0.0;
    for (c, hw, count) in bns {
        let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Default, &device);
        let g = Tensor::<1>::ones([c], &device);
        let b = Tensor::<1>::zeros([c], &device);
        bn_t += count as f64
            * time(reps, || {
                batch_norm_train(x.clone(), g.clone(), b.clone(), 1e-5)
                    .output
                    .into_data()
            });
    }
    let shifts = [
        (64, s4, 3),
        (128, s8, 2),
        (256, s16, 2),
        (512, s16.div_ceil(2), 1),
    ];
    let mut sh_t = 0.0;
    for (c, hw, count) in shifts {
        let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Default, &device);
        sh_t += count as f64
            * time(reps, || {
                lofi_model::shift::temporal_shift(x.clone(), n, 8).into_data()
            });
    }
    println!("ops L*F={n} S={s}: batchnorm_train_fwd={bn_t:.3} temporal_shift_fwd={sh_t:.3} (s per step)");
}

/// Encoder forward passes in inference (no autodiff), one warm-up pass and `steps` timed ones.
fn extract(depth: usize, l: usize, f: usize, s: usize, steps: usize) {
    let device = Device::flex();
    device.seed(0);
    let encoder = match ResNetConfig::new(depth).init(&device) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let video = Tensor::<6>::random([1, l, f, 3, s, s], Distribution::Default, &device);
    let base_kib = status_kib("VmRSS:");
    let mut times = Vec::new();
    let mut cpu = 0.0;
    for step in 0..=steps {
        let t0 = Instant::now();
        let c0 = cpu_seconds();
        let feats = encoder.forward(video.clone()).expect("valid input");
        let _ = feats.sum().into_scalar::<f32>();
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
            cpu += cpu_seconds() - c0;
        }
    }
    let peak_kib = status_kib("VmHWM:");
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let growth_mib = peak_kib.saturating_sub(base_kib) as f64 / 1024.0;
    println!(
        "burn-flex extract depth={depth} L={l} F={f} S={s} passes={steps} sec_per_video={mean:.3} cpu_sec_per_video={:.3} frames_per_s={:.2} peak_rss_mib={:.1} growth_mib={growth_mib:.1}",
        cpu / steps as f64,
        (l * f) as f64 / mean,
        peak_kib as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let l = arg(&args, "--snippets", 100);
    let s = arg(&args, "--size", 224);
    let f = arg(&args, "--frames", 1);
    let depth = arg(&args, "--depth", 18);
    let steps = arg(&args, "--steps", 2).max(1);
    if args.iter().any(|a| a == "--ops") {
        ops(l * f, s, steps);
        return;
    }
    if args.iter().any(|a| a == "--extract") {
        extract(depth, l, f, s, steps);
        return;
    }

    let device = Device::flex().autodiff();
    device.seed(0);
    let enc_cfg = ResNetConfig::new(depth);
    let mut encoder = match enc_cfg.init(&device) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut head = match GtadConfig::new(enc_cfg.out_channels()).init(&device) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let segs = [Segment::new(0.1, 0.35), Segment::new(0.5, 0.9)];
    let targets = match GtadTargets::new(&segs, l, &TargetConfig::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let loss_fn = GtadLoss::default();
    let sgd = SgdConfig::new().with_weight_decay(Some(WeightDecayConfig::new(1e-4)));
    let mut opt_enc = sgd.init();
    let mut opt_head = sgd.init();
    let video = Tensor::<6>::random([1, l, f, 3, s, s], Distribution::Default, &device);

    let base_kib = status_kib("VmRSS:");
    let mut times = Vec::new();
    let mut cpu = 0.0;
    for step in 0..=steps {
        let t0 = Instant::now();
        let c0 = cpu_seconds();
        let feats = encoder.forward(video.clone()).expect("valid input"); // [1, L, C]
        let out = head.forward(feats.swap_dims(1, 2)).expect("valid features");
        let parts = loss_fn
            .compute(&out, std::slice::from_ref(&targets), step as u64)
            .expect("targets match");
        let mut grads = parts.total.backward();
        let g_head = GradientsParams::from_module(&mut grads, &head);
        let g_enc = GradientsParams::from_module(&mut grads, &encoder);
        head = opt_head.step(0.1, head, g_head);
        encoder = opt_enc.step(0.1, encoder, g_enc);
        // Force the update to finish before stopping the clock.
        let _ = encoder.conv1.weight.val().sum().into_scalar::<f32>();
        let dt = t0.elapsed().as_secs_f64();
        if step > 0 {
            times.push(dt); // step 0 is warm-up
            cpu += cpu_seconds() - c0;
        }
    }
    let peak_kib = status_kib("VmHWM:");
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let growth_mib = peak_kib.saturating_sub(base_kib) as f64 / 1024.0;
    println!(
        "burn-flex depth={depth} L={l} F={f} S={s} steps={steps} sec_per_step={mean:.3} cpu_sec_per_step={:.3} peak_rss_mib={:.1} growth_mib={growth_mib:.1}",
        cpu / steps as f64,
        peak_kib as f64 / 1024.0
    );
}
