//! `models ensure`: the declared-models file, store files linked (never copied), and the
//! rest planned for `pull`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::installed::{Manifest, Record, modified_ns};
use super::plan::{Overrides, Planned, normalise_sha256};
use super::*;

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

/// Where a store-backed model's hash comes from, recorded in the manifest.
const STORE_ORIGIN: &str = "nix-store";

impl Models {
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

#[cfg(test)]
mod tests {
    use super::*;

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
