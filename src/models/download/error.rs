//! What a download can fail with, each saying what to do.

use std::path::PathBuf;

use crate::atomic_file::AtomicWriteError;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("`{url}` was not found (HTTP 404)")]
    NotFound { url: String },
    #[error("`{url}` refused access (HTTP {status}){hint}")]
    Denied {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("`{url}` answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("Failed to download `{url}`")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("No data from `{url}` for {seconds:.1} s")]
    Stalled { url: String, seconds: f64 },
    #[error("`{url}` closed the connection after {received} of {total} bytes")]
    Truncated {
        url: String,
        received: u64,
        total: u64,
    },
    #[error("`{url}` no longer serves the object the partial download came from; starting over")]
    Changed { url: String },
    #[error("`{url}` serves {actual} bytes, but {expected} were expected; not downloading it")]
    SizeMismatch {
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "sha256 mismatch for `{path}`: expected {expected}, got {actual}; the download was discarded"
    )]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "No space left on the device for `{path}` ({written} of {total} downloaded); the partial download was kept: free some space and run the same command again to resume"
    )]
    DiskFull {
        path: PathBuf,
        written: String,
        total: String,
    },
    #[error(
        "Not enough free space for `{path}`: {needed} more needed, {available} available; free some space and run the same command again"
    )]
    InsufficientSpace {
        path: PathBuf,
        needed: String,
        available: String,
    },
    #[error("Another download is already writing `{path}`")]
    Busy { path: PathBuf },
    #[error("`{path}` already exists")]
    TargetExists { path: PathBuf },
    /// By hand rather than through `fs_err`: its errors hide `raw_os_error()`, which
    /// `part::is_disk_full` needs (ENOSPC, EDQUOT) to keep the `.part`.
    #[error("Failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Gave up on `{url}` after {attempts} attempt{}", if *attempts == 1 { "" } else { "s" })]
    GaveUp {
        url: String,
        attempts: u32,
        #[source]
        source: Box<DownloadError>,
    },
    #[error("No URL to download `{label}` from")]
    NoSource { label: String },
    #[error("Failed to set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

impl DownloadError {
    /// Worth trying the same URL again after a pause.
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            DownloadError::Request { source, .. } => !source.is_builder() && !source.is_redirect(),
            DownloadError::Stalled { .. }
            | DownloadError::Truncated { .. }
            | DownloadError::Changed { .. } => true,
            DownloadError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            _ => false,
        }
    }

    /// The URL is unusable, another one may still work.
    pub(super) fn try_next_source(&self) -> bool {
        matches!(
            self,
            DownloadError::NotFound { .. }
                | DownloadError::Denied { .. }
                | DownloadError::Status { .. }
                | DownloadError::Request { .. }
                | DownloadError::SizeMismatch { .. }
                | DownloadError::HashMismatch { .. }
                | DownloadError::GaveUp { .. }
        )
    }
}

/// The error and its causes on one line, for notices.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
