//! Frame-accurate sampling of a video at arbitrary timestamps.
//!
//! Training reads a few frames spread over long videos, so per-frame seeking (slow, and in some
//! Python readers inaccurate) and full sequential decoding (wasteful) are both wrong defaults. The
//! [`Sampler`] sorts the targets, maps each to the frame whose display interval contains it (from
//! the [`VideoIndex`]), and for each one decides: if a keyframe lies between the current decoder
//! position and the target, seek to the last keyframe at or before the target; otherwise keep
//! decoding forward. Either way the frame returned is identified by its timestamp, so seeking and
//! sequential decoding return the same frames (tested in `tests/sampling.rs`).
//!
//! Resize policy (documented for the model crate): the decoded frame is converted to RGB and
//! resized so that its *short side* equals `S` with FFmpeg swscale's bilinear filter
//! (`SWS_BILINEAR`, whose kernel widens when shrinking, so downscaling is anti-aliased), then the
//! central `S x S` square is cropped (odd leftovers go to the right/bottom). Pixel aspect ratio
//! metadata is ignored (coded pixels are treated as square).

use crate::error::{VideoError, VideoResult};
use crate::index::{open_video, VideoIndex};
use ffmpeg::{
    decoder, format, frame, software::scaling, threading, Discard, Packet, Rational, Rescale,
    Rounding,
};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// Source format and size plus output size a cached scaler was built for.
type ScalerKey = (format::Pixel, u32, u32, u32, u32);

/// When the sampler may seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeekPolicy {
    /// Seek when a keyframe lies between the decoder position and the target (the fast default).
    #[default]
    Auto,
    /// Seek before every target, even when decoding forward would do (for tests/benchmarks).
    Always,
    /// Never seek forward: decode every frame from the start (for tests/benchmarks).
    Sequential,
}

/// Options of a [`Sampler`].
#[derive(Debug, Clone, Copy)]
pub struct SamplerOptions {
    /// Seek policy.
    pub policy: SeekPolicy,
    /// Decoder threads (1 = single-threaded; the loader parallelises across videos instead).
    pub threads: usize,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            policy: SeekPolicy::Auto,
            threads: 1,
        }
    }
}

/// Counters for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Seeks performed.
    pub seeks: usize,
    /// Frames that came out of the decoder.
    pub decoded_frames: usize,
    /// Frames converted to RGB and written to an output.
    pub converted_frames: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Freshly opened or just sought to `keyframe`: nothing decoded since.
    Before(i64),
    /// The held frame has this pts.
    At(i64),
    /// The decoder has been drained to the end of the stream.
    End,
}

/// Reads frames of one video at requested timestamps.
pub struct Sampler {
    index: VideoIndex,
    input: format::context::Input,
    decoder: decoder::Video,
    options: SamplerOptions,
    position: Position,
    held: frame::Video,
    spare: frame::Video,
    scaler: Option<(ScalerKey, scaling::Context)>,
    rgb: frame::Video,
    stats: SamplerStats,
    eof_sent: bool,
    /// Decoding has run without a seek since the first keyframe.
    clean_run: bool,
    /// Current discard setting of the decoder.
    discard: Discard,
}

/// Output size of a short-side resize of `w x h` to `size`.
pub fn short_side_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    if w <= h {
        let nh = ((u64::from(h) * u64::from(size) + u64::from(w) / 2) / u64::from(w)) as u32;
        (size, nh.max(size))
    } else {
        let nw = ((u64::from(w) * u64::from(size) + u64::from(h) / 2) / u64::from(h)) as u32;
        (nw.max(size), size)
    }
}

impl Sampler {
    /// Open `path`, index it and prepare a decoder.
    ///
    /// The container is opened once: the index pass reads packet headers to the end, then the
    /// demuxer is rewound to the first keyframe (reopened only if the rewind fails).
    pub fn open(path: &Path, options: SamplerOptions) -> VideoResult<Self> {
        let (mut input, stream_index) = open_video(path)?;
        let index = VideoIndex::scan(&mut input, stream_index, path)?;
        let (num, den) = index.time_base;
        let first = index.keyframe_pts[0].rescale_with(
            Rational::new(num, den),
            ffmpeg::rescale::TIME_BASE,
            Rounding::Down,
        );
        let input = match input.seek(first, ..first) {
            Ok(()) => input,
            Err(_) => open_video(path)?.0,
        };
        Self::from_parts(index, input, stream_index, options)
    }

