//! Temporal segments, temporal IoU and tIoU threshold lists.
//!
//! Everything here mirrors the ActivityNet evaluation's floating-point order of operations, so
//! that our metrics agree with the official tool bit for bit wherever the inputs have no ties:
//! the intersection is clipped at zero before the union is formed, the union adds the ground-truth
//! length to the prediction length, and threshold lists are computed the way `numpy.linspace` does.

use crate::error::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A time interval `[start, end]` in seconds (or in any unit, as long as both sides agree).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Segment {
    /// Start of the interval.
    pub start: f64,
    /// End of the interval; `end >= start` for every segment this crate accepts from a file.
    pub end: f64,
}

impl Segment {
    /// A segment from its two ends.
    pub const fn new(start: f64, end: f64) -> Self {
        Segment { start, end }
    }

    /// `end - start`.
    pub fn length(&self) -> f64 {
        self.end - self.start
    }
}

impl From<[f64; 2]> for Segment {
    fn from([start, end]: [f64; 2]) -> Self {
        Segment { start, end }
    }
}

impl From<Segment> for [f64; 2] {
    fn from(segment: Segment) -> Self {
        [segment.start, segment.end]
    }
}

/// Temporal intersection over union of a prediction and a ground-truth segment.
///
/// Computed as the official tool does: `inter = max(0, min(e1, e2) - max(s1, s2))`,
/// `union = len(gt) + len(pred) - inter`, `inter / union`. Where the union is not positive (two
/// zero-length segments, wherever they are) the official tool divides by zero, gets NaN, and its
/// matching loop then counts the pair as a true positive; we return 0 instead, so that such a pair
/// never matches.
#[inline]
pub fn tiou(prediction: Segment, ground_truth: Segment) -> f64 {
    let intersection =
        (prediction.end.min(ground_truth.end) - prediction.start.max(ground_truth.start)).max(0.0);
    let union = ground_truth.length() + prediction.length() - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

/// `n` evenly spaced values from `start` to `stop` inclusive, exactly as `numpy.linspace` computes
/// them: `i * ((stop - start) / (n - 1)) + start`, with the last value set to `stop`.
pub fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut values: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// A list of tIoU thresholds given as `start:stop:count`, like `numpy.linspace(start, stop, count)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// First threshold.
    pub start: f64,
    /// Last threshold.
    pub stop: f64,
    /// How many thresholds.
    pub count: usize,
}

impl Thresholds {
    /// ActivityNet: 0.5, 0.55, ..., 0.95.
    pub const ACTIVITYNET: Thresholds = Thresholds {
        start: 0.5,
        stop: 0.95,
        count: 10,
    };
    /// THUMOS14: 0.3, 0.4, ..., 0.7.
    pub const THUMOS14: Thresholds = Thresholds {
        start: 0.3,
        stop: 0.7,
        count: 5,
    };

    /// Most thresholds a list may have (each one is a full evaluation pass).
    pub const MAX_COUNT: usize = 1000;

    /// The threshold values.
    pub fn values(&self) -> Vec<f64> {
        linspace(self.start, self.stop, self.count)
    }

    /// Checks that the thresholds are usable: finite, within (0, 1], ascending, at least one.
    pub fn validate(&self) -> Result<()> {
        let ok_value = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        if self.count == 0 || self.count > Self::MAX_COUNT {
            return Err(EvalError::Invalid(format!(
                "tIoU thresholds: count {} must be 1 to {} (protocols use 5 or 10)",
                self.count,
                Self::MAX_COUNT
            )));
        }
        if !ok_value(self.start) || !ok_value(self.stop) {
            return Err(EvalError::Invalid(format!(
                "tIoU thresholds {self}: start and stop must lie in (0, 1]"
            )));
        }
        if self.stop < self.start {
            return Err(EvalError::Invalid(format!(
                "tIoU thresholds {self}: stop is below start"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Thresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.stop, self.count)
    }
}

impl FromStr for Thresholds {
    type Err = EvalError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            EvalError::Invalid(format!(
                "tIoU thresholds {text:?}: expected START:STOP:COUNT, e.g. 0.5:0.95:10"
            ))
        };
        let parts: Vec<&str> = text.split(':').collect();
        let [start, stop, count] = parts.as_slice() else {
            return Err(bad());
        };
        let thresholds = Thresholds {
            start: start.trim().parse().map_err(|_| bad())?,
            stop: stop.trim().parse().map_err(|_| bad())?,
            count: count.trim().parse().map_err(|_| bad())?,
        };
        thresholds.validate()?;
        Ok(thresholds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiou_of_identical_disjoint_and_nested_segments() {
        let a = Segment::new(2.0, 6.0);
        assert_eq!(tiou(a, a), 1.0);
        assert_eq!(tiou(a, Segment::new(7.0, 9.0)), 0.0);
        assert_eq!(tiou(a, Segment::new(6.0, 9.0)), 0.0);
        // [3, 5] inside [2, 6]: 2 / 4.
        assert_eq!(tiou(Segment::new(3.0, 5.0), a), 0.5);
        // [4, 8] vs [2, 6]: intersection 2, union 6.
        assert!((tiou(Segment::new(4.0, 8.0), a) - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn tiou_is_symmetric_and_zero_for_degenerate_union() {
        let a = Segment::new(0.25, 7.5);
        let b = Segment::new(3.125, 11.0);
        assert_eq!(tiou(a, b), tiou(b, a));
        let point = Segment::new(1.0, 1.0);
        assert_eq!(tiou(point, point), 0.0);
    }

    #[test]
    fn linspace_matches_numpy_bit_for_bit() {
        // Values printed by numpy 2.4: np.linspace(0.5, 0.95, 10).tolist().
        let expected = [
            0.5,
            0.55,
            0.6,
            0.65,
            0.7,
            0.75,
            0.8,
            0.85,
            0.8999999999999999,
            0.95,
        ];
        assert_eq!(linspace(0.5, 0.95, 10), expected);
        // np.linspace(0.3, 0.7, 5).tolist()
        assert_eq!(
            linspace(0.3, 0.7, 5),
            [0.3, 0.39999999999999997, 0.5, 0.6, 0.7]
        );
        assert_eq!(linspace(0.5, 0.5, 1), [0.5]);
    }

    #[test]
    fn thresholds_parse_and_reject_nonsense() {
        let t: Thresholds = "0.3:0.7:5".parse().expect("valid thresholds");
        assert_eq!(t, Thresholds::THUMOS14);
        for bad in [
            "",
            "0.5:0.95",
            "a:b:c",
            "0.5:0.95:0",
            "0.9:0.5:3",
            "0:1:3",
            "0.5:1.5:3",
        ] {
            assert!(
                bad.parse::<Thresholds>().is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
