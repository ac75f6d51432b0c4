//! Where the webui keeps its data and caches: never inside the (read-only) webui tree.
//!
//! Data: `--data-dir` / `SD_WEBUI_DATA_DIR`, else `$XDG_DATA_HOME/stable-diffusion-webui`
//! (`~/.local/share/...`; `~/Library/Application Support/...` on macOS).
//! Cache: `--cache-dir` / `SD_WEBUI_CACHE_DIR`, else `$XDG_CACHE_HOME/stable-diffusion-webui`.

use std::path::{Path, PathBuf};

const APP_DIR: &str = "stable-diffusion-webui";

#[derive(Debug, thiserror::Error)]
pub enum DirsError {
    #[error("Cannot find the home directory to place the {what} dir in; pass `--{what}-dir PATH`")]
    NoHome { what: &'static str },
    #[error("Failed to create the {what} dir `{path}`")]
    Create {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The resolved, absolute, existing directories.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub cache: PathBuf,
}

impl Dirs {
    /// Resolve (relative paths against `cwd`) and create both directories.
    pub fn resolve(
        data_flag: Option<&Path>,
        cache_flag: Option<&Path>,
        cwd: &Path,
    ) -> Result<Dirs, DirsError> {
        let base = directories::BaseDirs::new();
        let data = match data_flag {
            Some(path) => normalize(&cwd.join(path)),
            None => base
                .as_ref()
                .map(|b| b.data_dir().join(APP_DIR))
                .ok_or(DirsError::NoHome { what: "data" })?,
        };
        let cache = match cache_flag {
            Some(path) => normalize(&cwd.join(path)),
            None => base
                .as_ref()
                .map(|b| b.cache_dir().join(APP_DIR))
                .ok_or(DirsError::NoHome { what: "cache" })?,
        };
        create("data", &data)?;
        create("cache", &cache)?;
        Ok(Dirs { data, cache })
    }
}

/// The data dir used when neither `--data-dir` nor `SD_WEBUI_DATA_DIR` is given.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.data_dir().join(APP_DIR))
}

fn create(what: &'static str, path: &Path) -> Result<(), DirsError> {
    std::fs::create_dir_all(path).map_err(|source| DirsError::Create {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Drop `.` components and resolve `..` lexically, so the webui sees one clean absolute path.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_flag_is_made_absolute_against_cwd() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs::resolve(
            Some(Path::new("./a/../data")),
            Some(Path::new("c")),
            tmp.path(),
        )
        .unwrap();
        assert_eq!(dirs.data, tmp.path().join("data"));
        assert_eq!(dirs.cache, tmp.path().join("c"));
        assert!(dirs.data.is_dir() && dirs.cache.is_dir());
    }
}
