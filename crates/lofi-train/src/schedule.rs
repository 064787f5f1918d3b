//! Which fidelity each mini-batch is trained at: the LoFi schedules as one pure function.
//!
//! Exists because the schedule is the heart of LoFi (single reduced fidelities S, T, ST and the
//! multigrid-style long and short cycles), and a pure `(epoch, batch) -> Fidelity` function is
//! the only form that makes `--resume` exact and the schedule testable without training.
//!
//! Cycle order is S, T, ST (as in the paper). The long cycle switches every `c_l` epochs
//! (default 1); the short cycle switches every `c_s` mini-batches (default 16), counting the
//! batch index within the epoch, so every epoch starts again at S. Custom schedules replace the
//! S, T, ST list by any list of fidelities, cycled the same way.

use lofi_video::Fidelity;
use serde::{Deserialize, Serialize};

use crate::error::{TrainError, TrainResult};

/// How fidelities change during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Full fidelity every batch (the expensive reference, not a LoFi setting).
    Full,
    /// S-LoFi: spatial reduction only.
    S,
    /// T-LoFi: temporal reduction only.
    T,
    /// ST-LoFi: both.
    St,
    /// Cycle through the list, switching every `long_cycle_epochs` epochs.
    LongCycle,
    /// Cycle through the list, switching every `short_cycle_batches` batches.
    ShortCycle,
}

impl ScheduleKind {
    /// The name used in files and the demo ("full", "s", "t", "st", "long-cycle",
    /// "short-cycle").
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::S => "s",
            Self::T => "t",
            Self::St => "st",
            Self::LongCycle => "long-cycle",
            Self::ShortCycle => "short-cycle",
        }
    }

    /// Every kind, in the paper's order.
    pub const ALL: [ScheduleKind; 6] = [
        Self::Full,
        Self::S,
        Self::T,
        Self::St,
        Self::LongCycle,
        Self::ShortCycle,
    ];
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses the names of [`ScheduleKind::name`], so the command line takes the library's type.
impl std::str::FromStr for ScheduleKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                format!("unknown schedule {s:?} (use one of {})", names.join(", "))
            })
    }
}

/// The LoFi reductions of a full fidelity: the presets of the paper scaled to any base.
///
/// With the paper's base (100 x 224) these are exactly [`Fidelity::s`], [`Fidelity::t`] and
/// [`Fidelity::st`]; tiny test configs use a smaller base (e.g. 16 x 64).
pub fn reductions(full: Fidelity) -> TrainResult<[Fidelity; 3]> {
    Ok([
        full.reduce(1.0, 2.0)?,
        full.reduce(4.0, 1.0)?,
        full.reduce(2.0, std::f64::consts::SQRT_2)?,
    ])
}

/// The name of a fidelity as written in metrics: a preset name relative to `full`, or
/// `"<L>x<S>"`.
pub fn fidelity_name(f: Fidelity, full: Fidelity) -> String {
    if f == full {
        return "full".into();
    }
    if let Ok([s, t, st]) = reductions(full) {
        for (name, g) in [("s", s), ("t", t), ("st", st)] {
            if f == g {
                return name.into();
            }
        }
    }
    format!("{}x{}", f.snippets, f.size)
}

/// A resolved schedule: a kind, the list it cycles through and the cycle lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FidelitySchedule {
    kind: ScheduleKind,
    cycle: Vec<Fidelity>,
    long_cycle_epochs: usize,
    short_cycle_batches: usize,
}

