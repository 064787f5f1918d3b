//! `lofi extract`: frozen encoder -> one feature file per video (sharded, resumable), and
//! `lofi extract --verify FEATURES_DIR`, the merge/check step after sharded runs.
//!
//! Settings, highest precedence first (the order of every stage, README "One order of
//! settings"): explicit flags; the keys a `--config` TOML file sets (the
//! `lofi_head::ExtractConfig` layout); the encoder's model card (`encoder.json` beside
//! `encoder.bpk`: architecture, classes, and the fidelity and sampling its run trained for); the
//! `--preset`, when one is given; the built-in defaults (the paper's). One line says which
//! fidelity, sampling and architecture were used and where each came from; a flag or config key
//! that overrides the card, and a preset the card overrules, are noted. The settings used are
//! written to `FEATURES_DIR/config.toml` (the encoder checkpoint as an absolute path, so that file
//! serves as `--config` from anywhere).
//! The exit status is non-zero when any video failed (extraction) or any output is missing or
//! corrupt (`--verify`), so cluster array jobs and scripts can check it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lofi_engine::Preset;
use lofi_engine::Settings;
use lofi_head::{extract, verify, ExtractConfig, ExtractInputs, Shard};
use lofi_model::{EncoderArch, EncoderKind, ModelCard};
use lofi_video::Sampling;

/// Arguments of `lofi extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Ground truth (ActivityNet layout): the videos to extract and their durations.
    #[arg(long, value_name = "GT.json")]
    ground_truth: PathBuf,
    /// Folder of the video files (`<id>.mp4`, `.webm`, ..., with or without `v_`).
    #[arg(long, value_name = "DIR", required_unless_present = "verify")]
    videos: Option<PathBuf>,
    /// Feature folder to write (`<id>.npy` + `index.json`).
    #[arg(long, value_name = "DIR", required_unless_present = "verify")]
    out: Option<PathBuf>,
    /// Check FEATURES_DIR against the ground truth instead of extracting: list missing and
    /// corrupt files, merge shard indexes into index.json; non-zero exit if anything is wrong.
    #[arg(long, value_name = "FEATURES_DIR", conflicts_with_all = ["videos", "out", "shard"])]
    verify: Option<PathBuf>,
    /// TOML settings (snippets, frames_per_snippet, size, workers, subset,
    /// max_frames_per_pass, [sampling], [encoder]).
    #[arg(long, value_name = "extract.toml")]
    config: Option<PathBuf>,
    /// Encoder: a weights file (`.bpk` from lofi, or `.pth` / `.safetensors`) or a run folder
    /// holding `encoder.bpk`. Its model card (`encoder.json`), when there is one, gives the
    /// architecture and the fidelity.
    #[arg(long, value_name = "FILE|DIR")]
    encoder: Option<PathBuf>,
    /// Settings (architecture, fidelity, sampling) for what neither the flags, --config nor the
    /// encoder's card gives [default: the built-in defaults, the paper's].
    #[arg(long, value_name = "NAME", long_help = super::preset_help())]
    preset: Option<Preset>,
    /// Encoder family: tsm (TSM-ResNet) or r2plus1d (R(2+1)D) [default: the encoder's card, else
    /// the preset's].
    #[arg(long)]
    kind: Option<EncoderKind>,
    /// Depth of the encoder (TSM: 18, 34, 50; R(2+1)D: 18, 34) [default: the card's, else the
    /// preset's].
    #[arg(long)]
    depth: Option<usize>,
    /// Width of the encoder's first stage (64 for the published networks) [default: the card's,
    /// else the preset's].
    #[arg(long)]
    base_width: Option<usize>,
    /// Classes of the checkpoint's classifier layer, if it has one (pre-trained encoders)
    /// [default: the card's].
    #[arg(long)]
    num_classes: Option<usize>,
    /// Snippets per video, L [default: the card's, else the preset's: paper 100].
    #[arg(long)]
    snippets: Option<usize>,
    /// Frames per snippet, F [default: the card's, else 1].
    #[arg(long)]
    frames: Option<usize>,
    /// Frame side in pixels, S [default: the card's, else the preset's: paper 224].
    #[arg(long)]
    size: Option<usize>,
    /// Stride sampling: one snippet every N frames of each video (at its own frame rate) instead
    /// of L snippets over the whole video; each video gets as many snippets as its length needs.
    #[arg(long, value_name = "N", conflicts_with = "stride_seconds")]
    stride_frames: Option<usize>,
    /// Stride sampling: one snippet every S seconds.
    #[arg(long, value_name = "S")]
    stride_seconds: Option<f64>,
    /// Only videos of this subset (default: all of the ground truth).
    #[arg(long)]
    subset: Option<String>,
    /// Decoding threads.
    #[arg(long)]
    workers: Option<usize>,
    /// Take only shard K of N (K from 0): videos whose position in the sorted id list is K mod N.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Redo everything in an --out that another extraction made (another encoder, weights or
    /// sampling; its fingerprint.json says which) instead of refusing it.
    #[arg(long, conflicts_with_all = ["verify", "shard"])]
    overwrite: bool,
    /// Go on without listed videos that have no file in --videos (they are listed as failed).
    /// Without it, such videos are an error that counts and names them, before any work.
    #[arg(long, conflicts_with = "verify")]
    skip_missing_videos: bool,
}

