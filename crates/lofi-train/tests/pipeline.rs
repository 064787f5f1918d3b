//! End-to-end at tiny sizes: synthetic videos -> `pretrain` -> `train` under every schedule,
//! checking the files a run writes, that metrics are finite, that each schedule trains at the
//! fidelities it should, and that a tiny over-fit run lowers its loss (in f32 and in bf16).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lofi_engine::metrics::{self, MetricsRecord, StepRecord};
use lofi_model::torch::HostBackend;
use lofi_model::{EncoderArch, EncoderKind, Precision};
use lofi_train::config::FidelitySpec;
use lofi_train::memory::{MemoryMeter, ProcMeter};
use lofi_train::model::saved_run_parameters;
use lofi_train::train::plan_memory;
use lofi_train::{
    pretrain, train, PretrainConfig, PretrainData, PretrainPaths, RunOptions, ScheduleKind,
    TrainConfig, TrainOutcome, TrainPaths,
};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};

struct Data {
    _dir: tempfile::TempDir,
    root: PathBuf,
    encoder: PathBuf,
}

/// Six training and two validation videos of 4-6 s at 64 px, and a pretrained tiny encoder.
fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("synth");
        let config = SynthConfig {
            videos: 8,
            min_duration: 4.0,
            max_duration: 6.0,
            ..SynthConfig::preset(SynthPreset::Tiny, 3)
        };
        write_dataset(&root, &config, 2, &|_| {}).expect("synthetic data");
        let out = dir.path().join("pretrain");
        let cfg = PretrainConfig {
            epochs: 1,
            ..PretrainConfig::tiny()
        };
        let outcome = pretrain(
            &cfg,
            &PretrainPaths {
                data: PretrainData::Clips(root.clone()),
                out: out.clone(),
            },
            &RunOptions::default(),
        )
        .expect("pretraining runs");
        assert!(outcome.encoder.is_file() && outcome.classifier.is_file());
        assert_eq!(outcome.epoch_losses.len(), 1);
        assert!(outcome.epoch_losses[0].is_finite());
        let acc = outcome.val_accuracy[0].expect("validation clips exist");
        assert!((0.0..=1.0).contains(&acc));
        for f in [
            "config.toml",
            "metrics.jsonl",
            "checkpoints/last",
            "summary.json",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        Data {
            encoder: outcome.encoder,
            root,
            _dir: dir,
        }
    })
}

fn paths(out: &Path, encoder: bool) -> TrainPaths {
    let d = data();
    TrainPaths {
        ground_truth: d.root.join("ground_truth.json"),
        videos: d.root.join("videos"),
        encoder: encoder.then(|| d.encoder.clone()),
        out: out.to_path_buf(),
    }
}

fn tiny(kind: ScheduleKind, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::tiny();
    c.schedule.kind = kind;
    c.epochs = epochs;
    c.batch_size = 2;
    c
}

