//! `manifest.json` of a managed extensions directory, written by the Nix package: where each
//! extension comes from and which Python packages it was given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const FILE: &str = "manifest.json";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub extensions: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManifestEntry {
    pub url: Option<String>,
    pub rev: Option<String>,
    /// Commit time of `rev` (Unix seconds).
    pub date: Option<i64>,
    #[serde(default)]
    pub python_packages: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("Cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid managed-extensions manifest: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Manifest {
    /// The manifest of `dir`; an empty one when the directory has none (a hand-made one).
    pub fn read(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(source) => return Err(ManifestError::Read { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path, source })
    }
}
