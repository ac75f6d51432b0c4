//! Declarative settings: defaults, presets and locks merged into the webui's `config.json`
//! and `ui-config.json` at every start (see `merge` for the layering rules).
//!
//! Inputs: the settings file (`--settings-file` / `SD_WEBUI_SETTINGS_FILE`, written by the
//! flake or the NixOS module; `schema`), `--preset NAME` (repeatable, after the file's own
//! presets), and preset files in `<data>/presets/`. The launcher's memory of what it wrote is
//! `<data>/.launcher/settings-state.json`. Locked keys are also enforced inside the webui
//! (`python/webui_shim/locks.py`), which gets them through the launch configuration.

pub mod merge;
pub mod presets;
pub mod schema;
pub mod write;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use merge::{Declared, FileState, Origin, Outcome};
use presets::PresetError;
use schema::{SchemaError, SettingsFile};
use write::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Preset(#[from] PresetError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// The two files the launcher manages, by their name in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Config,
    UiConfig,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Config, Target::UiConfig];

    pub fn file_name(self) -> &'static str {
        match self {
            Target::Config => "config.json",
            Target::UiConfig => "ui-config.json",
        }
    }
}

/// Every declared input, resolved and layered.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Who manages the locked keys ("locked by ..." messages).
    pub source: String,
    /// Presets in the order they apply, with where each came from.
    pub presets: Vec<(String, presets::PresetSource)>,
    pub config: Declared,
    pub ui_config: Declared,
}

impl Plan {
    /// Read the settings file (if any) and the presets it and the command line name.
    pub fn resolve(
        settings_file: Option<&Path>,
        cli_presets: &[String],
        data: &Path,
    ) -> Result<Plan, SettingsError> {
        let file = match settings_file {
            Some(path) => SettingsFile::load(path)?,
            None => SettingsFile {
                version: schema::VERSION,
                ..SettingsFile::default()
            },
        };
        let source = file.source.clone().unwrap_or_else(|| match settings_file {
            Some(path) => format!("the settings file {}", path.display()),
            None => "the launcher".to_owned(),
        });
        let mut plan = Plan {
            source,
            presets: Vec::new(),
            config: Declared::default(),
            ui_config: Declared::default(),
        };
        plan.config.extend(&file.config.defaults, &Origin::Defaults);
        plan.ui_config
            .extend(&file.ui_config.defaults, &Origin::Defaults);
        for name in file.presets.iter().chain(cli_presets) {
            let (preset, from) = presets::load(name, data)?;
            let origin = Origin::Preset(name.clone());
            plan.config.extend(&preset.config, &origin);
            plan.ui_config.extend(&preset.ui_config, &origin);
            plan.presets.push((name.clone(), from));
        }
        plan.config.extend(&file.config.locked, &Origin::Locked);
        plan.ui_config
            .extend(&file.ui_config.locked, &Origin::Locked);
        Ok(plan)
    }

    pub fn declared(&self, target: Target) -> &Declared {
        match target {
            Target::Config => &self.config,
            Target::UiConfig => &self.ui_config,
        }
    }

    /// Nothing declared at all: the launcher leaves the files alone.
    pub fn is_empty(&self) -> bool {
        self.config.values.is_empty() && self.ui_config.values.is_empty()
    }
}

/// `<data>/.launcher/settings-state.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub config: FileState,
    #[serde(default)]
    pub ui_config: FileState,
}

impl State {
    pub fn path(data: &Path) -> PathBuf {
        data.join(".launcher").join("settings-state.json")
    }

    /// Read the state; a missing or unreadable one is empty (then every existing value
    /// counts as the user's, which overwrites nothing but locked keys).
    pub fn load(data: &Path) -> State {
        let path = Self::path(data);
        match write::read_object(&path) {
            Ok(Some(map)) => match serde_json::from_value(Value::Object(map)) {
                Ok(state) => state,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring the settings state");
                    State::default()
                }
            },
            Ok(None) => State::default(),
            Err(error) => {
                tracing::warn!(%error, "ignoring the settings state");
                State::default()
            }
        }
    }

    fn file(&self, target: Target) -> &FileState {
        match target {
            Target::Config => &self.config,
            Target::UiConfig => &self.ui_config,
        }
    }
}

/// The merge of one file, before anything is written.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub target: Target,
    pub path: PathBuf,
    /// The file as it is (`None`: absent).
    pub current: Option<Map<String, Value>>,
    pub outcome: Outcome,
}

impl FilePlan {
    /// Would the file's content change?
    pub fn changes_file(&self) -> bool {
        match &self.current {
            Some(current) => *current != self.outcome.merged,
            None => !self.outcome.merged.is_empty(),
        }
    }
}

