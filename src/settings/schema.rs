//! The versioned settings file the flake / NixOS module writes (`--settings-file`,
//! `SD_WEBUI_SETTINGS_FILE`), and the preset file format.
//!
//! ```json
//! {
//!   "version": 1,
//!   "source": "NixOS option services.stable-diffusion-webui.settings",
//!   "presets": ["private", "sdxl"],
//!   "config":    { "defaults": { "samples_format": "webp" }, "locked": { "enable_pnginfo": false } },
//!   "ui_config": { "defaults": { "txt2img/Sampling steps/value": 30 }, "locked": {} }
//! }
//! ```
//!
//! Unknown fields are refused (a typo in the file's structure must not pass silently); the
//! setting keys themselves are upstream's and are checked against upstream at start.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only settings-file version this launcher reads.
pub const VERSION: u32 = 1;

/// Values for one of the two files (`config.json` or `ui-config.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Applied unless the user changed the key in the file since the launcher last wrote it.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// Always written at start and refused at run time from the UI and the API.
    #[serde(default)]
    pub locked: Map<String, Value>,
}

/// The settings file, version 1.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub version: u32,
    /// Who manages these settings; named in "locked by ..." messages. Defaults to the path.
    #[serde(default)]
    pub source: Option<String>,
    /// Presets applied, in order, above `config.defaults` (later presets win).
    #[serde(default)]
    pub presets: Vec<String>,
    #[serde(default)]
    pub config: Layer,
    #[serde(default)]
    pub ui_config: Layer,
}

/// A preset: built in (`settings/presets/NAME.json`) or the user's (`<data>/presets/NAME.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub ui_config: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("Failed to read the settings file `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("The settings file `{path}` is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "The settings file `{path}` has version {found}; this launcher reads version {VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
}

impl SettingsFile {
    /// Read and check a settings file.
    pub fn load(path: &Path) -> Result<SettingsFile, SchemaError> {
        let text = fs_err::read_to_string(path).map_err(|source| SchemaError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse the text of a settings file (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<SettingsFile, SchemaError> {
        // Check the version first so a future file gets the version error, not a field error.
        let raw: Value = serde_json::from_str(text).map_err(|source| SchemaError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if let Some(found) = raw.get("version").and_then(Value::as_u64)
            && found != u64::from(VERSION)
        {
            return Err(SchemaError::Version {
                path: path.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        serde_json::from_value(raw).map_err(|source| SchemaError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"{
          "version": 1,
          "source": "NixOS option services.stable-diffusion-webui.settings",
          "presets": ["private", "sdxl"],
          "config":    { "defaults": { "samples_format": "webp" }, "locked": { "enable_pnginfo": false } },
          "ui_config": { "defaults": { "txt2img/Sampling steps/value": 30 }, "locked": {} }
        }"#;
        let file = SettingsFile::parse(text, Path::new("s.json")).unwrap();
        assert_eq!(file.presets, ["private", "sdxl"]);
        assert_eq!(file.config.locked["enable_pnginfo"], Value::Bool(false));
    }

    #[test]
    fn other_versions_and_unknown_fields_are_refused() {
        let err = SettingsFile::parse(r#"{"version": 2}"#, Path::new("s.json")).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        let err =
            SettingsFile::parse(r#"{"version": 1, "lockd": {}}"#, Path::new("s.json")).unwrap_err();
        assert!(matches!(err, SchemaError::Parse { .. }), "{err}");
    }
}
