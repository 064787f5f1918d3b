//! The proposal rule against the official G-TAD's (`gtad_inference.py`, scored clr x reg as in
//! `gtad_postprocess.py`): the fixture `fixtures/gtad_proposals.json` holds random start/end
//! probabilities and maps at L = 25 and the proposals the oracle of `test-tools/gtad/oracle.py`
//! derives from them (written by `test-tools/gtad/make_fixtures.py`).

use std::path::PathBuf;

use lofi_head::inference::{candidate_proposals, HeadScores};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    l: usize,
    start: Vec<f32>,
    end: Vec<f32>,
    clr: Vec<f32>,
    reg: Vec<f32>,
    proposals: Vec<[f64; 3]>,
}

#[test]
fn candidate_proposals_follow_gtad_inference() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gtad_proposals.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let case: Case = serde_json::from_str(&text).expect("valid fixture");
    let scores = HeadScores {
        l: case.l,
        d: case.l,
        start: case.start,
        end: case.end,
        reg: case.reg,
        cls: case.clr,
    };
    // A 1-second video: positions are fractions, as in the official code.
    let mut got: Vec<[f64; 3]> =
        candidate_proposals(&scores, 1.0, &lofi_head::DetectConfig::default())
            .iter()
            .map(|p| [p.segment.start, p.segment.end, p.score])
            .collect();
    let mut want = case.proposals;
    let key = |a: &[f64; 3], b: &[f64; 3]| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1]));
    got.sort_by(key);
    want.sort_by(key);
    assert_eq!(got.len(), want.len(), "number of proposals");
    assert!(want.len() > 10, "the fixture should exercise the rule");
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.iter().zip(w).all(|(a, b)| (a - b).abs() < 1e-6),
            "{g:?} vs {w:?}"
        );
    }
}
