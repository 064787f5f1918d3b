//! Why the mAP is what it is: the error analysis of DETAD (Alwassel et al., "Diagnosing Error in
//! Temporal Action Detectors", ECCV 2018), computed as DETAD's code computes it.
//!
//! DETAD answers "why is my mAP low" with three analyses, each a run of its evaluator in its own
//! configuration. All of them use the *normalized* precision `P_N = R·N̄ / (R·N̄ + FP)`, where
//! `N̄` is the average number of ground-truth instances per class, so that AP_N does not depend
//! on how many instances a class has.
//!
//! * **False positives**: the top `limit_factor · G_j` predictions of each class `j` (`G_j` its
//!   instances). A prediction that is not a true positive at a threshold is typed by the
//!   instance of any class in its video with the highest tIoU (the first in file order on
//!   ties): at least the threshold — *double detection* (same label) or *wrong label*; at least
//!   `min_tiou` — *localization* or *confusion*; otherwise, or in a video without ground truth,
//!   *background*. The profile splits each class's ranked predictions into slices of `G_j`
//!   (1G, 2G, …) and gives each slice's shares averaged over the thresholds; the gain of an
//!   error type is the average-mAP_N with that type's predictions removed, minus the
//!   average-mAP_N.
//! * **False negatives**: all predictions; a true positive whose `P_N` at its rank is at most
//!   `min_normalized_precision` (0.05) is discarded. Per bucket of an instance characteristic
//!   (coverage, length, instances per video), the share of instances not matched, averaged
//!   over the thresholds.
//! * **Sensitivity**: all predictions; per bucket and class, the predictions that at every
//!   threshold are unmatched or matched to an instance of the bucket are scored against the
//!   bucket's instances of the class (N̄ stays global); average-mAP_N per bucket is the mean over
//!   thresholds, then over the classes with instances in the bucket.
//!
//! The characteristics come from the plain ground truth ([`instance_characteristics`]); DETAD
//! reads them from its augmented files, and on its published THUMOS14 files ours agree. As
//! DETAD does, instances with coverage above 1 and instances of zero length are left out of
//! every analysis (the report counts them). Greedy matching is the official one, done once:
//! limiting a class to its top predictions does not change how those are matched. Ties between
//! scores are broken as in [`crate::evaluate_detection`]. `test-tools/detad_reference.py` is the
//! oracle (checked once against DETAD's code) that the tests compare with.

use crate::detection::{
    interpolated_ap, match_class, sorted_by_class, video_annotations, GroundTruthByClass, Scratch,
};
use crate::error::{EvalError, Result};
use crate::ground_truth::GroundTruth;
use crate::json::OrderedMap;
use crate::numeric::{numpy_mean, numpy_sum};
use crate::predictions::Predictions;
use crate::segment::{linspace, tiou};
use std::ops::Range;

/// How DETAD sorts a prediction at one threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Matched to an instance.
    TruePositive,
    /// Overlaps an instance of its class by the threshold, which another prediction took.
    DoubleDetection,
    /// Overlaps an instance of another class by the threshold.
    WrongLabel,
    /// Overlaps an instance of its class by at least `min_tiou` but less than the threshold.
    Localization,
    /// Overlaps an instance of another class by at least `min_tiou` but less than the threshold.
    Confusion,
    /// Overlaps no instance by `min_tiou`.
    Background,
}

impl ErrorType {
    /// All types in DETAD's order (its legend codes 0-5).
    pub const ALL: [ErrorType; 6] = [
        ErrorType::TruePositive,
        ErrorType::DoubleDetection,
        ErrorType::WrongLabel,
        ErrorType::Localization,
        ErrorType::Confusion,
        ErrorType::Background,
    ];

    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            ErrorType::TruePositive => "true_positive",
            ErrorType::DoubleDetection => "double_detection",
            ErrorType::WrongLabel => "wrong_label",
            ErrorType::Localization => "localization",
            ErrorType::Confusion => "confusion",
            ErrorType::Background => "background",
        }
    }

    /// The name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::TruePositive => "true positive",
            ErrorType::DoubleDetection => "double detection",
            ErrorType::WrongLabel => "wrong label",
            ErrorType::Localization => "localization",
            ErrorType::Confusion => "confusion",
            ErrorType::Background => "background",
        }
    }
}

/// A characteristic of a ground-truth instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Characteristic {
    /// Length relative to the video's duration.
    Coverage,
    /// Length in seconds.
    Length,
    /// Number of instances (of any class) in the instance's video.
    Instances,
}

impl Characteristic {
    /// All, in DETAD's order.
    pub const ALL: [Characteristic; 3] = [
        Characteristic::Coverage,
        Characteristic::Length,
        Characteristic::Instances,
    ];

