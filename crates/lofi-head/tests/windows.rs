//! Long videos: features at a fixed snippet stride (extraction, index, resume, verify) and the
//! sliding-window head on them (training windows, detection mapped back to video time).

use std::path::Path;

use lofi_engine::Settings;
use lofi_head::{extract, verify, EncoderSpec, ExtractConfig, ExtractInputs, FeatureIndex, Shard};
use lofi_model::{EncoderArch, EncoderKind};
use lofi_video::synth::{write_dataset, SynthConfig, SynthPreset};
use lofi_video::Sampling;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn stride_extract(sampling: Sampling) -> ExtractConfig {
    let mut c = ExtractConfig::new(EncoderSpec {
        model: EncoderArch::tiny(EncoderKind::Tsm, 18, 8),
        num_classes: None,
        checkpoint: None,
        seed: 3,
    });
    c.size = 32;
    c.sampling = sampling;
    c
}

fn inputs(root: &Path, out: &str, shard: Option<Shard>) -> ExtractInputs {
    ExtractInputs {
        device: lofi_head::cpu_device(),
        ground_truth: root.join("ground_truth.json"),
        videos: root.join("videos"),
        out: root.join(out),
        shard,
    }
}

/// Three short videos of the long preset's layout (30-40 s, 10 fps).
fn short_long_videos(root: &Path) -> Result<SynthConfig, Box<dyn std::error::Error>> {
    let synth = SynthConfig {
        videos: 3,
        min_duration: 30.0,
        max_duration: 40.0,
        ..SynthConfig::preset(SynthPreset::Long, 2)
    };
    write_dataset(root, &synth, 2, &|_| {})?;
    Ok(synth)
}

#[test]
fn stride_features_have_one_row_per_stride_and_record_their_times() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    short_long_videos(root)?;
    let frames = Sampling::Stride {
        stride_frames: Some(4),
        stride_seconds: None,
    };
    let out = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    let index = FeatureIndex::read(&root.join("f4/index.json"))?;
    assert_eq!(index.sampling, frames);
    for (id, e) in &index.videos {
        let step = e.snippet_seconds.ok_or("no snippet_seconds")?;
        assert!((step - 0.4).abs() < 1e-9, "{id}: {step}");
        assert_eq!(
            e.shape[0],
            (e.duration / 0.4 - 1e-9).ceil() as usize,
            "{id}"
        );
        let a = lofi_head::npy::read_2d(&root.join("f4").join(&e.file))?;
        assert_eq!([a.rows, a.cols], e.shape);
    }

    // The same stride in seconds samples the same frames: the same features.
    let seconds = Sampling::Stride {
        stride_frames: None,
        stride_seconds: Some(0.4),
    };
    extract(
        &stride_extract(seconds),
        &inputs(root, "s04", None),
        &|_, _| {},
    )?;
    for e in index.videos.values() {
        let a = lofi_head::npy::read_2d(&root.join("f4").join(&e.file))?;
        let b = lofi_head::npy::read_2d(&root.join("s04").join(&e.file))?;
        assert_eq!(a, b);
    }

    // Resume keeps every file; a truncated one is redone; shards + verify merge the index with
    // the per-video times.
    let again = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert_eq!((again.extracted, again.skipped), (0, 3));
    let victim = root
        .join("f4")
        .join(&index.videos.values().next().ok_or("empty")?.file);
    let bytes = std::fs::read(&victim)?;
    std::fs::write(&victim, &bytes[..bytes.len() - 8])?;
    let again = extract(
        &stride_extract(frames),
        &inputs(root, "f4", None),
        &|_, _| {},
    )?;
    assert_eq!((again.extracted, again.skipped, again.redone), (1, 2, 1));
    for k in 0..2 {
        let shard = Shard { index: k, count: 2 };
        extract(
            &stride_extract(frames),
            &inputs(root, "sharded", Some(shard)),
            &|_, _| {},
        )?;
    }
    let report = verify(&root.join("sharded"), &root.join("ground_truth.json"), None)?;
    assert!(report.is_complete(), "{report:?}");
    let merged = FeatureIndex::read(&root.join("sharded/index.json"))?;
    assert_eq!(merged.sampling, frames);
    assert_eq!(merged.videos, index.videos);
    Ok(())
}

#[test]
fn a_stride_needs_exactly_one_positive_value() {
    let p = Path::new("extract.toml");
    let model = "[encoder]\nseed = 1\n[encoder.model]\ndepth = 18\nbase_width = 8\nshift = true\nshift_div = 8\nfrozen_bn = false\n";
    let ok = ExtractConfig::from_toml(
        &format!("[sampling]\nmode = \"stride\"\nstride_frames = 5\n{model}"),
        p,
    )
    .expect("valid");
    assert_eq!(
        ok.sampling,
        Sampling::Stride {
            stride_frames: Some(5),
            stride_seconds: None
        }
    );
    // The recorded config reads back the same.
    let text = toml::to_string_pretty(&ok).expect("toml");
    assert_eq!(ExtractConfig::from_toml(&text, p).expect("round trip"), ok);
    for (bad, key) in [
        ("[sampling]\nmode = \"stride\"\n", "exactly one"),
        (
            "[sampling]\nmode = \"stride\"\nstride_frames = 5\nstride_seconds = 0.5\n",
            "exactly one",
        ),
        (
            "[sampling]\nmode = \"stride\"\nstride_frames = 0\n",
            "stride_frames",
        ),
        ("[sampling]\nmode = \"strde\"\n", "strde"),
        ("[sampling]\nmode = \"stride\"\nstride = 4\n", "stride"),
    ] {
        let e = ExtractConfig::from_toml(&format!("{bad}{model}"), p).expect_err(bad);
        assert!(e.to_string().contains(key), "{bad}: {e}");
    }
}