/// Run `lofi extract`.
pub fn run(args: ExtractArgs) -> Result<()> {
    if let Some(dir) = &args.verify {
        return run_verify(dir, &args);
    }
    let (config, mut from) = layered(&args)?;
    config.validate()?;
    tracing::info!("{}", from.line(&config));
    from.say_notes();
    if config.encoder.checkpoint.is_none() {
        tracing::warn!(
            "no encoder checkpoint given: extracting with a randomly initialised encoder"
        );
    }
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let (Some(videos), Some(out)) = (args.videos.clone(), args.out.clone()) else {
        bail!("--videos and --out are required to extract");
    };
    let inputs = ExtractInputs {
        device: crate::device::device()?,
        ground_truth: args.ground_truth.clone(),
        videos,
        out,
        shard,
        overwrite: args.overwrite,
        skip_missing_videos: args.skip_missing_videos,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} extracting {pos}/{len} videos [{elapsed} < {eta}] {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let outcome = extract(&config, &inputs, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("extraction into {} failed", inputs.out.display()))?;
    bar.finish_and_clear();
    tracing::info!(
        "{} videos: {} extracted ({} redone), {} already done, {} failed; {} frames in {:.1} s ({:.1} frames/s); index {}",
        outcome.videos,
        outcome.extracted,
        outcome.redone,
        outcome.skipped,
        outcome.failed.len(),
        outcome.frames,
        outcome.seconds,
        outcome.frames as f64 / outcome.seconds.max(1e-9),
        outcome.index_path.display()
    );
    for f in &outcome.failed {
        eprintln!("failed: {}: {}", f.id, f.reason);
    }
    // Videos without a file that the user asked to skip are listed, not a failure of the run.
    let failures = outcome.failed.len() - outcome.skipped_missing;
    if failures > 0 {
        bail!(
            "{failures} of {} videos failed (listed above and under \"failed\" in {})",
            outcome.videos,
            outcome.index_path.display()
        );
    }
    Ok(())
}

/// Where each setting that decides what the features are came from.
#[derive(Debug, Clone, PartialEq)]
struct Sources {
    snippets: String,
    frames: String,
    size: String,
    sampling: String,
    arch: String,
    /// Notes about overridden values, said after the line of sources.
    notes: Vec<String>,
}

impl Sources {
    fn all(from: &str) -> Self {
        Self {
            snippets: from.into(),
            frames: from.into(),
            size: from.into(),
            sampling: from.into(),
            arch: from.into(),
            notes: Vec::new(),
        }
    }

    /// `extract: 16 x 1 x 64 px, rescale, TSM-R18 width 4 (L, F, S, sampling, architecture from
    /// its card runs/x/encoder.json)`: one line, the sources grouped.
    fn line(&self, config: &ExtractConfig) -> String {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, from) in [
            ("L", &self.snippets),
            ("F", &self.frames),
            ("S", &self.size),
            ("sampling", &self.sampling),
            ("architecture", &self.arch),
        ] {
            match groups.iter_mut().find(|(f, _)| *f == from.as_str()) {
                Some((_, names)) => names.push(name),
                None => groups.push((from, vec![name])),
            }
        }
        let sources: Vec<String> = groups
            .iter()
            .map(|(from, names)| format!("{} from {from}", names.join(", ")))
            .collect();
        format!(
            "extract: {} x {} x {} px, {}, {} ({})",
            config.snippets,
            config.frames_per_snippet,
            config.size,
            lofi_model::card::describe_sampling(&config.sampling),
            lofi_model::card::describe_encoder(&config.encoder.model, config.encoder.num_classes),
            sources.join("; ")
        )
    }

    /// Says each noted override once.
    fn say_notes(&mut self) {
        for n in self.notes.drain(..) {
            tracing::info!("{n}");
        }
    }
}

