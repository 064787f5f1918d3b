//! Encoding RGB frames to a real video file through the system FFmpeg libraries.
//!
//! The synthetic benchmark and the tests need real encoded videos (with B-frames, keyframe
//! intervals, variable frame rate) so that the decoding path is exercised exactly as with
//! downloaded data. Only encoders present in Debian's FFmpeg build are used: `libx264` (H.264,
//! the default), `libvpx-vp9` (VP9 for WebM) and FFmpeg's native `mpeg4` (for AVI).
//! Output is written to a hidden temporary name in the target folder and renamed when complete,
//! so a crash never leaves a half-written video behind.
//!
//! H.264 output is a pure function of the frames: x264 runs on one thread (no frame or slice
//! threads whose scheduling could change decisions) and with macroblock-tree rate control off.
//! The latter matters because x264's AVX-512 mb-tree kernels (`mbtree_propagate_cost`,
//! `mbtree_propagate_list`, x264 0.164) work on 16 and 8 macroblocks per step and, when a row is
//! narrower than that (frames not a multiple of 128 px wide, such as the 64 px synthetic
//! benchmark), fold stale heap bytes past the row end into the rate control. Which stale bytes
//! they find depends on what the process freed before and on thread timing, so the same frames
//! gave different videos under load on AVX-512 machines. Without mb-tree that code never runs;
//! `tests/synth_under_load.rs` checks the result.

use crate::error::{VideoError, VideoResult};
use ffmpeg::{codec, encoder, format, frame, software::scaling, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use std::path::{Path, PathBuf};

/// Which encoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 through libx264 (preset `veryfast`, one thread, no mb-tree: deterministic output).
    H264,
    /// VP9 through libvpx (realtime deadline, one thread).
    Vp9,
    /// MPEG-4 part 2, FFmpeg's native encoder (for AVI tests).
    Mpeg4,
}

/// Settings of one output video.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// The encoder.
    pub codec: VideoCodec,
    /// Time base of the pts passed to [`VideoWriter::write_rgb`], as (numerator, denominator).
    pub time_base: (i32, i32),
    /// Nominal frame rate (a hint for the container; pts decide the real timing).
    pub frame_rate: (i32, i32),
    /// Maximum distance between keyframes, in frames.
    pub gop: u32,
    /// Constant-quality setting (x264/VP9 CRF); lower is better quality.
    pub crf: u32,
}

impl WriterConfig {
    /// A constant-frame-rate H.264 configuration: pts are frame numbers.
    pub fn h264_cfr(width: u32, height: u32, fps: i32) -> Self {
        Self {
            width,
            height,
            codec: VideoCodec::H264,
            time_base: (1, fps),
            frame_rate: (fps, 1),
            gop: (fps.max(1) as u32) * 2,
            crf: 23,
        }
    }
}

/// An open video file being written. Call [`VideoWriter::finish`] to complete it; dropping it
/// without finishing removes the temporary file.
pub struct VideoWriter {
    output: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    rgb: frame::Video,
    yuv: frame::Video,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    final_path: PathBuf,
    temp_path: PathBuf,
    finished: bool,
    last_pts: Option<i64>,
}

fn container_for(path: &Path) -> VideoResult<&'static str> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mp4") => Ok("mp4"),
        Some("mkv") => Ok("matroska"),
        Some("webm") => Ok("webm"),
        Some("avi") => Ok("avi"),
        _ => Err(VideoError::Encode {
            path: path.to_path_buf(),
            reason: "unsupported output extension (use .mp4, .mkv, .webm or .avi)".into(),
        }),
    }
}

/// The FFmpeg encoder of `config.codec` and its options: one thread each, and for H.264 the
/// settings that make the output depend on the frames alone (see the module docs).
fn encoder_choice(config: &WriterConfig) -> (Option<ffmpeg_next::Codec>, Dictionary<'static>) {
    match config.codec {
        VideoCodec::H264 => {
            let mut o = Dictionary::new();
            o.set("preset", "veryfast");
            o.set("crf", &config.crf.to_string());
            o.set("threads", "1");
            // Deterministic output: see the module documentation.
            o.set("mbtree", "0");
            (encoder::find_by_name("libx264"), o)
        }
        VideoCodec::Vp9 => {
            let mut o = Dictionary::new();
            o.set("deadline", "realtime");
            o.set("cpu-used", "8");
            o.set("crf", &config.crf.to_string());
            o.set("b", "0");
            o.set("threads", "1");
            (encoder::find_by_name("libvpx-vp9"), o)
        }
        VideoCodec::Mpeg4 => {
            let mut o = Dictionary::new();
            o.set("threads", "1");
            o.set("qscale", "3");
            (encoder::find(codec::Id::MPEG4), o)
        }
    }
}

