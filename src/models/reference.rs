//! What a user can name on `models pull`: a catalog name, a URL, `hf:ORG/REPO/FILE` or
//! `civitai:VERSION_ID`, and where each kind is fetched from (endpoints, tokens).
//!
//! Endpoints and tokens are plain values passed in, not read from the environment deep in
//! the library, so tests can point everything at a loopback server and the CLI decides
//! once, at the top, which variables count.

use std::path::PathBuf;

use super::catalog::is_catalog_name;
use crate::env_vars;

/// Default Hugging Face endpoint (overridden by `HF_ENDPOINT`, as `huggingface_hub` does).
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
/// Default Civitai endpoint.
pub const DEFAULT_CIVITAI_ENDPOINT: &str = "https://civitai.com";

/// One thing to download, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A catalog entry, `sd15`.
    Catalog(String),
    /// A plain `http(s)://` URL.
    Url(String),
    /// `hf:ORG/REPO/PATH` or `hf:ORG/REPO@REVISION/PATH`.
    HuggingFace {
        repo: String,
        revision: String,
        path: String,
    },
    /// `civitai:MODEL_VERSION_ID` (the number in `...?modelVersionId=N` and in download URLs).
    Civitai { version_id: u64 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(
        "`{0}` is not a model reference: use a catalog name (see `models list`), an http(s) URL, hf:ORG/REPO/FILE or civitai:VERSION_ID"
    )]
    Unrecognised(String),
    #[error(
        "`{0}` is not a Hugging Face reference: use hf:ORG/REPO/FILE or hf:ORG/REPO@REVISION/FILE"
    )]
    HuggingFace(String),
    #[error("`{0}` is not a Civitai reference: use civitai:VERSION_ID, a number")]
    Civitai(String),
    #[error("`{0}` is not a valid URL")]
    Url(String),
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("hf:") {
            return parse_hf(rest).ok_or_else(|| ReferenceError::HuggingFace(text.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("civitai:") {
            return rest
                .parse()
                .ok()
                .filter(|id| *id > 0)
                .map(|version_id| Reference::Civitai { version_id })
                .ok_or_else(|| ReferenceError::Civitai(text.to_owned()));
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return match reqwest::Url::parse(text) {
                Ok(url) if url.host_str().is_some() => Ok(Reference::Url(text.to_owned())),
                _ => Err(ReferenceError::Url(text.to_owned())),
            };
        }
        if is_catalog_name(text) {
            return Ok(Reference::Catalog(text.to_owned()));
        }
        Err(ReferenceError::Unrecognised(text.to_owned()))
    }

    /// The file name a URL or `hf:` reference suggests (its last path segment, decoded).
    pub fn suggested_file_name(&self) -> Option<String> {
        match self {
            Reference::Url(url) => {
                let url = reqwest::Url::parse(url).ok()?;
                let last = url.path_segments()?.next_back()?.to_owned();
                let decoded = percent_encoding::percent_decode_str(&last)
                    .decode_utf8()
                    .ok()?
                    .into_owned();
                (!decoded.is_empty()).then_some(decoded)
            }
            Reference::HuggingFace { path, .. } => path.rsplit('/').next().map(str::to_owned),
            Reference::Catalog(_) | Reference::Civitai { .. } => None,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Catalog(name) => f.write_str(name),
            Reference::Url(url) => f.write_str(url),
            Reference::HuggingFace {
                repo,
                revision,
                path,
            } if revision == "main" => write!(f, "hf:{repo}/{path}"),
            Reference::HuggingFace {
                repo,
                revision,
                path,
            } => write!(f, "hf:{repo}@{revision}/{path}"),
            Reference::Civitai { version_id } => write!(f, "civitai:{version_id}"),
        }
    }
}

fn parse_hf(rest: &str) -> Option<Reference> {
    let mut parts = rest.splitn(3, '/');
    let (org, repo_rev, path) = (parts.next()?, parts.next()?, parts.next()?);
    let (repo, revision) = match repo_rev.split_once('@') {
        Some((repo, revision)) => (repo, revision),
        None => (repo_rev, "main"),
    };
    let plain = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '?', '#', ' ', '\0'])
    };
    let path_ok = path.split('/').all(plain);
    (plain(org) && plain(repo) && plain(revision) && path_ok).then(|| Reference::HuggingFace {
        repo: format!("{org}/{repo}"),
        revision: revision.to_owned(),
        path: path.to_owned(),
    })
}

