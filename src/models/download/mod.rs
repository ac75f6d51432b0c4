//! The resumable, verified downloader: one file from one of several URLs into its final
//! place, never leaving anything loadable that is incomplete or not the expected bytes.
//!
//! How a download goes, and why:
//! - Bytes stream into `<target>.part` beside the target, so the final `rename` is atomic
//!   (same directory, same file system) and the webui, which lists models by extension,
//!   never sees the half file.
//! - sha256 is computed while streaming, on a separate thread from the network reads, so
//!   verifying costs no second pass over a 7 GB file and barely any throughput.
//! - `<target>.part.json` remembers which object the `.part` holds (URL, ETag,
//!   Last-Modified, size, expected hash). After an interruption, even in another process,
//!   the prefix is re-hashed from disk and the rest is requested with `Range` + `If-Range`;
//!   a server that no longer serves the same object answers 200 (or a mismatching 206/416)
//!   and the download starts over instead of splicing two objects together.
//! - Network failures are retried with exponential backoff; a retry that made progress
//!   resets the count, so a flaky link finishes a large file. HTTP errors that retrying
//!   cannot fix (404, 401/403, a size other than the catalog's) move to the next URL.
//! - Only after the hash matches is the file renamed into place. A wrong hash deletes the
//!   `.part` (its bytes are not the wanted object, resuming them is pointless); a full disk
//!   keeps it, so the same command resumes once there is space.
//!
//! Progress goes to a [`Reporter`]; the library draws nothing (the CLI owns the terminal).
//!
//! Files, one concern each: [`error`] (what can go wrong, and what to do), [`hashing`],
//! [`part`] (the `.part` file, its record, its lock, free space), [`writeback`] (early
//! flushing of large files), [`pipeline`] (sources, retries, streaming, the final rename).

mod error;
mod hashing;
mod part;
mod pipeline;
mod writeback;

pub use error::{DownloadError, error_chain};
pub use hashing::{hash_file, hex};
pub use pipeline::Downloader;

use hashing::hash_into;
use part::{Part, PartMeta, content_range, free_space, is_disk_full, open_part};
use writeback::Writeback;

use std::path::PathBuf;
use std::time::Duration;

/// One URL a file can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    /// Sent as `Authorization: Bearer` to this URL only; reqwest drops it on a redirect to
    /// another host (Hugging Face redirects to its CDN).
    pub bearer: Option<String>,
    /// Appended to 401/403 errors: which token would help (`HF_TOKEN`, ...).
    pub auth_hint: Option<String>,
}

impl Source {
    pub fn new(url: impl Into<String>) -> Source {
        Source {
            url: url.into(),
            bearer: None,
            auth_hint: None,
        }
    }
}

/// One file to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Shown in progress and messages (`sd15`, or the file name).
    pub label: String,
    /// Tried in order until one delivers the expected bytes.
    pub sources: Vec<Source>,
    /// The final path; it must not exist yet.
    pub target: PathBuf,
    /// Expected sha256, hex. Without it the file is downloaded but not verified.
    pub sha256: Option<String>,
    /// Expected size; a server announcing another size is not downloaded from.
    pub size: Option<u64>,
}

/// Retry and timeout policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Consecutive failed attempts (without progress) allowed after the first, per URL.
    pub retries: u32,
    /// First retry delay; doubles each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A connection that delivers nothing for this long counts as failed (and is retried).
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    /// Refuse to start when the file system cannot hold the rest of the file.
    pub check_free_space: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retries: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            check_free_space: true,
        }
    }
}

/// Receives progress; implemented by the CLI (bars or plain lines) and by tests.
pub trait Reporter: Send + Sync {
    /// A transfer (re)starts: `total` bytes expected if known, `done` already on disk.
    fn on_start(&self, _id: usize, _label: &str, _total: Option<u64>, _done: u64) {}
    /// `bytes` more arrived.
    fn on_progress(&self, _id: usize, _bytes: u64) {}
    /// Something worth telling that does not stop the download (retry, restart, resume).
    fn on_notice(&self, _id: usize, _message: &str) {}
    /// The file is verified and in place.
    fn on_finish(&self, _id: usize) {}
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub path: PathBuf,
    /// The sha256 of the bytes now at `path`.
    pub sha256: String,
    pub size: u64,
    /// An expected hash was given and matched.
    pub verified: bool,
    /// Bytes of an earlier partial download that were kept.
    pub reused: u64,
    /// Bytes received in this run.
    pub transferred: u64,
}
