//! The catalog of well-known models, versioned as data in `models/catalog.json`.
//!
//! It lives in the repository (not in code) so a reviewer can check each hash against the
//! source named next to it, and it is embedded at build time so the launcher never needs a
//! network round trip to know what "sd15" means. [`Catalog::embedded`] validates it; a test
//! makes a broken catalog a build failure rather than a runtime surprise.

use serde::Deserialize;

use super::paths::{validate_file_name, validate_folder};

const EMBEDDED: &str = include_str!("../../models/catalog.json");

/// The only catalog format this launcher understands.
pub const CATALOG_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("Failed to parse the model catalog")]
    Parse(#[source] serde_json::Error),
    #[error(
        "The model catalog has version {found}; this launcher understands version {CATALOG_VERSION}"
    )]
    Version { found: u32 },
    #[error("Catalog entry `{name}`: {problem}")]
    Entry { name: String, problem: String },
    #[error(
        "Failed to read the model catalog `{path}` (from {})",
        crate::env_vars::SD_WEBUI_MODELS_CATALOG
    )]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "In the model catalog `{path}` (from {})",
        crate::env_vars::SD_WEBUI_MODELS_CATALOG
    )]
    Extra {
        path: std::path::PathBuf,
        #[source]
        source: Box<CatalogError>,
    },
}

/// One downloadable file the launcher knows by name.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// What the user types: `models pull sd15`.
    pub name: String,
    pub title: String,
    /// Sets this entry belongs to (`major`, `first-use`), for `models pull --group`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Upstream's folder under `<data>/models/` where the webui looks for it.
    pub folder: String,
    /// The file name upstream expects (not always the URL's last segment).
    pub file: String,
    /// Tried in order; `hf:ORG/REPO/FILE` follows `HF_ENDPOINT`.
    pub urls: Vec<String>,
    /// Lower-case hex; `None` only with a reason in `sha256_source`.
    pub sha256: Option<String>,
    /// Where the hash was published, so it can be checked by someone else.
    pub sha256_source: String,
    /// Exact size in bytes.
    pub size: Option<u64>,
    pub license: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: u32,
    #[expect(dead_code, reason = "documentation for humans reading the JSON")]
    about: Option<String>,
    models: Vec<Entry>,
}

