//! Finding and checking the upstream webui tree the launcher runs.

use std::path::{Path, PathBuf};

use crate::env_vars::baked;
use crate::sources::Sources;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "No webui tree given. Pass `--webui-root PATH` (or set SD_WEBUI_ROOT) to a checkout of \
         AUTOMATIC1111's stable-diffusion-webui with its repositories/ in place."
    )]
    NoRoot,
    #[error("The webui tree `{path}` does not exist")]
    Missing { path: PathBuf },
    #[error(
        "`{root}` is not a complete webui tree; missing: {}.\nIt needs upstream's files and its \
         repositories/ (the Nix package assembles them; for a checkout, clone the pinned \
         repositories listed by `stable-diffusion-webui doctor`).",
        missing.join(", ")
    )]
    Incomplete { root: PathBuf, missing: Vec<String> },
}

/// Where the tree came from, for messages and `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    Flag,
    Baked,
}

/// A checked upstream tree.
#[derive(Debug, Clone)]
pub struct WebuiTree {
    pub root: PathBuf,
    pub source: RootSource,
}

impl WebuiTree {
    /// `--webui-root`/`SD_WEBUI_ROOT` first, then the tree the package was built with.
    pub fn discover(flag: Option<&Path>, cwd: &Path) -> Result<WebuiTree, LayoutError> {
        let (root, source) = match (flag, baked::DEFAULT_ROOT) {
            (Some(path), _) => (cwd.join(path), RootSource::Flag),
            (None, Some(path)) => (PathBuf::from(path), RootSource::Baked),
            (None, None) => return Err(LayoutError::NoRoot),
        };
        if !root.is_dir() {
            return Err(LayoutError::Missing { path: root });
        }
        let root = fs_err::canonicalize(&root).unwrap_or(root);
        let missing = missing_parts(&root, &Sources::pinned());
        if !missing.is_empty() {
            return Err(LayoutError::Incomplete { root, missing });
        }
        Ok(WebuiTree { root, source })
    }

    /// True when the tree carries a git checkout (its revision can be asked from git).
    pub fn is_git_checkout(&self) -> bool {
        self.root.join(".git").exists()
    }

    /// The tree has precompiled bytecode next to its sources (the Nix package does).
    pub fn has_bytecode(&self) -> bool {
        self.root.join("modules").join("__pycache__").is_dir()
    }
}

/// Files and directories the webui cannot start without.
fn missing_parts(root: &Path, sources: &Sources) -> Vec<String> {
    let files = [
        "launch.py",
        "webui.py",
        "modules/launch_utils.py",
        "modules/paths_internal.py",
    ];
    let mut missing: Vec<String> = files
        .iter()
        .filter(|f| !root.join(f).is_file())
        .map(|f| (*f).to_owned())
        .collect();
    missing.extend(
        sources
            .repositories
            .keys()
            .map(|name| format!("repositories/{name}"))
            .filter(|dir| !root.join(dir).is_dir()),
    );
    missing
}
