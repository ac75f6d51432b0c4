//! Upstream's first-use downloads (upscalers, face restorers, SD3's text encoders...) through
//! the verified downloader.
//!
//! Upstream fetches these with `modules.util.load_file_from_url` the first time a feature
//! needs them: `requests` into `<file>.tmp`, no resume, no retry, and a hash check only when
//! the caller passes one (most do not). The shim replaces that function with a call into
//! [`fetch`], which keeps upstream's contract (the file lands at `<dir>/<name>`, an existing
//! file is returned as it is, the path is returned) and adds ours: the expected sha256 is
//! looked up in the catalog by URL, so a catalogued file (RealESRGAN, GFPGAN, CodeFormer,
//! facexlib's weights, SD 1.5) is verified while it streams; it resumes, retries, and is
//! renamed into place only after the check.

use std::path::{Path, PathBuf};

use super::ModelsError;
use super::catalog::{Catalog, Entry};
use super::download::{Downloader, Job, Outcome, Reporter, Source};
use super::installed::{Manifest, Record, modified_ns, relative_key};
use super::paths::{models_dir, validate_file_name};
use super::plan::HashOrigin;
use super::reference::{Endpoints, Reference, Tokens};

/// Suffix of a finished download that still waits for a check the downloader cannot make
/// (a short hash prefix) or that replaces an existing file (`re_download`). The webui lists
/// models by extension, so `x.pth.download` is never loaded.
const STAGED_SUFFIX: &str = ".download";

/// One call of upstream's `load_file_from_url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    /// Upstream's `model_dir`: any directory, not only below `<data>/models`.
    pub dir: PathBuf,
    /// Upstream's `file_name`; the URL's last path segment when `None`.
    pub file_name: Option<String>,
    /// Upstream's `hash_prefix`: all or the start of the expected sha256.
    pub hash_prefix: Option<String>,
    /// Upstream's `re_download`: replace an existing file (only once the new one is verified).
    pub replace: bool,
}

/// Where the launcher's first-use downloads get their names, hashes and credentials.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub endpoints: &'a Endpoints,
    pub tokens: &'a Tokens,
    pub downloader: &'a Downloader,
    /// When the file lands below `<data_dir>/models`, it is recorded for `models list`.
    pub data_dir: Option<&'a Path>,
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The file was already there; upstream's contract is to use it as it is.
    Present(PathBuf),
    Downloaded {
        outcome: Outcome,
        /// The catalog entry whose hash was checked, if the URL is catalogued.
        catalog: Option<String>,
    },
}

impl Fetched {
    pub fn path(&self) -> &Path {
        match self {
            Fetched::Present(path) => path,
            Fetched::Downloaded { outcome, .. } => &outcome.path,
        }
    }
}

/// The catalog entry that lists `url` (compared as parsed URLs, `hf:` resolved against the
/// configured endpoint, as upstream builds its Hugging Face URLs from `HF_ENDPOINT`).
pub fn catalogued<'c>(catalog: &'c Catalog, endpoints: &Endpoints, url: &str) -> Option<&'c Entry> {
    let wanted = reqwest::Url::parse(url).ok()?;
    catalog.entries.iter().find(|entry| {
        entry.urls.iter().any(|text| {
            let resolved = match Reference::parse(text) {
                Ok(Reference::Url(url)) => url,
                Ok(Reference::HuggingFace {
                    repo,
                    revision,
                    path,
                }) => endpoints.hf_resolve_url(&repo, &revision, &path),
                _ => return false,
            };
            reqwest::Url::parse(&resolved).is_ok_and(|u| u == wanted)
        })
    })
}

/// The expected hash: the catalog's, checked against the caller's prefix; else the caller's.
/// Returns (full hash for the downloader, a short prefix to check afterwards).
fn expected(
    url: &str,
    entry: Option<&Entry>,
    prefix: Option<&str>,
) -> Result<(Option<String>, Option<String>), ModelsError> {
    let prefix = match prefix.map(|p| p.trim().to_ascii_lowercase()) {
        Some(p) if p.is_empty() => None,
        Some(p) if p.len() <= 64 && p.chars().all(|c| c.is_ascii_hexdigit()) => Some(p),
        Some(p) => return Err(ModelsError::BadSha256 { value: p }),
        None => None,
    };
    match (entry.and_then(|e| e.sha256.clone()), prefix) {
        (Some(known), Some(prefix)) if !known.starts_with(&prefix) => {
            Err(ModelsError::HashConflict {
                reference: url.to_owned(),
                given: prefix,
                known,
                origin: HashOrigin::Catalog.as_str(),
            })
        }
        (Some(known), _) => Ok((Some(known), None)),
        (None, Some(full)) if full.len() == 64 => Ok((Some(full), None)),
        (None, prefix) => Ok((None, prefix)),
    }
}