/// Where `hf:` and `civitai:` references are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Hugging Face (or a mirror speaking its protocol), without a trailing slash.
    pub huggingface: String,
    /// Civitai (or a mirror), without a trailing slash.
    pub civitai: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            huggingface: DEFAULT_HF_ENDPOINT.to_owned(),
            civitai: DEFAULT_CIVITAI_ENDPOINT.to_owned(),
        }
    }
}

impl Endpoints {
    /// `HF_ENDPOINT` (as `huggingface_hub`) and `SD_WEBUI_CIVITAI_ENDPOINT`, else the defaults.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Endpoints {
        let pick = |key: &str, default: &str| {
            lookup(key)
                .map(|v| v.trim().trim_end_matches('/').to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Endpoints {
            huggingface: pick(env_vars::HF_ENDPOINT, DEFAULT_HF_ENDPOINT),
            civitai: pick(
                env_vars::SD_WEBUI_CIVITAI_ENDPOINT,
                DEFAULT_CIVITAI_ENDPOINT,
            ),
        }
    }

    /// The download URL of a file in a Hugging Face repository.
    pub fn hf_resolve_url(&self, repo: &str, revision: &str, path: &str) -> String {
        format!("{}/{repo}/resolve/{revision}/{path}", self.huggingface)
    }

    /// The Hub API listing of the directory holding `path` (it carries LFS sha256 hashes).
    pub fn hf_tree_url(&self, repo: &str, revision: &str, path: &str) -> String {
        match path.rsplit_once('/') {
            Some((dir, _)) => format!(
                "{}/api/models/{repo}/tree/{revision}/{dir}",
                self.huggingface
            ),
            None => format!("{}/api/models/{repo}/tree/{revision}", self.huggingface),
        }
    }

    /// Civitai's description of a model version (file name, type, SHA256, download URL).
    pub fn civitai_version_url(&self, version_id: u64) -> String {
        format!("{}/api/v1/model-versions/{version_id}", self.civitai)
    }

    /// Which token, if any, may be sent to `url`: only to the endpoint it belongs to.
    pub fn token_for<'a>(&self, url: &str, tokens: &'a Tokens) -> Option<&'a str> {
        let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
        let target = origin(url)?;
        if origin(&self.huggingface).as_ref() == Some(&target) {
            tokens.huggingface.as_deref()
        } else if origin(&self.civitai).as_ref() == Some(&target) {
            tokens.civitai.as_deref()
        } else {
            None
        }
    }
}

/// Credentials for gated or private downloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub huggingface: Option<String>,
    pub civitai: Option<String>,
}

