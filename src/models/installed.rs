//! What is installed: a small record of downloads in `<data>/models/.downloads.json`.
//!
//! Hashing a 7 GB checkpoint takes tens of seconds, so `models list` and `models ensure`
//! must not do it on every call. The record keeps, per file, the hash it had when last
//! checked together with its size and modification time; while those are unchanged the
//! hash is trusted, and anything that touched the file makes it "changed" until
//! `models verify` hashes it again. Files the user placed by hand have no record and show
//! as "not checked".

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::ModelsError;
use crate::atomic_file;

const MANIFEST: &str = ".downloads.json";
/// Locked (flock) around every load-change-save of [`MANIFEST`]; see [`Manifest::update`].
const MANIFEST_LOCK: &str = ".downloads.json.lock";
const MANIFEST_VERSION: u32 = 1;

/// What is known about one file under `<data>/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The catalog name it was pulled as, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// The reference it was pulled from (`sd15`, a URL, `hf:...`, `civitai:...`).
    pub source: String,
    /// sha256 of the file when it was last hashed.
    pub sha256: String,
    /// The hash it should have, when one was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Where `expected` came from: `catalog`, `user`, `huggingface`, `civitai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub size: u64,
    /// Modification time (ns since the epoch) when hashed; a different one means "changed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<u128>,
}

impl Record {
    /// The hash matched an independently known one.
    pub fn verified(&self) -> bool {
        self.expected
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&self.sha256))
    }

    /// The file still has the size and mtime it had when hashed.
    pub fn fresh(&self, metadata: &std::fs::Metadata) -> bool {
        metadata.len() == self.size && modified_ns(metadata) == self.modified_ns
    }
}

pub fn modified_ns(metadata: &std::fs::Metadata) -> Option<u128> {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
}

/// All records, keyed by path relative to `<data>/models` (`VAE/sdxl_vae.safetensors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub files: BTreeMap<String, Record>,
}

impl Manifest {
    pub fn path(models_dir: &Path) -> PathBuf {
        models_dir.join(MANIFEST)
    }

    /// The record, or an empty one when there is none yet. A corrupt record is not fatal
    /// (it only caches hashes): it is logged and treated as empty.
    pub fn load(models_dir: &Path) -> Manifest {
        let path = Manifest::path(models_dir);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(manifest) if manifest.version == MANIFEST_VERSION => manifest,
                Ok(_) | Err(_) => {
                    tracing::warn!(
                        "Ignoring `{}`: not a download record this launcher understands",
                        path.display()
                    );
                    Manifest::empty()
                }
            },
            Err(_) => Manifest::empty(),
        }
    }

    fn empty() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            files: BTreeMap::new(),
        }
    }

    /// Write atomically (temp file in the same directory, fsync, rename, fsync the directory).
    pub fn save(&self, models_dir: &Path) -> Result<(), ModelsError> {
        let path = Manifest::path(models_dir);
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| ModelsError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(models_dir).map_err(io("create the directory of"))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| io("write")(e.into()))?;
        atomic_file::write(&path, &text)?;
        Ok(())
    }

    /// Load, change, save: for updates after each download finishes.
    ///
    /// Other processes write the record too (a first-use download inside the running webui,
    /// `models pull` in another shell), so the whole load-change-save holds an exclusive
    /// `flock` on `.downloads.json.lock`. The lock is on a file of its own, not on the record:
    /// the atomic save replaces the record's inode, and a lock on the old inode would not
    /// keep out a process that opens the new one.
    pub fn update(
        models_dir: &Path,
        change: impl FnOnce(&mut Manifest),
    ) -> Result<(), ModelsError> {
        let _lock = lock_exclusive(models_dir)?;
        let mut manifest = Manifest::load(models_dir);
        change(&mut manifest);
        manifest.save(models_dir)
    }
}

/// Opens `<models>/.downloads.json.lock` and waits for an exclusive lock on it; dropping the
/// file releases it. flock locks belong to the open file description, so this also excludes
/// other threads of this process, each with its own open.
fn lock_exclusive(models_dir: &Path) -> Result<File, ModelsError> {
    let path = models_dir.join(MANIFEST_LOCK);
    let io = |action: &'static str, source| ModelsError::Io {
        action,
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(models_dir).map_err(|e| io("create the directory of", e))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open", e))?;
    loop {
        match file.lock() {
            Ok(()) => return Ok(file),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(io("lock", error)),
        }
    }
}

/// `path` relative to the models dir, with `/` separators (the manifest key).
pub fn relative_key(models_dir: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(models_dir).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_go_stale_when_the_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        let file = models.join("VAE/v.safetensors");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"abc").unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        let record = Record {
            catalog: None,
            source: "https://e/v.safetensors".into(),
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
            expected: Some(
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD".into(),
            ),
            origin: Some("user".into()),
            size: 3,
            modified_ns: modified_ns(&metadata),
        };
        assert!(record.verified() && record.fresh(&metadata));
        let key = relative_key(&models, &file).unwrap();
        assert_eq!(key, "VAE/v.safetensors");
        Manifest::update(&models, |m| {
            m.files.insert(key.clone(), record.clone());
        })
        .unwrap();
        assert_eq!(Manifest::load(&models).files[&key], record);
        std::fs::write(&file, b"abcd").unwrap();
        assert!(!record.fresh(&std::fs::metadata(&file).unwrap()));
    }

    /// Issue #18, bug 2: two writers of the record (the running webui's first-use download
    /// and `models pull` in a shell) each loaded, changed and saved it, and the later save
    /// dropped the other's records. Writers here are threads with no shared in-process lock,
    /// as two processes have none; every record they add must survive.
    #[test]
    fn i18_concurrent_updates_keep_every_record() {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        let record = |source: String| Record {
            catalog: None,
            source,
            sha256: "0".repeat(64),
            expected: None,
            origin: None,
            size: 0,
            modified_ns: None,
        };
        let (writers, each) = (4, 50);
        std::thread::scope(|s| {
            for w in 0..writers {
                let (models, record) = (&models, &record);
                s.spawn(move || {
                    for i in 0..each {
                        let key = format!("w{w}/{i}.safetensors");
                        Manifest::update(models, |m| {
                            m.files.insert(key.clone(), record(key.clone()));
                        })
                        .unwrap();
                    }
                });
            }
        });
        let files = Manifest::load(&models).files;
        assert_eq!(
            files.len(),
            writers * each,
            "records lost: {} of {}",
            writers * each - files.len(),
            writers * each
        );
    }

    #[test]
    fn a_corrupt_record_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST), b"{not json").unwrap();
        assert!(Manifest::load(tmp.path()).files.is_empty());
    }
}
