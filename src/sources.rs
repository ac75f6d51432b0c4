//! The pinned upstream sources (`repositories/sources.json`), embedded at build time so the
//! launcher and Nix read the same pins and no revision is written twice.

use std::collections::BTreeMap;

use serde::Deserialize;

const SOURCES_JSON: &str = include_str!("../repositories/sources.json");

/// One pinned GitHub source.
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub owner: String,
    pub repo: String,
    pub rev: String,
    pub hash: Option<String>,
}

/// The whole pin file.
#[derive(Debug, Clone, Deserialize)]
pub struct Sources {
    pub webui: Source,
    /// Keyed by the directory name under the webui's `repositories/`.
    pub repositories: BTreeMap<String, Source>,
}

impl Sources {
    /// The pins this launcher was built with.
    pub fn pinned() -> Sources {
        // The file is part of the crate and checked by a test; a parse failure is a build bug.
        serde_json::from_str(SOURCES_JSON).expect("repositories/sources.json is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_name_the_five_repositories() {
        let sources = Sources::pinned();
        let names: Vec<&str> = sources.repositories.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "BLIP",
                "generative-models",
                "k-diffusion",
                "stable-diffusion-stability-ai",
                "stable-diffusion-webui-assets"
            ]
        );
        assert_eq!(sources.webui.rev.len(), 40);
    }
}