#[test]
fn every_schedule_trains_at_its_fidelities() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let full = (16usize, 64usize);
    let expected: [(ScheduleKind, &[&str]); 6] = [
        (ScheduleKind::Full, &["full"]),
        (ScheduleKind::S, &["s"]),
        (ScheduleKind::T, &["t"]),
        (ScheduleKind::St, &["st"]),
        (ScheduleKind::LongCycle, &["s", "t"]),
        (ScheduleKind::ShortCycle, &["s", "t", "st"]),
    ];
    // Every schedule with every head (a head added to `HeadKind::ALL` is covered here too).
    let cases = lofi_model::HeadKind::ALL.into_iter().flat_map(|head| {
        expected
            .iter()
            .map(move |(kind, want)| (head, *kind, *want))
    });
    for (head, kind, want) in cases {
        let out = tmp.path().join(format!("{head}-{}", kind.name()));
        let epochs = if kind == ScheduleKind::LongCycle {
            2
        } else {
            1
        };
        let mut config = tiny(kind, epochs).with_head_kind(head);
        // The options ride along on two of the schedules: frozen BatchNorm and burn's
        // gradient checkpointing must train too.
        config.encoder = config
            .encoder
            .clone()
            .with_frozen_bn(kind == ScheduleKind::T);
        config.gradient_checkpointing = kind == ScheduleKind::St;
        let outcome =
            train(&config, &paths(&out, true), &RunOptions::default()).expect("training runs");
        for f in [
            "config.toml",
            "metrics.jsonl",
            "checkpoints/last",
            "summary.json",
        ] {
            assert!(out.join(f).is_file(), "{kind:?}: {f} missing");
        }
        assert!(out
            .join(format!("checkpoints/epoch-{}.bpk", epochs - 1))
            .is_file());
        assert!(outcome.encoder.is_file() && outcome.head.is_file());
        let card = lofi_model::ModelCard::read_beside(&outcome.head)
            .expect("readable card")
            .expect("a card");
        let lofi_model::ModelSpec::Head { arch, detect, .. } = &card.model else {
            panic!("{head}: not a head card")
        };
        assert_eq!(arch.kind(), head);
        assert_eq!(detect.as_ref(), Some(&arch.detect_defaults()), "{head}");
        assert_eq!(outcome.epochs.len(), epochs);
        for e in &outcome.epochs {
            assert!(
                e.mean_loss.is_finite() && e.mean_loss > 0.0,
                "{kind:?}: {e:?}"
            );
            let val = e.validation.as_ref().expect("validated every epoch");
            let v = val.loss.expect("validation loss");
            assert!(v.is_finite() && v > 0.0);
            let m = val.average_map.expect("validation mAP");
            assert!((0.0..=1.0).contains(&m), "{kind:?}: mAP {m}");
        }
        let names: Vec<&str> = outcome.fidelities.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, want, "{kind:?}");
        for f in &outcome.fidelities {
            assert!(f.mean_step_s > 0.0 && f.steps > 0);
            if cfg!(target_os = "linux") {
                assert!(f.peak_memory_bytes.unwrap_or(0) > 0);
            }
        }
        let steps = step_records(&out);
        // 6 training videos in batches of 2: 3 steps per epoch.
        assert_eq!(steps.len(), 3 * epochs, "{kind:?}");
        for s in &steps {
            assert!(s.loss.is_finite());
            assert_eq!(s.stage, "train");
            let l = s.snippets.unwrap_or(0);
            assert!(l >= 2 && l <= full.0);
        }
        if kind == ScheduleKind::ShortCycle {
            let per_batch: Vec<&str> = steps[..3]
                .iter()
                .map(|s| s.fidelity.as_deref().unwrap_or(""))
                .collect();
            assert_eq!(per_batch, ["s", "t", "st"]);
        }
    }
}

