//! Test helpers: tiny videos whose frames carry their own index as a block pattern that survives
//! lossy compression, so a test can read back exactly which frame the sampler returned.

#![allow(dead_code)]

use lofi_video::writer::{VideoCodec, VideoWriter, WriterConfig};
use std::path::Path;

/// Side of the test frames in pixels.
pub const SIDE: u32 = 64;
const GRID: usize = 4;

/// An RGB frame showing `index` as 16 black/white blocks (bit k at row k / 4, column k % 4).
pub fn pattern_frame(index: usize) -> Vec<u8> {
    let s = SIDE as usize;
    let cell = s / GRID;
    let mut rgb = vec![0u8; s * s * 3];
    for y in 0..s {
        for x in 0..s {
            let bit = (y / cell) * GRID + x / cell;
            let v = if (index >> bit) & 1 == 1 { 220 } else { 35 };
            let o = (y * s + x) * 3;
            rgb[o..o + 3].copy_from_slice(&[v, v, v]);
        }
    }
    rgb
}

/// Read the index back from a planar `[3, SIDE, SIDE]` frame (centre 8x8 of each block, red plane).
pub fn read_index(planar: &[u8]) -> usize {
    let s = SIDE as usize;
    let cell = s / GRID;
    let mut index = 0;
    for bit in 0..GRID * GRID {
        let (by, bx) = (bit / GRID, bit % GRID);
        let mut sum = 0u32;
        for y in by * cell + 4..by * cell + 12 {
            for x in bx * cell + 4..bx * cell + 12 {
                sum += u32::from(planar[y * s + x]);
            }
        }
        if sum / 64 > 128 {
            index |= 1 << bit;
        }
    }
    index
}

/// Write a video of pattern frames at the given pts (in `time_base`), frame `i` showing `i`.
pub fn write_pattern_video(
    path: &Path,
    codec: VideoCodec,
    time_base: (i32, i32),
    frame_rate: i32,
    gop: u32,
    pts: &[i64],
) {
    let config = WriterConfig {
        width: SIDE,
        height: SIDE,
        codec,
        time_base,
        frame_rate: (frame_rate, 1),
        gop,
        crf: 20,
    };
    let mut writer = VideoWriter::create(path, &config).expect("create test video");
    for (i, &p) in pts.iter().enumerate() {
        writer
            .write_rgb(&pattern_frame(i), p)
            .expect("encode test frame");
    }
    writer.finish().expect("finish test video");
}

/// A constant-frame-rate pattern video of `frames` frames.
pub fn write_cfr(path: &Path, codec: VideoCodec, fps: i32, gop: u32, frames: usize) {
    let pts: Vec<i64> = (0..frames as i64).collect();
    write_pattern_video(path, codec, (1, fps), fps, gop, &pts);
}

/// A small deterministic pseudo-random generator for test targets.
pub struct Lcg(pub u64);

impl Lcg {
    /// Next value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