    /// The JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Characteristic::Coverage => "coverage",
            Characteristic::Length => "length",
            Characteristic::Instances => "num_instances",
        }
    }

    /// The name in tables and plots.
    pub fn name(self) -> &'static str {
        match self {
            Characteristic::Coverage => "coverage",
            Characteristic::Length => "length",
            Characteristic::Instances => "# instances",
        }
    }
}

/// Which of DETAD's bucket edges and thresholds to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnalysisDataset {
    /// ActivityNet: tIoU 0.5:0.95:10; coverage in fifths, length at 30/60/120/180 s, instances
    /// at 1/4/8.
    ActivityNet,
    /// THUMOS14: tIoU 0.5; coverage at 0.02/0.04/0.06/0.08, length at 3/6/12/18 s, instances at
    /// 1/40/80.
    Thumos14,
}

impl AnalysisDataset {
    /// DETAD's tIoU thresholds for the dataset.
    pub fn thresholds(self) -> Vec<f64> {
        match self {
            AnalysisDataset::ActivityNet => linspace(0.5, 0.95, 10),
            AnalysisDataset::Thumos14 => vec![0.5],
        }
    }

    /// DETAD's buckets of a characteristic for the dataset.
    pub fn bins(self, characteristic: Characteristic) -> Bins {
        const SIZES: [&str; 5] = ["XS", "S", "M", "L", "XL"];
        let inf = f64::INFINITY;
        let (edges, labels) = match (self, characteristic) {
            (AnalysisDataset::ActivityNet, Characteristic::Coverage) => {
                (linspace(0.0, 1.0, 6), &SIZES[..])
            }
            (AnalysisDataset::ActivityNet, Characteristic::Length) => {
                (vec![0.0, 30.0, 60.0, 120.0, 180.0, inf], &SIZES[..])
            }
            (AnalysisDataset::ActivityNet, Characteristic::Instances) => {
                (vec![-1.0, 1.0, 4.0, 8.0, inf], &SIZES[..4])
            }
            (AnalysisDataset::Thumos14, Characteristic::Coverage) => {
                (vec![0.0, 0.02, 0.04, 0.06, 0.08, 1.0], &SIZES[..])
            }
            (AnalysisDataset::Thumos14, Characteristic::Length) => {
                (vec![0.0, 3.0, 6.0, 12.0, 18.0, inf], &SIZES[..])
            }
            (AnalysisDataset::Thumos14, Characteristic::Instances) => {
                (vec![-1.0, 1.0, 40.0, 80.0, inf], &SIZES[..4])
            }
        };
        Bins {
            edges,
            labels: labels.to_vec(),
        }
    }
}

/// Buckets of a characteristic: `labels[i]` holds values in `(edges[i], edges[i + 1]]`, the first
/// also `edges[0]` (pandas.cut with `right=True, include_lowest=True`, as DETAD uses it).
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    /// Bucket edges, ascending.
    pub edges: Vec<f64>,
    /// One label per bucket.
    pub labels: Vec<&'static str>,
}

impl Bins {
    /// The bucket of `value`, if it falls inside the edges.
    pub fn bucket(&self, value: f64) -> Option<usize> {
        if value == self.edges[0] {
            return Some(0);
        }
        self.edges
            .windows(2)
            .position(|w| w[0] < value && value <= w[1])
    }
}

/// The settings of an analysis; [`AnalysisOptions::new`] gives DETAD's.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisOptions {
    /// tIoU thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// Whose bucket edges to use.
    pub dataset: AnalysisDataset,
    /// The false-positive analysis looks at the top `limit_factor · G_j` predictions of class j.
    pub limit_factor: usize,
    /// The tIoU separating localization and confusion errors from background errors.
    pub min_tiou: f64,
    /// The false-negative analysis discards true positives with normalized precision at most
    /// this.
    pub min_normalized_precision: f64,
}

impl AnalysisOptions {
    /// DETAD's settings for a dataset: its thresholds, limit factor 10, `min_tiou` 0.1, minimum
    /// normalized precision 0.05.
    pub fn new(dataset: AnalysisDataset) -> Self {
        AnalysisOptions {
            tiou_thresholds: dataset.thresholds(),
            dataset,
            limit_factor: 10,
            min_tiou: 0.1,
            min_normalized_precision: 0.05,
        }
    }
}

/// The characteristics of one ground-truth instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceCharacteristics {
    /// Length over the video's duration; `None` unless every annotated video has a duration.
    pub coverage: Option<f64>,
    /// `end - start`, in seconds.
    pub length: f64,
    /// Annotations in the instance's video (any class).
    pub instances: usize,
}

impl InstanceCharacteristics {
    /// The value of one characteristic.
    pub fn value(&self, characteristic: Characteristic) -> Option<f64> {
        match characteristic {
            Characteristic::Coverage => self.coverage,
            Characteristic::Length => Some(self.length),
            Characteristic::Instances => Some(self.instances as f64),
        }
    }
}