impl FidelitySchedule {
    /// Builds a schedule. `full` is the full fidelity of the run; `custom`, when given, replaces
    /// the S, T, ST cycle list (single-fidelity kinds ignore it except `full`, which ignores it
    /// too). Cycle lengths must be at least 1 and every fidelity must have `L >= 2`.
    pub fn new(
        kind: ScheduleKind,
        full: Fidelity,
        custom: Option<&[Fidelity]>,
        long_cycle_epochs: usize,
        short_cycle_batches: usize,
    ) -> TrainResult<Self> {
        if long_cycle_epochs == 0 {
            return Err(TrainError::Config(
                "schedule.long_cycle_epochs must be at least 1".into(),
            ));
        }
        if short_cycle_batches == 0 {
            return Err(TrainError::Config(
                "schedule.short_cycle_batches must be at least 1".into(),
            ));
        }
        let [s, t, st] = reductions(full)?;
        let cycle = match (kind, custom) {
            (ScheduleKind::Full, _) => vec![full],
            (ScheduleKind::S, _) => vec![s],
            (ScheduleKind::T, _) => vec![t],
            (ScheduleKind::St, _) => vec![st],
            (ScheduleKind::LongCycle | ScheduleKind::ShortCycle, Some(list)) => list.to_vec(),
            (ScheduleKind::LongCycle | ScheduleKind::ShortCycle, None) => vec![s, t, st],
        };
        if cycle.is_empty() {
            return Err(TrainError::Config(
                "schedule.fidelities must list at least one fidelity".into(),
            ));
        }
        for f in &cycle {
            if f.snippets < 2 || f.size == 0 {
                return Err(TrainError::Config(format!(
                    "fidelity {}x{} is impossible: G-TAD needs at least 2 snippets (L >= 2) and \
                     frames of at least 1 pixel",
                    f.snippets, f.size
                )));
            }
        }
        Ok(Self {
            kind,
            cycle,
            long_cycle_epochs,
            short_cycle_batches,
        })
    }

    /// The schedule's kind.
    pub fn kind(&self) -> ScheduleKind {
        self.kind
    }

    /// The distinct fidelities this schedule uses, in cycle order.
    pub fn fidelities(&self) -> Vec<Fidelity> {
        let mut out: Vec<Fidelity> = Vec::new();
        for f in &self.cycle {
            if !out.contains(f) {
                out.push(*f);
            }
        }
        out
    }

