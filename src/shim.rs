//! Locating the `webui_shim` Python package and the configuration handed to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::env_vars::{self, baked};

#[derive(Debug, thiserror::Error)]
#[error(
    "Cannot find the launcher's Python shim (webui_shim); looked in: {}. Set {} to the \
     project's python/ directory.",
    tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", "),
    env_vars::SD_WEBUI_SHIM_DIR
)]
pub struct ShimNotFound {
    tried: Vec<PathBuf>,
}

/// `SD_WEBUI_SHIM_DIR`, the packaged location, next to the binary, then the source tree.
pub fn locate() -> Result<PathBuf, ShimNotFound> {
    let exe_relative = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()
            .map(|bin| bin.join("../share/stable-diffusion-webui/python"))
    });
    let candidates: Vec<PathBuf> = [
        std::env::var_os(env_vars::SD_WEBUI_SHIM_DIR).map(PathBuf::from),
        baked::SHIM_DIR.map(PathBuf::from),
        exe_relative,
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("python")),
    ]
    .into_iter()
    .flatten()
    .collect();
    candidates
        .iter()
        .find(|dir| dir.join("webui_shim").join("__init__.py").is_file())
        .map(|dir| crate::dirs::normalize(dir))
        .ok_or(ShimNotFound { tried: candidates })
}

/// Mirrors `webui_shim.config.LaunchConfig`.
#[derive(Debug, Serialize)]
pub struct LaunchConfig {
    pub mode: &'static str,
    pub webui_root: PathBuf,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub launch_cwd: PathBuf,
    pub executable: PathBuf,
    pub shim_dir: PathBuf,
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub python_env: Option<ShimPythonEnv>,
    pub pycache_prefix: Option<PathBuf>,
    pub public_non_local: bool,
    pub webui_rev: Option<String>,
    /// Locked and declared settings (`webui_shim.locks`); `None` when nothing is declared.
    pub settings: Option<crate::settings::ShimSettings>,
    /// Read-only directory of managed extensions (`webui_shim.extensions`).
    pub managed_extensions_dir: Option<PathBuf>,
    /// The opt-in overlay prefix for extension installs (`webui_shim.overlay`).
    pub python_overlay: Option<PathBuf>,
    /// The root view extensions see as `script_path` (`crate::views::root`); `None` outside `run`.
    pub root_view: Option<PathBuf>,
    /// The writable views the webui loads managed extensions from
    /// (`crate::views::managed_extensions`); `None` outside `run`.
    pub managed_extensions_view: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct ShimPythonEnv {
    pub prefix: PathBuf,
    pub isolated: bool,
}