impl VideoWriter {
    /// Create `path` (written as a temporary file until [`finish`](Self::finish)).
    pub fn create(path: &Path, config: &WriterConfig) -> VideoResult<Self> {
        crate::init();
        let enc_err = |reason: String| VideoError::Encode {
            path: path.to_path_buf(),
            reason,
        };
        if config.width == 0
            || config.height == 0
            || !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
        {
            return Err(enc_err(format!(
                "frame size {}x{} must be even and non-zero",
                config.width, config.height
            )));
        }
        let container = container_for(path)?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| enc_err("output path has no file name".into()))?;
        let temp_path = path.with_file_name(format!(".{file_name}.partial"));
        let mut output = format::output_as(&temp_path, container)
            .map_err(|e| enc_err(format!("cannot create container: {e}")))?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);

        let (codec, options) = encoder_choice(config);
        let codec = codec.ok_or_else(|| {
            enc_err(format!(
                "encoder for {:?} not available in this FFmpeg build",
                config.codec
            ))
        })?;
        let encoder_time_base = Rational::new(config.time_base.0, config.time_base.1);
        let mut ctx = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| enc_err(format!("cannot create encoder: {e}")))?;
        ctx.set_width(config.width);
        ctx.set_height(config.height);
        ctx.set_format(format::Pixel::YUV420P);
        ctx.set_time_base(encoder_time_base);
        ctx.set_frame_rate(Some(Rational::new(
            config.frame_rate.0,
            config.frame_rate.1,
        )));
        ctx.set_gop(config.gop.max(1));
        if config.codec == VideoCodec::Mpeg4 {
            ctx.set_max_b_frames(0);
            ctx.set_bit_rate((config.width * config.height * 4) as usize);
        }
        if global_header {
            ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let encoder = ctx
            .open_with(options)
            .map_err(|e| enc_err(format!("cannot open encoder: {e}")))?;
        {
            let mut stream = output
                .add_stream(codec)
                .map_err(|e| enc_err(format!("cannot add stream: {e}")))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(encoder_time_base);
            stream.set_avg_frame_rate(Rational::new(config.frame_rate.0, config.frame_rate.1));
        }
        output
            .write_header()
            .map_err(|e| enc_err(format!("cannot write header: {e}")))?;
        let stream_time_base = output
            .stream(0)
            .map(|s| s.time_base())
            .ok_or_else(|| enc_err("stream vanished after header".into()))?;
        let scaler = scaling::Context::get(
            format::Pixel::RGB24,
            config.width,
            config.height,
            format::Pixel::YUV420P,
            config.width,
            config.height,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| enc_err(format!("cannot create colour converter: {e}")))?;
        Ok(Self {
            output,
            encoder,
            scaler,
            rgb: frame::Video::new(format::Pixel::RGB24, config.width, config.height),
            yuv: frame::Video::new(format::Pixel::YUV420P, config.width, config.height),
            encoder_time_base,
            stream_time_base,
            final_path: path.to_path_buf(),
            temp_path,
            finished: false,
            last_pts: None,
        })
    }

    fn err(&self, reason: String) -> VideoError {
        VideoError::Encode {
            path: self.final_path.clone(),
            reason,
        }
    }

    /// Encode one frame given as packed RGB24 rows (`width * height * 3` bytes) at `pts`
    /// (in the configured time base; must increase strictly).
    pub fn write_rgb(&mut self, rgb: &[u8], pts: i64) -> VideoResult<()> {
        let (w, h) = (self.rgb.width() as usize, self.rgb.height() as usize);
        if rgb.len() != w * h * 3 {
            return Err(self.err(format!(
                "frame has {} bytes, expected {} for {w}x{h} RGB",
                rgb.len(),
                w * h * 3
            )));
        }
        if self.last_pts.is_some_and(|last| pts <= last) {
            return Err(self.err(format!("pts {pts} does not increase")));
        }
        self.last_pts = Some(pts);
        let stride = self.rgb.stride(0);
        let plane = self.rgb.data_mut(0);
        for (y, row) in rgb.chunks_exact(w * 3).enumerate() {
            plane[y * stride..y * stride + w * 3].copy_from_slice(row);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| VideoError::Encode {
                path: self.final_path.clone(),
                reason: format!("colour conversion: {e}"),
            })?;
        self.yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| VideoError::Encode {
                path: self.final_path.clone(),
                reason: format!("send frame: {e}"),
            })?;
        self.drain()
    }

    fn drain(&mut self) -> VideoResult<()> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.output)
                .map_err(|e| VideoError::Encode {
                    path: self.final_path.clone(),
                    reason: format!("write packet: {e}"),
                })?;
        }
        Ok(())
    }

    /// Flush the encoder, write the trailer and move the file to its final name.
    pub fn finish(mut self) -> VideoResult<()> {
        self.encoder.send_eof().map_err(|e| VideoError::Encode {
            path: self.final_path.clone(),
            reason: format!("flush: {e}"),
        })?;
        self.drain()?;
        self.output
            .write_trailer()
            .map_err(|e| VideoError::Encode {
                path: self.final_path.clone(),
                reason: format!("write trailer: {e}"),
            })?;
        std::fs::rename(&self.temp_path, &self.final_path)
            .map_err(|e| VideoError::io(&self.final_path, e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the temporary file may already be gone.
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}
