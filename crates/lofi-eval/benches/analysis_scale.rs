//! DETAD's error analysis at ActivityNet-1.3 validation scale: reading the two files, the mAP
//! and the analysis, timed separately, median of three runs in this process.
//!
//! Input: `bench/analysis.sh` writes it with `test-tools/make_anet_scale.py --videos 4728
//! --per-video 100` (4,728 videos, 200 classes, 100 detections per video) and runs
//! `cargo bench -p lofi-eval --bench analysis_scale -- DIR`.

use lofi_eval::{
    analyze_detection, evaluate_detection, AnalysisDataset, AnalysisOptions, GroundTruth,
    GroundTruthOptions, PredictionKind, Predictions, Thresholds,
};
use std::path::PathBuf;
use std::time::Instant;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .expect("usage: cargo bench -p lofi-eval --bench analysis_scale -- DIR");
    let (mut read, mut map, mut analysis) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let clock = Instant::now();
        let truth = GroundTruth::from_path(
            &dir.join("ground_truth.json"),
            &GroundTruthOptions::default(),
        )
        .expect("ground truth");
        let predictions = Predictions::from_path(
            &dir.join("detections.json"),
            &truth,
            PredictionKind::Detections,
        )
        .expect("detections");
        read.push(clock.elapsed().as_secs_f64());
        let clock = Instant::now();
        let report = evaluate_detection(&truth, &predictions, &Thresholds::ACTIVITYNET.values())
            .expect("mAP");
        map.push(clock.elapsed().as_secs_f64());
        let clock = Instant::now();
        let result = analyze_detection(
            &truth,
            &predictions,
            &AnalysisOptions::new(AnalysisDataset::ActivityNet),
        )
        .expect("analysis");
        analysis.push(clock.elapsed().as_secs_f64());
        eprintln!(
            "{} videos, {} detections: average-mAP {:.4}, average-mAP_N {:.4} (top-10G, {} \
             predictions), {:.4} (all)",
            truth.annotated_videos().count(),
            predictions.items.len(),
            report.average_map,
            result.average_map_n,
            result.predictions,
            result.sensitivity_average_map_n
        );
    }
    println!(
        "median of 3: read {:.3} s, mAP {:.3} s, analysis {:.3} s, total {:.3} s",
        median(read.clone()),
        median(map.clone()),
        median(analysis.clone()),
        median(
            read.iter()
                .zip(&map)
                .zip(&analysis)
                .map(|((a, b), c)| a + b + c)
                .collect()
        )
    );
}
