//! The `.part` file: its record (`.part.json`), its lock, and the space left for it.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::*;
use crate::atomic_file;
use crate::models::paths::{PART_META_SUFFIX, PART_SUFFIX, with_suffix};

/// What `<target>.part.json` records about the object a `.part` file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PartMeta {
    pub(super) url: String,
    pub(super) etag: Option<String>,
    pub(super) last_modified: Option<String>,
    pub(super) total: Option<u64>,
    sha256: Option<String>,
}

impl PartMeta {
    pub(super) fn from_response(
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
    pub(super) fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// A 206 answer is for the same object: every validator both sides know agrees.
    pub(super) fn same_object(&self, headers: &HeaderMap, total: Option<u64>) -> bool {
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

pub(super) fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) → (start, total).
pub(super) fn content_range(headers: &HeaderMap) -> (Option<u64>, Option<u64>) {
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
pub(super) struct Part {
    pub(super) path: PathBuf,
    pub(super) meta_path: PathBuf,
    pub(super) file: File,
    pub(super) hasher: Sha256,
    pub(super) len: u64,
    pub(super) meta: PartMeta,
}

impl Part {
    pub(super) fn io(
        &self,
        action: &'static str,
    ) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
        move |source| DownloadError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Throw away what was downloaded and start from byte 0.
    pub(super) fn reset(&mut self) -> Result<(), DownloadError> {
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
    pub(super) fn save_meta(&self) -> Result<(), DownloadError> {
        let text = serde_json::to_vec_pretty(&self.meta).map_err(|e| DownloadError::Io {
            action: "write",
            path: self.meta_path.clone(),
            source: e.into(),
        })?;
        atomic_file::write(&self.meta_path, &text)?;
        Ok(())
    }

    /// Remove the `.part` and its record (after a hash mismatch).
    pub(super) fn discard(&mut self) {
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
pub(super) fn lock(file: &File, path: &Path) -> Result<(), DownloadError> {
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
pub(super) fn free_space(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

pub(super) fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
}

/// Opens (or resumes) the `.part` for `job`: blocking file work, run off the async threads.
pub(super) fn open_part(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::human_bytes;
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
}
