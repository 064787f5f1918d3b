//! Extraction throughput of the frozen encoder: TSM-ResNet-18 (width 64) on one video of
//! `L` snippets x 1 frame x `S` px on the CPU, frames per second (median of the timed runs), and
//! the whole `extract()` path (decode + resize + encode + write) on synthetic videos.
//!
//! `cargo bench -p lofi-head --bench extract_throughput -- [L] [S] [runs]` (defaults 100 224 3).
//! Prints Markdown rows for `bench/extract/RESULTS.md`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use lofi_head::{extract, EncoderSpec, ExtractConfig, ExtractInputs};
use lofi_model::ResNetConfig;
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (l, s, runs) = (arg(1, 100), arg(2, 224), arg(3, 3).max(1));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = EncoderSpec {
        model: ResNetConfig::new(18),
        checkpoint: None,
        seed: 0,
    };
    let device = lofi_head::cpu_device();
    let encoder = lofi_head::extract::load_encoder(&spec, &device)?;
    let x = Tensor::<6>::random([1, l, 1, 3, s, s], Distribution::Default, &device);
    // Warm-up.
    let _ = encoder.forward(x.clone())?.into_data();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let _ = encoder.forward(x.clone())?.into_data();
        times.push(t.elapsed().as_secs_f64());
    }
    let t = median(times);
    println!(
        "| encoder forward only | TSM-R18 | {l} x 1 x {s} | {threads} | {t:.2} s/video | {:.1} |",
        l as f64 / t
    );

    // Whole path on 4 synthetic videos (64 px sources resized to S).
    let dir = tempfile::tempdir()?;
    let mut synth = SynthConfig::preset(SynthPreset::Tiny, 7);
    synth.videos = 4;
    write_dataset(dir.path(), &synth, threads, &|_| {})?;
    let mut config = ExtractConfig::new(spec);
    config.snippets = l;
    config.size = s;
    let inputs = ExtractInputs {
        ground_truth: dir.path().join("ground_truth.json"),
        videos: dir.path().join("videos"),
        out: dir.path().join("features"),
        shard: None,
    };
    let outcome = extract(&config, &inputs, &|_, _| {})?;
    println!(
        "| extract() end to end (decode+resize+encode+write), {} videos | TSM-R18 | {l} x 1 x {s} | {threads} | {:.2} s/video | {:.1} |",
        outcome.extracted,
        outcome.seconds / outcome.extracted.max(1) as f64,
        outcome.frames as f64 / outcome.seconds
    );
    Ok(())
}
