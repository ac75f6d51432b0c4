//! `models list`, `verify` and `remove`: what is installed, in which state, and its hash.

use std::path::{Path, PathBuf};

use super::download::hash_file;
use super::installed::{Manifest, Record, modified_ns};
use super::paths::{PART_META_SUFFIX, PART_SUFFIX, with_suffix};
use super::plan::HashOrigin;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub catalog: Option<catalog::Entry>,
    /// `folder/file` below `<data>/models`.
    pub relative: String,
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Missing,
    /// An interrupted download: `have` bytes of `total`.
    Partial {
        have: u64,
        total: Option<u64>,
    },
    Installed {
        size: u64,
        check: Check,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Its hash matched a known one, and the file has not changed since.
    Verified,
    /// Hashed at download, but there was no independent hash to compare with.
    Unverified { sha256: String },
    /// Modified since it was hashed, or never hashed by the launcher.
    NotChecked,
    /// Its hash does not match the expected one.
    Mismatch { expected: String, actual: String },
}

/// The result of verifying one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub relative: String,
    pub path: PathBuf,
    pub sha256: String,
    pub expected: Option<String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.expected
            .as_deref()
            .is_none_or(|e| e.eq_ignore_ascii_case(&self.sha256))
    }
}

impl Models {
    /// The catalog and every recorded download, with what is on disk.
    pub fn list(&self) -> Vec<Row> {
        let models = self.models_dir();
        let manifest = Manifest::load(&models);
        let mut rows = Vec::new();
        let mut listed = std::collections::BTreeSet::new();
        for entry in &self.catalog.entries {
            let relative = format!("{}/{}", entry.folder, entry.file);
            listed.insert(relative.clone());
            let state = state_of(
                &models,
                &relative,
                manifest.files.get(&relative),
                entry.sha256.as_deref(),
            );
            rows.push(Row {
                catalog: Some(entry.clone()),
                relative,
                state,
            });
        }
        for (relative, record) in &manifest.files {
            if listed.contains(relative) {
                continue;
            }
            let state = state_of(&models, relative, Some(record), record.expected.as_deref());
            if state == State::Missing {
                continue; // removed by hand; nothing to show
            }
            rows.push(Row {
                catalog: None,
                relative: relative.clone(),
                state,
            });
        }
        rows
    }

