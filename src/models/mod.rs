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
pub mod download;
pub mod first_use;
pub mod installed;
pub mod paths;
pub mod plan;
pub mod reference;

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::Deserialize;

use self::catalog::{Catalog, CatalogError};
use self::download::{DownloadError, Downloader, Outcome, Reporter, hash_file};
use self::installed::{Manifest, Record, modified_ns};
use self::paths::{NameError, PART_META_SUFFIX, PART_SUFFIX, models_dir, with_suffix};
use self::plan::{HashOrigin, Overrides, Planned, Planner, normalise_sha256};
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
    #[error("Failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binary units, one decimal: `4.0 GiB`, `512 B`.
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

/// What `pull` did for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    Downloaded(Outcome),
    /// The file was already there; `verified` when its hash matched the expected one.
    Present {
        path: PathBuf,
        sha256: String,
        verified: bool,
    },
}

/// One row of `models list`.
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

/// One entry of a declared-models file (`models ensure --from FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Declared {
    /// A catalog name.
    Name(String),
    /// Any reference, pinned: `{"url": ..., "sha256": ..., "folder": ..., "name": ...}`.
    File {
        url: String,
        sha256: String,
        folder: String,
        #[serde(default)]
        name: Option<String>,
    },
    /// A file already in the Nix store (a fixed-output `fetchurl`, see `nix/models.nix`):
    /// `{"path": "/nix/store/...", "folder": ..., "name": ..., "sha256": ...}`, linked, not
    /// copied. `name` defaults to the store path's name without its hash.
    Store {
        path: PathBuf,
        folder: String,
        #[serde(default)]
        name: Option<String>,
        /// The hash the derivation was fixed with, when known: recorded, so `models list`
        /// shows the file verified (`nix/models.nix` gives it; without it, as for the NixOS
        /// module's own `{ path, folder }` entries, nothing is recorded, like a file placed by
        /// hand).
        #[serde(default)]
        sha256: Option<String>,
    },
}

/// What `ensure` did for a store-backed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// A new symlink `link` → `store_path`.
    Created { link: PathBuf, store_path: PathBuf },
    /// The symlink was there already.
    Present { link: PathBuf, store_path: PathBuf },
    /// Our earlier symlink pointed at another store path (the flake was updated).
    Updated { link: PathBuf, store_path: PathBuf },
}

/// The Nix store directory (`NIX_STORE_DIR`, as Nix reads it, else `/nix/store`).
pub fn nix_store_dir(lookup: impl Fn(&str) -> Option<String>) -> PathBuf {
    lookup(crate::env_vars::NIX_STORE_DIR)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/nix/store"), PathBuf::from)
}

/// Where a store-backed model's hash comes from, recorded in the manifest.
const STORE_ORIGIN: &str = "nix-store";

impl Models {
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