/// Upstream's `load_file_from_url`, verified. See the module docs.
pub async fn fetch(
    context: &Context<'_>,
    request: &Request,
    reporter: &dyn Reporter,
) -> Result<Fetched, ModelsError> {
    let file_name = match &request.file_name {
        Some(name) if !name.is_empty() => name.clone(),
        // Upstream: os.path.basename(urlparse(url).path), not percent-decoded.
        _ => reqwest::Url::parse(&request.url)
            .ok()
            .and_then(|u| u.path().rsplit('/').next().map(str::to_owned))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ModelsError::NeedFileName {
                reference: request.url.clone(),
            })?,
    };
    validate_file_name(&file_name)?;
    let dir = std::path::absolute(&request.dir).map_err(|source| ModelsError::Io {
        action: "resolve",
        path: request.dir.clone(),
        source,
    })?;
    let target = dir.join(&file_name);
    if target.exists() && !request.replace {
        return Ok(Fetched::Present(target));
    }
    let entry = catalogued(context.catalog, context.endpoints, &request.url);
    let (sha256, short_prefix) = expected(&request.url, entry, request.hash_prefix.as_deref())?;
    let staged = request.replace || short_prefix.is_some();
    let job_target = if staged {
        let staged = dir.join(format!("{file_name}{STAGED_SUFFIX}"));
        // A staged file is complete but unchecked, or one that was never moved into place:
        // either way not worth keeping.
        remove_if_present(&staged)?;
        staged
    } else {
        target.clone()
    };
    let mut source = Source::new(request.url.clone());
    source.bearer = context
        .endpoints
        .token_for(&request.url, context.tokens)
        .map(str::to_owned);
    let job = Job {
        label: file_name.clone(),
        sources: vec![source],
        target: job_target.clone(),
        sha256: sha256.clone(),
        size: entry.and_then(|e| e.size),
    };
    let mut outcome = context.downloader.fetch(&job, 0, reporter).await?;
    if staged {
        if let Some(prefix) = &short_prefix
            && !outcome.sha256.starts_with(prefix.as_str())
        {
            remove_if_present(&job_target)?;
            return Err(ModelsError::Download(
                super::download::DownloadError::HashMismatch {
                    path: target,
                    expected: format!("{prefix}..."),
                    actual: outcome.sha256,
                },
            ));
        }
        std::fs::rename(&job_target, &target).map_err(|source| ModelsError::Io {
            action: "rename into place",
            path: target.clone(),
            source,
        })?;
        outcome.path = target.clone();
        outcome.verified = outcome.verified || short_prefix.is_some();
    }
    if let Some(data_dir) = context.data_dir {
        record(data_dir, &request.url, entry, &outcome, sha256.is_some())?;
    }
    Ok(Fetched::Downloaded {
        outcome,
        catalog: entry.map(|e| e.name.clone()),
    })
}

fn remove_if_present(path: &Path) -> Result<(), ModelsError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ModelsError::Io {
            action: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Note the download in `<data>/models/.downloads.json` when it landed there, so
/// `models list` shows it as verified instead of "not checked".
fn record(
    data_dir: &Path,
    url: &str,
    entry: Option<&Entry>,
    outcome: &Outcome,
    had_full_hash: bool,
) -> Result<(), ModelsError> {
    let models = models_dir(data_dir);
    let Some(relative) = relative_key(&models, &outcome.path) else {
        return Ok(());
    };
    let metadata = std::fs::metadata(&outcome.path).map_err(|source| ModelsError::Io {
        action: "inspect",
        path: outcome.path.clone(),
        source,
    })?;
    let origin = match entry {
        Some(_) => Some(HashOrigin::Catalog),
        None if had_full_hash => Some(HashOrigin::User),
        None => None,
    };
    let record = Record {
        catalog: entry.map(|e| e.name.clone()),
        source: url.to_owned(),
        sha256: outcome.sha256.clone(),
        expected: (outcome.verified && had_full_hash).then(|| outcome.sha256.clone()),
        origin: origin.map(|o| o.as_str().to_owned()),
        size: metadata.len(),
        modified_ns: modified_ns(&metadata),
    };
    Manifest::update(&models, |m| {
        m.files.insert(relative, record);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &str = "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1";

    #[test]
    fn upstreams_urls_find_their_catalog_entries() {
        let catalog = Catalog::embedded().unwrap();
        let endpoints = Endpoints::default();
        let find = |url: &str| catalogued(&catalog, &endpoints, url).map(|e| e.name.as_str());
        // modules/realesrgan_model.py, modules/codeformer_model.py, modules/sd_models.py
        assert_eq!(
            find(
                "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"
            ),
            Some("realesrgan-x4plus")
        );
        assert_eq!(
            find("https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth"),
            Some("codeformer")
        );
        assert_eq!(
            find(
                "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors"
            ),
            Some("sd15")
        );
        let mirror = Endpoints {
            huggingface: "https://hf-mirror.example".into(),
            ..Endpoints::default()
        };
        assert_eq!(
            catalogued(
                &catalog,
                &mirror,
                "https://hf-mirror.example/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors"
            )
            .map(|e| e.name.as_str()),
            Some("sd15"),
            "HF_ENDPOINT is followed, as upstream does"
        );
        assert_eq!(find("https://example.com/RealESRGAN_x4plus.pth"), None);
    }

    #[test]
    fn the_catalog_hash_wins_and_a_conflicting_prefix_is_an_error() {
        let catalog = Catalog::embedded().unwrap();
        let entry = catalog.get("realesrgan-x4plus");
        assert_eq!(
            expected("u", entry, None).unwrap(),
            (Some(KNOWN.into()), None)
        );
        assert_eq!(
            expected("u", entry, Some("4FA0D3")).unwrap(),
            (Some(KNOWN.into()), None)
        );
        assert!(matches!(
            expected("u", entry, Some("abcdef")),
            Err(ModelsError::HashConflict { .. })
        ));
        assert_eq!(
            expected("u", None, Some(KNOWN)).unwrap(),
            (Some(KNOWN.into()), None)
        );
        assert_eq!(
            expected("u", None, Some("4fa0")).unwrap(),
            (None, Some("4fa0".into()))
        );
        assert_eq!(expected("u", None, None).unwrap(), (None, None));
        assert!(expected("u", None, Some("xyz")).is_err());
    }
}
