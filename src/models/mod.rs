//! Models: a catalog of well-known files, `pull` of any reference into
//! `<data>/models/<folder>/`, and the checks that keep a half-downloaded or tampered file
//! from ever being loaded.
//!
//! Models live in the data dir, not the Nix store: 40 GB of checkpoints must not be a
//! default closure, and users add and remove them at run time. The pieces:
//! - [`catalog`]: the names (`sd15`, `sdxl-base`, ...) and where each hash comes from;
//! - [`reference`]: `NAME | URL | hf:ORG/REPO/FILE | civitai:ID`, endpoints and tokens;
//! - [`plan`]: a reference becomes a download job with an expected hash;
//! - [`download`]: the resumable, verified downloader;
//! - [`installed`]: the record that lets `list` and `ensure` skip re-hashing.
//!
//! The operations here (`pull`, `ensure`, `list`, `verify`, `remove`) are what the CLI and
//! the launcher's start-up call; they print nothing themselves.

pub mod catalog;
mod declared;
pub mod download;
pub mod first_use;
pub mod installed;
mod inventory;
pub mod paths;
pub mod plan;
mod pull;
pub mod reference;

pub use declared::{Declared, Linked, read_declared};
pub use inventory::{Check, Row, State, Verified};
pub use pull::Pulled;

use std::path::{Path, PathBuf};

use self::catalog::{Catalog, CatalogError};
use self::download::{DownloadError, Downloader};
use self::paths::{NameError, models_dir};
use self::plan::{Overrides, Planned, Planner, normalise_sha256};
use self::reference::{Endpoints, Reference, ReferenceError, Tokens};

/// The folder upstream loads checkpoints from.
pub const CHECKPOINT_FOLDER: &str = "Stable-diffusion";

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("Unknown model `{name}`; `models list` shows the catalog")]
    UnknownModel { name: String },
    #[error("Unknown group `{name}`; groups are: {known}")]
    UnknownGroup { name: String, known: String },
    #[error(
        "Pass --folder for `{reference}` ({why}); upstream's folders include Stable-diffusion, VAE, Lora, ESRGAN, RealESRGAN, GFPGAN, Codeformer, ControlNet"
    )]
    NeedFolder { reference: String, why: String },
    #[error("Pass --file-name for `{reference}`: its URL does not end in a file name")]
    NeedFileName { reference: String },
    #[error("`{value}` is not a sha256 (64 hex digits)")]
    BadSha256 { value: String },
    #[error("The sha256 given for `{reference}` ({given}) differs from the {origin} one ({known})")]
    HashConflict {
        reference: String,
        given: String,
        known: String,
        origin: &'static str,
    },
    #[error(
        "`{path}` already exists with sha256 {actual}, not the expected {expected}; remove it first (`models remove`)"
    )]
    ExistsDifferent {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("Failed to look up `{reference}` at `{url}`: {detail}")]
    Lookup {
        reference: String,
        url: String,
        detail: String,
    },
    #[error("`{name}` is not installed")]
    NotInstalled { name: String },
    #[error("`{name}` matches several files: {matches}; name one by its folder, like `VAE/{name}`")]
    Ambiguous { name: String, matches: String },
    #[error(
        "`{path}` is not a file in the Nix store ({store}); store-backed models must be, since they are trusted without hashing"
    )]
    NotInStore { path: PathBuf, store: PathBuf },
    #[error(
        "`{path}` already exists and is not a link into the Nix store; it was left alone (remove it to use `{store_path}`)"
    )]
    Occupied { path: PathBuf, store_path: PathBuf },
    #[error(transparent)]
    Write(#[from] crate::atomic_file::AtomicWriteError),
    #[error("Failed to parse the declared models in `{path}`")]
    Declared {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// By hand, as `DownloadError::Io` (the raw OS error stays visible), with the action in
    /// our words ("rename into place").
    #[error("Failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binary units, one decimal: `4.0 GiB`, `512 B`. By hand rather than `indicatif::HumanBytes`
/// (two decimals): the catalog's sizes and every message and table already read this way.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The message to show at start-up when there is no checkpoint to load, instead of
/// upstream's surprise 4 GB download (the launcher passes `--no-download-sd-model`).
///
/// `None` when `<data>/models/Stable-diffusion` holds a `.safetensors` or `.ckpt` (the
/// files upstream would load; `.part` downloads do not count).
pub fn first_start_hint(data_dir: &Path) -> Option<String> {
    let dir = models_dir(data_dir).join(CHECKPOINT_FOLDER);
    if has_checkpoint(&dir) {
        return None;
    }
    let data_flag = match crate::dirs::default_data_dir() {
        Some(default) if default == data_dir => String::new(),
        _ => format!(
            " --data-dir {}",
            shlex::try_quote(&data_dir.display().to_string())
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| data_dir.display().to_string())
        ),
    };
    Some(format!(
        "No Stable Diffusion checkpoint in `{}`, so the webui starts without a model.\n\
         To download Stable Diffusion 1.5 (4.0 GiB, sha256-checked, resumable), run:\n\
         \n    stable-diffusion-webui models pull{data_flag} sd15\n\n\
         `stable-diffusion-webui models list` shows the other models (SDXL: sdxl-base).",
        dir.display()
    ))
}

fn has_checkpoint(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        let is_model = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            e.eq_ignore_ascii_case("safetensors") || e.eq_ignore_ascii_case("ckpt")
        });
        (is_model && path.is_file()) || (path.is_dir() && has_checkpoint(&path))
    })
}

