//! One LoFi training step (forward + backward + SGD) of TSM-ResNet + G-TAD on one video, on the
//! CPU (flex backend): wall time per step and peak resident-memory growth of the process.
//!
//! Run one configuration per process so that the memory high-water mark belongs to it:
//! `cargo bench -p lofi-model --bench train_step -- --snippets 100 --size 224 [--frames 1]
//! [--depth 18] [--steps 2]`. `bench/model/run.sh` runs every LoFi preset and the PyTorch
//! counterpart and prints the table for BENCHMARKS.md.

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

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let l = arg(&args, "--snippets", 100);
    let s = arg(&args, "--size", 224);
    let f = arg(&args, "--frames", 1);
    let depth = arg(&args, "--depth", 18);
    let steps = arg(&args, "--steps", 2).max(1);

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
    for step in 0..=steps {
        let t0 = Instant::now();
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
        }
    }
    let peak_kib = status_kib("VmHWM:");
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let growth_mib = peak_kib.saturating_sub(base_kib) as f64 / 1024.0;
    println!(
        "burn-flex depth={depth} L={l} F={f} S={s} steps={steps} sec_per_step={mean:.3} peak_rss_mib={:.1} growth_mib={growth_mib:.1}",
        peak_kib as f64 / 1024.0
    );
}
