//! The memory planner: measure one probe step per fidelity, fit `memory = fixed + per_sample x
//! batch`, and choose micro-batches (with gradient accumulation) that keep every step under a
//! budget.
//!
//! Exists because LoFi's point is to fit end-to-end training into a fixed memory budget, and the
//! cost of a step depends on the fidelity (snippets x frame size), the network and the backend in
//! ways that are easier to measure than to predict.
//!
//! What the numbers mean on the CPU: a probe is **the bytes a step adds over the model's
//! baseline**, measured by [`crate::probe`] in a child process of its own (so no other thread of
//! the training process moves it), and "fixed" is what a step adds whatever the batch (parameter
//! gradients, optimizer temporaries, scratch). The budget is compared with
//! `baseline + fixed + per_sample x micro_batch`, `baseline` being the resident memory of the
//! training process before training (weights, decoded data, libraries), read with lofi-engine's
//! [`MemoryMeter`] (on the CPU, [`ProcMeter`]: the resident set size on Linux), the meter that
//! also reports every training step's peak.

use std::fmt;

pub use lofi_engine::memory::{MemoryMeter, ProcMeter};
use lofi_video::Fidelity;
use serde::{Deserialize, Serialize};

use crate::error::{TrainError, TrainResult};

/// A size in bytes read from text like `12GiB`, `512MiB`, `3.5GB`, `1000000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| {
            TrainError::Config(format!(
                "memory size '{s}' is not a number with an optional unit (e.g. 12GiB, 512MiB)"
            ))
        })?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kib" | "k" => 1024.0,
            "mib" | "m" => 1024.0 * 1024.0,
            "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
            "tib" | "t" => 1024f64.powi(4),
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            other => {
                return Err(TrainError::Config(format!(
                    "memory size '{s}': unknown unit '{other}' (use B, KiB, MiB, GiB, TiB, KB, MB, \
                     GB or TB)"
                )))
            }
        };
        let bytes = value * mult;
        if !bytes.is_finite() || bytes < 1.0 {
            return Err(TrainError::Config(format!(
                "memory size '{s}' must be at least 1 byte"
            )));
        }
        // 2^63 bytes: beyond it `as u64` would quietly saturate.
        if bytes >= 9.223_372_036_854_776e18 {
            return Err(TrainError::Config(format!(
                "memory size '{s}' is beyond any machine (at most 8 EiB)"
            )));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        let gib = 1024.0 * 1024.0 * 1024.0;
        if b >= gib {
            write!(f, "{:.2} GiB", b / gib)
        } else if b >= 1024.0 * 1024.0 {
            write!(f, "{:.1} MiB", b / (1024.0 * 1024.0))
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

/// One probe measurement: a step at `batch` videos of `fidelity` grew memory by `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Fidelity of the probe step.
    pub fidelity: Fidelity,
    /// Videos in the probe step.
    pub batch: usize,
    /// Peak memory growth of the step, bytes.
    pub bytes: u64,
}

/// The fitted cost of one fidelity and the micro-batch chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FidelityPlan {
    /// The fidelity.
    pub fidelity: Fidelity,
    /// Step memory independent of the batch, bytes.
    pub fixed_bytes: u64,
    /// Step memory per video, bytes.
    pub per_sample_bytes: u64,
    /// Videos per forward/backward pass.
    pub micro_batch: usize,
    /// Passes per optimizer step (`ceil(batch / micro_batch)`).
    pub accumulation: usize,
    /// Predicted peak of one pass, bytes (baseline included).
    pub predicted_peak_bytes: u64,
}

/// The plan for a whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPlan {
    /// The budget, bytes.
    pub budget_bytes: u64,
    /// Memory in use before training, bytes.
    pub baseline_bytes: u64,
    /// Videos per optimizer step.
    pub batch: usize,
    /// One entry per fidelity of the schedule.
    pub fidelities: Vec<FidelityPlan>,
    /// The raw measurements.
    pub probes: Vec<Probe>,
}

