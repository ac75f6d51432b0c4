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

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::human_bytes;
use super::paths::{PART_META_SUFFIX, PART_SUFFIX, with_suffix};
use crate::atomic_file::{self, AtomicWriteError};

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
    fn is_retryable(&self) -> bool {
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
    fn try_next_source(&self) -> bool {
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

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// sha256 of a whole file, for `models verify` and for files already in place.
pub fn hash_file(path: &Path) -> Result<(String, u64), DownloadError> {
    let io = |source| DownloadError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let len = hash_into(&mut file, &mut hasher).map_err(io)?;
    Ok((hex(&hasher.finalize()), len))
}

fn hash_into(reader: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
}

/// What `<target>.part.json` records about the object a `.part` file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct PartMeta {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
    sha256: Option<String>,
}

impl PartMeta {
    fn from_response(
        url: &str,
        headers: &HeaderMap,
        total: Option<u64>,
        sha256: Option<&str>,
    ) -> Self {
        PartMeta {
            url: url.to_owned(),
            etag: header_string(headers, header::ETAG),
            last_modified: header_string(headers, header::LAST_MODIFIED),
            total,
            sha256: sha256.map(str::to_ascii_lowercase),
        }
    }

    /// The validator for `If-Range`: a strong ETag, else Last-Modified (weak ETags are not
    /// allowed there).
    fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// A 206 answer is for the same object: every validator both sides know agrees.
    fn same_object(&self, headers: &HeaderMap, total: Option<u64>) -> bool {
        let agrees = |ours: &Option<String>, theirs: Option<String>| match (ours, theirs) {
            (Some(a), Some(b)) => *a == b,
            _ => true,
        };
        agrees(&self.etag, header_string(headers, header::ETAG))
            && agrees(
                &self.last_modified,
                header_string(headers, header::LAST_MODIFIED),
            )
            && match (self.total, total) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) → (start, total).
fn content_range(headers: &HeaderMap) -> (Option<u64>, Option<u64>) {
    let Some(value) = header_string(headers, header::CONTENT_RANGE) else {
        return (None, None);
    };
    let Some(rest) = value.trim().strip_prefix("bytes ") else {
        return (None, None);
    };
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let start = range
        .split_once('-')
        .and_then(|(s, _)| s.trim().parse().ok());
    (start, total.trim().parse().ok())
}

/// The `.part` file being written, its running hash, and what it holds.
struct Part {
    path: PathBuf,
    meta_path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
    meta: PartMeta,
}

impl Part {
    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
        move |source| DownloadError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Throw away what was downloaded and start from byte 0.
    fn reset(&mut self) -> Result<(), DownloadError> {
        let result = self
            .file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()));
        result.map_err(self.io("truncate"))?;
        self.hasher = Sha256::new();
        self.len = 0;
        self.meta = PartMeta::default();
        match std::fs::remove_file(&self.meta_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(DownloadError::Io {
                action: "remove",
                path: self.meta_path.clone(),
                source,
            }),
        }
    }

    /// Atomically (temp file, fsync, rename): a torn record would make the next run throw
    /// the `.part` away and start over.
    fn save_meta(&self) -> Result<(), DownloadError> {
        let text = serde_json::to_vec_pretty(&self.meta).map_err(|e| DownloadError::Io {
            action: "write",
            path: self.meta_path.clone(),
            source: e.into(),
        })?;
        atomic_file::write(&self.meta_path, &text)?;
        Ok(())
    }

    /// Remove the `.part` and its record (after a hash mismatch).
    fn discard(&mut self) {
        for path in [&self.path, &self.meta_path] {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("Failed to remove `{}`: {e}", path.display());
            }
        }
    }
}

