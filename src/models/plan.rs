//! From a reference to a download job: which URLs, which token, where it goes, and which
//! hash it must have.
//!
//! The expected hash is taken, in order, from: the user (`--sha256`, or the declared-models
//! file), the catalog, or the source itself when it publishes one (Civitai's API lists a
//! SHA256 per file; the Hugging Face Hub API lists the LFS sha256 of every large file). A
//! plain URL without `--sha256` has no hash to check against: it is downloaded, its hash is
//! printed and recorded, and it shows as "unverified" (see `models list`). Two sources that
//! disagree are an error, never a silent choice.

use std::path::Path;

use serde::Deserialize;

use super::ModelsError;
use super::catalog::{Catalog, Entry, is_sha256_hex};
use super::download::{Job, Source};
use super::paths::{models_dir, validate_file_name, validate_folder};
use super::reference::{Endpoints, Reference, Tokens};

/// Where the expected hash came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOrigin {
    User,
    Catalog,
    HuggingFace,
    Civitai,
}

impl HashOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            HashOrigin::User => "user",
            HashOrigin::Catalog => "catalog",
            HashOrigin::HuggingFace => "huggingface",
            HashOrigin::Civitai => "civitai",
        }
    }
}

/// What the user may override on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub sha256: Option<String>,
    pub folder: Option<String>,
    pub file_name: Option<String>,
}

/// A resolved download, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The reference as the user wrote it (recorded in the manifest).
    pub reference: String,
    /// The catalog name, when it is a catalog entry.
    pub catalog: Option<String>,
    /// `folder/file` below `<data>/models`.
    pub relative: String,
    pub job: Job,
    pub origin: Option<HashOrigin>,
}

const HF_HINT: &str = "set HF_TOKEN or run `huggingface-cli login`; for a gated model, accept its terms on its Hugging Face page first";
const CIVITAI_HINT: &str =
    "set CIVITAI_API_TOKEN to an API key from your civitai.com account settings";

/// Resolves references against the catalog and the endpoints.
pub struct Planner<'a> {
    pub catalog: &'a Catalog,
    pub endpoints: &'a Endpoints,
    pub tokens: &'a Tokens,
    pub data_dir: &'a Path,
    pub client: &'a reqwest::Client,
}

