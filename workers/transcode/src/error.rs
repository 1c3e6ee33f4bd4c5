//! The crate's one error type, split by what the caller should do about it.

use std::path::PathBuf;

/// Why probing or transcoding failed.
///
/// The worker needs one decision from this: mark the video failed for good (the input is the
/// problem, retrying cannot help) or put the job back for another attempt (the machine was the
/// problem). [`TranscodeError::is_permanent`] makes that call; the `Display` text of the
/// permanent variants is meant to be shown to the uploader as is.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The input is not audio/video we can decode: not a media format libavformat recognises,
    /// truncated before any picture, no video stream, or a codec without a decoder.
    #[error("{0}")]
    Undecodable(String),
    /// The input decodes but is outside what the pipeline produces (e.g. a zero-sized picture).
    #[error("{0}")]
    Unsupported(String),
    /// Reading the source or writing the output failed at the filesystem level (missing file,
    /// permissions, disk full). Usually worth a retry.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or folder that failed.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A libav* call on our side of the pipeline failed (filter graph, encoder, muxer, reading
    /// packets); treated as transient because the input was already accepted by the prober.
    #[error("ffmpeg failed while {during}: {source}")]
    Ffmpeg {
        /// What the pipeline was doing, in words.
        during: &'static str,
        /// libav*'s error code.
        source: ffmpeg_next::Error,
    },
    /// The caller's progress callback asked to stop (the worker is shutting down); the job
    /// goes back to the queue untouched.
    #[error("transcoding was cancelled")]
    Cancelled,
}

impl TranscodeError {
    /// True when the input itself is the problem and retrying the job cannot help: the caller
    /// should mark the video failed with this error's text. False for I/O and pipeline errors,
    /// which are worth a retry.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Undecodable(_) | Self::Unsupported(_))
    }

    /// Wraps a libav* error raised while the pipeline was `during` something.
    pub(crate) fn ffmpeg(during: &'static str) -> impl FnOnce(ffmpeg_next::Error) -> Self {
        move |source| Self::Ffmpeg { during, source }
    }

    /// Wraps a filesystem error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