/// The parsed, validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// The catalog built into this binary.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::parse(EMBEDDED)
    }

    /// The embedded catalog plus the entries of the file named by `SD_WEBUI_MODELS_CATALOG`
    /// (same format), when set: an entry of the same name replaces the built-in one, others
    /// are added. For a site's own mirrors and models, and for tests against a local server.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::embedded()?;
        let Some(path) = lookup(crate::env_vars::SD_WEBUI_MODELS_CATALOG).filter(|p| !p.is_empty())
        else {
            return Ok(catalog);
        };
        let path = std::path::PathBuf::from(path);
        let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Read {
            path: path.clone(),
            source,
        })?;
        let extra = Catalog::parse(&text).map_err(|source| CatalogError::Extra {
            path: path.clone(),
            source: Box::new(source),
        })?;
        tracing::debug!(
            "model catalog: {} entries from `{}`",
            extra.entries.len(),
            path.display()
        );
        for entry in extra.entries {
            match catalog.entries.iter_mut().find(|e| e.name == entry.name) {
                Some(existing) => *existing = entry,
                None => catalog.entries.push(entry),
            }
        }
        Ok(catalog)
    }

    /// Parse and validate catalog JSON.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text).map_err(CatalogError::Parse)?;
        if file.version != CATALOG_VERSION {
            return Err(CatalogError::Version {
                found: file.version,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for entry in &file.models {
            let problem = |problem: String| CatalogError::Entry {
                name: entry.name.clone(),
                problem,
            };
            if !seen.insert(entry.name.as_str()) {
                return Err(problem("the name is used twice".into()));
            }
            if !is_catalog_name(&entry.name) {
                return Err(problem(
                    "names are lower-case letters, digits, `.`, `_` and `-`".into(),
                ));
            }
            validate_folder(&entry.folder).map_err(|e| problem(e.to_string()))?;
            validate_file_name(&entry.file).map_err(|e| problem(e.to_string()))?;
            if entry.urls.is_empty() {
                return Err(problem("no URL".into()));
            }
            if let Some(hash) = &entry.sha256
                && !is_sha256_hex(hash)
            {
                return Err(problem(format!("`{hash}` is not 64 lower-case hex digits")));
            }
            if entry.sha256_source.trim().is_empty() {
                return Err(problem(
                    "`sha256_source` must say where the hash comes from (or why there is none)"
                        .into(),
                ));
            }
        }
        Ok(Catalog {
            entries: file.models,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Entries tagged with `group`, in catalog order.
    pub fn group<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.groups.iter().any(|g| g == group))
    }

    /// Every group name, sorted, for error messages and `models list`.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = self
            .entries
            .iter()
            .flat_map(|e| e.groups.iter().map(String::as_str))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

/// Catalog names are what a user types; keep them shell-safe and unambiguous with URLs.
pub fn is_catalog_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// 64 hex digits, lower case (the catalog's canonical form).
pub fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_is_valid_and_has_the_required_models() {
        let catalog = Catalog::embedded().unwrap();
        for name in [
            "sd15",
            "sdxl-base",
            "sdxl-refiner",
            "sdxl-vae-fp16-fix",
            "sd15-vae-ft-mse",
            "realesrgan-x4plus",
            "realesrgan-x4plus-anime",
            "gfpgan-1.4",
            "codeformer",
        ] {
            let entry = catalog.get(name).unwrap_or_else(|| panic!("{name}"));
            assert!(entry.sha256.is_some(), "{name} has a hash");
            assert!(entry.size.is_some(), "{name} has a size");
        }
        assert_eq!(
            catalog.get("sd15").unwrap().sha256.as_deref(),
            Some("6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"),
            "the hash upstream's own download checks"
        );
        assert!(catalog.group("major").count() >= 4);
        assert_eq!(catalog.groups(), vec!["first-use", "major"]);
    }

    #[test]
    fn upstream_file_names_and_folders_are_kept() {
        // Upstream looks for exactly these names; anything else and it downloads again.
        let catalog = Catalog::embedded().unwrap();
        let at = |n: &str| {
            let e = catalog.get(n).unwrap();
            format!("{}/{}", e.folder, e.file)
        };
        assert_eq!(at("codeformer"), "Codeformer/codeformer-v0.1.0.pth");
        assert_eq!(at("gfpgan-1.4"), "GFPGAN/GFPGANv1.4.pth");
        assert_eq!(
            at("facexlib-detection"),
            "GFPGAN/detection_Resnet50_Final.pth"
        );
        assert_eq!(at("realesrgan-x4plus"), "RealESRGAN/RealESRGAN_x4plus.pth");
        assert_eq!(
            at("sd15"),
            "Stable-diffusion/v1-5-pruned-emaonly.safetensors"
        );
    }

    #[test]
    fn bad_entries_are_rejected_with_the_reason() {
        let entry = |extra: &str| {
            format!(
                r#"{{"version":1,"models":[{{"name":"x","title":"t","folder":"VAE","file":"a.pt",
                "urls":["https://e/a.pt"],"sha256_source":"s","size":1,"license":"l"{extra}}}]}}"#
            )
        };
        assert!(Catalog::parse(&entry("")).is_ok());
        let err = Catalog::parse(&entry(r#","sha256":"ABC""#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Catalog entry `x`: `ABC` is not 64 lower-case hex digits"
        );
        let err = Catalog::parse(&entry("").replace("\"VAE\"", "\"../etc\"")).unwrap_err();
        assert!(err.to_string().starts_with("Catalog entry `x`: "), "{err}");
        let err = Catalog::parse(&entry("").replace("\"version\":1", "\"version\":2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The model catalog has version 2; this launcher understands version 1"
        );
    }
}
