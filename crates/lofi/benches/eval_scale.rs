//! `lofi eval` at ActivityNet scale against a numpy implementation, measured in the same run.
//!
//! The input mirrors ActivityNet-1.3 validation: 4,926 videos, 200 classes, 100 proposals per
//! video fused with the top-2 classes (about 985k detections), written by
//! `test-tools/make_anet_scale.py` (deterministic). Each tool runs as its own process pinned to
//! one core (`taskset -c 0` where available), three times; we report the median wall time, the
//! CPU time (user + system) and the peak resident memory from the kernel's accounting of the
//! child, and check that both tools produce the same numbers.
//!
//! Run it with `bench/eval.sh` (it makes a virtual environment with numpy first), or directly:
//! `LOFI_BENCH_PYTHON=/path/to/python-with-numpy cargo bench -p lofi --bench eval_scale`.

#![allow(unsafe_code)] // wait4(2) for the child's resource usage; see `run_measured`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const RUNS: usize = 3;

struct Measurement {
    wall: f64,
    cpu: f64,
    peak_rss_mib: f64,
    stdout: Vec<u8>,
}

/// Runs a command to completion and returns its wall time, CPU time and peak RSS.
#[allow(clippy::zombie_processes)] // the child is reaped by wait4 below, not by Child::wait
fn run_measured(command: &mut Command) -> Measurement {
    let output_file = tempfile::NamedTempFile::new().expect("temporary file");
    let started = Instant::now();
    let child = command
        .stdout(Stdio::from(output_file.reopen().expect("reopen")))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that the kernel fills in; zeroed is a valid value. We
    // reap the child ourselves (and never call `Child::wait`), so the pid is ours and live.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(reaped, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed with status {status}"
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Measurement {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        stdout: std::fs::read(output_file.path()).expect("read output"),
    }
}

fn pinned(program: &str) -> Command {
    let taskset = Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if taskset {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", program]);
        command
    } else {
        eprintln!("taskset not found: runs are not pinned to one core");
        Command::new(program)
    }
}

fn median_of(mut make: impl FnMut() -> Command) -> Measurement {
    let mut runs: Vec<Measurement> = (0..RUNS).map(|_| run_measured(&mut make())).collect();
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs.swap_remove(RUNS / 2)
}

fn max_difference(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .map(|(x, y)| max_difference(x, y))
            .fold(0.0, f64::max),
        (Value::Object(x), Value::Object(y)) if x.len() == y.len() => x
            .iter()
            .map(|(k, v)| y.get(k).map_or(f64::INFINITY, |w| max_difference(v, w)))
            .fold(0.0, f64::max),
        _ => f64::INFINITY,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means another bench.
    if std::env::args()
        .skip(1)
        .any(|a| a != "--bench" && !"eval_scale".contains(&a))
    {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let tools = root.join("test-tools");
    let python = std::env::var("LOFI_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_numpy = Command::new(&python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    let data: PathBuf = root.join("target/bench-data/anet-scale");
    if !data.join("detections.json").exists() {
        eprintln!(
            "generating the ActivityNet-scale input in {}",
            data.display()
        );
        let status = Command::new("python3")
            .arg(tools.join("make_anet_scale.py"))
            .arg("--out")
            .arg(&data)
            .status()
            .expect("python3 runs the generator");
        assert!(status.success(), "the generator failed");
    }
    let lofi = env!("CARGO_BIN_EXE_lofi");
    let gt = data.join("ground_truth.json");
    let detections = data.join("detections.json");
    let proposals = data.join("proposals.json");
    let mb = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6);
    println!(
        "input: {} ({:.1} MB), {} ({:.1} MB), {} ({:.1} MB)",
        gt.display(),
        mb(&gt),
        detections.display(),
        mb(&detections),
        proposals.display(),
        mb(&proposals)
    );

    let tasks: [(&str, &str, &str, &Path); 2] = [
        ("detection mAP", "detection", "--predictions", &detections),
        ("proposal AR@AN", "proposals", "--proposals", &proposals),
    ];
    println!();
    println!("| task | tool | wall s (median of {RUNS}) | CPU s | peak RSS MiB | wall ratio numpy / lofi |");
    println!("|---|---|---:|---:|---:|---:|");
    for (name, subcommand, flag, input) in tasks {
        let ours = median_of(|| {
            let mut command = pinned(lofi);
            command
                .args(["-q", "eval", subcommand, "--json", "--ground-truth"])
                .arg(&gt)
                .arg(flag)
                .arg(input);
            command
        });
        println!(
            "| {name} | lofi | {:.3} | {:.3} | {:.0} | |",
            ours.wall, ours.cpu, ours.peak_rss_mib
        );
        if !has_numpy {
            println!(
                "| {name} | numpy | skipped: `{python}` has no numpy (use bench/eval.sh) | | | |"
            );
            continue;
        }
        let peer = median_of(|| {
            let mut command = pinned(&python);
            command
                .arg(tools.join("anet_numpy.py"))
                .args([subcommand, "--ground-truth"])
                .arg(&gt)
                .arg(flag)
                .arg(input);
            command
        });
        println!(
            "| {name} | numpy | {:.3} | {:.3} | {:.0} | {:.1}x |",
            peer.wall,
            peer.cpu,
            peer.peak_rss_mib,
            peer.wall / ours.wall
        );
        let a: serde_json::Value = serde_json::from_slice(&ours.stdout).expect("lofi JSON");
        let b: serde_json::Value = serde_json::from_slice(&peer.stdout).expect("numpy JSON");
        let difference = max_difference(&a, &b);
        println!("|  | largest difference between the two results: {difference:.1e} | | | | |");
        assert!(difference <= 1e-9, "{name}: results differ by {difference}");
    }
}