/// The settings of `lofi extract` from its sources, highest precedence first: flags, the keys of
/// `--config`, the encoder's card, `--preset`, the defaults; with where each came from.
fn layered(args: &ExtractArgs) -> Result<(ExtractConfig, Sources)> {
    let (mut config, mut from) = match args.preset {
        Some(p) => (
            ExtractConfig::preset(p),
            Sources::all(&format!("--preset {p}")),
        ),
        None => (
            ExtractConfig::preset(Preset::default()),
            Sources::all("the defaults"),
        ),
    };
    // The config file: its values, and which keys it sets.
    let file = match &args.config {
        Some(path) => {
            let values = ExtractConfig::load(path)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let keys: toml::Table =
                toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
            Some((path, values, keys))
        }
        None => None,
    };
    // The encoder: the flag's, else the config's.
    let checkpoint = match &args.encoder {
        Some(p) => Some(lofi_model::card::resolve_weights(p, "encoder.bpk")?),
        None => file
            .as_ref()
            .and_then(|(_, v, _)| v.encoder.checkpoint.clone()),
    };
    if let Some(path) = &checkpoint {
        config.encoder.checkpoint = Some(path.clone());
        apply_card(&mut config, &mut from, path, args.preset)?;
    }
    if let Some((path, values, keys)) = &file {
        let by = format!("--config {}", path.display());
        let set = |k: &str| keys.contains_key(k);
        if set("snippets") {
            let differs = values.snippets != config.snippets;
            overrides(&mut from.snippets, &by, differs, &mut from.notes);
            config.snippets = values.snippets;
        }
        if set("frames_per_snippet") {
            let differs = values.frames_per_snippet != config.frames_per_snippet;
            overrides(&mut from.frames, &by, differs, &mut from.notes);
            config.frames_per_snippet = values.frames_per_snippet;
        }
        if set("size") {
            let differs = values.size != config.size;
            overrides(&mut from.size, &by, differs, &mut from.notes);
            config.size = values.size;
        }
        if set("sampling") {
            let differs = values.sampling != config.sampling;
            overrides(&mut from.sampling, &by, differs, &mut from.notes);
            config.sampling = values.sampling;
        }
        let encoder = keys.get("encoder").and_then(|e| e.as_table());
        let in_encoder = |k: &str| encoder.is_some_and(|e| e.contains_key(k));
        if in_encoder("model") {
            let differs = values.encoder.model != config.encoder.model;
            overrides(&mut from.arch, &by, differs, &mut from.notes);
            config.encoder.model = values.encoder.model.clone();
        }
        if in_encoder("num_classes") {
            config.encoder.num_classes = values.encoder.num_classes;
        }
        if in_encoder("seed") {
            config.encoder.seed = values.encoder.seed;
        }
        if set("workers") {
            config.workers = values.workers;
        }
        if set("subset") {
            config.subset = values.subset.clone();
        }
        if set("max_frames_per_pass") {
            config.max_frames_per_pass = values.max_frames_per_pass;
        }
        if set("duration_tolerance") {
            config.duration_tolerance = values.duration_tolerance;
        }
    }
    // Flags last.
    let flag = |by: &str, slot: &mut String, differs: bool, notes: &mut Vec<String>| {
        overrides(slot, by, differs, notes)
    };
    if args.kind.is_some() || args.depth.is_some() || args.base_width.is_some() {
        let model = with_sizes(
            &config.encoder.model,
            args.kind,
            args.depth,
            args.base_width,
        );
        model.validate()?;
        flag(
            "--kind/--depth/--base-width",
            &mut from.arch,
            model != config.encoder.model,
            &mut from.notes,
        );
        config.encoder.model = model;
    }
    if args.num_classes.is_some() {
        config.encoder.num_classes = args.num_classes;
    }
    if let Some(v) = args.snippets {
        flag(
            "--snippets",
            &mut from.snippets,
            v != config.snippets,
            &mut from.notes,
        );
        config.snippets = v;
    }
    if let Some(v) = args.frames {
        flag(
            "--frames",
            &mut from.frames,
            v != config.frames_per_snippet,
            &mut from.notes,
        );
        config.frames_per_snippet = v;
    }
    if let Some(v) = args.size {
        flag("--size", &mut from.size, v != config.size, &mut from.notes);
        config.size = v;
    }
    if let Some(v) = args.workers {
        config.workers = v;
    }
    if args.subset.is_some() {
        config.subset = args.subset.clone();
    }
    if args.stride_frames.is_some() || args.stride_seconds.is_some() {
        let sampling = Sampling::Stride {
            stride_frames: args.stride_frames,
            stride_seconds: args.stride_seconds,
        };
        flag(
            "--stride-frames/--stride-seconds",
            &mut from.sampling,
            sampling != config.sampling,
            &mut from.notes,
        );
        config.sampling = sampling;
    }
    Ok((config, from))
}