/// Take an exclusive, non-blocking lock so two launchers never write the same `.part`.
fn lock(file: &File, path: &Path) -> Result<(), DownloadError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(DownloadError::Busy {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(DownloadError::Io {
            action: "lock",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Bytes available to this user on the file system holding `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
}

/// Opens (or resumes) the `.part` for `job`: blocking file work, run off the async threads.
fn open_part(
    target: &Path,
    expected: Option<&str>,
    size: Option<u64>,
) -> Result<Part, DownloadError> {
    let path = with_suffix(target, PART_SUFFIX);
    let meta_path = with_suffix(target, PART_META_SUFFIX);
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| DownloadError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open", &path))?;
    lock(&file, &path)?;
    let len = file.metadata().map_err(io("inspect", &path))?.len();
    let meta: Option<PartMeta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let expected = expected.map(str::to_ascii_lowercase);
    let usable = meta.as_ref().filter(|meta| {
        len > 0
            && (meta.sha256.is_none() || expected.is_none() || meta.sha256 == expected)
            && meta.total.is_none_or(|total| len <= total)
            && match (meta.total, size) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    });
    let usable = usable.cloned();
    let mut hasher = Sha256::new();
    let hashed = match &usable {
        Some(_) => {
            let hashed = hash_into(&mut file, &mut hasher).map_err(io("read", &path))?;
            file.seek(SeekFrom::End(0)).map_err(io("seek", &path))?;
            hashed
        }
        None => 0,
    };
    let mut part = Part {
        path: path.clone(),
        meta_path,
        file,
        hasher,
        len: hashed,
        meta: PartMeta::default(),
    };
    match usable {
        Some(meta) => part.meta = meta,
        None if len > 0 => {
            tracing::info!(
                "`{}` does not match this download; starting it over",
                path.display()
            );
            part.reset()?;
        }
        None => {
            // Empty already: only a stale record may need to go.
            let _ = std::fs::remove_file(&part.meta_path);
        }
    }
    Ok(part)
}

/// Downloads files; cheap to share (the HTTP client pools connections).
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    options: Options,
}

impl Downloader {
    /// A downloader with its own client: rustls, proxies from `HTTP(S)_PROXY`/`ALL_PROXY`/
    /// `NO_PROXY`, no content decoding (the hash is of the bytes as served).
    pub fn new(options: Options) -> Result<Downloader, DownloadError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "stable-diffusion-webui-launcher/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .build()
            .map_err(DownloadError::Client)?;
        Ok(Downloader { client, options })
    }

    /// A downloader over a given client (tests: one that ignores proxy settings).
    pub fn with_client(client: reqwest::Client, options: Options) -> Downloader {
        Downloader { client, options }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Download `job`, reporting as `id`. See the module docs for the guarantees.
    pub async fn fetch(
        &self,
        job: &Job,
        id: usize,
        reporter: &dyn Reporter,
    ) -> Result<Outcome, DownloadError> {
        if job.sources.is_empty() {
            return Err(DownloadError::NoSource {
                label: job.label.clone(),
            });
        }
        if job.target.exists() {
            return Err(DownloadError::TargetExists {
                path: job.target.clone(),
            });
        }
        if let Some(parent) = job.target.parent() {
            std::fs::create_dir_all(parent).map_err(|source| DownloadError::Io {
                action: "create",
                path: parent.to_owned(),
                source,
            })?;
        }
        let (target, expected, size) = (job.target.clone(), job.sha256.clone(), job.size);
        let mut part =
            tokio::task::spawn_blocking(move || open_part(&target, expected.as_deref(), size))
                .await
                .map_err(|e| join_error(&job.target, e))??;
        let reused = part.len;
        if reused > 0 {
            reporter.on_notice(
                id,
                &format!(
                    "resuming `{}` after {} already downloaded",
                    job.label,
                    human_bytes(reused)
                ),
            );
        }
        let result = self.try_sources(job, &mut part, id, reporter, reused).await;
        if result.is_err() && part.len == 0 {
            // Nothing worth resuming: leave no empty `.part` behind.
            part.discard();
        }
        result
    }

    /// Each URL in turn until one delivers the expected bytes.
    async fn try_sources(
        &self,
        job: &Job,
        part: &mut Part,
        id: usize,
        reporter: &dyn Reporter,
        reused: u64,
    ) -> Result<Outcome, DownloadError> {
        let mut transferred = 0u64;
        let mut last_error = None;
        for (index, source) in job.sources.iter().enumerate() {
            let more = index + 1 < job.sources.len();
            match self
                .fetch_from(source, job, part, id, reporter, &mut transferred)
                .await
            {
                Ok(()) => {}
                Err(e) if more && e.try_next_source() => {
                    reporter.on_notice(id, &format!("{}; trying the next URL", error_chain(&e)));
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            match self.finish(job, part, reused, transferred).await {
                Ok(outcome) => {
                    reporter.on_finish(id);
                    return Ok(outcome);
                }
                Err(e @ DownloadError::HashMismatch { .. }) if more => {
                    reporter.on_notice(id, &format!("{e}; trying the next URL"));
                    last_error = Some(e);
                    // `finish` removed the file; start a fresh one for the next source.
                    let (target, expected, size) =
                        (job.target.clone(), job.sha256.clone(), job.size);
                    *part = tokio::task::spawn_blocking(move || {
                        open_part(&target, expected.as_deref(), size)
                    })
                    .await
                    .map_err(|e| join_error(&job.target, e))??;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(DownloadError::NoSource {
            label: job.label.clone(),
        }))
    }

    /// Retry one URL until the file is complete or retrying is pointless.
    async fn fetch_from(
        &self,
        source: &Source,
        job: &Job,
        part: &mut Part,
        id: usize,
        reporter: &dyn Reporter,
        transferred: &mut u64,
    ) -> Result<(), DownloadError> {
        let mut failures = 0u32;
        loop {
            let before = *transferred;
            match self
                .attempt(source, job, part, id, reporter, transferred)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    if *transferred > before {
                        failures = 0;
                    }
                    failures += 1;
                    if failures > self.options.retries {
                        return Err(DownloadError::GaveUp {
                            url: source.url.clone(),
                            attempts: failures,
                            source: Box::new(e),
                        });
                    }
                    let delay = self
                        .options
                        .backoff
                        .saturating_mul(1 << (failures - 1).min(16))
                        .min(self.options.max_backoff);
                    reporter.on_notice(
                        id,
                        &format!(
                            "{}; retrying in {:.1} s (retry {failures} of {})",
                            error_chain(&e),
                            delay.as_secs_f64(),
                            self.options.retries
                        ),
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One request: check the answer against the partial file, then stream the body.
    async fn attempt(
        &self,
        source: &Source,
        job: &Job,
        part: &mut Part,
        id: usize,
        reporter: &dyn Reporter,
        transferred: &mut u64,
    ) -> Result<(), DownloadError> {
        let url = source.url.as_str();
        let mut request = self.client.get(url);
        if let Some(token) = &source.bearer {
            request = request.bearer_auth(token);
        }
        let resuming = part.len > 0;
        if resuming {
            request = request.header(header::RANGE, format!("bytes={}-", part.len));
            if let Some(validator) = part.meta.if_range() {
                request = request.header(header::IF_RANGE, validator);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.request_error(url, e))?;
        let status = response.status();
        let headers = response.headers();
        match status {
            StatusCode::PARTIAL_CONTENT if resuming => {
                let (start, total) = content_range(headers);
                if start != Some(part.len) || !part.meta.same_object(headers, total) {
                    part.reset()?;
                    reporter.on_start(id, &job.label, job.size, 0);
                    return Err(DownloadError::Changed {
                        url: url.to_owned(),
                    });
                }
                if part.meta.total.is_none() {
                    part.meta.total = total;
                }
            }
            StatusCode::OK => {
                if resuming {
                    reporter.on_notice(
                        id,
                        &format!("`{url}` sent the whole file again (it changed, or ignores Range); starting over"),
                    );
                    part.reset()?;
                }
                let total = response.content_length();
                if let (Some(expected), Some(actual)) = (job.size, total)
                    && expected != actual
                {
                    return Err(DownloadError::SizeMismatch {
                        url: url.to_owned(),
                        expected,
                        actual,
                    });
                }
                part.meta = PartMeta::from_response(
                    url,
                    headers,
                    total.or(job.size),
                    job.sha256.as_deref(),
                );
            }
            StatusCode::RANGE_NOT_SATISFIABLE if resuming => {
                let (_, total) = content_range(headers);
                if total == Some(part.len) && part.meta.total.is_none_or(|t| t == part.len) {
                    // The previous run got every byte but stopped before verifying.
                    return Ok(());
                }
                part.reset()?;
                reporter.on_start(id, &job.label, job.size, 0);
                return Err(DownloadError::Changed {
                    url: url.to_owned(),
                });
            }
            StatusCode::NOT_FOUND => {
                return Err(DownloadError::NotFound {
                    url: url.to_owned(),
                });
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(DownloadError::Denied {
                    url: url.to_owned(),
                    status: status.as_u16(),
                    hint: source
                        .auth_hint
                        .as_deref()
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default(),
                });
            }
            other => {
                return Err(DownloadError::Status {
                    url: url.to_owned(),
                    status: other.as_u16(),
                });
            }
        }
        if self.options.check_free_space
            && let Some(total) = part.meta.total
            && let Some(dir) = part.path.parent()
            && let Some(available) = free_space(dir)
        {
            let needed = total.saturating_sub(part.len);
            if needed > available {
                return Err(DownloadError::InsufficientSpace {
                    path: job.target.clone(),
                    needed: human_bytes(needed),
                    available: human_bytes(available),
                });
            }
        }
        part.save_meta()?;
        reporter.on_start(id, &job.label, part.meta.total, part.len);
        self.stream(response, part, id, reporter, transferred).await
    }

    /// Receive the body here while a blocking thread hashes and writes it.
    async fn stream(
        &self,
        response: reqwest::Response,
        part: &mut Part,
        id: usize,
        reporter: &dyn Reporter,
        transferred: &mut u64,
    ) -> Result<(), DownloadError> {
        let url = response.url().to_string();
        // Three stages so that on a multi-core machine neither hashing nor writing slows
        // the network: this task receives, one thread writes, one thread hashes what was
        // written (the chunks are reference-counted, never copied between them) and asks the
        // kernel to start writing it to disk. That request (sync_file_range) can block for
        // milliseconds while the device queue is full; on the writer's thread it stalled the
        // whole pipeline, on the hasher's (which is faster than the network) it costs nothing.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
        let (to_hasher, written_chunks) = std::sync::mpsc::sync_channel::<Bytes>(64);
        // More handles on the same open file (same offset, same lock): writer and hasher.
        let file = part.file.try_clone().map_err(part.io("open"))?;
        let flushed = part.file.try_clone().map_err(part.io("open"))?;
        let mut hasher = std::mem::take(&mut part.hasher);
        let mut len = part.len;
        let start = part.len;
        let hashing = tokio::task::spawn_blocking(move || {
            let mut writeback = Writeback::new(start);
            for chunk in written_chunks {
                hasher.update(&chunk);
                len += chunk.len() as u64;
                writeback.wrote(chunk.len() as u64, &flushed);
            }
            (hasher, len)
        });
        let writer = tokio::task::spawn_blocking(move || {
            // Large chunks (hyper reads up to ~400 KiB at speed) bypass the buffer; small
            // ones are gathered so a slow trickle does not cost one syscall per packet.
            let mut out = BufWriter::with_capacity(256 << 10, file);
            let mut result = Ok(());
            while let Some(chunk) = receiver.blocking_recv() {
                if let Err(e) = out.write_all(&chunk) {
                    result = Err(e);
                    break;
                }
                if to_hasher.send(chunk).is_err() {
                    break;
                }
            }
            if result.is_ok() {
                result = out.flush();
            }
            // On error the buffered bytes are dropped; the file on disk stays a true prefix,
            // and a later run re-hashes whatever is there.
            drop(out.into_parts());
            result
        });
        let mut network_error = None;
        let mut body = response.bytes_stream();
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    let n = chunk.len() as u64;
                    if sender.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                    *transferred += n;
                    reporter.on_progress(id, n);
                }
                Err(e) => {
                    network_error = Some(e);
                    break;
                }
            }
        }
        drop(sender);
        let written = writer.await.map_err(|e| join_error(&part.path, e))?;
        let (hasher, len) = hashing.await.map_err(|e| join_error(&part.path, e))?;
        part.hasher = hasher;
        part.len = len;
        if let Err(source) = written {
            // What reached the file, not what was buffered when the write failed.
            part.len = part.file.metadata().map_or(part.len, |m| m.len());
            return Err(if is_disk_full(&source) {
                DownloadError::DiskFull {
                    path: part.path.clone(),
                    written: human_bytes(part.len),
                    total: part
                        .meta
                        .total
                        .map(human_bytes)
                        .unwrap_or_else(|| "?".to_owned()),
                }
            } else {
                DownloadError::Io {
                    action: "write",
                    path: part.path.clone(),
                    source,
                }
            });
        }
        if let Some(e) = network_error {
            return Err(self.request_error(&url, e));
        }
        if let Some(total) = part.meta.total
            && part.len < total
        {
            return Err(DownloadError::Truncated {
                url,
                received: part.len,
                total,
            });
        }
        Ok(())
    }

    /// Verify the hash, then move the file into place.
    async fn finish(
        &self,
        job: &Job,
        part: &mut Part,
        reused: u64,
        transferred: u64,
    ) -> Result<Outcome, DownloadError> {
        let actual = hex(&std::mem::take(&mut part.hasher).finalize());
        let len = part.len;
        if let Some(expected) = &job.sha256
            && !expected.eq_ignore_ascii_case(&actual)
        {
            part.discard();
            return Err(DownloadError::HashMismatch {
                path: job.target.clone(),
                expected: expected.to_ascii_lowercase(),
                actual,
            });
        }
        if let Some(expected) = job.size
            && expected != len
        {
            part.discard();
            return Err(DownloadError::SizeMismatch {
                url: part.meta.url.clone(),
                expected,
                actual: len,
            });
        }
        let file = part.file.try_clone().map_err(part.io("open"))?;
        let (part_path, meta_path, target) = (
            part.path.clone(),
            part.meta_path.clone(),
            job.target.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<(), DownloadError> {
            file.sync_all().map_err(|source| DownloadError::Io {
                action: "sync",
                path: part_path.clone(),
                source,
            })?;
            if target.exists() {
                return Err(DownloadError::TargetExists { path: target });
            }
            std::fs::rename(&part_path, &target).map_err(|source| DownloadError::Io {
                action: "rename into place",
                path: target.clone(),
                source,
            })?;
            // Make the rename itself durable before reporting success.
            if let Some(dir) = target.parent() {
                atomic_file::sync_dir(dir);
            }
            let _ = std::fs::remove_file(&meta_path);
            drop(file);
            Ok(())
        })
        .await
        .map_err(|e| join_error(&job.target, e))??;
        Ok(Outcome {
            path: job.target.clone(),
            sha256: actual,
            size: len,
            verified: job.sha256.is_some(),
            reused,
            transferred,
        })
    }

    fn request_error(&self, url: &str, error: reqwest::Error) -> DownloadError {
        if error.is_timeout() {
            DownloadError::Stalled {
                url: url.to_owned(),
                seconds: self.options.read_timeout.as_secs_f64(),
            }
        } else {
            DownloadError::Request {
                url: url.to_owned(),
                source: error,
            }
        }
    }
}

/// Starts the kernel writing a large download to disk as it arrives, so the `fsync` before
/// the final rename has little left to do (and dirty memory stays bounded) instead of
/// flushing gigabytes at the end.
struct Writeback {
    started: u64,
    written: u64,
}

impl Writeback {
    const WINDOW: u64 = 32 << 20;

    fn new(offset: u64) -> Writeback {
        Writeback {
            started: offset,
            written: offset,
        }
    }

    /// `bytes` more were handed to the writer (a small tail may still sit in its buffer:
    /// the request covers whatever reached the file, it is only a hint).
    fn wrote(&mut self, bytes: u64, file: &File) {
        self.written += bytes;
        if self.written - self.started < Self::WINDOW {
            return;
        }
        start_writeback(file, self.started, self.written - self.started);
        self.started = self.written;
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a hint on a file descriptor we own; SYNC_FILE_RANGE_WRITE only queues
    // writeback of pages already written and touches no memory of ours. A failure only
    // means the final fsync does all the work, so its result is ignored.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn join_error(path: &Path, error: tokio::task::JoinError) -> DownloadError {
    DownloadError::Io {
        action: "finish writing",
        path: path.to_owned(),
        source: std::io::Error::other(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_range_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(content_range(&headers), (Some(100), Some(200)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */200"),
        );
        assert_eq!(content_range(&headers), (None, Some(200)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/*"),
        );
        assert_eq!(content_range(&headers), (Some(0), None));
    }

    #[test]
    fn if_range_prefers_a_strong_etag() {
        let mut meta = PartMeta {
            etag: Some("W/\"weak\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            ..PartMeta::default()
        };
        assert_eq!(meta.if_range(), Some("Mon, 01 Jan 2024 00:00:00 GMT"));
        meta.etag = Some("\"strong\"".into());
        assert_eq!(meta.if_range(), Some("\"strong\""));
    }

    #[test]
    fn disk_full_is_recognised_and_said_plainly() {
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(
            libc::EACCES
        )));
        let error = DownloadError::DiskFull {
            path: "/d/models/VAE/v.safetensors.part".into(),
            written: human_bytes(3 << 20),
            total: human_bytes(10 << 20),
        };
        assert_eq!(
            error.to_string(),
            "No space left on the device for `/d/models/VAE/v.safetensors.part` (3.0 MiB of 10.0 MiB downloaded); the partial download was kept: free some space and run the same command again to resume"
        );
    }

    /// Issue #18, bug 2: `.part.json` was written with a plain `fs::write` (truncate, then
    /// write), so a crash or a concurrent reader could see it empty or cut short, and the
    /// download then started over. Every read while it is rewritten must parse.
    #[test]
    fn i18_the_part_record_is_never_seen_half_written() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let mut part = open_part(&tmp.path().join("v.safetensors"), None, None).unwrap();
        part.save_meta().unwrap();
        let meta_path = part.meta_path.clone();
        let done = AtomicBool::new(false);
        let (reads, torn) = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let (mut reads, mut torn) = (0, Vec::new());
                while !done.load(Ordering::Relaxed) {
                    reads += 1;
                    match std::fs::read(&meta_path) {
                        Ok(bytes) if serde_json::from_slice::<PartMeta>(&bytes).is_ok() => {}
                        Ok(bytes) => torn.push(format!("{} bytes", bytes.len())),
                        Err(e) => torn.push(e.to_string()),
                    }
                }
                (reads, torn)
            });
            for i in 0..200 {
                // Large enough that a non-atomic write is visibly in progress for a while.
                part.meta.url = format!("https://example.invalid/{}", "x".repeat(1 << 16));
                part.meta.total = Some(i);
                part.save_meta().unwrap();
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap()
        });
        assert!(
            torn.is_empty(),
            "{} of {reads} reads saw a torn record: {:?}",
            torn.len(),
            &torn[..torn.len().min(5)]
        );
    }

    #[test]
    fn hex_of_the_empty_hash() {
        assert_eq!(
            hex(&Sha256::new().finalize()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
