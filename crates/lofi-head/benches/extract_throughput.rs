//! Extraction throughput of the frozen encoder: TSM-ResNet-18 (width 64) on one video of
//! `L` snippets x 1 frame x `S` px on the CPU, frames per second (median of the timed runs), and
//! the whole `extract()` path (decode + resize + encode + write) on synthetic videos.
//!
//! Then the demo-sized pipeline (16 tiny synthetic videos, tiny TSM-R18 of width 8, L = 16,
//! 64 px, tiny G-TAD head, 10 epochs): seconds for extract, train-head and detect.
//!
//! `cargo bench -p lofi-head --bench extract_throughput -- [L] [S] [runs]` (defaults 100 224 3).
//! Prints Markdown rows for `BENCHMARKS.md`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use lofi_head::{
    detect, extract, train_head, DetectConfig, DetectInputs, EncoderSpec, ExtractConfig,
    ExtractInputs, HeadConfig, HeadInputs,
};
use lofi_model::{EncoderArch, EncoderKind};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};

mod common;
use common::{arg, tsm_r18};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (l, s, runs) = (arg(1, 100), arg(2, 224), arg(3, 3).max(1));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (spec, encoder) = tsm_r18()?;
    let device = lofi_head::cpu_device();
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
        device: device.clone(),
        ground_truth: dir.path().join("ground_truth.json"),
        videos: dir.path().join("videos"),
        out: dir.path().join("features"),
        shard: None,
        overwrite: false,
        skip_missing_videos: false,
    };
    let outcome = extract(&config, &inputs, &|_, _| {})?;
    println!(
        "| extract() end to end (decode+resize+encode+write), {} videos | TSM-R18 | {l} x 1 x {s} | {threads} | {:.2} s/video | {:.1} |",
        outcome.extracted,
        outcome.seconds / outcome.extracted.max(1) as f64,
        outcome.frames as f64 / outcome.seconds
    );

    // Demo-sized pipeline.
    let demo = tempfile::tempdir()?;
    let root = demo.path();
    write_dataset(
        root,
        &SynthConfig::preset(SynthPreset::Tiny, 1),
        threads,
        &|_| {},
    )?;
    let mut tiny = ExtractConfig::new(EncoderSpec {
        model: EncoderArch::tiny(EncoderKind::Tsm, 18, 8),
        num_classes: None,
        checkpoint: None,
        seed: 0,
    });
    tiny.snippets = 16;
    tiny.size = 64;
    let gt = root.join("ground_truth.json");
    let t = Instant::now();
    let ex = extract(
        &tiny,
        &ExtractInputs {
            device: device.clone(),
            ground_truth: gt.clone(),
            videos: root.join("videos"),
            out: root.join("features"),
            shard: None,
            overwrite: false,
            skip_missing_videos: false,
        },
        &|_, _| {},
    )?;
    let t_extract = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let head = train_head(
        &HeadConfig::tiny(16),
        &HeadInputs {
            device: device.clone(),
            features: root.join("features"),
            ground_truth: gt.clone(),
            out: root.join("head"),
        },
        &lofi_engine::RunControl::default(),
    )?;
    let t_train = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let det = detect(
        &DetectConfig::default(),
        &DetectInputs {
            device: device.clone(),
            skip_missing_features: false,
            head_dir: root.join("head"),
            features: root.join("features"),
            ground_truth: gt,
            subset: "validation".into(),
            class_scores: None,
            out: root.join("detections.json"),
            class_scores_out: None,
            evaluate: true,
        },
    )?;
    let t_detect = t.elapsed().as_secs_f64();
    println!(
        "| demo size: {} videos, TSM-R18 width 8, 16 x 1 x 64, tiny G-TAD 10 epochs | {threads} | extract {t_extract:.2} s | train-head {t_train:.2} s (validation each epoch) | detect+eval {t_detect:.2} s | val average mAP {:.4} |",
        ex.extracted,
        det.report.map_or(f64::NAN, |r| r.average_map)
    );
    println!(
        "(train-head: {} training videos, final epoch loss {:.4})",
        head.train_videos,
        head.epoch_loss.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