/// The step records of a run folder's metrics log.
fn step_records(run: &Path) -> Vec<StepRecord> {
    metrics::read(&run.join("metrics.jsonl"))
        .expect("metrics")
        .into_iter()
        .filter_map(|r| match r {
            MetricsRecord::Step(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Over-fits two training videos for 12 epochs at 8 snippets of 32 px with `edit` applied to
/// the config; returns the outcome, the run folder's parent and the first and last 3-epoch means.
fn overfit(edit: impl Fn(&mut TrainConfig)) -> (TrainOutcome, tempfile::TempDir, f64, f64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    // Two training videos only: the ground truth is cut down to them.
    let d = data();
    let text = std::fs::read_to_string(d.root.join("ground_truth.json")).expect("gt");
    let mut gt: serde_json::Value = serde_json::from_str(&text).expect("json");
    let db = gt["database"].as_object_mut().expect("database");
    let keep: Vec<String> = db
        .iter()
        .filter(|(_, v)| v["subset"] == "training")
        .map(|(k, _)| k.clone())
        .take(2)
        .collect();
    db.retain(|k, _| keep.contains(k));
    let gt_path = tmp.path().join("gt.json");
    std::fs::write(&gt_path, gt.to_string()).expect("written");
    let out = tmp.path().join("overfit");
    let mut config = tiny(ScheduleKind::Full, 12);
    config.full = FidelitySpec {
        snippets: 8,
        size: 32,
    };
    config.validate_every = 0;
    config.optimizer.lr = 0.1;
    config.optimizer.momentum = 0.9;
    config.optimizer.lr_step_epochs = 100;
    edit(&mut config);
    let mut p = paths(&out, false);
    p.ground_truth = gt_path;
    let outcome = train(&config, &p, &probing()).expect("trains");
    let losses: Vec<f64> = outcome.epochs.iter().map(|e| e.mean_loss).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    (outcome, tmp, first, last)
}

/// Options whose memory probes run in this crate's `lofi-probe`.
fn probing() -> RunOptions {
    RunOptions {
        probe_program: Some(PathBuf::from(env!("CARGO_BIN_EXE_lofi-probe"))),
        ..RunOptions::default()
    }
}

#[test]
fn a_tiny_overfit_run_lowers_its_loss_and_the_planner_plans() {
    let (outcome, tmp, first, last) = overfit(|c| c.memory_budget = Some("auto".into()));
    assert!(last < 0.8 * first, "loss did not fall: {first} -> {last}");
    let plan = outcome.memory_plan.expect("a budget was given");
    assert_eq!(plan.fidelities.len(), 1);
    assert!(plan.fidelities[0].per_sample_bytes > 0 || plan.fidelities[0].fixed_bytes > 0);
    assert!(tmp.path().join("overfit/memory_plan.json").is_file());
}

/// The planner's probe numbers do not move with what other threads of the process do: the same
/// probes with and without a thread beside them that allocates and frees in a sawtooth (and
/// resets the process's peak, as another run's meter would) read the same bytes.
#[test]
fn the_planner_is_undisturbed_by_other_threads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut config = tiny(ScheduleKind::ShortCycle, 1);
    config.full = FidelitySpec {
        snippets: 8,
        size: 32,
    };
    let schedule = config.fidelity_schedule().expect("schedule");
    let program = PathBuf::from(env!("CARGO_BIN_EXE_lofi-probe"));
    let budget = 1 << 40;
    let quiet = plan_memory(
        &config,
        &schedule,
        &program,
        7,
        HostBackend::Flex,
        0,
        budget,
    )
    .expect("plans");
    assert_eq!(quiet.probes.len(), 6, "3 fidelities x batches 1 and 2");
    for p in &quiet.probes {
        assert!(p.bytes > 0, "{p:?}");
    }
    let stop = AtomicBool::new(false);
    let busy = std::thread::scope(|s| {
        s.spawn(|| {
            let mut meter = ProcMeter::new().expect("meter");
            let mut held: Vec<Vec<u8>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Up by 8 MiB at a time to 128 MiB, then everything freed at once.
                held.push(vec![1u8; 8 << 20]);
                std::hint::black_box(&held);
                if held.len() == 16 {
                    held.clear();
                    meter.reset_peak().expect("reset");
                }
            }
        });
        let busy = plan_memory(
            &config,
            &schedule,
            &program,
            7,
            HostBackend::Flex,
            0,
            budget,
        );
        stop.store(true, Ordering::Relaxed);
        busy
    })
    .expect("plans beside the sawtooth");
    assert_eq!(quiet.probes, busy.probes);
    assert_eq!(quiet.fidelities, busy.fidelities);
}

/// Mixed precision (bf16 encoder compute, f32 master weights) trains: the loss falls as in f32,
/// and the saved weights are f32 and load into the f32 model.
#[test]
fn bf16_mixed_precision_overfits_and_saves_f32_weights() {
    let (outcome, tmp, first, last) = overfit(|c| c.precision = Precision::Bf16);
    assert!(
        last < 0.8 * first,
        "bf16 loss did not fall: {first} -> {last}"
    );
    let text = std::fs::read_to_string(tmp.path().join("overfit/config.toml")).expect("config");
    assert!(text.contains("precision = \"bf16\""), "{text}");
    let config: TrainConfig = toml::from_str(&text).expect("config parses");
    let params = saved_run_parameters(&config, &outcome.run_dir).expect("f32 weights load");
    assert!(params.iter().all(|v| v.is_finite()));
}

/// LoFi trains an R(2+1)D encoder end to end (reduced fidelity, the ST schedule): the loss falls,
/// the run's config names the encoder, and the saved `encoder.bpk` loads as an R(2+1)D.
#[test]
fn lofi_trains_an_r2plus1d_encoder_end_to_end() {
    let (outcome, tmp, first, last) = overfit(|c| {
        c.encoder = EncoderArch::tiny(EncoderKind::R2plus1d, 18, 4);
        c.schedule.kind = ScheduleKind::St;
    });
    assert!(
        last < 0.8 * first,
        "R(2+1)D loss did not fall: {first} -> {last}"
    );
    assert_eq!(outcome.fidelities.len(), 1);
    assert_eq!(outcome.fidelities[0].name, "st");
    let text = std::fs::read_to_string(tmp.path().join("overfit/config.toml")).expect("config");
    assert!(text.contains("kind = \"r2plus1d\""), "{text}");
    let config: TrainConfig = toml::from_str(&text).expect("config parses");
    let encoder = config
        .encoder
        .load(None, &outcome.encoder, &lofi_train::cpu_device())
        .expect("encoder.bpk loads as R(2+1)D");
    assert_eq!(encoder.kind(), EncoderKind::R2plus1d);
    let wrong = EncoderArch::tiny(EncoderKind::Tsm, 18, 4);
    assert!(wrong
        .load(None, &outcome.encoder, &lofi_train::cpu_device())
        .is_err());
    let params = saved_run_parameters(&config, &outcome.run_dir).expect("weights load");
    assert!(params.iter().all(|v| v.is_finite()));
}

#[test]
fn bad_inputs_fail_before_any_work() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("bad");
    let mut config = tiny(ScheduleKind::T, 1);
    config.full.snippets = 4; // T gives L = 1
    let err = train(&config, &paths(&out, false), &RunOptions::default()).expect_err("L < 2");
    assert!(err.to_string().contains("L >= 2"), "{err}");
    assert!(!out.exists(), "nothing may be written for a bad config");
    let mut config = tiny(ScheduleKind::S, 1);
    config.memory_budget = Some("1MiB".into());
    let err = train(&config, &paths(&out, false), &probing()).expect_err("budget");
    assert!(err.to_string().contains("cannot hold one video"), "{err}");
    let mut p = paths(&out, false);
    p.ground_truth = tmp.path().join("missing.json");
    let err = train(&tiny(ScheduleKind::S, 1), &p, &RunOptions::default()).expect_err("no gt");
    assert!(err.to_string().contains("missing.json"), "{err}");
}

/// Two replicas (both on the CPU) compute the same step as one device with the same micro-batch
/// size: with frozen BatchNorm the losses and the trained weights agree up to summation order.
/// With trainable BatchNorm the replicas' shared running statistics still train to finite values.
#[test]
fn data_parallel_replicas_match_a_single_device_run() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = tiny(ScheduleKind::T, 1);
    config.batch_size = 4;
    config.micro_batch = Some(1);
    config.validate_every = 0;
    config.optimizer.momentum = 0.9;
    config.encoder = config.encoder.clone().with_frozen_bn(true);
    let run = |name: &str, config: &TrainConfig, replicas: usize| {
        let out = tmp.path().join(name);
        let options = RunOptions {
            replica_devices: vec![lofi_train::cpu_device(); replicas - 1],
            ..RunOptions::default()
        };
        let outcome = train(config, &paths(&out, true), &options).expect("trains");
        let steps: Vec<(f64, usize)> = step_records(&out)
            .iter()
            .map(|s| (s.loss, s.replicas.expect("replicas")))
            .collect();
        let params = saved_run_parameters(config, &outcome.run_dir).expect("weights");
        (steps, params)
    };
    let (one, w1) = run("one", &config, 1);
    let (two, w2) = run("two", &config, 2);
    assert_eq!(one.len(), 2, "6 training videos in batches of 4: {one:?}");
    assert_eq!(one.len(), two.len());
    for ((a, ra), (b, rb)) in one.iter().zip(&two) {
        assert_eq!((*ra, *rb), (1, 2));
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "loss {a} vs {b}");
    }
    assert_eq!(w1.len(), w2.len());
    let worst = w1
        .iter()
        .zip(&w2)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "weights differ by {worst}");

    config.encoder = config.encoder.clone().with_frozen_bn(false);
    let (steps, w) = run("two-bn", &config, 2);
    assert!(steps.iter().all(|(l, _)| l.is_finite()));
    assert!(w.iter().all(|v| v.is_finite()));
}