/// Everything the operations need; built once by the caller.
pub struct Models {
    pub data_dir: PathBuf,
    pub catalog: Catalog,
    pub endpoints: Endpoints,
    pub tokens: Tokens,
    pub downloader: Downloader,
}

/// The Nix store directory (`NIX_STORE_DIR`, as Nix reads it, else `/nix/store`).
pub fn nix_store_dir(lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    lookup(crate::env_vars::NIX_STORE_DIR)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/nix/store"), PathBuf::from)
}

impl Models {
    /// The one way to build the models services from the process environment: the catalog
    /// (with `SD_WEBUI_MODELS_CATALOG`'s entries), Hugging Face and Civitai endpoints and tokens
    /// (`HF_ENDPOINT`, `HF_TOKEN` or the CLI's login, `CIVITAI_API_TOKEN`), and a downloader
    /// with proxies from `HTTPS_PROXY`/`NO_PROXY`. Used by `models ...` and by the first-use
    /// downloads inside the running webui.
    pub fn from_env(data_dir: PathBuf) -> Result<Models, ModelsError> {
        let env = |key: &str| std::env::var(key).ok();
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_owned());
        Ok(Models {
            data_dir,
            catalog: Catalog::from_env(env)?,
            endpoints: Endpoints::from_env(env),
            tokens: Tokens::from_env(env, home),
            downloader: Downloader::new(download::Options::default())?,
        })
    }

    pub fn models_dir(&self) -> PathBuf {
        models_dir(&self.data_dir)
    }

    fn planner(&self) -> Planner<'_> {
        Planner {
            catalog: &self.catalog,
            endpoints: &self.endpoints,
            tokens: &self.tokens,
            data_dir: &self.data_dir,
            client: self.downloader.client(),
        }
    }

    /// Resolve one reference (this may ask Civitai or the Hub for names and hashes).
    pub async fn plan(
        &self,
        reference: &str,
        overrides: &Overrides,
    ) -> Result<Planned, ModelsError> {
        self.planner()
            .plan(&Reference::parse(reference)?, overrides)
            .await
    }

    /// Every catalog entry of `group`.
    pub fn group(&self, group: &str) -> Result<Vec<String>, ModelsError> {
        let names: Vec<String> = self.catalog.group(group).map(|e| e.name.clone()).collect();
        if names.is_empty() {
            return Err(ModelsError::UnknownGroup {
                name: group.to_owned(),
                known: self.catalog.groups().join(", "),
            });
        }
        Ok(names)
    }
}

pub fn parse_sha256(text: &str) -> Result<String, ModelsError> {
    normalise_sha256(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4_265_146_304), "4.0 GiB");
        assert_eq!(human_bytes(334_641_162), "319.1 MiB");
    }

    #[test]
    fn hint_appears_until_a_checkpoint_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let hint = first_start_hint(&data).unwrap();
        assert!(hint.contains("models pull --data-dir "), "{hint}");
        assert!(hint.contains(" sd15"), "{hint}");
        let dir = data.join("models/Stable-diffusion");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("m.safetensors.part"), b"x").unwrap();
        assert!(first_start_hint(&data).is_some(), "a .part is not a model");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/m.ckpt"), b"x").unwrap();
        assert_eq!(first_start_hint(&data), None);
    }
}