    /// Which files `name` means: a catalog name, a `folder/file` path, or a file name that
    /// is recorded exactly once.
    pub fn find(&self, name: &str) -> Result<(String, PathBuf), ModelsError> {
        let models = self.models_dir();
        if let Some(entry) = self.catalog.get(name) {
            let relative = format!("{}/{}", entry.folder, entry.file);
            let path = models.join(&relative);
            return Ok((relative, path));
        }
        if let Some((folder, file)) = name.rsplit_once('/') {
            paths::validate_folder(folder)?;
            paths::validate_file_name(file)?;
            return Ok((name.to_owned(), models.join(name)));
        }
        let manifest = Manifest::load(&models);
        let matches: Vec<&String> = manifest
            .files
            .keys()
            .filter(|k| k.rsplit('/').next() == Some(name))
            .collect();
        match matches.as_slice() {
            [one] => Ok(((*one).clone(), models.join(one))),
            [] => Err(ModelsError::NotInstalled {
                name: name.to_owned(),
            }),
            many => Err(ModelsError::Ambiguous {
                name: name.to_owned(),
                matches: many
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Hash `name` (or every installed catalog entry and recorded file) and compare with
    /// the expected hash; the record is updated either way.
    pub async fn verify(&self, name: Option<&str>) -> Result<Vec<Verified>, ModelsError> {
        let models = self.models_dir();
        let manifest = Manifest::load(&models);
        let mut targets: Vec<(String, PathBuf)> = match name {
            Some(name) => {
                let (relative, path) = self.find(name)?;
                if !path.is_file() {
                    return Err(ModelsError::NotInstalled {
                        name: name.to_owned(),
                    });
                }
                vec![(relative, path)]
            }
            None => self
                .list()
                .into_iter()
                .filter(|row| matches!(row.state, State::Installed { .. }))
                .map(|row| (row.relative.clone(), models.join(&row.relative)))
                .collect(),
        };
        targets.dedup();
        let mut results = Vec::new();
        for (relative, path) in targets {
            let expected = self
                .catalog
                .entries
                .iter()
                .find(|e| format!("{}/{}", e.folder, e.file) == relative)
                .and_then(|e| e.sha256.clone())
                .or_else(|| {
                    manifest
                        .files
                        .get(&relative)
                        .and_then(|r| r.expected.clone())
                });
            let hashed = path.clone();
            let (sha256, _) = tokio::task::spawn_blocking(move || hash_file(&hashed))
                .await
                .map_err(|e| ModelsError::Io {
                    action: "read",
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })??;
            let metadata = std::fs::metadata(&path).map_err(|source| ModelsError::Io {
                action: "inspect",
                path: path.clone(),
                source,
            })?;
            let previous = manifest.files.get(&relative);
            let record = Record {
                catalog: previous.and_then(|r| r.catalog.clone()),
                source: previous
                    .map(|r| r.source.clone())
                    .unwrap_or_else(|| "(placed by hand)".into()),
                sha256: sha256.clone(),
                expected: expected.clone(),
                origin: previous.and_then(|r| r.origin.clone()).or_else(|| {
                    expected
                        .as_ref()
                        .map(|_| HashOrigin::Catalog.as_str().to_owned())
                }),
                size: metadata.len(),
                modified_ns: modified_ns(&metadata),
            };
            Manifest::update(&models, |m| {
                m.files.insert(relative.clone(), record);
            })?;
            results.push(Verified {
                relative,
                path,
                sha256,
                expected,
            });
        }
        Ok(results)
    }

    /// The files `remove` would delete for `name` (model, `.part`, `.part.json`), with sizes.
    pub fn removal(&self, name: &str) -> Result<(String, Vec<(PathBuf, u64)>), ModelsError> {
        let (relative, path) = self.find(name)?;
        let files: Vec<(PathBuf, u64)> = [
            path.clone(),
            with_suffix(&path, PART_SUFFIX),
            with_suffix(&path, PART_META_SUFFIX),
        ]
        .into_iter()
        .filter_map(|p| std::fs::symlink_metadata(&p).ok().map(|m| (p, m.len())))
        .collect();
        if files.is_empty() {
            return Err(ModelsError::NotInstalled {
                name: name.to_owned(),
            });
        }
        Ok((relative, files))
    }

    /// Delete what [`Models::removal`] listed and forget the record.
    pub fn remove(&self, relative: &str, files: &[(PathBuf, u64)]) -> Result<(), ModelsError> {
        for (path, _) in files {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ModelsError::Io {
                        action: "remove",
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        let models = self.models_dir();
        if Manifest::load(&models).files.contains_key(relative) {
            Manifest::update(&models, |m| {
                m.files.remove(relative);
            })?;
        }
        Ok(())
    }
}

fn state_of(
    models: &Path,
    relative: &str,
    record: Option<&Record>,
    expected: Option<&str>,
) -> State {
    let path = models.join(relative);
    match std::fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => {
            let check = match record.filter(|r| r.fresh(&metadata)) {
                None => Check::NotChecked,
                Some(record) => match expected.or(record.expected.as_deref()) {
                    Some(expected) if expected.eq_ignore_ascii_case(&record.sha256) => {
                        Check::Verified
                    }
                    Some(expected) => Check::Mismatch {
                        expected: expected.to_owned(),
                        actual: record.sha256.clone(),
                    },
                    None => Check::Unverified {
                        sha256: record.sha256.clone(),
                    },
                },
            };
            State::Installed {
                size: metadata.len(),
                check,
            }
        }
        _ => match std::fs::metadata(with_suffix(&path, PART_SUFFIX)) {
            Ok(part) => {
                let total = std::fs::read(with_suffix(&path, PART_META_SUFFIX))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("total").and_then(serde_json::Value::as_u64));
                State::Partial {
                    have: part.len(),
                    total,
                }
            }
            Err(_) => State::Missing,
        },
    }
}