    /// The fidelity of mini-batch `batch` (0-based, within the epoch) of epoch `epoch`
    /// (0-based).
    pub fn fidelity(&self, epoch: usize, batch: usize) -> Fidelity {
        let n = self.cycle.len();
        let i = match self.kind {
            ScheduleKind::LongCycle => (epoch / self.long_cycle_epochs) % n,
            ScheduleKind::ShortCycle => (batch / self.short_cycle_batches) % n,
            _ => 0,
        };
        self.cycle[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ScheduleKind; 6] = [
        ScheduleKind::Full,
        ScheduleKind::S,
        ScheduleKind::T,
        ScheduleKind::St,
        ScheduleKind::LongCycle,
        ScheduleKind::ShortCycle,
    ];

    fn paper(kind: ScheduleKind) -> FidelitySchedule {
        FidelitySchedule::new(kind, Fidelity::full(), None, 1, 16).expect("valid schedule")
    }

    #[test]
    fn reductions_of_the_paper_base_are_the_presets() {
        assert_eq!(
            reductions(Fidelity::full()).ok(),
            Some([Fidelity::s(), Fidelity::t(), Fidelity::st()])
        );
        let tiny = Fidelity::new(16, 64).expect("valid");
        let [s, t, st] = reductions(tiny).expect("valid");
        assert_eq!((s.snippets, s.size), (16, 32));
        assert_eq!((t.snippets, t.size), (4, 64));
        assert_eq!((st.snippets, st.size), (8, 45));
    }

    #[test]
    fn single_fidelity_kinds_never_change() {
        let expect = [
            Fidelity::full(),
            Fidelity::s(),
            Fidelity::t(),
            Fidelity::st(),
        ];
        for (kind, want) in KINDS[..4].iter().zip(expect) {
            let s = paper(*kind);
            for epoch in 0..12 {
                for batch in 0..70 {
                    assert_eq!(s.fidelity(epoch, batch), want, "{kind:?} {epoch} {batch}");
                }
            }
            assert_eq!(s.fidelities(), vec![want]);
        }
    }

    #[test]
    fn long_cycle_switches_every_epoch_in_order_s_t_st() {
        let s = paper(ScheduleKind::LongCycle);
        let order = [Fidelity::s(), Fidelity::t(), Fidelity::st()];
        for epoch in 0..30 {
            for batch in 0..40 {
                assert_eq!(s.fidelity(epoch, batch), order[epoch % 3]);
            }
        }
        assert_eq!(s.fidelities(), order.to_vec());
    }

    #[test]
    fn long_cycle_with_longer_period() {
        let s = FidelitySchedule::new(ScheduleKind::LongCycle, Fidelity::full(), None, 2, 16)
            .expect("valid");
        let order = [Fidelity::s(), Fidelity::t(), Fidelity::st()];
        let got: Vec<Fidelity> = (0..12).map(|e| s.fidelity(e, 5)).collect();
        let want: Vec<Fidelity> = (0..12).map(|e| order[(e / 2) % 3]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn short_cycle_switches_every_16_batches_and_restarts_each_epoch() {
        let s = paper(ScheduleKind::ShortCycle);
        let order = [Fidelity::s(), Fidelity::t(), Fidelity::st()];
        for epoch in 0..5 {
            for batch in 0..200 {
                assert_eq!(s.fidelity(epoch, batch), order[(batch / 16) % 3]);
            }
        }
        assert_eq!(s.fidelity(0, 15), Fidelity::s());
        assert_eq!(s.fidelity(0, 16), Fidelity::t());
        assert_eq!(s.fidelity(0, 32), Fidelity::st());
        assert_eq!(s.fidelity(0, 48), Fidelity::s());
        assert_eq!(s.fidelity(7, 0), Fidelity::s());
    }

    #[test]
    fn custom_lists_cycle_in_the_given_order() {
        let a = Fidelity::new(10, 32).expect("valid");
        let b = Fidelity::new(20, 16).expect("valid");
        let list = [a, b, a];
        let long =
            FidelitySchedule::new(ScheduleKind::LongCycle, Fidelity::full(), Some(&list), 1, 1)
                .expect("valid");
        assert_eq!(
            (0..6).map(|e| long.fidelity(e, 0)).collect::<Vec<_>>(),
            vec![a, b, a, a, b, a]
        );
        assert_eq!(long.fidelities(), vec![a, b]);
        let short = FidelitySchedule::new(
            ScheduleKind::ShortCycle,
            Fidelity::full(),
            Some(&list),
            1,
            2,
        )
        .expect("valid");
        assert_eq!(
            (0..8).map(|b| short.fidelity(3, b)).collect::<Vec<_>>(),
            vec![a, a, b, b, a, a, a, a]
        );
    }

    #[test]
    fn impossible_schedules_are_rejected() {
        let full = Fidelity::full();
        assert!(FidelitySchedule::new(ScheduleKind::LongCycle, full, None, 0, 16).is_err());
        assert!(FidelitySchedule::new(ScheduleKind::ShortCycle, full, None, 1, 0).is_err());
        assert!(FidelitySchedule::new(ScheduleKind::LongCycle, full, Some(&[]), 1, 1).is_err());
        let one = Fidelity::new(1, 64).expect("valid fidelity");
        assert!(FidelitySchedule::new(ScheduleKind::ShortCycle, full, Some(&[one]), 1, 1).is_err());
        // T of a 4-snippet base has 1 snippet: rejected.
        let small = Fidelity::new(4, 64).expect("valid fidelity");
        assert!(FidelitySchedule::new(ScheduleKind::T, small, None, 1, 1).is_err());
        assert!(FidelitySchedule::new(ScheduleKind::Full, one, None, 1, 1).is_err());
    }

    #[test]
    fn names_in_files() {
        let full = Fidelity::full();
        assert_eq!(fidelity_name(full, full), "full");
        assert_eq!(fidelity_name(Fidelity::s(), full), "s");
        assert_eq!(fidelity_name(Fidelity::t(), full), "t");
        assert_eq!(fidelity_name(Fidelity::st(), full), "st");
        assert_eq!(
            fidelity_name(Fidelity::new(7, 9).expect("valid"), full),
            "7x9"
        );
        let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["full", "s", "t", "st", "long-cycle", "short-cycle"]);
        for k in KINDS {
            let text = serde_json::to_string(&k).expect("serialisable");
            assert_eq!(text, format!("\"{}\"", k.name()));
        }
    }
}