/// The characteristics of every annotation of `truth`, in its order. Coverage needs a positive
/// duration for every annotated video; without one it is `None` for all.
pub fn instance_characteristics(truth: &GroundTruth) -> Vec<InstanceCharacteristics> {
    let durations_known = truth
        .videos
        .iter()
        .all(|v| v.annotations.is_empty() || v.duration.is_some_and(|d| d > 0.0));
    truth
        .annotations
        .iter()
        .map(|a| {
            let video = &truth.videos[a.video as usize];
            let length = a.segment.end - a.segment.start;
            InstanceCharacteristics {
                coverage: durations_known
                    .then(|| video.duration.map(|d| length / d))
                    .flatten(),
                length,
                instances: video.annotations.len(),
            }
        })
        .collect()
}

/// The error shares of one slice of the ranked predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSlice {
    /// Predictions in the slice.
    pub predictions: usize,
    /// Share of each [`ErrorType`] (in [`ErrorType::ALL`] order), averaged over the thresholds;
    /// NaN when the slice is empty.
    pub fractions: [f64; 6],
}

/// One bucket of a characteristic and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// DETAD's label (XS, S, M, L, XL).
    pub label: &'static str,
    /// Ground-truth instances in the bucket.
    pub instances: usize,
    /// The bucket's value (false-negative rate or average-mAP_N); `None` without instances.
    pub value: Option<f64>,
}

/// The buckets of one characteristic.
#[derive(Clone, Debug, PartialEq)]
pub struct CharacteristicBuckets {
    /// Which characteristic.
    pub characteristic: Characteristic,
    /// Its buckets, in order.
    pub buckets: Vec<Bucket>,
}

/// The outcome of [`analyze_detection`]; fractions, not percent.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionAnalysis {
    /// The settings used.
    pub options: AnalysisOptions,
    /// Ground-truth instances analysed (after leaving out the two kinds below).
    pub instances: usize,
    /// Instances left out for zero length.
    pub left_out_zero_length: usize,
    /// Instances left out for coverage above 1 (longer than their video).
    pub left_out_coverage_above_one: usize,
    /// N̄: analysed instances per class.
    pub average_instances_per_class: f64,
    /// Predictions in the false-positive analysis (the top `limit_factor · G_j` per class).
    pub predictions: usize,
    /// mAP_N per threshold of those predictions.
    pub map_n: Vec<f64>,
    /// Mean of `map_n`.
    pub average_map_n: f64,
    /// Per threshold, the number of those predictions of each [`ErrorType`].
    pub error_counts: Vec<[usize; 6]>,
    /// Share of each error type among all of those predictions, averaged over thresholds.
    pub breakdown: [f64; 6],
    /// Shares per slice of `G_j` ranked predictions: 1G, 2G, ... (`limit_factor` slices).
    pub profile: Vec<ProfileSlice>,
    /// Average-mAP_N gained by removing the predictions of each error type (in
    /// `ErrorType::ALL[1..]` order).
    pub average_map_n_gain: [f64; 5],
    /// False-negative rate per bucket of each characteristic.
    pub false_negative: Vec<CharacteristicBuckets>,
    /// Average-mAP_N of all predictions (the sensitivity analysis's baseline).
    pub sensitivity_average_map_n: f64,
    /// Average-mAP_N per bucket of each characteristic.
    pub sensitivity: Vec<CharacteristicBuckets>,
    /// What a reader should know (instances left out, characteristics not computed).
    pub notes: Vec<String>,
}

const UNMATCHED: u32 = u32::MAX;