impl Tokens {
    /// As `huggingface_hub` finds its token: `HF_TOKEN` (or the older
    /// `HUGGING_FACE_HUB_TOKEN`), else the file at `HF_TOKEN_PATH`, else `$HF_HOME/token`,
    /// else `~/.cache/huggingface/token`. Civitai's is `CIVITAI_API_TOKEN`.
    ///
    /// The launcher points the webui's `HF_HOME` at its own cache, but this reads the
    /// user's environment, so `huggingface-cli login` keeps working for `models pull`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Tokens {
        let non_empty =
            |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let huggingface = non_empty(lookup(env_vars::HF_TOKEN))
            .or_else(|| non_empty(lookup(env_vars::HUGGING_FACE_HUB_TOKEN)))
            .or_else(|| {
                let file = lookup(env_vars::HF_TOKEN_PATH)
                    .map(PathBuf::from)
                    .or_else(|| lookup(env_vars::HF_HOME).map(|h| PathBuf::from(h).join("token")))
                    .or_else(|| home.map(|h| h.join(".cache/huggingface/token")))?;
                let text = std::fs::read_to_string(&file).ok();
                if text.is_some() {
                    tracing::debug!("Hugging Face token from `{}`", file.display());
                }
                non_empty(text)
            });
        Tokens {
            huggingface,
            civitai: non_empty(lookup(env_vars::CIVITAI_API_TOKEN)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_reference_parses() {
        assert_eq!(
            Reference::parse("sd15"),
            Ok(Reference::Catalog("sd15".into()))
        );
        assert_eq!(
            Reference::parse("https://example.com/a/b%20c.safetensors?x=1"),
            Ok(Reference::Url(
                "https://example.com/a/b%20c.safetensors?x=1".into()
            ))
        );
        assert_eq!(
            Reference::parse("hf:org/repo/dir/file.safetensors"),
            Ok(Reference::HuggingFace {
                repo: "org/repo".into(),
                revision: "main".into(),
                path: "dir/file.safetensors".into()
            })
        );
        assert_eq!(
            Reference::parse("hf:org/repo@abc123/f.ckpt"),
            Ok(Reference::HuggingFace {
                repo: "org/repo".into(),
                revision: "abc123".into(),
                path: "f.ckpt".into()
            })
        );
        assert_eq!(
            Reference::parse("civitai:128713"),
            Ok(Reference::Civitai { version_id: 128713 })
        );
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        assert_eq!(
            Reference::parse("hf:org/repo").unwrap_err().to_string(),
            "`hf:org/repo` is not a Hugging Face reference: use hf:ORG/REPO/FILE or hf:ORG/REPO@REVISION/FILE"
        );
        assert!(Reference::parse("hf:org/repo/../x").is_err());
        assert_eq!(
            Reference::parse("civitai:abc").unwrap_err(),
            ReferenceError::Civitai("civitai:abc".into())
        );
        assert_eq!(
            Reference::parse("SD 1.5").unwrap_err(),
            ReferenceError::Unrecognised("SD 1.5".into())
        );
        assert_eq!(
            Reference::parse("https://").unwrap_err(),
            ReferenceError::Url("https://".into())
        );
    }

    #[test]
    fn file_names_come_from_the_last_segment() {
        let name = |s: &str| Reference::parse(s).unwrap().suggested_file_name();
        assert_eq!(
            name("https://e.com/x/b%20c.safetensors?download=true"),
            Some("b c.safetensors".into())
        );
        assert_eq!(name("hf:o/r/d/f.ckpt"), Some("f.ckpt".into()));
        assert_eq!(name("https://e.com/"), None);
    }

    #[test]
    fn endpoints_follow_hf_endpoint_and_tokens_stay_with_their_host() {
        let env = |k: &str| match k {
            "HF_ENDPOINT" => Some("https://hf-mirror.example/".to_owned()),
            _ => None,
        };
        let endpoints = Endpoints::from_env(env);
        assert_eq!(
            endpoints.hf_resolve_url("o/r", "main", "f.bin"),
            "https://hf-mirror.example/o/r/resolve/main/f.bin"
        );
        assert_eq!(
            endpoints.hf_tree_url("o/r", "main", "d/f.bin"),
            "https://hf-mirror.example/api/models/o/r/tree/main/d"
        );
        let tokens = Tokens {
            huggingface: Some("hf_x".into()),
            civitai: Some("cv".into()),
        };
        assert_eq!(
            endpoints.token_for("https://hf-mirror.example/o/r/resolve/main/f", &tokens),
            Some("hf_x")
        );
        assert_eq!(
            endpoints.token_for("https://civitai.com/api/download/models/1", &tokens),
            Some("cv")
        );
        assert_eq!(endpoints.token_for("https://evil.example/x", &tokens), None);
        assert_eq!(
            endpoints.token_for("http://hf-mirror.example/x", &tokens),
            None,
            "not over plain http when the endpoint is https"
        );
    }

    #[test]
    fn hf_token_is_found_like_huggingface_hub_does() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".cache/huggingface")).unwrap();
        std::fs::write(tmp.path().join(".cache/huggingface/token"), "hf_file\n").unwrap();
        let none = |_: &str| None;
        let tokens = Tokens::from_env(none, Some(tmp.path().to_owned()));
        assert_eq!(tokens.huggingface.as_deref(), Some("hf_file"));
        let env = |k: &str| (k == "HF_TOKEN").then(|| "hf_env".to_owned());
        let tokens = Tokens::from_env(env, Some(tmp.path().to_owned()));
        assert_eq!(tokens.huggingface.as_deref(), Some("hf_env"));
        let env = |k: &str| (k == "CIVITAI_API_TOKEN").then(|| " cv ".to_owned());
        assert_eq!(Tokens::from_env(env, None).civitai.as_deref(), Some("cv"));
    }
}
