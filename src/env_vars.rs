//! Every environment variable the launcher reads or sets, in one place.

/// Path of the upstream webui tree (same as `--webui-root`).
pub const SD_WEBUI_ROOT: &str = "SD_WEBUI_ROOT";
/// Data directory (same as `--data-dir`).
pub const SD_WEBUI_DATA_DIR: &str = "SD_WEBUI_DATA_DIR";
/// Cache directory (same as `--cache-dir`).
pub const SD_WEBUI_CACHE_DIR: &str = "SD_WEBUI_CACHE_DIR";
/// A virtualenv or Python environment prefix (same as `--python-env`).
pub const SD_WEBUI_PYTHON_ENV: &str = "SD_WEBUI_PYTHON_ENV";
/// The declarative settings file (same as `--settings-file`).
pub const SD_WEBUI_SETTINGS_FILE: &str = "SD_WEBUI_SETTINGS_FILE";
/// Directory of managed extensions (same as `--managed-extensions`).
pub const SD_WEBUI_MANAGED_EXTENSIONS: &str = "SD_WEBUI_MANAGED_EXTENSIONS";
/// `1` turns the opt-in Python overlay on (same as `--python-overlay`).
pub const SD_WEBUI_PYTHON_OVERLAY: &str = "SD_WEBUI_PYTHON_OVERLAY";
/// Where the `webui_shim` Python package lives (overrides the built-in location).
pub const SD_WEBUI_SHIM_DIR: &str = "SD_WEBUI_SHIM_DIR";
/// `tracing` filter for the launcher's own logs (default `info`).
pub const SD_WEBUI_LOG: &str = "SD_WEBUI_LOG";
/// Standard virtualenv activation variable.
pub const VIRTUAL_ENV: &str = "VIRTUAL_ENV";
/// Upstream's extra-arguments variable; the launcher consumes it so owned flags stay owned.
pub const COMMANDLINE_ARGS: &str = "COMMANDLINE_ARGS";
/// The launch configuration (JSON) handed to the shim's subprocesses (extension installers;
/// `webui_shim/config.py` `CONFIG_ENV`).
pub const SD_WEBUI_SHIM_CONFIG: &str = "SD_WEBUI_SHIM_CONFIG";
/// Python's module search path; the installer subprocess gets the shim on it.
pub const PYTHONPATH: &str = "PYTHONPATH";

/// Hugging Face endpoint or mirror for `hf:` and catalog downloads (as `huggingface_hub`).
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// Hugging Face access token for gated or private repositories.
pub const HF_TOKEN: &str = "HF_TOKEN";
/// Older name of [`HF_TOKEN`], still read by `huggingface_hub`.
pub const HUGGING_FACE_HUB_TOKEN: &str = "HUGGING_FACE_HUB_TOKEN";
/// File holding the Hugging Face token (default `$HF_HOME/token`).
pub const HF_TOKEN_PATH: &str = "HF_TOKEN_PATH";
/// Hugging Face's home (token file, caches).
pub const HF_HOME: &str = "HF_HOME";
/// Civitai API token for downloads that need an account.
pub const CIVITAI_API_TOKEN: &str = "CIVITAI_API_TOKEN";
/// Civitai endpoint or mirror for `civitai:` references (default `https://civitai.com`).
pub const SD_WEBUI_CIVITAI_ENDPOINT: &str = "SD_WEBUI_CIVITAI_ENDPOINT";
/// A model catalog file (catalog.json's format) whose entries add to or replace the built-in ones.
pub const SD_WEBUI_MODELS_CATALOG: &str = "SD_WEBUI_MODELS_CATALOG";
/// The Nix store directory store-backed models must be in (default `/nix/store`, as Nix's own).
pub const NIX_STORE_DIR: &str = "NIX_STORE_DIR";

/// Build-time defaults the Nix package bakes in (`option_env!`).
pub mod baked {
    pub const DEFAULT_ROOT: Option<&str> = option_env!("SD_WEBUI_DEFAULT_ROOT");
    pub const DEFAULT_PYTHON_ENV: Option<&str> = option_env!("SD_WEBUI_DEFAULT_PYTHON_ENV");
    pub const SHIM_DIR: Option<&str> = option_env!("SD_WEBUI_SHIM_DIR");
    /// The managed extensions the package was built with (a store directory).
    pub const MANAGED_EXTENSIONS: Option<&str> = option_env!("SD_WEBUI_DEFAULT_MANAGED_EXTENSIONS");
    /// The interpreter PyO3 linked against (set by build.rs).
    pub const BUILD_PYTHON: Option<&str> = option_env!("SD_WEBUI_BUILD_PYTHON");
}