/// Runs DETAD's three analyses (see the module docs).
pub fn analyze_detection(
    truth: &GroundTruth,
    predictions: &Predictions,
    options: &AnalysisOptions,
) -> Result<DetectionAnalysis> {
    let thresholds = &options.tiou_thresholds;
    if thresholds.is_empty() || thresholds.iter().any(|t| !t.is_finite()) {
        return Err(EvalError::Invalid(
            "the error analysis needs at least one finite tIoU threshold".into(),
        ));
    }
    if options.limit_factor == 0 {
        return Err(EvalError::Invalid(
            "the error analysis needs a limit factor of at least 1".into(),
        ));
    }
    let levels = thresholds.len();

    // The analysed ground truth and its characteristics.
    let all_characteristics = instance_characteristics(truth);
    let coverage_known = all_characteristics
        .first()
        .is_some_and(|c| c.coverage.is_some());
    let zero_length = all_characteristics
        .iter()
        .filter(|c| c.length <= 0.0)
        .count();
    let keep: Vec<bool> = all_characteristics
        .iter()
        .map(|c| c.length > 0.0 && c.coverage.is_none_or(|v| v <= 1.0))
        .collect();
    let over_one = keep.iter().filter(|k| !**k).count() - zero_length;
    let without_duration = truth
        .videos
        .iter()
        .filter(|v| !v.annotations.is_empty() && !v.duration.is_some_and(|d| d > 0.0))
        .count();
    let truth = truth.retain_annotations(&keep);
    let characteristics: Vec<InstanceCharacteristics> = all_characteristics
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| *c)
        .collect();
    if truth.annotations.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{}: no instance is left to analyse (all have zero length or coverage above 1)",
            truth.path.display()
        )));
    }
    let mut notes = Vec::new();
    if zero_length > 0 {
        notes.push(format!(
            "left out {zero_length} zero-length instance(s), as DETAD does"
        ));
    }
    if over_one > 0 {
        notes.push(format!(
            "left out {over_one} instance(s) longer than their video (coverage > 1), \
             as DETAD does"
        ));
    }
    if !coverage_known {
        notes.push(format!(
            "coverage is not analysed: {without_duration} annotated video(s) have no duration \
             in {}",
            truth.path.display()
        ));
    }
    let classes = truth.classes.len();
    let nbar = truth.annotations.len() as f64 / classes as f64;
    let by_class = GroundTruthByClass::new(&truth);
    let (counts, sorted) = sorted_by_class(&truth, predictions)?;
    let video_annotations = video_annotations(&truth, predictions);

    // One greedy matching of every prediction at every threshold: matched[i * levels + t].
    let mut matched = vec![UNMATCHED; sorted.len() * levels];
    let mut scratch = Scratch::default();
    for class in 0..classes {
        let range = counts[class]..counts[class + 1];
        match_class(
            &sorted[range.clone()],
            &truth,
            &by_class,
            &video_annotations,
            thresholds,
            &mut scratch,
        );
        for t in 0..levels {
            for (&rank, &a) in scratch.hits[t].iter().zip(&scratch.matched[t]) {
                matched[(range.start + rank as usize) * levels + t] = a;
            }
        }
    }
    let ap_n = |hits: &[u32], positives: usize, terms: &mut Vec<f64>| -> f64 {
        if positives == 0 {
            return 0.0;
        }
        let npos = positives as f64;
        interpolated_ap(hits, positives, terms, |tp, rank| {
            normalized_precision(tp, rank, npos, nbar)
        })
    };
    let mut hits: Vec<Vec<u32>> = vec![Vec::new(); levels];
    let mut terms = Vec::new();
    // The true-positive ranks of `items` (positions into `sorted`), renumbered, at each level.
    let collect_hits = |items: &mut dyn Iterator<Item = usize>, hits: &mut Vec<Vec<u32>>| {
        for h in hits.iter_mut() {
            h.clear();
        }
        for (rank, i) in items.enumerate() {
            for (t, h) in hits.iter_mut().enumerate() {
                if matched[i * levels + t] != UNMATCHED {
                    h.push(rank as u32);
                }
            }
        }
    };

    // False positives: the top limit_factor x G_j of each class.
    let limited: Vec<Range<usize>> = (0..classes)
        .map(|c| {
            let take = by_class.class_sizes[c] * options.limit_factor;
            counts[c]..counts[c] + take.min(counts[c + 1] - counts[c])
        })
        .collect();
    let mut per_class_ap = vec![vec![0.0; classes]; levels];
    for (c, range) in limited.iter().enumerate() {
        collect_hits(&mut range.clone(), &mut hits);
        for t in 0..levels {
            per_class_ap[t][c] = ap_n(&hits[t], by_class.class_sizes[c], &mut terms);
        }
    }
    let map_n: Vec<f64> = per_class_ap.iter().map(|row| numpy_mean(row)).collect();
    let average_map_n = numpy_mean(&map_n);

    let mut types = vec![0u8; sorted.len() * levels];
    let mut error_counts = vec![[0usize; 6]; levels];
    let mut slice_counts = vec![vec![[0usize; 6]; levels]; options.limit_factor];
    let mut slice_sizes = vec![0usize; options.limit_factor];
    for (c, range) in limited.iter().enumerate() {
        for i in range.clone() {
            let prediction = &sorted[i];
            // The instance of any class with the highest tIoU (the first on ties).
            let mut top: Option<(f64, u32)> = None;
            for a in video_annotations[prediction.video as usize].clone() {
                let annotation = &truth.annotations[a];
                let overlap = tiou(prediction.segment, annotation.segment);
                if top.is_none_or(|(best, _)| overlap > best) {
                    top = Some((overlap, annotation.class));
                }
            }
            let slice = (i - range.start) / by_class.class_sizes[c];
            slice_sizes[slice] += 1;
            for (t, &threshold) in thresholds.iter().enumerate() {
                let kind = if matched[i * levels + t] != UNMATCHED {
                    ErrorType::TruePositive
                } else {
                    match top {
                        Some((overlap, label)) if overlap >= threshold => {
                            if label == prediction.class {
                                ErrorType::DoubleDetection
                            } else {
                                ErrorType::WrongLabel
                            }
                        }
                        Some((overlap, label)) if overlap >= options.min_tiou => {
                            if label == prediction.class {
                                ErrorType::Localization
                            } else {
                                ErrorType::Confusion
                            }
                        }
                        _ => ErrorType::Background,
                    }
                };
                let code = kind as usize;
                types[i * levels + t] = code as u8;
                error_counts[t][code] += 1;
                slice_counts[slice][t][code] += 1;
            }
        }
    }
    let analysed: usize = limited.iter().map(ExactSizeIterator::len).sum();
    let breakdown = shares(&error_counts, analysed);
    let profile = slice_counts
        .iter()
        .zip(&slice_sizes)
        .map(|(counts, &size)| ProfileSlice {
            predictions: size,
            fractions: shares(counts, size),
        })
        .collect();
    let mut average_map_n_gain = [0.0; 5];
    let mut matrix = Vec::with_capacity(levels * classes);
    for (gain, error) in average_map_n_gain.iter_mut().zip(1u8..) {
        matrix.clear();
        for t in 0..levels {
            for (c, range) in limited.iter().enumerate() {
                let mut h = Vec::new();
                let kept = range.clone().filter(|&i| types[i * levels + t] != error);
                for (rank, i) in kept.enumerate() {
                    if matched[i * levels + t] != UNMATCHED {
                        h.push(rank as u32);
                    }
                }
                matrix.push(ap_n(&h, by_class.class_sizes[c], &mut terms));
            }
        }
        *gain = numpy_mean(&matrix) - average_map_n;
    }

    // Buckets of every analysed instance.
    let analysed_characteristics: Vec<Characteristic> = Characteristic::ALL
        .into_iter()
        .filter(|&c| c != Characteristic::Coverage || coverage_known)
        .collect();
    let buckets: Vec<(Characteristic, Bins, Vec<Option<usize>>)> = analysed_characteristics
        .iter()
        .map(|&c| {
            let bins = options.dataset.bins(c);
            let of = characteristics
                .iter()
                .map(|x| x.value(c).and_then(|v| bins.bucket(v)))
                .collect();
            (c, bins, of)
        })
        .collect();

    // False negatives: all predictions, true positives of low normalized precision discarded.
    let annotations = truth.annotations.len();
    let mut found = vec![false; levels * annotations];
    for c in 0..classes {
        let npos = by_class.class_sizes[c] as f64;
        for t in 0..levels {
            let mut tp = 0.0;
            for (rank, i) in (counts[c]..counts[c + 1]).enumerate() {
                let a = matched[i * levels + t];
                if a == UNMATCHED {
                    continue;
                }
                tp += 1.0;
                if normalized_precision(tp, rank as f64, npos, nbar)
                    > options.min_normalized_precision
                {
                    found[t * annotations + a as usize] = true;
                }
            }
        }
    }
    let false_negative = buckets
        .iter()
        .map(|(c, bins, of)| {
            let total = of.iter().flatten().count() as f64;
            let buckets = bins
                .labels
                .iter()
                .enumerate()
                .map(|(b, &label)| {
                    let members: Vec<usize> =
                        (0..annotations).filter(|&a| of[a] == Some(b)).collect();
                    let value = (!members.is_empty()).then(|| {
                        // DETAD's arithmetic: missed / (share * total), summed over thresholds
                        // in order, over the count of thresholds.
                        let share = members.len() as f64 / total;
                        let mut sum = 0.0;
                        for t in 0..levels {
                            let missed = members
                                .iter()
                                .filter(|&&a| !found[t * annotations + a])
                                .count();
                            sum += missed as f64 / (share * total);
                        }
                        sum / levels as f64
                    });
                    Bucket {
                        label,
                        instances: members.len(),
                        value,
                    }
                })
                .collect();
            CharacteristicBuckets {
                characteristic: *c,
                buckets,
            }
        })
        .collect();

    // Sensitivity: all predictions.
    let mut all_ap = vec![vec![0.0; classes]; levels];
    for c in 0..classes {
        collect_hits(&mut (counts[c]..counts[c + 1]), &mut hits);
        for t in 0..levels {
            all_ap[t][c] = ap_n(&hits[t], by_class.class_sizes[c], &mut terms);
        }
    }
    let sensitivity_average_map_n =
        numpy_mean(&all_ap.iter().map(|row| numpy_mean(row)).collect::<Vec<_>>());
    let sensitivity = buckets
        .iter()
        .map(|(c, bins, of)| {
            let buckets = bins
                .labels
                .iter()
                .enumerate()
                .map(|(b, &label)| {
                    let mut in_bucket = vec![0usize; classes];
                    for (a, annotation) in truth.annotations.iter().enumerate() {
                        if of[a] == Some(b) {
                            in_bucket[annotation.class as usize] += 1;
                        }
                    }
                    let mut values = vec![0.0; classes];
                    let mut with_instances = 0usize;
                    for class in 0..classes {
                        if in_bucket[class] == 0 {
                            continue; // np.nanmean: NaN counts as 0 and is not counted
                        }
                        with_instances += 1;
                        let mut kept = (counts[class]..counts[class + 1]).filter(|&i| {
                            (0..levels).all(|t| {
                                let a = matched[i * levels + t];
                                a == UNMATCHED || of[a as usize] == Some(b)
                            })
                        });
                        collect_hits(&mut kept, &mut hits);
                        let ap: Vec<f64> = hits
                            .iter()
                            .map(|h| ap_n(h, in_bucket[class], &mut terms))
                            .collect();
                        values[class] = numpy_mean(&ap);
                    }
                    Bucket {
                        label,
                        instances: in_bucket.iter().sum(),
                        value: (with_instances > 0)
                            .then(|| numpy_sum(&values) / with_instances as f64),
                    }
                })
                .collect();
            CharacteristicBuckets {
                characteristic: *c,
                buckets,
            }
        })
        .collect();

    Ok(DetectionAnalysis {
        options: options.clone(),
        instances: annotations,
        left_out_zero_length: zero_length,
        left_out_coverage_above_one: over_one,
        average_instances_per_class: nbar,
        predictions: analysed,
        map_n,
        average_map_n,
        error_counts,
        breakdown,
        profile,
        average_map_n_gain,
        false_negative,
        sensitivity_average_map_n,
        sensitivity,
        notes,
    })
}