impl Planner<'_> {
    pub async fn plan(
        &self,
        reference: &Reference,
        overrides: &Overrides,
    ) -> Result<Planned, ModelsError> {
        let user_hash = overrides
            .sha256
            .as_deref()
            .map(normalise_sha256)
            .transpose()?;
        let (folder, file, sources, known, size, catalog) = match reference {
            Reference::Catalog(name) => {
                let entry = self
                    .catalog
                    .get(name)
                    .ok_or_else(|| ModelsError::UnknownModel { name: name.clone() })?;
                let sources = self.catalog_sources(entry)?;
                let known = entry.sha256.clone().map(|h| (h, HashOrigin::Catalog));
                (
                    overrides
                        .folder
                        .clone()
                        .unwrap_or_else(|| entry.folder.clone()),
                    overrides
                        .file_name
                        .clone()
                        .unwrap_or_else(|| entry.file.clone()),
                    sources,
                    known,
                    entry.size,
                    Some(entry.name.clone()),
                )
            }
            Reference::Url(url) => {
                let folder = self.need_folder(reference, overrides)?;
                let file = self.need_file_name(reference, overrides)?;
                (folder, file, vec![self.source(url)], None, None, None)
            }
            Reference::HuggingFace {
                repo,
                revision,
                path,
            } => {
                let folder = self.need_folder(reference, overrides)?;
                let file = self.need_file_name(reference, overrides)?;
                let url = self.endpoints.hf_resolve_url(repo, revision, path);
                let (known, size) = if user_hash.is_some() {
                    (None, None)
                } else {
                    self.hf_lfs_hash(repo, revision, path).await
                };
                (folder, file, vec![self.source(&url)], known, size, None)
            }
            Reference::Civitai { version_id } => {
                let found = self.civitai(*version_id).await?;
                let folder = match (&overrides.folder, found.folder) {
                    (Some(folder), _) => folder.clone(),
                    (None, Some(folder)) => folder.to_owned(),
                    (None, None) => {
                        return Err(ModelsError::NeedFolder {
                            reference: reference.to_string(),
                            why: format!("Civitai calls it a `{}`", found.kind),
                        });
                    }
                };
                let file = overrides.file_name.clone().unwrap_or(found.file_name);
                let known = found.sha256.map(|h| (h, HashOrigin::Civitai));
                (
                    folder,
                    file,
                    vec![self.source(&found.url)],
                    known,
                    None,
                    None,
                )
            }
        };
        validate_folder(&folder)?;
        validate_file_name(&file)?;
        let (sha256, origin) = match (user_hash, known) {
            (Some(given), Some((known, origin))) if !given.eq_ignore_ascii_case(&known) => {
                return Err(ModelsError::HashConflict {
                    reference: reference.to_string(),
                    given,
                    known,
                    origin: origin.as_str(),
                });
            }
            (Some(given), _) => (Some(given), Some(HashOrigin::User)),
            (None, Some((known, origin))) => (Some(known), Some(origin)),
            (None, None) => (None, None),
        };
        let relative = format!("{folder}/{file}");
        Ok(Planned {
            reference: reference.to_string(),
            catalog,
            job: Job {
                label: reference.to_string(),
                sources,
                target: models_dir(self.data_dir).join(&folder).join(&file),
                sha256,
                size,
            },
            relative,
            origin,
        })
    }

    fn source(&self, url: &str) -> Source {
        let bearer = self
            .endpoints
            .token_for(url, self.tokens)
            .map(str::to_owned);
        let hint = if url.starts_with(&self.endpoints.huggingface) {
            Some(HF_HINT)
        } else if url.starts_with(&self.endpoints.civitai) {
            Some(CIVITAI_HINT)
        } else {
            None
        };
        Source {
            url: url.to_owned(),
            bearer,
            auth_hint: hint.map(str::to_owned),
        }
    }

    fn catalog_sources(&self, entry: &Entry) -> Result<Vec<Source>, ModelsError> {
        entry
            .urls
            .iter()
            .map(|text| match Reference::parse(text)? {
                Reference::Url(url) => Ok(self.source(&url)),
                Reference::HuggingFace {
                    repo,
                    revision,
                    path,
                } => Ok(self.source(&self.endpoints.hf_resolve_url(&repo, &revision, &path))),
                other => Err(ModelsError::Catalog(super::catalog::CatalogError::Entry {
                    name: entry.name.clone(),
                    problem: format!("`{other}` is not a URL or hf: reference"),
                })),
            })
            .collect()
    }

    fn need_folder(
        &self,
        reference: &Reference,
        overrides: &Overrides,
    ) -> Result<String, ModelsError> {
        overrides
            .folder
            .clone()
            .ok_or_else(|| ModelsError::NeedFolder {
                reference: reference.to_string(),
                why: "a URL does not say what kind of model it is".into(),
            })
    }

    fn need_file_name(
        &self,
        reference: &Reference,
        overrides: &Overrides,
    ) -> Result<String, ModelsError> {
        overrides
            .file_name
            .clone()
            .or_else(|| reference.suggested_file_name())
            .ok_or_else(|| ModelsError::NeedFileName {
                reference: reference.to_string(),
            })
    }

    /// The LFS sha256 and size the Hub lists for `path`; `None` (with a warning) when the
    /// endpoint has no such API (some mirrors) or the file is not in LFS.
    async fn hf_lfs_hash(
        &self,
        repo: &str,
        revision: &str,
        path: &str,
    ) -> (Option<(String, HashOrigin)>, Option<u64>) {
        #[derive(Deserialize)]
        struct Lfs {
            oid: String,
            size: u64,
        }
        #[derive(Deserialize)]
        struct TreeEntry {
            path: String,
            lfs: Option<Lfs>,
        }
        let url = self.endpoints.hf_tree_url(repo, revision, path);
        let mut request = self.client.get(&url);
        if let Some(token) = self.endpoints.token_for(&url, self.tokens) {
            request = request.bearer_auth(token);
        }
        let listed: Result<Vec<TreeEntry>, String> = async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status().as_u16()));
            }
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice(&body).map_err(|e| e.to_string())
        }
        .await;
        match listed {
            Ok(entries) => match entries
                .into_iter()
                .find(|e| e.path == path)
                .and_then(|e| e.lfs)
            {
                Some(lfs) if is_sha256_hex(&lfs.oid.to_ascii_lowercase()) => (
                    Some((lfs.oid.to_ascii_lowercase(), HashOrigin::HuggingFace)),
                    Some(lfs.size),
                ),
                _ => {
                    tracing::warn!(
                        "The Hub lists no sha256 for `{path}` in {repo}; it will not be verified"
                    );
                    (None, None)
                }
            },
            Err(e) => {
                tracing::warn!(
                    "Could not ask `{url}` for the sha256 of `{path}` ({e}); it will not be verified"
                );
                (None, None)
            }
        }
    }

    async fn civitai(&self, version_id: u64) -> Result<CivitaiFile, ModelsError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            files: Vec<File>,
            model: Option<Model>,
        }
        #[derive(Deserialize)]
        struct Model {
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            name: String,
            #[serde(default)]
            primary: bool,
            #[serde(default)]
            hashes: std::collections::BTreeMap<String, String>,
            download_url: String,
        }
        let url = self.endpoints.civitai_version_url(version_id);
        let lookup = |detail: String| ModelsError::Lookup {
            reference: format!("civitai:{version_id}"),
            url: url.clone(),
            detail,
        };
        let mut request = self.client.get(&url);
        if let Some(token) = self.endpoints.token_for(&url, self.tokens) {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| lookup(super::download::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(lookup(format!("HTTP {}", response.status().as_u16())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| lookup(super::download::error_chain(&e)))?;
        let version: Version = serde_json::from_slice(&body).map_err(|e| lookup(e.to_string()))?;
        let kind = version.model.map(|m| m.kind).unwrap_or_default();
        let mut files = version.files;
        let index = files.iter().position(|f| f.primary).unwrap_or(0);
        if files.is_empty() {
            return Err(lookup("the version lists no files".into()));
        }
        let file = files.swap_remove(index);
        let sha256 = file
            .hashes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("sha256"))
            .map(|(_, v)| v.to_ascii_lowercase())
            .filter(|h| is_sha256_hex(h));
        Ok(CivitaiFile {
            folder: civitai_folder(&kind),
            kind,
            file_name: file.name,
            url: file.download_url,
            sha256,
        })
    }
}

struct CivitaiFile {
    folder: Option<&'static str>,
    kind: String,
    file_name: String,
    url: String,
    sha256: Option<String>,
}

/// Upstream's folder for a Civitai model type; `None` where the user must say.
fn civitai_folder(kind: &str) -> Option<&'static str> {
    match kind {
        "Checkpoint" => Some("Stable-diffusion"),
        "LORA" | "LoCon" | "DoRA" => Some("Lora"),
        "VAE" => Some("VAE"),
        "Hypernetwork" => Some("hypernetworks"),
        "Upscaler" => Some("ESRGAN"),
        "Controlnet" => Some("ControlNet"),
        _ => None,
    }
}

/// Accept upper or lower case, store lower case.
pub fn normalise_sha256(text: &str) -> Result<String, ModelsError> {
    let lower = text.trim().to_ascii_lowercase();
    if is_sha256_hex(&lower) {
        Ok(lower)
    } else {
        Err(ModelsError::BadSha256 {
            value: text.to_owned(),
        })
    }
}