    /// Resolve the declared models of `models ensure`.
    pub async fn plan_declared(&self, path: &Path) -> Result<Vec<Planned>, ModelsError> {
        let mut plans = Vec::new();
        for entry in read_declared(path)? {
            let plan = match entry {
                Declared::Name(name) => self.plan(&name, &Overrides::default()).await?,
                Declared::File {
                    url,
                    sha256,
                    folder,
                    name,
                } => {
                    let overrides = Overrides {
                        sha256: Some(sha256),
                        folder: Some(folder),
                        file_name: name,
                    };
                    self.plan(&url, &overrides).await?
                }
                Declared::Store { .. } => continue, // see `link_declared`
            };
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Link the store-backed models of a declared-models file into `<data>/models/<folder>/`
    /// (`store_dir`: see [`nix_store_dir`]). One result per store entry, in order.
    ///
    /// The store is trusted, not re-hashed: a fixed-output derivation's output was checked
    /// against its sha256 by Nix when it was built or substituted, and store paths are
    /// immutable (read-only, owned by Nix), so hashing gigabytes again at every start would
    /// only repeat that check. That is why the path must resolve inside the store. An
    /// entry's sha256 (the derivation's), when given, is recorded as the file's, so
    /// `models list` shows it verified; `models verify` hashes it for real on request.
    /// A user's file at the link's place is never replaced (an error says so); a symlink into
    /// the store holds nothing of the user's and is moved to the new path.
    pub fn link_declared(
        &self,
        path: &Path,
        store_dir: &Path,
    ) -> Result<Vec<Result<Linked, ModelsError>>, ModelsError> {
        let store_dir = std::fs::canonicalize(store_dir).unwrap_or_else(|_| store_dir.to_owned());
        Ok(read_declared(path)?
            .into_iter()
            .filter_map(|entry| match entry {
                Declared::Store {
                    path,
                    folder,
                    name,
                    sha256,
                } => Some(self.link_one(&store_dir, &path, &folder, name, sha256)),
                _ => None,
            })
            .collect())
    }

    fn link_one(
        &self,
        store_dir: &Path,
        store_path: &Path,
        folder: &str,
        name: Option<String>,
        sha256: Option<String>,
    ) -> Result<Linked, ModelsError> {
        let sha256 = sha256.as_deref().map(normalise_sha256).transpose()?;
        let resolved = std::fs::canonicalize(store_path).map_err(|source| ModelsError::Io {
            action: "find",
            path: store_path.to_owned(),
            source,
        })?;
        if !resolved.starts_with(store_dir) || !resolved.is_file() {
            return Err(ModelsError::NotInStore {
                path: store_path.to_owned(),
                store: store_dir.to_owned(),
            });
        }
        let name = match name {
            Some(name) => name,
            None => store_name(store_path).ok_or_else(|| ModelsError::NeedFileName {
                reference: store_path.display().to_string(),
            })?,
        };
        paths::validate_folder(folder)?;
        paths::validate_file_name(&name)?;
        let relative = format!("{folder}/{name}");
        let models = self.models_dir();
        let link = models.join(&relative);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| ModelsError::Io {
                action,
                path,
                source,
            }
        };
        let result = match std::fs::symlink_metadata(&link) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = link.parent().unwrap_or(&models);
                std::fs::create_dir_all(parent).map_err(io("create", parent))?;
                std::os::unix::fs::symlink(store_path, &link).map_err(io("link", &link))?;
                Linked::Created {
                    link: link.clone(),
                    store_path: store_path.to_owned(),
                }
            }
            Err(source) => return Err(io("inspect", &link)(source)),
            Ok(meta) if meta.file_type().is_symlink() => {
                let current = std::fs::read_link(&link).map_err(io("read", &link))?;
                let current_resolved = std::fs::canonicalize(&current).ok();
                if current == store_path || current_resolved.as_deref() == Some(&resolved) {
                    Linked::Present {
                        link: link.clone(),
                        store_path: store_path.to_owned(),
                    }
                } else if current.starts_with(store_dir)
                    || current_resolved.is_some_and(|c| c.starts_with(store_dir))
                {
                    // A link into the store holds nothing of the user's (the bytes are in
                    // the store): an earlier declaration, moved to the new path.
                    // Replace atomically: a new link beside it, renamed over it.
                    let temp = paths::with_suffix(&link, ".link.tmp");
                    let _ = std::fs::remove_file(&temp);
                    std::os::unix::fs::symlink(store_path, &temp).map_err(io("link", &temp))?;
                    std::fs::rename(&temp, &link).map_err(io("replace", &link))?;
                    Linked::Updated {
                        link: link.clone(),
                        store_path: store_path.to_owned(),
                    }
                } else {
                    return Err(ModelsError::Occupied {
                        path: link,
                        store_path: store_path.to_owned(),
                    });
                }
            }
            Ok(_) => {
                return Err(ModelsError::Occupied {
                    path: link,
                    store_path: store_path.to_owned(),
                });
            }
        };
        let metadata = std::fs::metadata(&resolved).map_err(io("inspect", &resolved))?;
        let record = sha256.map(|sha256| Record {
            catalog: None,
            source: store_path.display().to_string(),
            // Trusted, not hashed: see `link_declared`.
            sha256: sha256.clone(),
            expected: Some(sha256),
            origin: Some(STORE_ORIGIN.to_owned()),
            size: metadata.len(),
            modified_ns: modified_ns(&metadata),
        });
        let stale = Manifest::load(&models).files.contains_key(&relative);
        if record.is_some() || stale {
            Manifest::update(&models, |m| match record {
                Some(record) => {
                    m.files.insert(relative, record);
                }
                None => {
                    m.files.remove(&relative);
                }
            })?;
        }
        Ok(result)
    }

    /// Download `plans`, `jobs` at a time. Files already in place are checked, not fetched
    /// again. Returns one result per plan, in order; a failure does not stop the others.
    pub async fn pull(
        &self,
        plans: &[Planned],
        jobs: usize,
        reporter: &dyn Reporter,
    ) -> Vec<Result<Pulled, ModelsError>> {
        let manifest_lock = tokio::sync::Mutex::new(());
        let mut seen = std::collections::BTreeSet::new();
        let tasks = plans.iter().enumerate().map(|(id, plan)| {
            let duplicate = !seen.insert(plan.job.target.clone());
            let manifest_lock = &manifest_lock;
            async move {
                if duplicate {
                    // Listed twice: the other copy of the same job does the work.
                    return (id, Ok(None));
                }
                let result = self.pull_one(plan, id, reporter, manifest_lock).await;
                (id, result.map(Some))
            }
        });
        let mut results: Vec<(usize, Result<Option<Pulled>, ModelsError>)> =
            futures_util::stream::iter(tasks)
                .buffer_unordered(jobs.max(1))
                .collect()
                .await;
        results.sort_by_key(|(id, _)| *id);
        // A duplicate reports what its first occurrence got.
        let mut by_target: std::collections::BTreeMap<PathBuf, Result<Pulled, String>> =
            std::collections::BTreeMap::new();
        for (id, result) in &results {
            if let Ok(Some(pulled)) = result {
                by_target.insert(plans[*id].job.target.clone(), Ok(pulled.clone()));
            } else if let Err(e) = result {
                by_target.insert(plans[*id].job.target.clone(), Err(e.to_string()));
            }
        }
        results
            .into_iter()
            .map(|(id, result)| match result {
                Ok(Some(pulled)) => Ok(pulled),
                Ok(None) => match by_target.get(&plans[id].job.target) {
                    Some(Ok(pulled)) => Ok(pulled.clone()),
                    _ => Err(ModelsError::NotInstalled {
                        name: plans[id].relative.clone(),
                    }),
                },
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn pull_one(
        &self,
        plan: &Planned,
        id: usize,
        reporter: &dyn Reporter,
        manifest_lock: &tokio::sync::Mutex<()>,
    ) -> Result<Pulled, ModelsError> {
        let models = self.models_dir();
        let target = &plan.job.target;
        if target.exists() {
            let present = self.check_present(plan).await?;
            let _guard = manifest_lock.lock().await;
            self.record(plan, &present.1, present.0.clone())?;
            return Ok(Pulled::Present {
                path: target.clone(),
                sha256: present.0,
                verified: plan.job.sha256.is_some(),
            });
        }
        let outcome = self.downloader.fetch(&plan.job, id, reporter).await?;
        let _guard = manifest_lock.lock().await;
        let metadata = std::fs::metadata(&outcome.path).map_err(|source| ModelsError::Io {
            action: "inspect",
            path: outcome.path.clone(),
            source,
        })?;
        self.record(plan, &metadata, outcome.sha256.clone())?;
        tracing::debug!("`{}` recorded in {}", plan.relative, models.display());
        Ok(Pulled::Downloaded(outcome))
    }

    /// A file already at the target: trust the record while the file is unchanged, else
    /// hash it. A different hash is an error; the file is the user's and is left alone.
    async fn check_present(
        &self,
        plan: &Planned,
    ) -> Result<(String, std::fs::Metadata), ModelsError> {
        let target = plan.job.target.clone();
        let io = |source| ModelsError::Io {
            action: "inspect",
            path: target.clone(),
            source,
        };
        let metadata = std::fs::metadata(&target).map_err(io)?;
        let manifest = Manifest::load(&self.models_dir());
        let cached = manifest
            .files
            .get(&plan.relative)
            .filter(|r| r.fresh(&metadata))
            .map(|r| r.sha256.clone());
        let sha256 = match cached {
            Some(sha256) => sha256,
            None => {
                let path = target.clone();
                tokio::task::spawn_blocking(move || hash_file(&path))
                    .await
                    .map_err(|e| io(std::io::Error::other(e)))??
                    .0
            }
        };
        if let Some(expected) = &plan.job.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ModelsError::ExistsDifferent {
                path: target,
                expected: expected.clone(),
                actual: sha256,
            });
        }
        Ok((sha256, metadata))
    }

    fn record(
        &self,
        plan: &Planned,
        metadata: &std::fs::Metadata,
        sha256: String,
    ) -> Result<(), ModelsError> {
        let record = Record {
            catalog: plan.catalog.clone(),
            source: plan.reference.clone(),
            sha256,
            expected: plan.job.sha256.clone(),
            origin: plan.origin.map(|o| o.as_str().to_owned()),
            size: metadata.len(),
            modified_ns: modified_ns(metadata),
        };
        Manifest::update(&self.models_dir(), |m| {
            m.files.insert(plan.relative.clone(), record);
        })
    }

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

/// The declared-models file: a JSON list of [`Declared`].
pub fn read_declared(path: &Path) -> Result<Vec<Declared>, ModelsError> {
    let text = std::fs::read(path).map_err(|source| ModelsError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ModelsError::Declared {
        path: path.to_owned(),
        source,
    })
}

/// `/nix/store/<32 chars>-<name>` → `<name>`.
fn store_name(path: &Path) -> Option<String> {
    let base = path.file_name()?.to_str()?;
    let (hash, name) = base.split_once('-')?;
    (hash.len() == 32 && !name.is_empty()).then(|| name.to_owned())
}

/// `--sha256` as typed, checked early so a typo fails before any network traffic.
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

    #[test]
    fn declared_models_are_names_or_pinned_files() {
        let declared: Vec<Declared> = serde_json::from_str(
            r#"["sd15", {"url": "https://e/x.safetensors", "sha256": "ab", "folder": "Lora"}]"#,
        )
        .unwrap();
        assert_eq!(declared[0], Declared::Name("sd15".into()));
        assert!(
            matches!(&declared[1], Declared::File { folder, name: None, .. } if folder == "Lora")
        );
        let missing_hash: Result<Vec<Declared>, _> =
            serde_json::from_str(r#"[{"url": "https://e/x", "folder": "Lora"}]"#);
        assert!(missing_hash.is_err(), "declared files must be pinned");
    }
}
