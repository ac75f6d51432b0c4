//! The downloader: sources in turn, retries, streaming with the hash on its own thread, and
//! the final rename.

use std::io::{BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header;
use sha2::Digest;

use super::*;
use crate::atomic_file;
use crate::models::human_bytes;

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

fn join_error(path: &Path, error: tokio::task::JoinError) -> DownloadError {
    DownloadError::Io {
        action: "finish writing",
        path: path.to_owned(),
        source: std::io::Error::other(error),
    }
}
