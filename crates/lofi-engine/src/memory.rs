//! Memory of one training step: the peak the process or device reached while it ran.
//!
//! Measuring goes through the small [`MemoryMeter`] trait so that a GPU backend can plug in its
//! allocator statistics; on the CPU, [`ProcMeter`] reads the peak resident set size (Linux
//! `VmHWM`, reset through `/proc/self/clear_refs`) and reports a clear error on other systems.
//! The engine measures every step with it, and lofi-train's memory planner its probe steps.

use std::path::PathBuf;

use crate::error::{EngineError, EngineResult};

/// Something that can report the peak memory of a stretch of work.
pub trait MemoryMeter {
    /// Current memory in use, bytes (the baseline of the next measurement).
    fn current(&mut self) -> EngineResult<u64>;
    /// Starts a measurement: forget the previous peak.
    fn reset_peak(&mut self) -> EngineResult<()>;
    /// Peak memory in use since the last [`reset_peak`](Self::reset_peak), bytes.
    fn peak(&mut self) -> EngineResult<u64>;
    /// Total memory of the device, if known (used for `--memory-budget auto`).
    fn capacity(&mut self) -> Option<u64>;
}

/// CPU memory on Linux: resident set size from `/proc/self/status`, peak reset by writing `5`
/// to `/proc/self/clear_refs`.
#[derive(Debug, Default)]
pub struct ProcMeter {
    _private: (),
}

impl ProcMeter {
    /// A meter for this process; fails with a clear error where `/proc/self` is unavailable.
    pub fn new() -> EngineResult<Self> {
        let mut m = Self { _private: () };
        m.current()?;
        Ok(m)
    }

    fn status_field(field: &str) -> EngineResult<u64> {
        let path = PathBuf::from("/proc/self/status");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EngineError::Measure(format!(
                "cannot read {} ({e}); CPU memory measurement needs Linux",
                path.display()
            ))
        })?;
        parse_status_kib(&text, field)
            .map(|kib| kib * 1024)
            .ok_or_else(|| EngineError::Measure(format!("no {field} line in {}", path.display())))
    }
}

/// Parses `Field:   1234 kB` from the text of `/proc/self/status`.
fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

impl MemoryMeter for ProcMeter {
    fn current(&mut self) -> EngineResult<u64> {
        Self::status_field("VmRSS")
    }

    fn reset_peak(&mut self) -> EngineResult<()> {
        let path = "/proc/self/clear_refs";
        std::fs::write(path, "5").map_err(|e| {
            EngineError::Measure(format!(
                "cannot reset the peak resident size through {path} ({e}); needs Linux >= 4.0"
            ))
        })
    }

    fn peak(&mut self) -> EngineResult<u64> {
        Self::status_field("VmHWM")
    }

    fn capacity(&mut self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_status_kib(&text, "MemAvailable").map(|k| k * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(2048));
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(text, "VmPeak"), None);
    }
}