/// DETAD's normalized precision at the `tp`-th true positive, found at 0-based `rank`:
/// `R·N̄ / (R·N̄ + FP)` with `R = tp / positives`, in DETAD's operation order.
fn normalized_precision(tp: f64, rank: f64, positives: f64, nbar: f64) -> f64 {
    let recall = tp / positives;
    let false_positives = rank + 1.0 - tp;
    recall * nbar / (recall * nbar + false_positives)
}

/// Per error type, its count averaged over the thresholds, over `size` (DETAD's `avg` column).
fn shares(counts: &[[usize; 6]], size: usize) -> [f64; 6] {
    let mut out = [f64::NAN; 6];
    if size > 0 {
        for (e, share) in out.iter_mut().enumerate() {
            let total: usize = counts.iter().map(|c| c[e]).sum();
            *share = (total as f64 / counts.len() as f64) / size as f64;
        }
    }
    out
}

/// The JSON form of an analysis (the `analysis` object of `lofi eval detection --analysis
/// --json`, and what `lofi.analyze_detection` returns): fractions, not percent; `null` for
/// buckets without instances and slices without predictions.
#[derive(Debug, serde::Serialize)]
pub struct AnalysisJson {
    /// tIoU thresholds.
    pub tiou_thresholds: Vec<f64>,
    /// `limit_factor` of the false-positive analysis.
    pub limit_factor: usize,
    /// tIoU separating localization/confusion from background errors.
    pub min_tiou: f64,
    /// Minimum normalized precision of a true positive in the false-negative analysis.
    pub min_normalized_precision: f64,
    /// Instances analysed.
    pub instances: usize,
    /// Instances left out for zero length.
    pub left_out_zero_length: usize,
    /// Instances left out for coverage above 1.
    pub left_out_coverage_above_one: usize,
    /// N̄.
    pub average_instances_per_class: f64,
    /// The false-positive analysis.
    pub false_positive: FalsePositiveJson,
    /// False-negative rate per bucket, by characteristic key.
    pub false_negative: OrderedMap<Vec<BucketJson>>,
    /// Average-mAP_N of all predictions and per bucket.
    pub sensitivity: SensitivityJson,
    /// Notes on the input.
    pub notes: Vec<String>,
}

