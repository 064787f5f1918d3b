//! Peer feature formats (`.npy` f32/f64/f16 `[T, C]`, G-TAD-style `.csv`) written in the test,
//! read back through the feature store with rescaling to `L`, bad files refused by name, and a
//! head trained on CSV features of a different length; HDF5 files in [`h5`] (one test binary for
//! every feature format, so CI links it once).

use std::path::Path;

use lofi_head::features::FeatureStore;
use lofi_head::{train_head, HeadConfig, HeadError, HeadInputs};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Held by every test of this binary that trains or runs a head: the backend's seed is
/// process-wide, so two concurrent runs would draw each other's initial weights.
fn one_head_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

/// Value of time step `t`, channel `c` in every written file.
fn value(t: usize, c: usize) -> f32 {
    t as f32 + 0.25 * c as f32
}

fn write_peer_files(dir: &Path, t: usize, c: usize) -> std::io::Result<()> {
    let vals: Vec<f32> = (0..t * c).map(|i| value(i / c, i % c)).collect();
    let f32_bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f64_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|v| f64::from(*v).to_le_bytes())
        .collect();
    // Half precision: every value here is a multiple of 0.25 below 2048, exact in f16.
    let f16_bytes: Vec<u8> = vals
        .iter()
        .flat_map(|v| f16_bits(*v).to_le_bytes())
        .collect();
    let shape = format!("({t}, {c})");
    std::fs::write(dir.join("a32.npy"), npy_bytes("<f4", &shape, &f32_bytes))?;
    std::fs::write(dir.join("a64.npy"), npy_bytes("<f8", &shape, &f64_bytes))?;
    std::fs::write(dir.join("v_a16.npy"), npy_bytes("<f2", &shape, &f16_bytes))?;
    let mut csv: String = (0..c)
        .map(|k| format!("f{k}"))
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for row in vals.chunks(c) {
        csv.push_str(
            &row.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    std::fs::write(dir.join("acsv.csv"), csv)
}

/// f32 -> f16 bits for normal values without rounding (test data is exact).
fn f16_bits(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let mant = ((b >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | mant
}

#[test]
fn every_format_reads_the_same_and_rescales_along_time_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_peer_files(dir.path(), 10, 3)?;
    let store = FeatureStore::open(dir.path())?;
    let reference = store.load("a32")?;
    assert_eq!((reference.rows, reference.cols), (10, 3));
    for id in ["a64", "a16", "v_a16", "acsv"] {
        let a = store.load(id)?;
        assert_eq!(a, reference, "{id}");
    }
    // Rescaled to 5: positions (i + 0.5) * 2 - 0.5 = 0.5, 2.5, ... -> values 0.5 + 2i (+ 0.25 c).
    let v = store.load_at("acsv", 20.0, 5, Some(3))?;
    assert_eq!((v.l, v.c, v.duration), (5, 3, 20.0));
    for i in 0..5 {
        for c in 0..3 {
            let want = 0.5 + 2.0 * i as f32 + 0.25 * c as f32;
            assert!((v.data[i * 3 + c] - want).abs() < 1e-5, "{i} {c}");
        }
    }
    // Wrong channel count is named.
    let e = store
        .load_at("a32", 20.0, 5, Some(4))
        .expect_err("channels");
    assert!(e.to_string().contains("3 channels, expected 4"), "{e}");
    Ok(())
}

#[test]
fn bad_feature_files_are_refused_with_path_and_video() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    std::fs::write(d.join("ints.npy"), npy_bytes("<i4", "(2, 2)", &[0u8; 16]))?;
    std::fs::write(
        d.join("cube.npy"),
        npy_bytes("<f4", "(2, 2, 2)", &[0u8; 32]),
    )?;
    std::fs::write(d.join("short.npy"), npy_bytes("<f4", "(4, 4)", &[0u8; 20]))?;
    std::fs::write(d.join("big.npy"), npy_bytes(">f4", "(1, 1)", &[0u8; 4]))?;
    let nan: Vec<u8> = [1.0f32, f32::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(d.join("nan.npy"), npy_bytes("<f4", "(1, 2)", &nan))?;
    std::fs::write(d.join("ragged.csv"), "a,b\n1,2\n3\n")?;
    std::fs::write(d.join("peer.h5"), b"\x89HDF\r\n\x1a\n")?;
    let store = FeatureStore::open(d)?;
    let cases = [
        ("ints", "ints.npy", "not supported"),
        ("cube", "cube.npy", "2 dimensions"),
        ("short", "short.npy", "truncated"),
        ("big", "big.npy", "big-endian"),
        ("nan", "nan.npy", "not finite"),
        ("ragged", "ragged.csv", "line 3"),
        ("peer", "peer.h5", "not a readable HDF5 file"),
        ("absent", "absent.npy", "no feature file"),
    ];
    for (id, file, expected) in cases {
        let e = store.load(id).expect_err(id);
        let text = e.to_string();
        assert!(matches!(e, HeadError::Features { .. }), "{id}: {text}");
        assert!(text.contains(&format!("{id:?}")), "{id}: {text}");
        assert!(text.contains(file), "{id}: {text}");
        assert!(text.contains(expected), "{id}: {text}");
    }
    Ok(())
}

#[test]
fn head_trains_on_peer_csv_features_of_another_length() -> TestResult {
    let _serial = one_head_at_a_time();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let feats = d.join("feats");
    std::fs::create_dir(&feats)?;
    // Six videos of 20 s, one action each; channel 0 marks the action, T = 24 rows, C = 8.
    let mut db = serde_json::Map::new();
    for v in 0..6 {
        let (s, e) = (2.0 + v as f64, 9.0 + v as f64);
        let label = if v % 2 == 0 { "jump" } else { "run" };
        let subset = if v < 4 { "training" } else { "validation" };
        db.insert(
            format!("vid{v}"),
            serde_json::json!({"subset": subset, "duration": 20.0,
                "annotations": [{"segment": [s, e], "label": label}]}),
        );
        let mut csv = String::from("c0,c1,c2,c3,c4,c5,c6,c7\n");
        for t in 0..24 {
            let time = (t as f64 + 0.5) * 20.0 / 24.0;
            let inside = if (s..e).contains(&time) { 1.0 } else { 0.0 };
            let class = if v % 2 == 0 { inside } else { -inside };
            let row: Vec<String> = (0..8)
                .map(|c| match c {
                    0 => inside.to_string(),
                    1 => class.to_string(),
                    _ => (((c * 7 + t * 3) % 5) as f64 / 5.0).to_string(),
                })
                .collect();
            csv.push_str(&row.join(","));
            csv.push('\n');
        }
        std::fs::write(feats.join(format!("vid{v}.csv")), csv)?;
    }
    let gt = d.join("gt.json");
    std::fs::write(
        &gt,
        serde_json::to_string(&serde_json::json!({"version": "t", "database": db}))?,
    )?;
    let mut config = HeadConfig::tiny(12);
    config.epochs = 3;
    let out = train_head(
        &config,
        &HeadInputs {
            device: lofi_head::cpu_device(),
            features: feats.clone(),
            ground_truth: gt.clone(),
            out: d.join("run"),
        },
        &lofi_engine::RunControl::default(),
    )?;
    assert_eq!((out.train_videos, out.val_videos), (4, 2));
    assert_eq!(out.classifier_train_accuracy, Some(1.0));
    assert!(out
        .val_average_map
        .is_some_and(|m| (0.0..=1.0).contains(&m)));
    let meta = lofi_head::HeadMeta::read(&d.join("run"))?;
    assert_eq!((meta.in_channels, meta.snippets), (8, 12));

    // A missing feature file stops training with its path and video id, unless skipped.
    std::fs::remove_file(feats.join("vid1.csv"))?;
    let e = train_head(
        &config,
        &HeadInputs {
            device: lofi_head::cpu_device(),
            features: feats.clone(),
            ground_truth: gt.clone(),
            out: d.join("run2"),
        },
        &lofi_engine::RunControl::default(),
    )
    .expect_err("missing file");
    let text = e.to_string();
    assert!(
        text.contains("\"vid1\"") && text.contains("vid1.npy"),
        "{text}"
    );
    config.skip_missing = true;
    config.epochs = 1;
    let out = train_head(
        &config,
        &HeadInputs {
            device: lofi_head::cpu_device(),
            features: feats,
            ground_truth: gt,
            out: d.join("run3"),
        },
        &lofi_engine::RunControl::default(),
    )?;
    assert_eq!(out.train_videos, 3);
    Ok(())
}

#[path = "features/h5.rs"]
mod h5;
