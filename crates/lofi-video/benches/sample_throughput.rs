//! Sampling throughput and memory benchmark (a plain binary: `harness = false`).
//!
//! Why: the target is at least decord's throughput per core with flat memory, measured on
//! the same files in the same run; `bench/video/run.sh` drives this binary and the Python peers.
//!
//! Subcommands (after `cargo bench -p lofi-video --bench sample_throughput --`):
//! - `gen DIR`: write `hd720.mp4` (1280x720) and `qvga.mp4` (320x240), 60 s at 30 fps, H.264
//!   (libx264 veryfast, CRF 23, keyframe every 5 s), plus `many/m_XX.mp4`: 50 videos of 10 s,
//!   320x240 at 25 fps, for the 500-video memory run;
//! - `sample FILE REPEATS`: open + sample 100 snippets x 1 frame at 224 px (short-side resize,
//!   centre crop), single-threaded; prints the median frames per second;
//! - `many DIR COUNT`: sample COUNT videos cycling over DIR through the loader (1 worker,
//!   queue 4), printing resident memory at checkpoints and the peak.

use lofi_video::sampler::SamplerOptions;
use lofi_video::writer::{VideoWriter, WriterConfig};
use lofi_video::{Fidelity, Loader, LoaderConfig, Sampler, SamplingPlan, VideoJob};
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A moving test scene: colour ramps, a translated noise texture (so the encoder has real detail
/// to code) and two moving boxes.
fn scene(w: usize, h: usize, f: usize, noise: &[u8], nw: usize, rgb: &mut [u8]) {
    let (ox, oy) = (f * 3, f);
    for y in 0..h {
        let ny = (y + oy) % nw;
        for x in 0..w {
            let n = i32::from(noise[ny * nw + (x + ox) % nw]) - 16;
            let o = (y * w + x) * 3;
            let base = [
                ((x * 255 / w + f) % 256) as i32,
                ((y * 255 / h + 2 * f) % 256) as i32,
                (((x + y) * 128 / (w + h) + 3 * f) % 256) as i32,
            ];
            for c in 0..3 {
                rgb[o + c] = (base[c] / 2 + 64 + n).clamp(0, 255) as u8;
            }
        }
    }
    for (k, speed) in [(0usize, 5usize), (1, 9)] {
        let side = h / 5;
        let bx = (f * speed + k * w / 2) % (w - side);
        let by = (k * h / 2 + f * 2) % (h - side);
        for y in by..by + side {
            for x in bx..bx + side {
                let o = (y * w + x) * 3;
                rgb[o..o + 3].copy_from_slice(&[230, 230 - 100 * k as u8, 40]);
            }
        }
    }
}

fn write_scene(path: &Path, w: u32, h: u32, fps: i32, seconds: i32, seed: u64) -> Result<()> {
    let mut config = WriterConfig::h264_cfr(w, h, fps);
    config.gop = (fps * 5) as u32;
    let nw = 512;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: Vec<u8> = (0..nw * nw)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 33) as u8
        })
        .collect();
    let mut writer = VideoWriter::create(path, &config)?;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    for f in 0..(fps * seconds) as usize {
        scene(
            w as usize,
            h as usize,
            f + seed as usize * 7,
            &noise,
            nw,
            &mut rgb,
        );
        writer.write_rgb(&rgb, f as i64)?;
    }
    writer.finish()?;
    Ok(())
}

fn rss_kib(field: &str) -> u64 {
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

fn plan() -> Result<SamplingPlan> {
    Ok(Fidelity::full().apply(&SamplingPlan::new(1)?))
}

fn sample(file: &Path, repeats: usize) -> Result<()> {
    let plan = plan()?;
    let mut times = Vec::new();
    let mut checksum = 0u64;
    for _ in 0..repeats {
        let start = Instant::now();
        let mut sampler = Sampler::open(file, SamplerOptions::default())?;
        let duration = sampler.index().duration();
        let clip = plan.sample(&mut sampler, duration)?;
        times.push(start.elapsed().as_secs_f64());
        checksum = clip.data.iter().map(|&b| u64::from(b)).sum();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    println!(
        "RESULT tool=lofi file={} frames=100 median_s={median:.4} fps={:.1} checksum={checksum}",
        file.display(),
        100.0 / median
    );
    Ok(())
}

fn many(dir: &Path, count: usize) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .mp4 files in {}", dir.display()).into());
    }
    let jobs: Vec<VideoJob> = (0..count)
        .map(|i| VideoJob {
            id: format!("{i}"),
            path: files[i % files.len()].clone(),
            annotated_duration: None,
            span: None,
        })
        .collect();
    let mut config = LoaderConfig::new(plan()?);
    config.workers = 1;
    config.queue = 4;
    let start = Instant::now();
    let mut loader = Loader::new(jobs, config)?;
    let mut n = 0;
    for _video in loader.by_ref() {
        n += 1;
        if [10, 100, 250, 500, count].contains(&n) {
            println!(
                "RSS tool=lofi videos={n} rss_mib={:.1}",
                rss_kib("VmRSS:") as f64 / 1024.0
            );
        }
    }
    let report = loader.finish();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT tool=lofi many={n} failed={} seconds={secs:.2} fps={:.1} peak_rss_mib={:.1}",
        report.failed.len(),
        (n * 100) as f64 / secs,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| "usage: gen DIR | sample FILE REPEATS | many DIR COUNT".into())
    };
    match args.first().map(String::as_str) {
        Some("gen") => {
            let dir = PathBuf::from(arg(1)?);
            std::fs::create_dir_all(dir.join("many"))?;
            write_scene(&dir.join("qvga.mp4"), 320, 240, 30, 60, 1)?;
            write_scene(&dir.join("hd720.mp4"), 1280, 720, 30, 60, 2)?;
            for i in 0..50 {
                write_scene(
                    &dir.join("many").join(format!("m_{i:02}.mp4")),
                    320,
                    240,
                    25,
                    10,
                    10 + i,
                )?;
            }
            Ok(())
        }
        Some("sample") => sample(Path::new(arg(1)?), arg(2)?.parse()?),
        Some("many") => many(Path::new(arg(1)?), arg(2)?.parse()?),
        // `cargo bench` without arguments (e.g. in CI): nothing to measure, say how to run it.
        _ => {
            eprintln!("sample_throughput: run bench/video/run.sh (subcommands: gen, sample, many)");
            Ok(())
        }
    }
}