/// The false-positive part of [`AnalysisJson`].
#[derive(Debug, serde::Serialize)]
pub struct FalsePositiveJson {
    /// Predictions analysed (top `limit_factor · G_j` per class).
    pub predictions: usize,
    /// mAP_N per threshold.
    #[serde(rename = "mAP_N")]
    pub map_n: Vec<f64>,
    /// Average-mAP_N.
    #[serde(rename = "average_mAP_N")]
    pub average_map_n: f64,
    /// Per threshold, the count of each error type.
    pub error_counts: Vec<OrderedMap<usize>>,
    /// Share of each error type, averaged over thresholds.
    pub breakdown: OrderedMap<Option<f64>>,
    /// Shares per slice (1G ... 10G).
    pub profile: Vec<ProfileJson>,
    /// Average-mAP_N gain of removing each error type.
    #[serde(rename = "average_mAP_N_gain")]
    pub average_map_n_gain: OrderedMap<f64>,
}

/// One slice of the false-positive profile.
#[derive(Debug, serde::Serialize)]
pub struct ProfileJson {
    /// "1G", "2G", ...
    pub top: String,
    /// Predictions in the slice.
    pub predictions: usize,
    /// Share of each error type.
    pub fractions: OrderedMap<Option<f64>>,
}

/// One bucket: its label, instances and value (`rate` or `average_mAP_N`).
#[derive(Debug, serde::Serialize)]
pub struct BucketJson {
    /// XS, S, M, L, XL.
    pub bucket: &'static str,
    /// Instances in the bucket.
    pub instances: usize,
    /// False-negative rate (false-negative analysis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Option<f64>>,
    /// Average-mAP_N (sensitivity analysis).
    #[serde(rename = "average_mAP_N", skip_serializing_if = "Option::is_none")]
    pub average_map_n: Option<Option<f64>>,
}

