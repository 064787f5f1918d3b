//! Typed errors for video input. Each variant names the file (and, where known, the video id) so
//! that a skipped video can be reported to a person without further digging.

use std::path::PathBuf;

/// Result alias for this crate.
pub type VideoResult<T> = Result<T, VideoError>;

/// Everything that can go wrong between a path on disk and a clip tensor.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The file does not exist.
    #[error("{path}: video file not found")]
    Missing {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The file exists but is empty.
    #[error("{path}: video file is empty (0 bytes)")]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// FFmpeg could not open or parse the container (truncated, corrupt, not a media file).
    #[error("{path}: cannot open as a video container: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// FFmpeg's own message.
        reason: String,
    },
    /// The container holds no video stream (e.g. an audio-only file).
    #[error("{path}: no video stream in the file (audio-only or data-only container)")]
    NoVideoStream {
        /// The file.
        path: PathBuf,
    },
    /// The video stream holds no decodable packets with timestamps.
    #[error("{path}: video stream has no frames with timestamps")]
    NoFrames {
        /// The file.
        path: PathBuf,
    },
    /// Decoding failed part way.
    #[error("{path}: decoding failed near {time:.3} s: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Approximate time of the failure in seconds.
        time: f64,
        /// FFmpeg's message or ours.
        reason: String,
    },
    /// A requested timestamp lies outside `[0, duration)`.
    #[error("{path}: timestamp {time:.3} s is outside the video (duration {duration:.3} s)")]
    TimestampOutOfRange {
        /// The file.
        path: PathBuf,
        /// The requested time in seconds.
        time: f64,
        /// The video's duration in seconds.
        duration: f64,
    },
    /// The video is shorter than the duration its annotation claims, beyond the tolerance.
    #[error(
        "{path}: video is {actual:.3} s long but annotated as {annotated:.3} s \
         (tolerance {tolerance:.3} s)"
    )]
    ShorterThanAnnotated {
        /// The file.
        path: PathBuf,
        /// Duration measured from the stream.
        actual: f64,
        /// Duration in the annotation file.
        annotated: f64,
        /// Allowed shortfall in seconds.
        tolerance: f64,
    },
    /// An annotation file is unreadable or not in the ActivityNet layout (lofi-eval's reader
    /// names the file, the video and the problem).
    #[error(transparent)]
    GroundTruth(Box<lofi_eval::EvalError>),
    /// An annotation file's entry lacks what a stage that reads videos needs.
    #[error("{path}: video {video}: {message}")]
    Annotation {
        /// The annotation file.
        path: PathBuf,
        /// The video id.
        video: String,
        /// What is wrong.
        message: String,
    },
    /// Videos listed in the annotation file have no file in the videos folder.
    #[error(transparent)]
    MissingVideos(Box<MissingVideos>),
    /// A sampling plan or fidelity with impossible values.
    #[error("invalid sampling settings: {0}")]
    InvalidPlan(String),
    /// Encoding (synthetic data, test videos) failed.
    #[error("{path}: encoding failed: {reason}")]
    Encode {
        /// The output file.
        path: PathBuf,
        /// FFmpeg's message or ours.
        reason: String,
    },
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be read or written.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// Videos listed in an annotation file without a file in the videos folder.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} of {total} videos listed in {ground_truth} are not in {videos}: {}; add them, remove them \
     from the annotation file, or pass --skip-missing-videos to go on without them",
    missing.len(), crate::ground_truth::name_list(missing)
)]
pub struct MissingVideos {
    /// The annotation file.
    pub ground_truth: PathBuf,
    /// The videos folder.
    pub videos: PathBuf,
    /// Videos looked up.
    pub total: usize,
    /// The ids without a file, in the order looked up.
    pub missing: Vec<String>,
}

impl From<lofi_eval::EvalError> for VideoError {
    fn from(e: lofi_eval::EvalError) -> Self {
        VideoError::GroundTruth(Box::new(e))
    }
}

impl VideoError {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VideoError::Io {
            path: path.into(),
            source,
        }
    }
}
