//! Random but reproducible evaluation inputs shared by the integration tests.
//!
//! A small splitmix64 generator keeps the tests free of extra dependencies and makes every case
//! reproducible from its seed, which the failure messages print.

#![allow(dead_code, missing_docs)]

use serde_json::{json, Map, Value};

/// splitmix64: tiny, fast and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A generated annotation: start, end, class index.
type Annotation = (f64, f64, usize);

/// A generated benchmark: ground truth, detections and proposals as JSON values.
pub struct Case {
    pub ground_truth: Value,
    pub detections: Value,
    pub proposals: Value,
}

/// Builds a tie-free case: distinct scores everywhere, continuous segment ends. It exercises
/// unknown videos, training-subset videos, annotated videos without predictions, duplicate
/// ground truth, classes without predictions and uneven proposal counts per video.
pub fn random_case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    let classes = 3 + rng.below(6);
    let labels: Vec<String> = (0..classes).map(|c| format!("class {c}")).collect();
    // Half of the cases leave the last class out of the ground truth.
    let gt_classes = classes - usize::from(rng.chance(0.5));
    let videos = 10 + rng.below(40);
    let mut database = Map::new();
    let mut validation_labels = Vec::new();
    let mut annotated: Vec<(String, f64, Vec<Annotation>)> = Vec::new();
    for v in 0..videos {
        let id = format!("vid_{seed}_{v}");
        let subset = if rng.chance(0.8) {
            "validation"
        } else {
            "training"
        };
        let duration = rng.range(20.0, 200.0);
        let mut annotations = Vec::new();
        let mut segments = Vec::new();
        for _ in 0..rng.below(5) {
            let start = rng.range(0.0, duration * 0.9);
            let end = (start + rng.range(0.5, duration * 0.4)).min(duration);
            let class = rng.below(gt_classes);
            annotations.push(json!({"segment": [start, end], "label": labels[class]}));
            segments.push((start, end, class));
            if rng.chance(0.05) {
                // An exact duplicate: the official tool counts both.
                annotations.push(json!({"segment": [start, end], "label": labels[class]}));
                segments.push((start, end, class));
            }
            if subset == "validation" && !validation_labels.contains(&class) {
                validation_labels.push(class);
            }
        }
        database.insert(
            id.clone(),
            json!({"subset": subset, "duration": duration, "annotations": annotations}),
        );
        if subset == "validation" {
            annotated.push((id, duration, segments));
        }
    }
    if validation_labels.is_empty() {
        // Guarantee at least one annotation in the evaluated subset.
        let id = format!("vid_{seed}_extra");
        database.insert(
            id.clone(),
            json!({"subset": "validation", "duration": 50.0,
                   "annotations": [{"segment": [10.0, 20.0], "label": labels[0]}]}),
        );
        validation_labels.push(0);
        annotated.push((id, 50.0, vec![(10.0, 20.0, 0)]));
    }

    let mut detections = Map::new();
    let mut proposals = Map::new();
    let mut next_score = {
        // Distinct scores: a random permutation-like sequence with no repeats.
        let mut used = std::collections::HashSet::new();
        move |rng: &mut Rng| loop {
            let s = rng.unit();
            if s > 0.0 && used.insert(s.to_bits()) {
                return s;
            }
        }
    };
    let mut entries = annotated.clone();
    // Predictions for a video outside the subset and for an unknown video.
    entries.push((format!("unknown_{seed}"), 60.0, vec![(5.0, 25.0, 0)]));
    for (id, duration, segments) in &entries {
        if rng.chance(0.1) {
            continue; // an annotated video without predictions
        }
        let mut dets = Vec::new();
        let mut props = Vec::new();
        let count = 1 + rng.below(25);
        for _ in 0..count {
            let (start, end) = if !segments.is_empty() && rng.chance(0.6) {
                let (s, e, _) = segments[rng.below(segments.len())];
                let jitter = (e - s) * 0.3;
                let s2 = (s + rng.range(-jitter, jitter)).max(0.0);
                let e2 = (e + rng.range(-jitter, jitter)).min(*duration).max(s2);
                (s2, e2)
            } else {
                let s = rng.range(0.0, duration * 0.9);
                (s, (s + rng.range(0.1, duration * 0.5)).min(*duration))
            };
            let label = if !segments.is_empty() && rng.chance(0.7) {
                segments[rng.below(segments.len())].2
            } else {
                validation_labels[rng.below(validation_labels.len())]
            };
            let label = if validation_labels.contains(&label) {
                label
            } else {
                validation_labels[0]
            };
            dets.push(
                json!({"label": labels[label], "score": next_score(&mut rng),
                             "segment": [start, end]}),
            );
            props.push(json!({"score": next_score(&mut rng), "segment": [start, end]}));
        }
        detections.insert(id.clone(), Value::Array(dets));
        proposals.insert(id.clone(), Value::Array(props));
    }
    Case {
        ground_truth: json!({"version": "test", "database": database}),
        detections: json!({"version": "VERSION 1.3", "results": detections}),
        proposals: json!({"version": "VERSION 1.3", "results": proposals}),
    }
}
