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
//!
//! Both formats have a JSON Schema generated from these types ([`json_schema`]): shipped as
//! `settings/schema/*.schema.json` (the package installs them under
//! `share/stable-diffusion-webui/schema/`) and named by a file's `"$schema"`, so editors
//! validate and complete it. `tests` keep the shipped files equal to the types.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only settings-file version this launcher reads.
pub const VERSION: u32 = 1;

/// Values for one of the two files (`config.json` or `ui-config.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Applied unless the user changed the key in the file since the launcher last wrote it.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// Always written at start and refused at run time from the UI and the API.
    #[serde(default)]
    pub locked: Map<String, Value>,
}

/// The launcher's declarative settings file (`--settings-file`), version 1.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// The JSON Schema this file follows, for editors; the launcher ignores it.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The format's version: 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Who manages these settings; named in "locked by ..." messages. Defaults to the path.
    #[serde(default)]
    pub source: Option<String>,
    /// Presets applied, in order, above `config.defaults` (later presets win).
    #[serde(default)]
    pub presets: Vec<String>,
    /// `config.json`: upstream's settings (`samples_format`, `enable_pnginfo`, ...).
    #[serde(default)]
    pub config: Layer,
    /// `ui-config.json`: the UI's component defaults (`txt2img/Sampling steps/value`, ...).
    #[serde(default)]
    pub ui_config: Layer,
}

/// A settings preset: built in (`settings/presets/NAME.json`) or the user's
/// (`<data>/presets/NAME.json`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// The JSON Schema this file follows, for editors; the launcher ignores it.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// One line shown by `settings presets`.
    #[serde(default)]
    pub description: String,
    /// `config.json` keys (upstream's setting names) and their values.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// `ui-config.json` keys (`tab/label/property`) and their values.
    #[serde(default)]
    pub ui_config: Map<String, Value>,
}

/// Which file format a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// The settings file (`--settings-file`).
    SettingsFile,
    /// A preset (`<data>/presets/NAME.json`).
    Preset,
}

impl SchemaKind {
    /// The shipped file's name (`settings/schema/<name>`).
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::SettingsFile => "settings-file.schema.json",
            SchemaKind::Preset => "preset.schema.json",
        }
    }
}

/// The JSON Schema of `kind`, as shipped (pretty-printed, with a final newline).
pub fn json_schema(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::SettingsFile => schemars::schema_for!(SettingsFile),
        SchemaKind::Preset => schemars::schema_for!(Preset),
    };
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
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

    /// The shipped schemas are what the types say; after changing a type, regenerate them:
    /// `stable-diffusion-webui settings schema KIND > settings/schema/<file>`.
    #[test]
    fn the_shipped_schemas_match_the_types() {
        for kind in [SchemaKind::SettingsFile, SchemaKind::Preset] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("settings/schema")
                .join(kind.file_name());
            let shipped = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                shipped == json_schema(kind),
                "{} is not what the types generate; run `stable-diffusion-webui settings schema {}` > {}",
                path.display(),
                <SchemaKind as clap::ValueEnum>::to_possible_value(&kind)
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default(),
                path.display()
            );
        }
    }

    #[test]
    fn a_schema_reference_is_accepted_and_ignored() {
        let text = r#"{"$schema": "../schema/settings-file.schema.json", "version": 1}"#;
        let file = SettingsFile::parse(text, Path::new("s.json")).unwrap();
        assert_eq!(
            file.schema.as_deref(),
            Some("../schema/settings-file.schema.json")
        );
    }

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