    /// Open the video of an existing index.
    pub fn with_index(index: VideoIndex, options: SamplerOptions) -> VideoResult<Self> {
        let (input, stream_index) = open_video(&index.path)?;
        Self::from_parts(index, input, stream_index, options)
    }

    fn from_parts(
        index: VideoIndex,
        input: format::context::Input,
        stream_index: usize,
        options: SamplerOptions,
    ) -> VideoResult<Self> {
        let path = index.path.clone();
        let stream = input
            .stream(stream_index)
            .ok_or_else(|| VideoError::NoVideoStream { path: path.clone() })?;
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| VideoError::Unreadable {
                path: path.clone(),
                reason: format!("decoder parameters: {e}"),
            })?;
        if options.threads > 1 {
            ctx.set_threading(threading::Config {
                kind: threading::Type::Frame,
                count: options.threads,
                ..Default::default()
            });
        } else {
            ctx.set_threading(threading::Config::count(1));
        }
        let decoder = ctx.decoder().video().map_err(|e| VideoError::Unreadable {
            path: path.clone(),
            reason: format!("cannot open decoder: {e}"),
        })?;
        let first_key = index.keyframe_pts[0];
        Ok(Self {
            index,
            input,
            decoder,
            options,
            position: Position::Before(first_key),
            held: frame::Video::empty(),
            spare: frame::Video::empty(),
            scaler: None,
            rgb: frame::Video::empty(),
            stats: SamplerStats::default(),
            eof_sent: false,
            clean_run: true,
            discard: Discard::Default,
        })
    }

    /// The video's index.
    pub fn index(&self) -> &VideoIndex {
        &self.index
    }

    /// Counters since opening.
    pub fn stats(&self) -> SamplerStats {
        self.stats
    }

    /// Sample frames at `times` (seconds, any order, repeats allowed), each resized and cropped to
    /// `size x size`, written as planar RGB u8: the result holds `times.len()` blocks of
    /// `[3, size, size]` in the order of `times`.
    pub fn sample(&mut self, times: &[f64], size: u32) -> VideoResult<Vec<u8>> {
        let frame_len = 3 * (size as usize) * (size as usize);
        let mut out = vec![0u8; times.len() * frame_len];
        self.sample_into(times, size, &mut out)?;
        Ok(out)
    }

    /// Like [`sample`](Self::sample), writing into `out` (`times.len() * 3 * size * size` bytes).
    pub fn sample_into(&mut self, times: &[f64], size: u32, out: &mut [u8]) -> VideoResult<()> {
        let frame_len = 3 * (size as usize) * (size as usize);
        if size == 0 || out.len() != times.len() * frame_len {
            return Err(VideoError::InvalidPlan(format!(
                "output buffer of {} bytes for {} frames of size {size}",
                out.len(),
                times.len()
            )));
        }
        let mut targets = Vec::with_capacity(times.len());
        for (slot, &t) in times.iter().enumerate() {
            let frame = self
                .index
                .frame_at(t)
                .ok_or_else(|| VideoError::TimestampOutOfRange {
                    path: self.index.path.clone(),
                    time: t,
                    duration: self.index.duration(),
                })?;
            targets.push((frame, slot));
        }
        targets.sort_unstable();
        let mut last: Option<(usize, usize)> = None;
        for &(frame, slot) in &targets {
            let (dst_range, src_range) = (slot * frame_len..(slot + 1) * frame_len, last);
            match src_range {
                Some((prev_frame, prev_slot)) if prev_frame == frame => {
                    out.copy_within(
                        prev_slot * frame_len..(prev_slot + 1) * frame_len,
                        dst_range.start,
                    );
                }
                _ => {
                    let pts = self.index.frame_pts[frame];
                    self.decode_to(pts, size, &mut out[dst_range])?;
                }
            }
            last = Some((frame, slot));
        }
        Ok(())
    }

    /// Indices (into [`VideoIndex::frame_pts`]) of the frames that `times` map to.
    pub fn frame_indices(&self, times: &[f64]) -> VideoResult<Vec<usize>> {
        times
            .iter()
            .map(|&t| {
                self.index
                    .frame_at(t)
                    .ok_or_else(|| VideoError::TimestampOutOfRange {
                        path: self.index.path.clone(),
                        time: t,
                        duration: self.index.duration(),
                    })
            })
            .collect()
    }

    fn decode_err(&self, pts: i64, reason: String) -> VideoError {
        VideoError::Decode {
            path: self.index.path.clone(),
            time: self.index.seconds(pts),
            reason,
        }
    }

    fn should_seek(&self, target: i64, key: i64) -> bool {
        match (self.position, self.options.policy) {
            (Position::At(p), _) if p == target => false,
            (Position::End, _) => true,
            (Position::At(p), _) if p > target => true,
            (Position::Before(k), _) if k > target => true,
            (_, SeekPolicy::Sequential) => false,
            (_, SeekPolicy::Always) => true,
            (Position::At(p), SeekPolicy::Auto) => key > p,
            (Position::Before(k), SeekPolicy::Auto) => key > k,
        }
    }

    fn seek(&mut self, key: i64) -> VideoResult<()> {
        let (num, den) = self.index.time_base;
        let ts = key.rescale_with(
            Rational::new(num, den),
            ffmpeg::rescale::TIME_BASE,
            Rounding::Up,
        );
        self.input
            .seek(ts, ..ts)
            .map_err(|e| self.decode_err(key, format!("seek failed: {e}")))?;
        self.decoder.flush();
        self.eof_sent = false;
        self.clean_run = key == self.index.keyframe_pts[0];
        self.position = Position::Before(key);
        self.stats.seeks += 1;
        Ok(())
    }

    /// Decode until the frame with pts `target` and convert it into `out`.
    fn decode_to(&mut self, target: i64, size: u32, out: &mut [u8]) -> VideoResult<()> {
        if self.position == Position::At(target) {
            return self.convert(Slot::Held, size, out);
        }
        let mut key = self.index.keyframe_at_or_before(target);
        if self.should_seek(target, key) {
            self.seek(key)?;
        }
        loop {
            let outcome = self.decode_forward(target)?;
            match outcome {
                Forward::Found => return self.convert(Slot::Held, size, out),
                // Decoding ran without a break from the first keyframe: what the decoder gives is
                // all there is; the frame before the missing one covers the target.
                Forward::Previous if self.clean_run => {
                    tracing::debug!(
                        path = %self.index.path.display(),
                        "frame at pts {target} not produced; using the one before it"
                    );
                    return self.convert(Slot::Spare, size, out);
                }
                Forward::Missed if self.clean_run => {
                    return Err(self.decode_err(
                        target,
                        "the decoder does not produce this frame".to_string(),
                    ));
                }
                // After a seek the target did not come out (the keyframe was not a clean random
                // access point, or the demuxer landed after it): step back one keyframe.
                Forward::Previous | Forward::Missed => {
                    let n = self.index.keyframe_pts.partition_point(|&k| k < key);
                    key = self.index.keyframe_pts[n.saturating_sub(1)];
                    self.seek(key)?;
                }
            }
        }
    }

    /// Pull frames until the one with pts `target` is held.
    fn decode_forward(&mut self, target: i64) -> VideoResult<Forward> {
        let eagain = ffmpeg::Error::Other {
            errno: ffmpeg::error::EAGAIN,
        };
        let mut incoming = frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut incoming) {
                Ok(()) => {
                    self.stats.decoded_frames += 1;
                    let Some(pts) = incoming.timestamp().or(incoming.pts()) else {
                        continue;
                    };
                    // A frame decoded with missing references (after a seek) is not the frame
                    // the file holds: drop it so the caller steps back to an earlier keyframe.
                    if incoming.is_corrupt() && !self.clean_run {
                        continue;
                    }
                    let before = self.position;
                    std::mem::swap(&mut self.held, &mut self.spare);
                    std::mem::swap(&mut self.held, &mut incoming);
                    self.position = Position::At(pts);
                    if pts == target {
                        return Ok(Forward::Found);
                    }
                    if pts > target {
                        return Ok(match before {
                            Position::At(p) if p < target => Forward::Previous,
                            _ => Forward::Missed,
                        });
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    let ended_after = self.position;
                    self.position = Position::End;
                    return Ok(match ended_after {
                        // The last frame came out before the target's frame: the target's frame
                        // is missing from the stream; the held frame's interval contains it.
                        Position::At(p) if p < target => {
                            std::mem::swap(&mut self.held, &mut self.spare);
                            Forward::Previous
                        }
                        _ => Forward::Missed,
                    });
                }
                Err(e) if e == eagain => {
                    if self.eof_sent {
                        self.position = Position::End;
                        return Ok(Forward::Missed);
                    }
                    self.feed(target)?;
                }
                Err(e) => {
                    return Err(self.decode_err(target, format!("decoder error: {e}")));
                }
            }
        }
    }

    /// Send the next packet of the video stream (or end of stream) to the decoder.
    fn feed(&mut self, target: i64) -> VideoResult<()> {
        loop {
            // A fresh packet per read: `av_read_frame` overwrites without unreferencing, so
            // reusing one packet would leak every packet's data.
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.index.stream_index {
                        continue;
                    }
                    // A frame shown before the target that no other frame references is never
                    // needed: let the decoder drop it (single-threaded decoding only, where the
                    // setting applies to exactly this packet).
                    if self.options.threads <= 1 {
                        let before_target =
                            packet.pts().or(packet.dts()).is_some_and(|p| p < target);
                        let want = if before_target {
                            Discard::NonReference
                        } else {
                            Discard::Default
                        };
                        if want != self.discard {
                            self.decoder.skip_frame(want);
                            self.discard = want;
                        }
                    }
                    match self.decoder.send_packet(&packet) {
                        Ok(()) => return Ok(()),
                        // A corrupt packet: the decoder conceals it; keep going.
                        Err(ffmpeg::Error::InvalidData) => continue,
                        Err(e) => {
                            return Err(self.decode_err(target, format!("send packet: {e}")));
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.eof_sent = true;
                    return self
                        .decoder
                        .send_eof()
                        .map_err(|e| self.decode_err(target, format!("flush decoder: {e}")));
                }
                Err(ffmpeg::Error::InvalidData) => continue,
                Err(e) => {
                    // Truncated or unreadable data: treat as end of stream so the frames already
                    // sent still come out; a target beyond them reports a clear error.
                    tracing::debug!(path = %self.index.path.display(), "read error: {e}");
                    self.eof_sent = true;
                    return self
                        .decoder
                        .send_eof()
                        .map_err(|e| self.decode_err(target, format!("flush decoder: {e}")));
                }
            }
        }
    }

    /// Resize (short side), centre-crop and write a held frame as planar RGB.
    fn convert(&mut self, slot: Slot, size: u32, out: &mut [u8]) -> VideoResult<()> {
        let src = match slot {
            Slot::Held => &self.held,
            Slot::Spare => &self.spare,
        };
        let (w, h, fmt) = (src.width(), src.height(), src.format());
        if w == 0 || h == 0 {
            return Err(VideoError::Decode {
                path: self.index.path.clone(),
                time: 0.0,
                reason: "decoded frame has no pixels".into(),
            });
        }
        let (sw, sh) = short_side_size(w, h, size);
        let key = (fmt, w, h, sw, sh);
        if self.scaler.as_ref().map(|(k, _)| *k) != Some(key) {
            let ctx = scaling::Context::get(
                fmt,
                w,
                h,
                format::Pixel::RGB24,
                sw,
                sh,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| VideoError::Decode {
                path: self.index.path.clone(),
                time: 0.0,
                reason: format!("cannot convert {fmt:?} {w}x{h} to RGB: {e}"),
            })?;
            self.scaler = Some((key, ctx));
            self.rgb = frame::Video::new(format::Pixel::RGB24, sw, sh);
        }
        let Some((_, scaler)) = self.scaler.as_mut() else {
            return Err(VideoError::InvalidPlan("scaler missing".into()));
        };
        scaler
            .run(src, &mut self.rgb)
            .map_err(|e| VideoError::Decode {
                path: self.index.path.clone(),
                time: 0.0,
                reason: format!("scaling failed: {e}"),
            })?;
        self.stats.converted_frames += 1;
        let s = size as usize;
        let (x0, y0) = (((sw - size) / 2) as usize, ((sh - size) / 2) as usize);
        let stride = self.rgb.stride(0);
        let data = self.rgb.data(0);
        let (r, rest) = out.split_at_mut(s * s);
        let (g, b) = rest.split_at_mut(s * s);
        for y in 0..s {
            let row = &data[(y0 + y) * stride + x0 * 3..(y0 + y) * stride + (x0 + s) * 3];
            let o = y * s;
            for (x, px) in row.chunks_exact(3).enumerate() {
                r[o + x] = px[0];
                g[o + x] = px[1];
                b[o + x] = px[2];
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Held,
    Spare,
}

#[derive(Debug, Clone, Copy)]
enum Forward {
    /// The held frame is the target.
    Found,
    /// The target frame never came out; the spare frame (just before it) covers the target.
    Previous,
    /// Decoding went past the target without a usable frame before it.
    Missed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_resize_keeps_aspect() {
        assert_eq!(short_side_size(1280, 720, 224), (398, 224));
        assert_eq!(short_side_size(320, 240, 224), (299, 224));
        assert_eq!(short_side_size(240, 320, 112), (112, 149));
        assert_eq!(short_side_size(64, 64, 64), (64, 64));
    }
}