impl MemoryPlan {
    /// The plan entry of `f`, if the schedule uses it.
    pub fn get(&self, f: Fidelity) -> Option<&FidelityPlan> {
        self.fidelities.iter().find(|p| p.fidelity == f)
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "memory plan: budget {}, baseline {}, batch {} videos",
            ByteSize(self.budget_bytes),
            ByteSize(self.baseline_bytes),
            self.batch
        )?;
        writeln!(
            f,
            "  {:>10} {:>12} {:>12} {:>6} {:>6} {:>12}",
            "fidelity", "fixed", "per video", "micro", "accum", "peak"
        )?;
        for p in &self.fidelities {
            writeln!(
                f,
                "  {:>10} {:>12} {:>12} {:>6} {:>6} {:>12}",
                format!("{}x{}", p.fidelity.snippets, p.fidelity.size),
                ByteSize(p.fixed_bytes).to_string(),
                ByteSize(p.per_sample_bytes).to_string(),
                p.micro_batch,
                p.accumulation,
                ByteSize(p.predicted_peak_bytes).to_string()
            )?;
        }
        Ok(())
    }
}

/// Fits `fixed + per_sample x b` through the probes of one fidelity (least squares; a single
/// probe gives `fixed = 0`). Slopes and intercepts are clamped at 0 and the line is raised until
/// no probe lies above it, so the prediction never undercuts a measurement.
pub fn fit_line(points: &[(usize, u64)]) -> (u64, u64) {
    if points.is_empty() {
        return (0, 0);
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    let sxy: f64 = points
        .iter()
        .map(|p| (p.0 as f64 - mx) * (p.1 as f64 - my))
        .sum();
    let (mut fixed, slope) = if sxx > 0.0 {
        let slope = (sxy / sxx).max(0.0);
        ((my - slope * mx).max(0.0), slope)
    } else {
        (0.0, my / mx.max(1.0))
    };
    for &(b, y) in points {
        let pred = fixed + slope * b as f64;
        if pred < y as f64 {
            fixed += y as f64 - pred;
        }
    }
    (fixed.ceil() as u64, slope.ceil() as u64)
}

/// Chooses the micro-batch of every fidelity from the probes so that
/// `baseline + fixed + per_sample x micro <= budget`, with `micro <= batch`.
pub fn plan(
    probes: &[Probe],
    fidelities: &[Fidelity],
    batch: usize,
    baseline: u64,
    budget: u64,
) -> TrainResult<MemoryPlan> {
    if batch == 0 {
        return Err(TrainError::Config("batch_size must be at least 1".into()));
    }
    let mut out = Vec::new();
    for &f in fidelities {
        let points: Vec<(usize, u64)> = probes
            .iter()
            .filter(|p| p.fidelity == f)
            .map(|p| (p.batch, p.bytes))
            .collect();
        if points.is_empty() {
            return Err(TrainError::Budget(format!(
                "no probe measured fidelity {}x{}",
                f.snippets, f.size
            )));
        }
        let (fixed, per) = fit_line(&points);
        let available = budget.saturating_sub(baseline).saturating_sub(fixed);
        let one = fixed.saturating_add(per).saturating_add(baseline);
        if one > budget {
            return Err(TrainError::Budget(format!(
                "{} cannot hold one video at {}x{}: a step needs {} (baseline {} + fixed {} + \
                 {} per video); raise the budget or lower the fidelity",
                ByteSize(budget),
                f.snippets,
                f.size,
                ByteSize(one),
                ByteSize(baseline),
                ByteSize(fixed),
                ByteSize(per)
            )));
        }
        let micro = available
            .checked_div(per)
            .map_or(batch, |m| (m as usize).clamp(1, batch));
        // Spread the batch evenly over the passes (e.g. 16 over 3 passes of 6, 5, 5 rather than
        // 7, 7, 2): same number of passes, smaller peak.
        let accumulation = batch.div_ceil(micro);
        let micro = batch.div_ceil(accumulation);
        out.push(FidelityPlan {
            fidelity: f,
            fixed_bytes: fixed,
            per_sample_bytes: per,
            micro_batch: micro,
            accumulation,
            predicted_peak_bytes: baseline + fixed + per * micro as u64,
        });
    }
    Ok(MemoryPlan {
        budget_bytes: budget,
        baseline_bytes: baseline,
        batch,
        fidelities: out,
        probes: probes.to_vec(),
    })
}

/// Measures the peak growth of `work` with `meter` over the memory in use just before it:
/// `(result, bytes)`.
pub fn measure<T>(
    meter: &mut dyn MemoryMeter,
    work: impl FnOnce() -> TrainResult<T>,
) -> TrainResult<(T, u64)> {
    let before = meter.current()?;
    meter.reset_peak()?;
    let out = work()?;
    let peak = meter.peak()?;
    Ok((out, peak.saturating_sub(before)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_units_and_reject_nonsense() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("12GiB").ok(), Some(12 * 1024 * 1024 * 1024));
        assert_eq!(p("512 MiB").ok(), Some(512 * 1024 * 1024));
        assert_eq!(p("3.5GB").ok(), Some(3_500_000_000));
        assert_eq!(p("1000").ok(), Some(1000));
        assert_eq!(p("2k").ok(), Some(2048));
        assert!(p("").is_err());
        assert!(p("GiB").is_err());
        assert!(p("12 parsecs").is_err());
        assert!(p("0").is_err());
        assert!(p("-3GiB").is_err());
    }

    #[test]
    fn line_fit_is_exact_on_a_line_and_never_undercuts() {
        assert_eq!(fit_line(&[(1, 150), (2, 250), (4, 450)]), (50, 100));
        let (fixed, per) = fit_line(&[(1, 100), (2, 260), (3, 300)]);
        for (b, y) in [(1u64, 100u64), (2, 260), (3, 300)] {
            assert!(fixed + per * b >= y, "{fixed} + {per} * {b} < {y}");
        }
        // Decreasing measurements (allocator reuse) give a flat line at the maximum.
        assert_eq!(fit_line(&[(1, 300), (2, 200)]), (300, 0));
        assert_eq!(fit_line(&[(2, 400)]), (0, 200));
        assert_eq!(fit_line(&[]), (0, 0));
    }

    fn probes(f: Fidelity, fixed: u64, per: u64) -> Vec<Probe> {
        [1, 2]
            .iter()
            .map(|&b| Probe {
                fidelity: f,
                batch: b,
                bytes: fixed + per * b as u64,
            })
            .collect()
    }

    #[test]
    fn plan_picks_the_largest_micro_batch_under_the_budget() -> TrainResult<()> {
        let s = Fidelity::s();
        let t = Fidelity::t();
        let mut all = probes(s, 100, 50);
        all.extend(probes(t, 200, 10));
        // budget 1000, baseline 300: S fits (1000 - 300 - 100) / 50 = 12 -> 16 over 2 passes
        // of 8; T fits (1000 - 300 - 200) / 10 = 50 >= 16 -> one pass.
        let p = plan(&all, &[s, t], 16, 300, 1000)?;
        let ps = p.get(s).ok_or(TrainError::Budget("missing".into()))?;
        assert_eq!((ps.micro_batch, ps.accumulation), (8, 2));
        assert!(ps.predicted_peak_bytes <= 1000);
        let pt = p.get(t).ok_or(TrainError::Budget("missing".into()))?;
        assert_eq!((pt.micro_batch, pt.accumulation), (16, 1));
        assert!(p.to_string().contains("100x112"));
        // Every micro-batch size that the plan allows stays within the budget.
        for budget in [510u64, 520, 700, 1000, 5000] {
            let p = plan(&all, &[s, t], 16, 300, budget)?;
            for fp in &p.fidelities {
                assert!(fp.predicted_peak_bytes <= budget, "{fp:?} over {budget}");
                assert!(fp.micro_batch * fp.accumulation >= 16);
                assert!(fp.micro_batch * (fp.accumulation - 1) < 16);
            }
        }
        Ok(())
    }

    #[test]
    fn budget_below_the_fixed_cost_is_a_clear_error() {
        let s = Fidelity::s();
        let err = plan(&probes(s, 100, 50), &[s], 16, 300, 420).expect_err("too small");
        let text = err.to_string();
        assert!(text.contains("cannot hold one video"), "{text}");
        assert!(text.contains("100x112"), "{text}");
        assert!(plan(&probes(s, 100, 50), &[Fidelity::t()], 16, 0, 10_000).is_err());
        assert!(plan(&probes(s, 100, 50), &[s], 0, 0, 10_000).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_meter_sees_a_large_allocation() -> TrainResult<()> {
        let mut meter = ProcMeter::new()?;
        let ((), grew) = measure(&mut meter, || {
            let v = vec![1u8; 64 << 20];
            std::hint::black_box(&v);
            Ok(())
        })?;
        assert!(grew >= 48 << 20, "grew only {grew} bytes");
        Ok(())
    }
}
