//! A long video's extraction in passes against one pass: TSM-ResNet-18 (width 64, random
//! weights, inference) on one video of `N` snippets x 1 frame x `S` px on the CPU, from decoded
//! bytes as `lofi extract` does. Both sides in one process, passes first: seconds, peak resident
//! memory above the start (`VmHWM`, reset before each side) and their ratios, and the largest
//! difference between the two feature arrays (the passes are meant to be exact).
//!
//! `cargo bench -p lofi-head --bench extract_passes -- [N] [S] [max_frames]`
//! (defaults 2048 224 512: a THUMOS14 video of about 5.7 minutes at one snippet every 5 frames).

use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use lofi_engine::{MemoryMeter, ProcMeter};
use lofi_video::ClipU8;

mod common;
use common::{arg, tsm_r18};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (n, s, max_frames) = (arg(1, 2048), arg(2, 224), arg(3, 512));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (_, encoder) = tsm_r18()?;
    let device = lofi_head::cpu_device();
    // Decoded bytes of a video: a smooth pattern that moves over time, so neighbouring
    // snippets differ as in a real video.
    let shape = [n, 1, 3, s, s];
    let plane = s * s;
    let data = (0..shape.iter().product::<usize>())
        .map(|i| {
            let (t, rest) = (i / (3 * plane), i % (3 * plane));
            let (c, p) = (rest / plane, rest % plane);
            ((p / s + 2 * (p % s) + 7 * c + 3 * t) % 256) as u8
        })
        .collect();
    let clip = ClipU8 { shape, data };
    let tensor = |part: lofi_video::ClipF32| {
        let [l, f, ch, h, w] = part.shape;
        Tensor::<6>::from_data(TensorData::new(part.data, [1, l, f, ch, h, w]), &device)
    };
    let mut meter = ProcMeter::new()?;
    let mut measure = |run: &mut dyn FnMut() -> Result<Vec<f32>, Box<dyn std::error::Error>>| {
        let base = meter.current()?;
        meter.reset_peak()?;
        let t = Instant::now();
        let out = run()?;
        let secs = t.elapsed().as_secs_f64();
        let grew = meter.peak()?.saturating_sub(base);
        Ok::<_, Box<dyn std::error::Error>>((out, secs, grew as f64 / (1 << 20) as f64))
    };
    let passes = lofi_model::passes::plan_passes(n, encoder.context_snippets(1), max_frames)?.len();
    let (by_passes, t_passes, m_passes) = measure(&mut || {
        let feats = encoder.forward_passes(n, 1, max_frames, |range| {
            Ok(tensor(clip.snippets_f32_normalized(range)))
        })?;
        Ok(feats
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?)
    })?;
    let (whole, t_whole, m_whole) = measure(&mut || {
        let feats = encoder.forward(tensor(clip.to_f32_normalized()))?;
        Ok(feats
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?)
    })?;
    let diff = whole
        .iter()
        .zip(&by_passes)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "| side | frames x px | threads | seconds | frames/s | peak memory growth MiB |\n|---|---|---:|---:|---:|---:|"
    );
    println!(
        "| one pass | {n} x {s} | {threads} | {t_whole:.1} | {:.1} | {m_whole:.0} |",
        n as f64 / t_whole
    );
    println!(
        "| {passes} passes of <= {max_frames} frames | {n} x {s} | {threads} | {t_passes:.1} | {:.1} | {m_passes:.0} |",
        n as f64 / t_passes
    );
    println!(
        "passes / one pass: time {:.2}x, peak memory growth {:.2}x; largest feature difference {diff:.2e}",
        t_passes / t_whole,
        m_passes / m_whole
    );
    Ok(())
}
