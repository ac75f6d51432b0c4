//! Extensions as upstream will load them: built-in (in the tree), managed (a read-only
//! directory the Nix package builds) and the user's own (`<data>/extensions`), with the
//! same enable/disable and same-name rules the Python shim applies (`webui_shim.extensions`).

mod git;
mod manifest;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use manifest::{Manifest, ManifestEntry};

/// Where an extension comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Builtin,
    Managed,
    User,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Builtin => "built-in",
            Kind::Managed => "managed",
            Kind::User => "user",
        }
    }
}

/// One extension directory.
#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
    /// Upstream would load it: not disabled, not excluded by `disable_all_extensions`, not
    /// hidden by a managed extension of the same name.
    pub enabled: bool,
    /// In `disabled_extensions`.
    pub disabled: bool,
    /// A user extension hidden by the managed one at this path (the managed one wins).
    pub shadowed_by: Option<PathBuf>,
    /// Where it comes from (git remote or pinned URL), and its revision.
    pub source: Option<String>,
    pub revision: Option<String>,
    pub has_installer: bool,
    pub has_preload: bool,
    pub scripts: usize,
    pub javascript: usize,
    pub has_style: bool,
    pub localizations: Vec<String>,
}

/// Upstream's `disable_all_extensions` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisableAll {
    None,
    Extra,
    All,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtensionsError {
    #[error("Cannot read the extensions directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "The managed extensions directory {0} does not exist. Check --managed-extensions / \
         SD_WEBUI_MANAGED_EXTENSIONS."
    )]
    ManagedMissing(PathBuf),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Settings(#[from] crate::settings::write::WriteError),
}

/// Every extension the webui would see, in upstream's order (built-in, managed, user).
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub disable_all: DisableAll,
    pub managed_dir: Option<PathBuf>,
    pub user_dir: PathBuf,
    pub extensions: Vec<Extension>,
}

/// The directories to scan and the settings file that enables or disables extensions.
pub struct Locations<'a> {
    pub tree: &'a Path,
    pub managed: Option<&'a Path>,
    pub data: &'a Path,
}

impl Inventory {
    pub fn scan(at: &Locations<'_>) -> Result<Inventory, ExtensionsError> {
        let settings = read_settings(&at.data.join("config.json"))?;
        let disable_all = match settings
            .get("disable_all_extensions")
            .and_then(serde_json::Value::as_str)
        {
            Some("all") => DisableAll::All,
            Some("extra") => DisableAll::Extra,
            _ => DisableAll::None,
        };
        let disabled: Vec<String> = settings
            .get("disabled_extensions")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();

        let builtin_dir = at.tree.join("extensions-builtin");
        let user_dir = at.data.join("extensions");
        let (manifest, managed_names) = match at.managed {
            Some(dir) if !dir.is_dir() => return Err(ExtensionsError::ManagedMissing(dir.into())),
            Some(dir) => (Manifest::read(dir)?, subdirectories(dir, true)?),
            None => (Manifest::default(), Vec::new()),
        };

        let mut extensions = Vec::new();
        for name in subdirectories(&builtin_dir, false)? {
            extensions.push(Extension::new(
                &name,
                builtin_dir.join(&name),
                Kind::Builtin,
            ));
        }
        if let Some(dir) = at.managed {
            for name in &managed_names {
                let mut ext = Extension::new(name, dir.join(name), Kind::Managed);
                if let Some(entry) = manifest.extensions.get(name) {
                    ext.source = entry.url.clone();
                    ext.revision = entry.rev.clone();
                }
                extensions.push(ext);
            }
        }
        for name in subdirectories(&user_dir, false)? {
            let path = user_dir.join(&name);
            let mut ext = Extension::new(&name, path.clone(), Kind::User);
            let repo = git::read(&path);
            ext.source = repo.remote;
            ext.revision = repo.head;
            // Upstream's canonical name is the directory name, lower-cased (ExtensionMetadata).
            let canonical = name.trim().to_lowercase();
            ext.shadowed_by = at.managed.and_then(|dir| {
                managed_names
                    .iter()
                    .find(|m| m.trim().to_lowercase() == canonical)
                    .map(|m| dir.join(m))
            });
            extensions.push(ext);
        }
        for ext in &mut extensions {
            ext.disabled = disabled.contains(&ext.name);
            let allowed = match disable_all {
                DisableAll::All => false,
                DisableAll::Extra => ext.kind == Kind::Builtin,
                DisableAll::None => true,
            };
            ext.enabled = allowed && !ext.disabled && ext.shadowed_by.is_none();
        }
        Ok(Inventory {
            disable_all,
            managed_dir: at.managed.map(Path::to_owned),
            user_dir,
            extensions,
        })
    }

    /// Look an extension up by its directory name; a user extension hidden by a managed one
    /// is found only when no loaded one has that name.
    pub fn find(&self, name: &str) -> Option<&Extension> {
        let mut matches = self.extensions.iter().filter(|e| e.name == name);
        let first = matches.next()?;
        Some(
            std::iter::once(first)
                .chain(matches)
                .find(|e| e.shadowed_by.is_none())
                .unwrap_or(first),
        )
    }
}

impl Extension {
    fn new(name: &str, path: PathBuf, kind: Kind) -> Extension {
        let count = |sub: &str, ext: &str| {
            std::fs::read_dir(path.join(sub))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| {
                            e.path().is_file()
                                && e.path()
                                    .extension()
                                    .is_some_and(|x| x.eq_ignore_ascii_case(ext))
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        let mut localizations: Vec<String> = std::fs::read_dir(path.join("localizations"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let p = e.path();
                        (p.extension()
                            .is_some_and(|x| x.eq_ignore_ascii_case("json")))
                        .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                        .flatten()
                    })
                    .collect()
            })
            .unwrap_or_default();
        localizations.sort();
        Extension {
            name: name.to_owned(),
            kind,
            enabled: true,
            disabled: false,
            shadowed_by: None,
            source: None,
            revision: None,
            has_installer: path.join("install.py").is_file(),
            has_preload: path.join("preload.py").is_file(),
            scripts: count("scripts", "py"),
            javascript: count("javascript", "js"),
            has_style: path.join("style.css").is_file(),
            localizations,
            path,
        }
    }
}

/// Directory entries that are directories (following symlinks), sorted; none when `dir` is
/// absent (upstream skips a missing directory too). Upstream lists hidden ones as well; the
/// managed directory's are skipped (as `webui_shim.extensions` does).
fn subdirectories(dir: &Path, skip_hidden: bool) -> Result<Vec<String>, ExtensionsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ExtensionsError::ReadDir {
                path: dir.into(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(skip_hidden && n.starts_with('.')))
        .collect();
    names.sort();
    Ok(names)
}

fn read_settings(path: &Path) -> Result<serde_json::Value, ExtensionsError> {
    Ok(crate::settings::write::read_object(path)?
        .map_or(serde_json::Value::Null, serde_json::Value::Object))
}

#[cfg(test)]
mod tests;
