//! Presets: the built-in ones (`settings/presets/*.json` at the repo root, embedded at build
//! time) and the user's own (`<data>/presets/NAME.json`), which shadow a built-in of the
//! same name.

use std::path::{Path, PathBuf};

use crate::settings::schema::Preset;

/// `(name, json)` of every built-in preset.
pub const BUILTIN: &[(&str, &str)] = &[
    ("cpu", include_str!("../../settings/presets/cpu.json")),
    (
        "low-vram",
        include_str!("../../settings/presets/low-vram.json"),
    ),
    ("mac", include_str!("../../settings/presets/mac.json")),
    (
        "private",
        include_str!("../../settings/presets/private.json"),
    ),
    ("sdxl", include_str!("../../settings/presets/sdxl.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("Unknown preset `{name}`; available: {}", available.join(", "))]
    Unknown {
        name: String,
        available: Vec<String>,
    },
    #[error("Failed to read the preset `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("The preset `{path}` is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Where a preset came from, for `settings show` and messages.
#[derive(Debug, Clone, PartialEq)]
pub enum PresetSource {
    Builtin,
    User(PathBuf),
}

/// The user's preset directory.
pub fn user_dir(data: &Path) -> PathBuf {
    data.join("presets")
}

/// Look a preset up by name: the user's file first, then the built-ins.
pub fn load(name: &str, data: &Path) -> Result<(Preset, PresetSource), PresetError> {
    let path = user_dir(data).join(format!("{name}.json"));
    let valid_name = !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.');
    if valid_name && path.is_file() {
        let text = fs_err::read_to_string(&path).map_err(|source| PresetError::Read {
            path: path.clone(),
            source,
        })?;
        let preset = serde_json::from_str(&text).map_err(|source| PresetError::Parse {
            path: path.clone(),
            source,
        })?;
        return Ok((preset, PresetSource::User(path)));
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => serde_json::from_str(text)
            .map(|p| (p, PresetSource::Builtin))
            .map_err(|source| PresetError::Parse {
                path: PathBuf::from(format!("settings/presets/{n}.json")),
                source,
            }),
        None => Err(PresetError::Unknown {
            name: name.to_owned(),
            available: available(data),
        }),
    }
}

/// Names of every preset available (built-in and the user's), sorted.
pub fn available(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
    if let Ok(entries) = fs_err::read_dir(user_dir(data)) {
        names.extend(entries.flatten().filter_map(|e| {
            let path = e.path();
            (path.extension()? == "json")
                .then(|| path.file_stem()?.to_str().map(str::to_owned))
                .flatten()
        }));
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, text) in BUILTIN {
            let preset: Preset =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!preset.description.is_empty(), "{name}");
        }
    }

    #[test]
    fn user_presets_shadow_builtins_and_unknown_names_list_the_choices() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(user_dir(tmp.path())).unwrap();
        std::fs::write(
            user_dir(tmp.path()).join("cpu.json"),
            r#"{"config": {"samples_format": "jpg"}}"#,
        )
        .unwrap();
        let (preset, source) = load("cpu", tmp.path()).unwrap();
        assert_eq!(preset.config["samples_format"], "jpg");
        assert!(matches!(source, PresetSource::User(_)));
        let err = load("nope", tmp.path()).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("low-vram"), "{err}");
    }
}
