//! The one preset vocabulary of every command that has settings (`pretrain`, `train`, `extract`,
//! `train-head`, `detect`): `--preset paper|tiny`.
//!
//! Exists so that a starting configuration has one name everywhere: each config type maps a
//! [`Preset`] to its values (`PretrainConfig::preset`, `TrainConfig::preset`,
//! `ExtractConfig::preset`, `HeadConfig::preset`, `DetectConfig::preset`), and a new preset is a
//! new variant here plus one arm in each of those (the compiler lists them).

use std::fmt;
use std::str::FromStr;

/// A named starting configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// The paper's recipe: TSM-R18 + G-TAD at full fidelity 100 x 224, published head sizes.
    #[default]
    Paper,
    /// Tiny networks (width-4 TSM-R18, small G-TAD) at 16 x 64, for tests and the demo.
    Tiny,
    /// THUMOS14 as G-TAD's THUMOS14 code runs it: features every 5 frames, windows of 256
    /// snippets every 128, anchors up to 64 snippets, Soft-NMS sigma 0.46; trained on the
    /// `Validation` videos, tested on `Test`.
    Thumos14,
}

impl Preset {
    /// Every preset, in the order `--help` lists them.
    pub const ALL: &'static [Preset] = &[Preset::Paper, Preset::Tiny, Preset::Thumos14];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::Tiny => "tiny",
            Self::Thumos14 => "thumos14",
        }
    }

    /// One line for `--help`.
    pub fn about(self) -> &'static str {
        match self {
            Self::Paper => "the paper's recipe (TSM-R18 + G-TAD, 100 snippets x 224 px)",
            Self::Tiny => "tiny networks at 16 snippets x 64 px, for tests and the demo",
            Self::Thumos14 => {
                "THUMOS14 as G-TAD runs it (TSM-R18, features every 5 frames, windows of 256 \
                 snippets every 128, trained on Validation, tested on Test)"
            }
        }
    }

    /// `paper: ...; tiny: ...`, for help texts.
    pub fn help() -> String {
        Self::ALL
            .iter()
            .map(|p| format!("{}: {}", p.name(), p.about()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                format!("unknown preset {s:?} (use {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_presets() {
        for p in Preset::ALL {
            assert_eq!(p.to_string().parse::<Preset>(), Ok(*p));
        }
        assert_eq!("TINY".parse::<Preset>(), Ok(Preset::Tiny));
        let e = "huge".parse::<Preset>().expect_err("unknown");
        assert!(e.contains("paper, tiny"), "{e}");
        assert!(Preset::help().contains("tiny: "));
    }
}