/// The sensitivity part of [`AnalysisJson`]: the baseline and the buckets by characteristic.
#[derive(Debug)]
pub struct SensitivityJson {
    /// Average-mAP_N of all predictions.
    pub average_map_n: f64,
    /// Buckets by characteristic key.
    pub by_characteristic: OrderedMap<Vec<BucketJson>>,
}

impl serde::Serialize for SensitivityJson {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1 + self.by_characteristic.0.len()))?;
        map.serialize_entry("average_mAP_N", &self.average_map_n)?;
        for (key, value) in &self.by_characteristic.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

fn by_type(values: &[f64; 6]) -> OrderedMap<Option<f64>> {
    OrderedMap(
        ErrorType::ALL
            .iter()
            .zip(values)
            .map(|(e, v)| (e.key().to_string(), finite(*v)))
            .collect(),
    )
}

impl DetectionAnalysis {
    /// The JSON form as compact text (what `lofi.analyze_detection` parses).
    pub fn to_json_text(&self) -> Result<String> {
        serde_json::to_string(&self.to_json())
            .map_err(|e| EvalError::Invalid(format!("cannot encode the analysis as JSON: {e}")))
    }

    /// The JSON form.
    pub fn to_json(&self) -> AnalysisJson {
        let buckets = |groups: &[CharacteristicBuckets], rate: bool| {
            OrderedMap(
                groups
                    .iter()
                    .map(|g| {
                        let rows = g
                            .buckets
                            .iter()
                            .map(|b| BucketJson {
                                bucket: b.label,
                                instances: b.instances,
                                rate: rate.then_some(b.value),
                                average_map_n: (!rate).then_some(b.value),
                            })
                            .collect();
                        (g.characteristic.key().to_string(), rows)
                    })
                    .collect(),
            )
        };
        AnalysisJson {
            tiou_thresholds: self.options.tiou_thresholds.clone(),
            limit_factor: self.options.limit_factor,
            min_tiou: self.options.min_tiou,
            min_normalized_precision: self.options.min_normalized_precision,
            instances: self.instances,
            left_out_zero_length: self.left_out_zero_length,
            left_out_coverage_above_one: self.left_out_coverage_above_one,
            average_instances_per_class: self.average_instances_per_class,
            false_positive: FalsePositiveJson {
                predictions: self.predictions,
                map_n: self.map_n.clone(),
                average_map_n: self.average_map_n,
                error_counts: self
                    .error_counts
                    .iter()
                    .map(|counts| {
                        OrderedMap(
                            ErrorType::ALL
                                .iter()
                                .zip(counts)
                                .map(|(e, n)| (e.key().to_string(), *n))
                                .collect(),
                        )
                    })
                    .collect(),
                breakdown: by_type(&self.breakdown),
                profile: self
                    .profile
                    .iter()
                    .enumerate()
                    .map(|(g, slice)| ProfileJson {
                        top: format!("{}G", g + 1),
                        predictions: slice.predictions,
                        fractions: by_type(&slice.fractions),
                    })
                    .collect(),
                average_map_n_gain: OrderedMap(
                    ErrorType::ALL[1..]
                        .iter()
                        .zip(&self.average_map_n_gain)
                        .map(|(e, g)| (e.key().to_string(), *g))
                        .collect(),
                ),
            },
            false_negative: buckets(&self.false_negative, true),
            sensitivity: SensitivityJson {
                average_map_n: self.sensitivity_average_map_n,
                by_characteristic: buckets(&self.sensitivity, false),
            },
            notes: self.notes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground_truth::GroundTruthOptions;
    use crate::predictions::PredictionKind;
    use std::path::Path;

    fn analyse(gt: &str, pred: &str, options: &AnalysisOptions) -> DetectionAnalysis {
        let truth = GroundTruth::from_slice(
            gt.as_bytes(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )
        .expect("ground truth");
        let predictions = Predictions::from_slice(
            pred.as_bytes(),
            Path::new("pred.json"),
            &truth,
            PredictionKind::Detections,
        )
        .expect("predictions");
        analyze_detection(&truth, &predictions, options).expect("analysis")
    }

    #[test]
    fn each_error_type_by_hand() {
        let gt = r#"{"database": {"v": {"subset": "validation", "duration": 100,
            "annotations": [{"segment": [0, 10], "label": "A"}, {"segment": [20, 30], "label": "B"}]}}}"#;
        // At tIoU 0.5, in score order: a true positive; the same segment again (double
        // detection); B's segment labelled A (wrong label); tIoU 0.4 with A's instance
        // (localization); tIoU 0.25 with B's (confusion); no overlap, and an unknown video
        // (background).
        let pred = r#"{"results": {"v": [
            {"label": "A", "score": 0.9, "segment": [0, 10]},
            {"label": "A", "score": 0.8, "segment": [0, 10]},
            {"label": "A", "score": 0.7, "segment": [20, 30]},
            {"label": "A", "score": 0.6, "segment": [0, 4]},
            {"label": "A", "score": 0.5, "segment": [25, 40]},
            {"label": "A", "score": 0.4, "segment": [50, 60]},
            {"label": "B", "score": 0.9, "segment": [20, 30]}],
            "elsewhere": [{"label": "A", "score": 0.3, "segment": [0, 10]}]}}"#;
        let mut options = AnalysisOptions::new(AnalysisDataset::ActivityNet);
        options.tiou_thresholds = vec![0.5];
        let analysis = analyse(gt, pred, &options);
        assert_eq!(analysis.predictions, 8);
        assert_eq!(analysis.error_counts, vec![[2, 1, 1, 1, 1, 2]]);
        // G_A = 1: A's slices are single predictions in rank order; B fills only 1G.
        let first: Vec<f64> = analysis.profile[0].fractions.to_vec();
        assert_eq!(first, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(analysis.profile[1].fractions[1], 1.0);
        assert_eq!(analysis.profile[6].fractions[5], 1.0);
        assert_eq!(analysis.profile[7].predictions, 0);
        assert!(analysis.profile[7].fractions[0].is_nan());
        // Both classes have AP_N 1 (their true positive ranks first), so no removal gains.
        assert_eq!(analysis.average_map_n, 1.0);
        assert_eq!(analysis.average_map_n_gain, [0.0; 5]);
        // Nothing is missed. Both instances are 10 s long (XS), 10% of the video (XS), in a
        // video with 2 instances (S); the other buckets are empty.
        for (group, filled) in analysis.false_negative.iter().zip([0, 0, 1]) {
            for (b, bucket) in group.buckets.iter().enumerate() {
                let expected = if b == filled {
                    (2, Some(0.0))
                } else {
                    (0, None)
                };
                assert_eq!((bucket.instances, bucket.value), expected, "{group:?}");
            }
        }
    }

    #[test]
    fn buckets_follow_pandas_cut_with_numpy_edges() {
        let coverage = AnalysisDataset::ActivityNet.bins(Characteristic::Coverage);
        // np.linspace(0, 1, 6)[3] is 0.6000000000000001, so 0.6 is still "M".
        assert_eq!(coverage.bucket(0.6), Some(2));
        assert_eq!(coverage.bucket(0.0), Some(0));
        assert_eq!(coverage.bucket(0.2), Some(0));
        assert_eq!(coverage.bucket(1.0), Some(4));
        assert_eq!(coverage.bucket(1.01), None);
        let instances = AnalysisDataset::Thumos14.bins(Characteristic::Instances);
        assert_eq!(instances.bucket(1.0), Some(0));
        assert_eq!(instances.bucket(40.0), Some(1));
        assert_eq!(instances.bucket(41.0), Some(2));
        assert_eq!(instances.bucket(1e9), Some(3));
    }

    #[test]
    fn coverage_needs_every_duration() {
        let gt = r#"{"database": {
            "a": {"subset": "validation", "duration": 20, "annotations": [{"segment": [0, 10], "label": "A"}]},
            "b": {"subset": "validation", "annotations": [{"segment": [0, 5], "label": "A"}]}}}"#;
        let pred = r#"{"results": {"a": [{"label": "A", "score": 0.9, "segment": [0, 10]}]}}"#;
        let analysis = analyse(
            gt,
            pred,
            &AnalysisOptions::new(AnalysisDataset::ActivityNet),
        );
        assert!(analysis
            .false_negative
            .iter()
            .all(|g| g.characteristic != Characteristic::Coverage));
        assert!(analysis
            .notes
            .iter()
            .any(|n| n.contains("1 annotated video")));
    }
}
