//! BMN's post-processing against the reference's (the inference loop of JJBOY's BMN `main.py`:
//! every start < end < L, score start x end x cls x reg; then `post_processing.py`'s Soft-NMS,
//! which decays only above a tIoU threshold growing with the kept proposal's width, alpha 0.4,
//! thresholds 0.5 / 0.9, the best 100): the fixture `fixtures/bmn_proposals.json` holds random
//! probabilities and maps at L = 25 with the proposals and the kept list of the oracle of
//! `test-tools/bmn/oracle.py` (written by `test-tools/bmn/make_fixtures.py`).

use std::path::PathBuf;

use lofi_eval::soft_nms;
use lofi_head::inference::{candidate_proposals, HeadScores};
use lofi_model::{HeadArch, HeadKind};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    l: usize,
    start: Vec<f32>,
    end: Vec<f32>,
    cls: Vec<f32>,
    reg: Vec<f32>,
    proposals: Vec<[f64; 3]>,
    kept: Vec<[f64; 3]>,
}

fn close(got: &[[f64; 3]], want: &[[f64; 3]], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: count");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-6),
            "{what}: {g:?} vs {w:?}"
        );
    }
}

#[test]
fn bmn_proposals_and_soft_nms_follow_the_reference() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bmn_proposals.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let case: Case = serde_json::from_str(&text).expect("valid fixture");
    let scores = HeadScores {
        l: case.l,
        d: case.l,
        start: case.start,
        end: case.end,
        reg: case.reg,
        cls: case.cls,
    };
    let config = HeadArch::tiny(HeadKind::Bmn).detect_defaults();
    // A 1-second video: positions are fractions, as in the reference.
    let candidates = candidate_proposals(&scores, 1.0, &config);
    let as_rows = |v: &[lofi_eval::ScoredSegment]| -> Vec<[f64; 3]> {
        v.iter()
            .map(|p| [p.segment.start, p.segment.end, p.score])
            .collect()
    };
    close(&as_rows(&candidates), &case.proposals, "proposals");
    let kept = soft_nms(&candidates, &config.soft_nms(1.0)).expect("valid");
    assert_eq!(kept.len(), 100);
    close(&as_rows(&kept), &case.kept, "Soft-NMS");
    // Mutations: G-TAD's Gaussian Soft-NMS, or other thresholds, keep other lists.
    for other in [
        lofi_model::DetectConfig {
            soft_nms: lofi_model::SoftNmsRule::Gaussian,
            ..config.clone()
        },
        lofi_model::DetectConfig {
            soft_nms: lofi_model::SoftNmsRule::WidthGated {
                low: 0.65,
                high: 0.9,
            },
            soft_nms_sigma: 0.75,
            ..config.clone()
        },
    ] {
        let k = soft_nms(&candidates, &other.soft_nms(1.0)).expect("valid");
        let rows = as_rows(&k);
        let same = rows.len() == case.kept.len()
            && rows
                .iter()
                .zip(&case.kept)
                .all(|(g, w)| g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-6));
        assert!(!same, "{other:?} kept the reference's list");
    }
}

#[test]
fn the_bmn_loop_never_keeps_the_last_remaining_candidate() {
    let config = HeadArch::tiny(HeadKind::Bmn).detect_defaults();
    let c = [
        lofi_eval::ScoredSegment::new(0.0, 0.2, 0.9),
        lofi_eval::ScoredSegment::new(0.5, 0.7, 0.8),
        lofi_eval::ScoredSegment::new(0.8, 1.0, 0.7),
    ];
    let kept = soft_nms(&c, &config.soft_nms(1.0)).expect("valid");
    assert_eq!(kept.len(), 2, "three candidates: two kept");
    let one = soft_nms(&c[..1], &config.soft_nms(1.0)).expect("valid");
    assert_eq!(one.len(), 1, "a single candidate is kept");
}