/// `by` sets a setting whose source is `slot`; noted when it overrides a different value of the
/// encoder's card.
fn overrides(slot: &mut String, by: &str, differs: bool, notes: &mut Vec<String>) {
    if slot.starts_with("its card") && differs {
        notes.push(format!("{by} overrides the encoder's card ({slot})"));
    }
    *slot = by.to_string();
}

/// Takes the architecture, fidelity and sampling from the model card beside the encoder weights
/// `path`, when there is one (a card that does not describe an encoder is an error); notes a
/// `--preset` whose values the card overrules.
fn apply_card(
    config: &mut ExtractConfig,
    from: &mut Sources,
    path: &std::path::Path,
    preset: Option<Preset>,
) -> Result<()> {
    let Some(card) = ModelCard::read_beside(path)? else {
        tracing::info!(
            "{} has no model card: architecture and fidelity from the flags, --config, --preset \
             or the defaults",
            path.display()
        );
        return Ok(());
    };
    let src = format!(
        "its card {} (`lofi {}`)",
        lofi_model::card::card_path(path).display(),
        card.producer.command
    );
    let before = config.clone();
    let (arch, num_classes) = card.encoder()?;
    config.encoder.model = arch.clone();
    config.encoder.num_classes = num_classes;
    from.arch = src.clone();
    if let Some(l) = card.input.snippets {
        config.snippets = l;
        from.snippets = src.clone();
    }
    if let Some(f) = card.input.frames_per_snippet {
        config.frames_per_snippet = f;
        from.frames = src.clone();
    }
    if let Some(s) = card.input.size {
        config.size = s;
        from.size = src.clone();
    }
    if let Some(s) = card.input.sampling {
        config.sampling = s;
        from.sampling = src.clone();
    }
    if let Some(p) = preset {
        let overruled = before.snippets != config.snippets
            || before.frames_per_snippet != config.frames_per_snippet
            || before.size != config.size
            || before.sampling != config.sampling
            || before.encoder.model != config.encoder.model;
        if overruled {
            from.notes.push(format!(
                "--preset {p} gives way to the encoder's card where they differ (the card says \
                 {}; flags and --config override the card)",
                card.input.describe()
            ));
        }
    }
    Ok(())
}

/// `arch` with the family, depth and width given on the command line (other settings kept when
/// the family stays the same).
fn with_sizes(
    arch: &EncoderArch,
    kind: Option<EncoderKind>,
    depth: Option<usize>,
    base_width: Option<usize>,
) -> EncoderArch {
    let kind = kind.unwrap_or(arch.kind());
    let depth = depth.unwrap_or(arch.depth());
    let width = base_width.unwrap_or(arch.base_width());
    match arch.clone() {
        EncoderArch::Tsm(mut c) if kind == EncoderKind::Tsm => {
            c.depth = depth;
            c.base_width = width;
            EncoderArch::Tsm(c)
        }
        EncoderArch::R2plus1d(mut c) if kind == EncoderKind::R2plus1d => {
            c.depth = depth;
            c.base_width = width;
            EncoderArch::R2plus1d(c)
        }
        _ => EncoderArch::tiny(kind, depth, width).with_frozen_bn(arch.frozen_bn()),
    }
}

fn run_verify(dir: &std::path::Path, args: &ExtractArgs) -> Result<()> {
    let report = verify(dir, &args.ground_truth, args.subset.as_deref())
        .with_context(|| format!("cannot verify {}", dir.display()))?;
    for id in &report.missing {
        eprintln!("missing: {id}");
    }
    for c in &report.corrupt {
        eprintln!("corrupt: {}: {}", c.id, c.reason);
    }
    for f in &report.leftovers {
        eprintln!("unfinished: {f} (a stopped extraction's; the next extraction removes it)");
    }
    tracing::info!(
        "{} valid, {} missing, {} corrupt; index {} ({})",
        report.ok,
        report.missing.len(),
        report.corrupt.len(),
        report.index_path.display(),
        if report.index_written {
            "merged and written"
        } else {
            "unchanged"
        }
    );
    if !report.is_complete() {
        bail!(
            "{} missing and {} corrupt feature files in {}",
            report.missing.len(),
            report.corrupt.len(),
            dir.display()
        );
    }
    Ok(())
}