/// Merge every file in memory: what the next start would do.
pub fn compute(plan: &Plan, data: &Path) -> Result<(Vec<FilePlan>, State), SettingsError> {
    let state = State::load(data);
    let mut files = Vec::new();
    let mut new_state = State {
        version: 1,
        ..State::default()
    };
    for target in Target::ALL {
        let path = data.join(target.file_name());
        let current = write::read_object(&path)?;
        let outcome = merge::merge(
            current.as_ref().unwrap_or(&Map::new()),
            plan.declared(target),
            state.file(target),
        );
        match target {
            Target::Config => new_state.config = outcome.state.clone(),
            Target::UiConfig => new_state.ui_config = outcome.state.clone(),
        }
        files.push(FilePlan {
            target,
            path,
            current,
            outcome,
        });
    }
    Ok((files, new_state))
}

/// What [`apply`] did to one file.
#[derive(Debug, Clone)]
pub struct Applied {
    pub file: FilePlan,
    pub backup: Option<PathBuf>,
}

/// Merge and write: the state first, then each changed file (backup, temp, fsync, rename).
/// A corrupt file stops everything before anything is written.
pub fn apply(plan: &Plan, data: &Path) -> Result<Vec<Applied>, SettingsError> {
    let (files, new_state) = compute(plan, data)?;
    let state_path = State::path(data);
    if State::load(data) != new_state && (!plan.is_empty() || state_path.exists()) {
        if let Some(dir) = state_path.parent() {
            fs_err::create_dir_all(dir).map_err(|source| WriteError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        let value = serde_json::to_value(&new_state).unwrap_or(Value::Null);
        let map = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        write::write_atomic(&state_path, &write::to_bytes(&map))?;
    }
    let mut applied = Vec::new();
    for file in files {
        write::remove_stale_temps(&file.path);
        let mut backup = None;
        if file.changes_file() {
            backup = write::backup(&file.path)?;
            write::write_atomic(&file.path, &write::to_bytes(&file.outcome.merged))?;
        }
        applied.push(Applied { file, backup });
    }
    Ok(applied)
}

/// What the webui needs to enforce locks and check declared keys (`LaunchConfig.settings`).
#[derive(Debug, Clone, Serialize)]
pub struct ShimSettings {
    /// Named in "locked by ..." messages.
    pub source: String,
    /// Locked `config.json` keys and their values.
    pub locked: Map<String, Value>,
    /// Every declared `config.json` key with its value, checked against upstream's options.
    pub declared: Map<String, Value>,
    /// Where each declared key comes from ("defaults", "preset sdxl", "locked").
    pub origins: Map<String, Value>,
    /// Locked `ui-config.json` entries (`"txt2img/Width/value"`) and their values: the
    /// Defaults tab's Apply must not write over them.
    pub ui_locked: Map<String, Value>,
}

impl ShimSettings {
    pub fn new(plan: &Plan) -> ShimSettings {
        let locked = plan
            .config
            .locked()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        let declared = plan
            .config
            .values
            .iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect();
        let origins = plan
            .config
            .values
            .iter()
            .map(|(k, _, o)| (k.clone(), Value::String(o.to_string())))
            .collect();
        let ui_locked = plan
            .ui_config
            .locked()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        ShimSettings {
            source: plan.source.clone(),
            locked,
            declared,
            origins,
            ui_locked,
        }
    }
}

/// What [`apply_preset_persistently`] wrote and skipped.
#[derive(Debug, Clone, Default)]
pub struct PresetApplied {
    /// `(file, key, value)` for every value written.
    pub written: Vec<(Target, String, Value)>,
    /// Locked keys the preset would have changed.
    pub skipped: Vec<String>,
}

/// `settings apply PRESET`: write a preset's values into the files as the user's own edits
/// (they then beat presets and defaults at every start, like an edit in the UI). Locked keys
/// are skipped.
pub fn apply_preset_persistently(
    name: &str,
    plan: &Plan,
    data: &Path,
) -> Result<PresetApplied, SettingsError> {
    let (preset, _) = presets::load(name, data)?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for target in Target::ALL {
        let values = match target {
            Target::Config => &preset.config,
            Target::UiConfig => &preset.ui_config,
        };
        let path = data.join(target.file_name());
        let current = write::read_object(&path)?.unwrap_or_default();
        let mut merged = current.clone();
        for (key, value) in values {
            if let Some((_, Origin::Locked)) = plan.declared(target).get(key) {
                skipped.push(key.clone());
                continue;
            }
            merged.insert(key.clone(), value.clone());
            written.push((target, key.clone(), value.clone()));
        }
        if merged != current {
            write::remove_stale_temps(&path);
            write::backup(&path)?;
            write::write_atomic(&path, &write::to_bytes(&merged))?;
        }
    }
    Ok(PresetApplied { written, skipped })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings_file(dir: &Path, value: Value) -> PathBuf {
        let path = dir.join("settings.json");
        std::fs::write(&path, value.to_string()).unwrap();
        path
    }

    fn data_with(config: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), config).unwrap();
        tmp
    }

    #[test]
    fn applying_twice_writes_once_and_keeps_unmanaged_keys() {
        let data = data_with("{\n    \"mine\": \"keep\",\n    \"samples_format\": \"png\"\n}");
        let file = settings_file(
            data.path(),
            json!({"version": 1, "presets": ["private"],
                   "config": {"locked": {"samples_format": "webp"}},
                   "ui_config": {"defaults": {"txt2img/Width/value": 640}}}),
        );
        let plan = Plan::resolve(Some(&file), &[], data.path()).unwrap();
        apply(&plan, data.path()).unwrap();
        let config = data.path().join("config.json");
        let after_first = std::fs::read(&config).unwrap();
        let written: Value = serde_json::from_slice(&after_first).unwrap();
        assert_eq!(written["mine"], "keep");
        assert_eq!(written["samples_format"], "webp");
        assert_eq!(written["enable_pnginfo"], false);
        assert_eq!(write::backups(&config).len(), 1);
        let ui: Value =
            serde_json::from_slice(&std::fs::read(data.path().join("ui-config.json")).unwrap())
                .unwrap();
        assert_eq!(ui["txt2img/Width/value"], 640);

        let state_first = std::fs::read(State::path(data.path())).unwrap();
        apply(&plan, data.path()).unwrap();
        apply(&plan, data.path()).unwrap();
        assert_eq!(std::fs::read(&config).unwrap(), after_first);
        assert_eq!(write::backups(&config).len(), 1, "no change, no backup");
        let state_later = std::fs::read(State::path(data.path())).unwrap();
        let (files, _) = compute(&plan, data.path()).unwrap();
        assert!(files.iter().all(|f| !f.changes_file()));
        drop((state_first, state_later));
    }

    #[test]
    fn the_backup_restores_the_previous_state() {
        let original = "{\n    \"samples_format\": \"png\",\n    \"x\": 1\n}";
        let data = data_with(original);
        let file = settings_file(
            data.path(),
            json!({"version": 1, "config": {"locked": {"samples_format": "jpg"}}}),
        );
        let plan = Plan::resolve(Some(&file), &[], data.path()).unwrap();
        let applied = apply(&plan, data.path()).unwrap();
        let backup = applied[0].backup.clone().unwrap();
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
        std::fs::copy(&backup, data.path().join("config.json")).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.path().join("config.json")).unwrap(),
            original
        );
    }

    #[test]
    fn a_corrupt_file_is_left_byte_for_byte_untouched() {
        let data = data_with("{\"samples_format\": \"png\",,");
        let file = settings_file(
            data.path(),
            json!({"version": 1, "config": {"locked": {"samples_format": "jpg"}}}),
        );
        let plan = Plan::resolve(Some(&file), &[], data.path()).unwrap();
        let err = apply(&plan, data.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert_eq!(
            std::fs::read(data.path().join("config.json")).unwrap(),
            b"{\"samples_format\": \"png\",,"
        );
        assert!(!State::path(data.path()).exists());
        assert!(write::backups(&data.path().join("config.json")).is_empty());
    }

    #[test]
    fn cli_presets_apply_after_the_files_presets() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("presets")).unwrap();
        std::fs::write(
            data.path().join("presets/mine.json"),
            r#"{"config": {"auto_vae_precision": false}}"#,
        )
        .unwrap();
        let file = settings_file(data.path(), json!({"version": 1, "presets": ["sdxl"]}));
        let plan = Plan::resolve(Some(&file), &["mine".to_owned()], data.path()).unwrap();
        assert_eq!(
            plan.config.get("auto_vae_precision").unwrap(),
            (&json!(false), &Origin::Preset("mine".into()))
        );
    }

    #[test]
    fn apply_preset_writes_user_edits_and_skips_locked_keys() {
        let data = data_with("{}");
        let file = settings_file(
            data.path(),
            json!({"version": 1, "config": {"locked": {"enable_pnginfo": true}}}),
        );
        let plan = Plan::resolve(Some(&file), &[], data.path()).unwrap();
        let applied = apply_preset_persistently("private", &plan, data.path()).unwrap();
        assert_eq!(applied.skipped, ["enable_pnginfo"]);
        assert!(applied.written.iter().any(|(_, k, _)| k == "gradio_theme"));
        let config = write::read_object(&data.path().join("config.json"))
            .unwrap()
            .unwrap();
        assert_eq!(config["auto_launch_browser"], "Disable");
        assert!(!config.contains_key("enable_pnginfo"));
    }
}
