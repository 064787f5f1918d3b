//! `lofi`: the command-line edge of the toolkit.
//!
//! Each subcommand lives in its own module under `cmd/` and owns its flags; this file only parses
//! the command line, sets up logging and maps errors to an exit code. Library crates return typed
//! errors; they become `anyhow` reports here, where a person reads them.

mod cmd;
mod device;
mod output;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Temporal action localization with low-fidelity end-to-end encoder optimization (LoFi).
#[derive(Debug, Parser)]
#[command(name = "lofi", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Compute device for model work: cpu, torch, torch-cuda[:N] (cargo feature `tch`; the
    /// NVIDIA route), wgpu[:N], vulkan[:N] or cuda[:N] (the cargo feature of the same name).
    /// `lofi train` takes a list (torch-cuda:0,torch-cuda:1): data parallel.
    #[arg(
        long,
        global = true,
        default_value = "cpu",
        value_name = "DEVICE[,DEVICE...]",
        value_delimiter = ','
    )]
    device: Vec<device::DeviceChoice>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate detections or proposals with the ActivityNet protocol.
    #[command(subcommand)]
    Eval(cmd::eval::EvalCommand),
    /// Write the seeded synthetic untrimmed-video benchmark (videos, ground truth, clips).
    Synth(cmd::synth::SynthArgs),
    /// Check a video folder against a ground-truth file: durations, codecs, missing videos.
    Probe(cmd::probe::ProbeArgs),
    /// Write a self-contained HTML report of a run folder.
    Report(cmd::report::ReportArgs),
    /// Run the whole LoFi method on the built-in synthetic benchmark and print the paper's table.
    Demo(cmd::demo::DemoArgs),
    /// Pre-train the TSM encoder for clip classification on trimmed clips ("ACP").
    Pretrain(cmd::pretrain::PretrainArgs),
    /// Train encoder + G-TAD end to end under a LoFi fidelity schedule.
    Train(cmd::train::TrainArgs),
    /// Frozen encoder -> one feature file per video (sharded, resumable); or --verify a folder.
    Extract(cmd::extract::ExtractArgs),
    /// Train a G-TAD head from scratch on feature files (ours or a peer's .npy / .csv).
    TrainHead(cmd::train_head::TrainHeadArgs),
    /// Trained head -> proposals -> Soft-NMS -> class fusion -> ActivityNet detections JSON.
    Detect(cmd::detect::DetectArgs),
    /// Open the `--device`, run a check computation on it and print what it is.
    Device(cmd::device::DeviceArgs),
}

fn main() -> ExitCode {
    // A child process started by `lofi train --memory-budget`'s planner runs one probe step and
    // ends (lofi_train::probe).
    if let Some(code) = lofi_train::probe::serve_if_child() {
        return code;
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    device::select(cli.device);
    let result = match cli.command {
        Command::Eval(command) => cmd::eval::run(command),
        Command::Synth(args) => cmd::synth::run(args),
        Command::Probe(args) => cmd::probe::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Pretrain(args) => cmd::pretrain::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Extract(args) => cmd::extract::run(args),
        Command::TrainHead(args) => cmd::train_head::run(args),
        Command::Detect(args) => cmd::detect::run(args),
        Command::Device(args) => cmd::device::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", each cause said once: library errors already put
/// their source into their own message (`{path}: {source}`), so a cause whose text the message
/// so far contains is not repeated.
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        #[derive(Debug)]
        struct Io {
            path: String,
            source: std::io::Error,
        }
        impl std::fmt::Display for Io {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for Io {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Io {
            path: "/x.json".into(),
            source: io,
        })
        .context("cannot read the ground truth");
        assert_eq!(
            message(&e),
            "cannot read the ground truth: /x.json: No such file or directory"
        );
    }
}
