//! Head inference: a head's outputs on the host, boundary candidates, anchor scores, Soft-NMS,
//! top-k (whole videos or sliding windows), fusion with video-level class scores, and the
//! validation pass; everything between a loaded [`Head`] and a detection file.
//!
//! Exists because every number the project reports passes through this post-processing, in three
//! places: `lofi detect`, the head trainer's per-epoch validation, and the LoFi trainer's
//! validation pass ([`validate_head`]). One implementation keeps them identical.
//!
//! # Rules (BMN / G-TAD)
//! - Boundary positions: position `p` (in snippet units) is time `p D / L`, the convention of
//!   lofi-model's targets (boundary `i` is centred at `i / L` of the span; anchor `(d, t)` covers
//!   `[t, t + d + 1]`) and of lofi-video's sampling plan (snippet `i` covers
//!   `[i D / L, (i + 1) D / L)`). The start probability of position `p` is `start[p]`, the end
//!   probability `end[p]`.
//! - Candidates (`candidates` of [`DetectConfig`]): G-TAD's rule, exactly as its
//!   `gtad_inference.py`: a start position is kept when it is a strict local peak of the start
//!   probabilities or above half their maximum, among positions `1..=L-2`; position 0 is always
//!   kept. Ends likewise, position `L - 1` always kept; a proposal therefore ends at most at
//!   `L - 1` (the official rule `end_index < temporal_scale`). BMN's reference keeps every
//!   position (`all`), with the same last end.
//! - Every candidate pair `t < e` with `e - t <= D` is an anchor; its score is
//!   `classification map x regression map` at `(e - t - 1, t)`. With `boundary_in_score` the
//!   boundary probabilities multiply in too (`start x end x cls x reg`, BMN's full rule);
//!   off by default, as in the G-TAD description we follow.
//! - Gaussian Soft-NMS (`sigma`, 0.8 on ActivityNet) keeps the `top_k` (100) best; as in
//!   G-TAD's `Soft_NMS`, the loop stops when one candidate is left (a video with `top_k` or fewer
//!   candidates loses its last one). BMN's rule ([`lofi_model::SoftNmsRule::WidthGated`]) decays
//!   only above a threshold growing with the kept proposal's width (same loop).
//! - Each kept proposal is paired with the video's `top_classes` (2) classes, score = proposal
//!   score x class score ([`lofi_eval::fuse_with_class_scores`]).
//! - A head trained on sliding windows ([`crate::windows`]) runs on every window of the video's
//!   features at their own stride; the window's candidates are mapped to video time and merged
//!   across windows with Soft-NMS ([`HeadInput`] chooses).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use lofi_eval::{
    evaluate_detection, fuse_with_class_scores, soft_nms, DetectionFile, DetectionReport,
    GroundTruth as EvalTruth, PredictionKind, Predictions, ScoredSegment, Thresholds,
    VideoClassScores,
};
use lofi_model::{DetectConfig, Head, SoftNmsRule};

use crate::error::{HeadError, Result};
use crate::features::{FeatureStore, VideoFeatures};
use crate::windows::{windows, Temporal, TimedFeatures};

/// One video's head outputs on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadScores {
    /// Temporal length `L`.
    pub l: usize,
    /// Anchor durations `D`.
    pub d: usize,
    /// Start probabilities `[L]`.
    pub start: Vec<f32>,
    /// End probabilities `[L]`.
    pub end: Vec<f32>,
    /// Regression IoU map `[D, L]`.
    pub reg: Vec<f32>,
    /// Classification IoU map `[D, L]`.
    pub cls: Vec<f32>,
}

/// Scored candidate segments (seconds) of one video before Soft-NMS (see the module docs).
pub fn candidate_proposals(
    s: &HeadScores,
    duration: f64,
    config: &DetectConfig,
) -> Vec<ScoredSegment> {
    let l = s.l;
    if l < 2 {
        return Vec::new();
    }
    let boundary_in_score = config.boundary_in_score;
    let starts = config.candidates.keep(&s.start, 0);
    let ends = config.candidates.keep(&s.end, l - 1);
    let step = duration / l as f64;
    let mut out = Vec::new();
    for t in (0..l).filter(|&t| starts[t]) {
        // G-TAD's rule: a proposal ends at a position e < L, whose end probability is end[e].
        for e in (t + 1..l).filter(|&e| ends[e]) {
            let dur = e - t - 1;
            if dur >= s.d {
                break;
            }
            let idx = dur * l + t;
            let mut score = f64::from(s.cls[idx]) * f64::from(s.reg[idx]);
            if boundary_in_score {
                score *= f64::from(s.start[t]) * f64::from(s.end[e]);
            }
            out.push(ScoredSegment::new(t as f64 * step, e as f64 * step, score));
        }
    }
    out
}

fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| HeadError::Input(format!("cannot read a head output: {e:?}")))
}

/// Runs `head` on videos (all at the same `L` and `C`), `batch_size` at a time.
pub fn head_scores(
    head: &Head,
    videos: &[&VideoFeatures],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<HeadScores>> {
    let mut out = Vec::with_capacity(videos.len());
    for chunk in videos.chunks(batch_size.max(1)) {
        let (l, c) = (chunk[0].l, chunk[0].c);
        if let Some(v) = chunk.iter().find(|v| v.l != l || v.c != c) {
            return Err(HeadError::Input(format!(
                "video {:?} has features [{}, {}], the batch [{l}, {c}]",
                v.id, v.l, v.c
            )));
        }
        let x = batch_tensor(chunk, device);
        let o = head.forward(x)?;
        let [b, _, d, _] = o.maps.dims();
        let start = to_host(o.start)?;
        let end = to_host(o.end)?;
        let maps = to_host(o.maps)?;
        for i in 0..b {
            let m = &maps[i * 2 * d * l..(i + 1) * 2 * d * l];
            out.push(HeadScores {
                l,
                d,
                start: start[i * l..(i + 1) * l].to_vec(),
                end: end[i * l..(i + 1) * l].to_vec(),
                reg: m[..d * l].to_vec(),
                cls: m[d * l..].to_vec(),
            });
        }
    }
    Ok(out)
}

/// Stacks `[L, C]` features into the head's `[B, C, L]` input.
pub fn batch_tensor(videos: &[&VideoFeatures], device: &Device) -> Tensor<3> {
    let (l, c) = (videos[0].l, videos[0].c);
    let mut data = Vec::with_capacity(videos.len() * l * c);
    for v in videos {
        for ch in 0..c {
            data.extend((0..l).map(|t| v.data[t * c + ch]));
        }
    }
    Tensor::from_data(TensorData::new(data, [videos.len(), c, l]), device)
}

/// Class-agnostic proposals of each video: head, candidates, Soft-NMS, top-k.
pub fn head_proposals(
    head: &Head,
    videos: &[&VideoFeatures],
    config: &DetectConfig,
    device: &Device,
) -> Result<Vec<Vec<ScoredSegment>>> {
    config.validate()?;
    let scores = head_scores(head, videos, config.batch_size, device)?;
    scores
        .iter()
        .zip(videos)
        .map(|(s, v)| {
            let c = candidate_proposals(s, v.duration, config);
            let mut kept = soft_nms(&c, &config.soft_nms(v.duration))?;
            // G-TAD's `Soft_NMS` loop (as BMN's, which lofi-eval's BMN rule follows) stops when
            // one candidate is left: with no more than `top_k` candidates, that last one is
            // never kept.
            if config.soft_nms == SoftNmsRule::Gaussian && c.len() > 1 && kept.len() == c.len() {
                kept.pop();
            }
            Ok(kept)
        })
        .collect()
}

/// The videos of a head run, as the head sees them.
#[derive(Debug, Clone)]
pub enum HeadInput {
    /// Each video resampled to the head's `L` (rescale).
    Rescaled(Vec<VideoFeatures>),
    /// Each video at its own stride, cut into windows of `w` snippets every `stride`.
    Windows {
        /// The videos.
        videos: Vec<TimedFeatures>,
        /// Window length (the head's `L`).
        w: usize,
        /// Snippets between window starts.
        stride: usize,
    },
}

impl HeadInput {
    /// Whole-video features, in order: what the video classifier pools and what names the
    /// videos.
    pub fn features(&self) -> Vec<&VideoFeatures> {
        match self {
            Self::Rescaled(v) => v.iter().collect(),
            Self::Windows { videos, .. } => videos.iter().map(|v| &v.features).collect(),
        }
    }

    /// Class-agnostic proposals of each video in seconds: [`head_proposals`] on the rescaled
    /// features, or [`window_proposals`] over the windows.
    pub fn proposals(
        &self,
        head: &Head,
        config: &DetectConfig,
        device: &Device,
    ) -> Result<Vec<Vec<ScoredSegment>>> {
        match self {
            Self::Rescaled(v) => {
                let refs: Vec<&VideoFeatures> = v.iter().collect();
                head_proposals(head, &refs, config, device)
            }
            Self::Windows { videos, w, stride } => {
                let refs: Vec<&TimedFeatures> = videos.iter().collect();
                window_proposals(head, &refs, *w, *stride, config, device)
            }
        }
    }

    /// Loads the videos of `ids` (with their annotated durations) from `store` the way a head
    /// of temporal scale `l` and mode `temporal` sees them; `channels`, when given, must match.
    pub fn load(
        store: &FeatureStore,
        ids: &[(String, f64)],
        l: usize,
        temporal: Temporal,
        channels: Option<usize>,
    ) -> Result<Self> {
        Ok(match temporal {
            Temporal::Rescale => Self::Rescaled(
                ids.iter()
                    .map(|(id, d)| store.load_at(id, *d, l, channels))
                    .collect::<Result<_>>()?,
            ),
            Temporal::Windows { window_stride } => Self::Windows {
                videos: ids
                    .iter()
                    .map(|(id, d)| store.load_timed(id, *d, channels))
                    .collect::<Result<_>>()?,
                w: l,
                stride: window_stride,
            },
        })
    }
}

/// Class-agnostic proposals of each video by windows (module docs): the head on every window,
/// candidates mapped to video time, Soft-NMS per window and over the video, top-k.
pub fn window_proposals(
    head: &Head,
    videos: &[&TimedFeatures],
    w: usize,
    stride: usize,
    config: &DetectConfig,
    device: &Device,
) -> Result<Vec<Vec<ScoredSegment>>> {
    config.validate()?;
    let mut out = Vec::with_capacity(videos.len());
    for video in videos {
        let wins = windows(video, w, stride);
        let refs: Vec<&VideoFeatures> = wins.iter().map(|x| &x.features).collect();
        let scores = head_scores(head, &refs, config.batch_size, device)?;
        let duration = video.features.duration;
        let mut merged = Vec::new();
        for (win, s) in wins.iter().zip(&scores) {
            let offset = win.offset();
            let local: Vec<ScoredSegment> = candidate_proposals(s, win.features.duration, config)
                .into_iter()
                .filter_map(|p| {
                    let start = (p.segment.start + offset).clamp(0.0, duration);
                    let end = (p.segment.end + offset).clamp(0.0, duration);
                    (end > start).then(|| ScoredSegment::new(start, end, p.score))
                })
                .collect();
            merged.extend(soft_nms(&local, &config.soft_nms(win.features.duration))?);
        }
        out.push(soft_nms(&merged, &config.soft_nms(duration))?);
    }
    Ok(out)
}

/// Labelled detections of each video: proposals fused with `classes`' top classes.
///
/// With `truth`, detections whose label is not a class of the evaluated subset are dropped (the
/// official tool refuses such files; on ActivityNet every class occurs in every subset, so this
/// only matters for small datasets); the second value counts them.
pub fn detections(
    videos: &[&VideoFeatures],
    proposals: &[Vec<ScoredSegment>],
    classes: &VideoClassScores,
    top_classes: usize,
    truth: Option<&EvalTruth>,
) -> Result<(DetectionFile, usize)> {
    let mut results = Vec::with_capacity(videos.len());
    let mut dropped = 0;
    for (v, p) in videos.iter().zip(proposals) {
        let mut fused = fuse_with_class_scores(&v.id, p, classes, top_classes)?;
        if let Some(truth) = truth {
            let before = fused.len();
            fused.retain(|d| truth.class_of(&d.label).is_some());
            dropped += before - fused.len();
        }
        results.push((v.id.clone(), fused));
    }
    Ok((DetectionFile::new(results), dropped))
}

/// Evaluates a detection file in memory against `truth` at the ActivityNet thresholds.
pub fn evaluate(truth: &EvalTruth, file: &DetectionFile) -> Result<DetectionReport> {
    let bytes = serde_json::to_vec(file)
        .map_err(|e| HeadError::Input(format!("cannot encode detections: {e}")))?;
    let predictions = Predictions::from_slice(
        &bytes,
        Path::new("<detections in memory>"),
        truth,
        PredictionKind::Detections,
    )?;
    Ok(evaluate_detection(
        truth,
        &predictions,
        &Thresholds::ACTIVITYNET.values(),
    )?)
}

/// The validation pass the trainers call: runs `head` on per-video features `[L, C]` (for
/// example the encoder's outputs at the current fidelity), turns them into detections with the
/// rules above and the video-level `classes`, and evaluates them against `truth` (already
/// restricted to the subset) at the ActivityNet tIoU thresholds 0.5:0.05:0.95. Returns the
/// [`DetectionReport`] (`map` per threshold, `average_map`). Runs wherever `head` lives; pass a
/// non-autodiff copy (`head.valid()`) to avoid recording a graph.
pub fn validate_head(
    head: &Head,
    videos: &[VideoFeatures],
    truth: &EvalTruth,
    classes: &VideoClassScores,
    config: &DetectConfig,
) -> Result<DetectionReport> {
    validate_input(
        head,
        &HeadInput::Rescaled(videos.to_vec()),
        truth,
        classes,
        config,
    )
}

/// [`validate_head`] on videos as a head of either mode sees them ([`HeadInput`]).
pub fn validate_input(
    head: &Head,
    input: &HeadInput,
    truth: &EvalTruth,
    classes: &VideoClassScores,
    config: &DetectConfig,
) -> Result<DetectionReport> {
    let refs = input.features();
    if refs.is_empty() {
        return Err(HeadError::Input(
            "validation needs at least one video".into(),
        ));
    }
    let device = head.device();
    let proposals = input.proposals(head, config, &device)?;
    let (file, _) = detections(&refs, &proposals, classes, config.top_classes, Some(truth))?;
    evaluate(truth, &file)
}

/// Wraps encoder outputs `[B, L, C]` (any device) as per-video features for [`validate_head`];
/// `videos` gives each row's id and duration in seconds, in batch order.
pub fn features_from_encoder(
    output: Tensor<3>,
    videos: &[(String, f64)],
) -> Result<Vec<VideoFeatures>> {
    let [b, l, c] = output.dims();
    if b != videos.len() {
        return Err(HeadError::Input(format!(
            "{b} encoder outputs for {} videos",
            videos.len()
        )));
    }
    let data = to_host(output)?;
    Ok(videos
        .iter()
        .enumerate()
        .map(|(i, (id, duration))| VideoFeatures {
            id: id.clone(),
            duration: *duration,
            l,
            c,
            data: data[i * l * c..(i + 1) * l * c].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lofi_eval::GroundTruthOptions;

    fn scores(l: usize, start: Vec<f32>, end: Vec<f32>) -> HeadScores {
        HeadScores {
            l,
            d: l,
            start,
            end,
            reg: vec![1.0; l * l],
            cls: vec![0.5; l * l],
        }
    }

    #[test]
    fn peaks_and_half_max_make_candidates_with_the_first_and_last_always_kept() {
        let c = lofi_model::CandidateRule::PeaksOrHalfMax.keep(&[0.1, 0.2, 0.9, 0.3, 0.35, 0.2], 0);
        assert_eq!(c, vec![true, false, true, false, true, false]);
        // The first position is never a candidate end, even above half the maximum.
        let c = lofi_model::CandidateRule::PeaksOrHalfMax.keep(&[0.9, 0.6, 0.7, 0.8, 0.1], 4);
        assert_eq!(c, vec![false, true, true, true, true]);
        // The last position is never a candidate start.
        let c = lofi_model::CandidateRule::PeaksOrHalfMax.keep(&[0.1, 0.9, 0.95], 0);
        assert_eq!(c, vec![true, true, false]);
    }

    #[test]
    fn anchors_map_to_seconds_with_the_snippet_convention() {
        // L = 4, duration 8 s: position p is 2p seconds. Only start 1 and end 3 stand out; start
        // 0 and end 3 (= L - 1, the last end G-TAD allows) are always kept.
        let s = scores(4, vec![0.0, 0.9, 0.0, 0.0], vec![0.0, 0.0, 0.0, 0.9]);
        let c = candidate_proposals(&s, 8.0, &DetectConfig::default());
        let segs: Vec<(f64, f64)> = c.iter().map(|p| (p.segment.start, p.segment.end)).collect();
        assert_eq!(segs, vec![(0.0, 6.0), (2.0, 6.0)]);
        assert!(c.iter().all(|p| (p.score - 0.5).abs() < 1e-12));
        let with_boundaries = candidate_proposals(
            &s,
            8.0,
            &DetectConfig {
                boundary_in_score: true,
                ..DetectConfig::default()
            },
        );
        assert!((with_boundaries[1].score - 0.5 * 0.9 * 0.9).abs() < 1e-6);
        assert_eq!(with_boundaries[0].score, 0.0);
    }

    #[test]
    fn gtad_soft_nms_never_keeps_the_last_remaining_candidate() {
        // L = 4, every position a candidate: 6 anchors; G-TAD's loop keeps 5 of them.
        let s = scores(4, vec![1.0; 4], vec![1.0; 4]);
        let head = lofi_model::HeadArch::tiny(lofi_model::HeadKind::Gtad);
        let c = candidate_proposals(&s, 4.0, &DetectConfig::default());
        assert_eq!(c.len(), 6);
        let device = crate::model::cpu_device();
        let model = head.init(8, &device).expect("head");
        let v = VideoFeatures {
            id: "v".into(),
            duration: 4.0,
            l: 4,
            c: 8,
            data: vec![0.5; 32],
        };
        let got = head_proposals(&model, &[&v], &DetectConfig::default(), &device).expect("ok");
        let n = candidate_proposals(
            &head_scores(&model, &[&v], 1, &device).expect("scores")[0],
            4.0,
            &DetectConfig::default(),
        )
        .len();
        assert_eq!(got[0].len(), n - 1, "{n} candidates");
        // With more candidates than top_k, top_k are kept.
        let few = DetectConfig {
            top_k: 2,
            ..DetectConfig::default()
        };
        let got = head_proposals(&model, &[&v], &few, &device).expect("ok");
        assert_eq!(got[0].len(), 2.min(n));
    }

    #[test]
    fn max_duration_limits_anchors() {
        let mut s = scores(4, vec![1.0; 4], vec![1.0; 4]);
        s.d = 2;
        s.reg.truncate(8);
        s.cls.truncate(8);
        let c = candidate_proposals(&s, 4.0, &DetectConfig::default());
        assert!(c
            .iter()
            .all(|p| p.segment.end - p.segment.start <= 2.0 + 1e-9));
        // starts 0, 1, 2 and ends 1, 2, 3 with e - t <= 2: (0,1) (0,2) (1,2) (1,3) (2,3).
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn validate_head_runs_on_encoder_outputs_with_oracle_classes() {
        let text = r#"{"version": "t", "database": {
            "a": {"subset": "validation", "duration": 10.0,
                  "annotations": [{"segment": [2.0, 6.0], "label": "jump"}]},
            "b": {"subset": "validation", "duration": 8.0,
                  "annotations": [{"segment": [0.0, 8.0], "label": "run"}]},
            "c": {"subset": "training", "duration": 8.0,
                  "annotations": [{"segment": [1.0, 2.0], "label": "swim"}]}}}"#;
        let gt = lofi_video::ground_truth::GroundTruth::from_slice(
            text.as_bytes(),
            Path::new("gt.json"),
        )
        .expect("valid gt");
        let oracle = crate::detect::oracle_class_scores(&gt, "validation").expect("scores");
        assert_eq!(oracle.len(), 2);
        assert_eq!(oracle.top_classes("a", 1).expect("a")[0].0, "jump");
        let truth = EvalTruth::from_slice(
            text.as_bytes(),
            Path::new("gt.json"),
            &GroundTruthOptions::default(),
        )
        .expect("eval gt");
        let device = crate::model::cpu_device();
        let head = lofi_model::HeadArch::tiny(lofi_model::HeadKind::Gtad)
            .init(8, &device)
            .expect("head");
        let out = Tensor::<3>::random([2, 10, 8], burn::tensor::Distribution::Default, &device);
        let videos = vec![("a".to_string(), 10.0), ("b".to_string(), 8.0)];
        let feats = features_from_encoder(out, &videos).expect("features");
        assert_eq!((feats[1].l, feats[1].c, feats[1].duration), (10, 8, 8.0));
        let report = validate_head(&head, &feats, &truth, &oracle, &DetectConfig::default())
            .expect("report");
        assert_eq!(report.map.len(), 10);
        assert!((0.0..=1.0).contains(&report.average_map));
        // Video "b" is the whole video and the end-to-end anchor is always a candidate, so with
        // the oracle class it is a true positive: AP of "run" at tIoU 0.5 is positive.
        let run = report
            .per_class
            .iter()
            .find(|c| c.label == "run")
            .expect("run");
        assert!(run.ap[0] > 0.0);
        assert!(features_from_encoder(Tensor::<3>::zeros([1, 4, 8], &device), &videos).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        for cfg in [
            DetectConfig {
                soft_nms_sigma: 0.0,
                ..DetectConfig::default()
            },
            DetectConfig {
                top_k: 0,
                ..DetectConfig::default()
            },
        ] {
            assert!(cfg.validate().is_err());
        }
    }
}
