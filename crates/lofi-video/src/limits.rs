//! Limits on the sizes a person can type that multiply into one allocation.
//!
//! Exists because `--size 100000` or `--snippets 100000000` used to reach the allocator (abort,
//! "memory allocation of 3000000000000 bytes failed") or a panic inside FFmpeg's scaler
//! (`--size 16384`) instead of an error. Every stage checks its clip sizes here before any work:
//! a frame side beyond what the scaler and a ResNet are meant for, and a decoded clip (one video,
//! `L x F` frames of `3 x S x S` float32) larger than this machine's memory, are refused with
//! the numbers.

use crate::error::{VideoError, VideoResult};

/// Largest frame side, in pixels (4K frames are 3840 wide; FFmpeg's scaler panics at 16384).
pub const MAX_SIDE: usize = 4096;
/// Most decoding threads a stage starts.
pub const MAX_WORKERS: usize = 1024;

/// Total memory of this machine in bytes (`/proc/meminfo`), `None` where unknown.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes of one decoded clip of `snippets x frames` frames of `3 x size x size` float32, `None`
/// on overflow.
pub fn clip_bytes(snippets: usize, frames: usize, size: usize) -> Option<u64> {
    [snippets, frames, 3, size, size, 4]
        .iter()
        .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64))
}

/// Checks a clip of `snippets` snippets of `frames` frames at `size` px: positive sizes, a side
/// of at most [`MAX_SIDE`], and one decoded clip no larger than this machine's memory.
pub fn check_clip(snippets: usize, frames: usize, size: usize) -> VideoResult<()> {
    let bad = |m: String| Err(VideoError::InvalidPlan(m));
    if snippets == 0 || frames == 0 || size == 0 {
        return bad(format!(
            "a clip needs at least 1 snippet, 1 frame and 1 pixel, got {snippets} x {frames} x \
             {size} px"
        ));
    }
    if size > MAX_SIDE {
        return bad(format!(
            "frame size {size} px is larger than {MAX_SIDE} px, the most lofi decodes"
        ));
    }
    let memory = total_memory();
    match (clip_bytes(snippets, frames, size), memory) {
        (None, _) => bad(format!(
            "a clip of {snippets} x {frames} frames at {size} px does not fit in 64-bit sizes"
        )),
        (Some(bytes), Some(total)) if bytes > total => bad(format!(
            "one clip of {snippets} snippets x {frames} frames at {size} px needs {:.1} GiB as \
             float32, more than this machine's {:.1} GiB of memory",
            gib(bytes),
            gib(total)
        )),
        _ => Ok(()),
    }
}

/// Checks one decoded video of `snippets x frames` frames of `3 x size x size` bytes (what the
/// loader holds of a video extracted at a stride, whose snippet count grows with its length)
/// against this machine's memory; `what` names the video in the message.
pub fn check_decoded_video(
    snippets: usize,
    frames: usize,
    size: usize,
    what: &str,
) -> VideoResult<()> {
    let bytes = [snippets, frames, 3, size, size]
        .iter()
        .try_fold(1u64, |acc, &v| acc.checked_mul(v as u64));
    match (bytes, total_memory()) {
        (None, _) => Err(VideoError::InvalidPlan(format!(
            "{what}: {snippets} snippets x {frames} frames at {size} px do not fit in 64-bit sizes"
        ))),
        (Some(b), Some(total)) if b > total => Err(VideoError::InvalidPlan(format!(
            "{what}: {snippets} snippets x {frames} frames at {size} px need {:.1} GiB decoded, \
             more than this machine's {:.1} GiB of memory; use a coarser stride or smaller frames",
            gib(b),
            gib(total)
        ))),
        _ => Ok(()),
    }
}

/// Checks a count of decoding threads: 1 to [`MAX_WORKERS`].
pub fn check_workers(workers: usize) -> VideoResult<()> {
    if workers == 0 || workers > MAX_WORKERS {
        return Err(VideoError::InvalidPlan(format!(
            "workers = {workers}: need 1 to {MAX_WORKERS} decoding threads"
        )));
    }
    Ok(())
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_cannot_be_allocated_are_refused_with_the_numbers() {
        assert!(check_clip(100, 1, 224).is_ok());
        let e = check_clip(100, 1, 100_000).expect_err("side").to_string();
        assert!(e.contains("100000 px") && e.contains("4096"), "{e}");
        assert!(check_clip(100, 1, 16_384).is_err());
        let e = check_clip(100_000_000, 1, 224)
            .expect_err("clip")
            .to_string();
        assert!(e.contains("GiB"), "{e}");
        assert!(check_clip(usize::MAX, usize::MAX, 224).is_err());
        assert!(check_clip(0, 1, 224).is_err());
        assert_eq!(clip_bytes(2, 1, 2), Some(96));
        assert_eq!(clip_bytes(usize::MAX, 2, 1), None);
        assert!(check_workers(0).is_err() && check_workers(100_000_000).is_err());
        assert!(check_workers(8).is_ok());
        assert!(total_memory().is_some_and(|m| m > 1 << 20));
    }
}
