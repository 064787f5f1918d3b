//! The memory planner's view of a LoFi training step: TSM-ResNet + G-TAD at the paper's sizes
//! (or any), one probe step per fidelity at batches 1 and 2 on the CPU (flex backend), the fitted
//! `fixed + per-video` cost, the time of the one-video step and the micro-batch the planner picks
//! under a budget.
//!
//! `cargo bench -p lofi-train --bench plan_step -- [--preset paper|tiny] [--snippets 100]
//! [--size 224] [--depth 18] [--width 64] [--budget 24GiB] [--fidelities full,s,t,st]`. The step itself is lofi-model's
//! (`crates/lofi-model/benches/train_step.rs` measures it alone, one process per fidelity);
//! this one runs exactly the probes `lofi train --memory-budget` runs, each in a child process
//! (`lofi_train::probe`), and prints Markdown rows for BENCHMARKS.md.

use lofi_train::config::{FidelitySpec, TrainConfig};
use lofi_train::memory::{plan, ByteSize, MemoryMeter, Probe, ProcMeter};
use lofi_train::probe::{probe_in_child, ProbeRequest};
use lofi_train::schedule::{fidelity_name, reductions};
use lofi_video::Fidelity;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: usize| -> usize {
        arg(&args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut config = match arg(&args, "--preset").as_deref() {
        Some("tiny") => TrainConfig::tiny(),
        _ => TrainConfig::default(),
    };
    config.full = FidelitySpec {
        snippets: num("--snippets", config.full.snippets),
        size: num("--size", config.full.size),
    };
    config.encoder = lofi_model::EncoderArch::tiny(
        config.encoder.kind(),
        num("--depth", config.encoder.depth()),
        num("--width", config.encoder.base_width()),
    );
    let budget: ByteSize = arg(&args, "--budget")
        .unwrap_or_else(|| "24GiB".into())
        .parse()?;
    let full = config.full_fidelity()?;
    let [s, t, st] = reductions(full)?;
    let wanted = arg(&args, "--fidelities").unwrap_or_else(|| "full,s,t,st".into());
    let fidelities: Vec<Fidelity> = wanted
        .split(',')
        .filter_map(|n| match n {
            "full" => Some(full),
            "s" => Some(s),
            "t" => Some(t),
            "st" => Some(st),
            _ => None,
        })
        .collect();

    // As the planner does: each probe step in a child process of lofi-probe.
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_lofi-probe"));
    let baseline = ProcMeter::new()?.current()?;
    let mut probes = Vec::new();
    let mut times = Vec::new();
    for &f in &fidelities {
        for b in [1usize, 2] {
            let request = ProbeRequest {
                config: config.clone(),
                fidelity: f,
                batch: b,
                seed: 0,
                backend: lofi_model::torch::HostBackend::Flex,
            };
            let m = probe_in_child(program, &request)?;
            eprintln!(
                "{:>5} batch {b}: {:.2} s, +{}",
                fidelity_name(f, full),
                m.step_s,
                ByteSize(m.bytes)
            );
            probes.push(Probe {
                fidelity: f,
                batch: b,
                bytes: m.bytes,
            });
            if b == 1 {
                times.push((f, m.step_s, m.bytes));
            }
        }
    }
    let p = plan(&probes, &fidelities, 16, baseline, budget.0)?;
    print!("{p}");
    let (_, full_time, full_bytes) = times
        .iter()
        .copied()
        .find(|(f, _, _)| *f == full)
        .unwrap_or((full, f64::NAN, 0));
    println!();
    println!(
        "| fidelity | L x S | step, 1 video (s) | vs full | memory growth, 1 video | vs full | \
         fitted fixed | fitted per video | micro-batch under {budget} |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    times.sort_by_key(|(f, _, _)| fidelities.iter().position(|g| g == f));
    for (f, secs, bytes) in &times {
        let fp = p.get(*f);
        println!(
            "| {} | {}x{} | {secs:.2} | {:.2} | {} | {:.2} | {} | {} | {} |",
            fidelity_name(*f, full),
            f.snippets,
            f.size,
            secs / full_time,
            ByteSize(*bytes),
            *bytes as f64 / full_bytes.max(1) as f64,
            fp.map_or("-".into(), |x| ByteSize(x.fixed_bytes).to_string()),
            fp.map_or("-".into(), |x| ByteSize(x.per_sample_bytes).to_string()),
            fp.map_or("-".into(), |x| format!(
                "{} x {}",
                x.micro_batch, x.accumulation
            )),
        );
    }
    Ok(())
}
