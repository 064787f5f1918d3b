//! Memory probes in a child process: each probe step of the planner runs alone in a fresh
//! process, so that nothing else moves what it measures.
//!
//! Exists because the CPU meter ([`ProcMeter`]) reads the resident memory of a whole process
//! (Linux `VmRSS`/`VmHWM`) and resets its peak for the whole process: measured in the training
//! process, a probe also counts whatever the other threads allocate meanwhile (the data loader
//! decoding videos, another run or test in the same process) and another thread's reset erases
//! its peak. Measured from tests running beside each other, the planner read 0 B fixed and
//! 0 B per video three times in ten. Counting Rust allocations instead would miss what a backend
//! allocates outside Rust's allocator (libtorch).
//!
//! What a probe measures: the child builds the probe model (seeded as the parent would), reads
//! its resident memory (the model's baseline), runs one forward/backward pass at the probe's
//! fidelity and batch, and reports the peak over that baseline: **the bytes a step adds over the
//! model's baseline**, the one meaning of "memory" of the planner. A fresh process per probe
//! means no probe inherits memory an earlier one freed but the allocator kept, so the order of
//! the probes does not matter and batch 2 over batch 1 is the cost of one more video.
//!
//! The child is a program that calls [`serve_if_child`] first thing in `main`: the `lofi`
//! binary itself, or this crate's `lofi-probe` (for programs other than `lofi`, such as tests).
//! The request arrives on its stdin as JSON and the reply leaves on its stdout.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use lofi_model::seed::seeded;
use lofi_model::torch::HostBackend;
use lofi_video::Fidelity;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{TrainError, TrainResult};
use crate::memory::{measure, ProcMeter};
use crate::model::{probe_pass, LofiModel};
use crate::train::training_device;

/// The environment variable that makes a program a probe child ([`serve_if_child`]).
pub const CHILD_ENV: &str = "LOFI_PROBE_CHILD";

/// The allocator settings of a probe child (glibc's; other allocators ignore them): one arena,
/// every allocation of 4 KiB or more in a mapping of its own that is returned when freed, and
/// the heap trimmed at every free. With glibc's defaults, memory a pass freed but the allocator
/// kept hid most of the next pass's need (a measured 0 B to 880 KiB for one tiny probe).
const ALLOCATOR_ENV: [(&str, &str); 4] = [
    ("MALLOC_ARENA_MAX", "1"),
    ("MALLOC_MMAP_THRESHOLD_", "4096"),
    ("MALLOC_TRIM_THRESHOLD_", "0"),
    ("MALLOC_TOP_PAD_", "0"),
];

/// Probe results are rounded up to whole multiples of this (4 MiB). What the same step adds to
/// the resident memory of a fresh process still varies with thread interleaving, by about
/// 300 KiB at tiny sizes (0.9 to 1.3 MiB for one probe over repeated runs); rounded up, a probe
/// reads the same number each time it runs, and never less than it needed.
pub const PROBE_QUANTUM: u64 = 4 << 20;

/// One probe step, as the parent asks a child for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The run's config (network, precision, checkpointing, frames per snippet).
    pub config: TrainConfig,
    /// Fidelity of the probe step.
    pub fidelity: Fidelity,
    /// Videos in the probe step.
    pub batch: usize,
    /// Seed of the probe model's weights and the probe clips.
    pub seed: u64,
    /// The host-memory backend the run trains on (flex, or libtorch's CPU device), which the
    /// child probes on.
    #[serde(default)]
    pub backend: HostBackend,
}

/// What one probe step measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeMeasure {
    /// Bytes the step added over the model's baseline, rounded up to [`PROBE_QUANTUM`].
    pub bytes: u64,
    /// Wall time of the measured pass, seconds.
    pub step_s: f64,
}

/// What a child answers: the measurement, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ProbeReply {
    Measured(ProbeMeasure),
    Failed(String),
}

/// Runs one probe step in this process: the probe model, its resident memory, one pass, and the
/// peak over that baseline. What a child does; called by [`serve_if_child`].
fn run_here(request: &ProbeRequest) -> TrainResult<ProbeMeasure> {
    let base = request.backend.device().ok_or_else(|| {
        TrainError::Measure(format!(
            "the probe asks for {:?}, which this program was built without",
            request.backend
        ))
    })?;
    let device = training_device(&request.config, &base);
    let mut meter = ProcMeter::new()?;
    let config = &request.config;
    seeded(&device, request.seed, || {
        let mut model = LofiModel::init(config, &device)?;
        if config.encoder.frozen_bn() {
            model.encoder = model.encoder.freeze_bn();
        }
        // A first pass loads the code and the lazily built state of the step (file-backed pages
        // and one-time set-up are no part of what a step adds); the second is measured.
        probe_pass(&model, config, request.fidelity, request.batch, &device)?;
        let started = Instant::now();
        let ((), bytes) = measure(&mut meter, || {
            probe_pass(&model, config, request.fidelity, request.batch, &device)
        })?;
        Ok(ProbeMeasure {
            bytes: bytes.div_ceil(PROBE_QUANTUM) * PROBE_QUANTUM,
            step_s: started.elapsed().as_secs_f64(),
        })
    })
}

/// Serves one probe request when this process was started as a probe child ([`CHILD_ENV`] set):
/// reads the request from stdin, runs it, writes the reply to stdout and returns the exit code
/// the program should end with. `None` when this is not a probe child: the program goes on.
pub fn serve_if_child() -> Option<ExitCode> {
    std::env::var_os(CHILD_ENV)?;
    let mut text = String::new();
    let reply = match std::io::stdin().read_to_string(&mut text) {
        Err(e) => ProbeReply::Failed(format!("cannot read the probe request from stdin: {e}")),
        Ok(_) => match serde_json::from_str::<ProbeRequest>(&text) {
            Err(e) => ProbeReply::Failed(format!("the probe request is not valid: {e}")),
            Ok(request) => match run_here(&request) {
                Ok(m) => ProbeReply::Measured(m),
                Err(e) => ProbeReply::Failed(e.to_string()),
            },
        },
    };
    let failed = matches!(reply, ProbeReply::Failed(_));
    let written = serde_json::to_string(&reply)
        .map_err(std::io::Error::other)
        .and_then(|line| writeln!(std::io::stdout(), "{line}"));
    Some(if failed || written.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `request` in a child process of `program` (a program that calls [`serve_if_child`]) and
/// returns what it measured.
pub fn probe_in_child(program: &Path, request: &ProbeRequest) -> TrainResult<ProbeMeasure> {
    let what = format!(
        "memory probe at {}x{}, batch {} (child process {})",
        request.fidelity.snippets,
        request.fidelity.size,
        request.batch,
        program.display()
    );
    let fail = |message: String| TrainError::Measure(format!("{what}: {message}"));
    let body = serde_json::to_string(request).map_err(|e| fail(e.to_string()))?;
    let mut child = Command::new(program)
        .env(CHILD_ENV, "1")
        .envs(ALLOCATOR_ENV.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .map_err(|e| fail(format!("cannot send the request: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<ProbeReply>(l).ok())
    {
        Some(ProbeReply::Measured(m)) if out.status.success() => Ok(m),
        Some(ProbeReply::Failed(m)) => Err(fail(m)),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            Err(fail(format!(
                "it ended with {} without a probe reply (is it a program that serves probes, \
                 such as lofi or lofi-probe?){}{}",
                out.status,
                if tail.is_empty() { "" } else { "; it said: " },
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )))
        }
    }
}
