//! `stable-diffusion-webui settings show | diff | apply | keys | presets`, and the merge
//! every start runs (`prepare_start`).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::{LauncherArgs, SettingsArgs, SettingsCommand};
use crate::commands::{Base, Prepared};
use crate::embed;
use crate::settings::merge::{Action, Change};
use crate::settings::{self, Plan, ShimSettings, State, Target, presets};

/// At start, right after the data directory is prepared: merge the declared settings into
/// config.json / ui-config.json and return what the webui must enforce.
pub fn prepare_start(args: &LauncherArgs, data: &Path) -> anyhow::Result<Option<ShimSettings>> {
    let plan = Plan::resolve(args.settings_file.as_deref(), &args.presets, data)?;
    if plan.is_empty() && !State::path(data).exists() {
        tracing::debug!("no declared settings");
        return Ok(None);
    }
    let applied = settings::apply(&plan, data)?;
    for file in &applied {
        let outcome = &file.file.outcome;
        for change in &outcome.changes {
            tracing::info!("{}: {}", file.file.target.file_name(), describe(change));
        }
        for change in &outcome.kept {
            tracing::debug!("{}: {}", file.file.target.file_name(), describe(change));
        }
        if let Some(backup) = &file.backup {
            tracing::info!(
                "previous {} kept as {}",
                file.file.target.file_name(),
                backup.display()
            );
        }
    }
    Ok((!plan.is_empty()).then(|| ShimSettings::new(&plan)))
}

pub fn run(launcher: &LauncherArgs, base: Base, args: &SettingsArgs) -> anyhow::Result<ExitCode> {
    let data = base.dirs.data.clone();
    match &args.command {
        SettingsCommand::Keys(out) => keys(launcher, base, out.json),
        SettingsCommand::Show(out) => {
            let plan = Plan::resolve(launcher.settings_file.as_deref(), &launcher.presets, &data)?;
            show(&plan, &data, out.json)
        }
        SettingsCommand::Diff(out) => {
            let plan = Plan::resolve(launcher.settings_file.as_deref(), &launcher.presets, &data)?;
            diff(&plan, &data, out.json)
        }
        SettingsCommand::Apply { preset } => {
            let plan = Plan::resolve(launcher.settings_file.as_deref(), &launcher.presets, &data)?;
            let settings::PresetApplied { written, skipped } =
                settings::apply_preset_persistently(preset, &plan, &data)?;
            let mut stdout = io::stdout().lock();
            for (target, key, value) in &written {
                writeln!(stdout, "{}: {key} = {value}", target.file_name())?;
            }
            for key in &skipped {
                writeln!(stdout, "skipped {key}: locked by {}", plan.source)?;
            }
            writeln!(
                stdout,
                "applied preset {preset} to {} ({} values; a backup of each changed file was kept)",
                data.display(),
                written.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        SettingsCommand::Schema { kind } => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(crate::settings::schema::json_schema(*kind).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        SettingsCommand::Presets(out) => {
            let mut list = Vec::new();
            for name in presets::available(&data) {
                let (preset, source) = presets::load(&name, &data)?;
                let from = match source {
                    presets::PresetSource::Builtin => "built in".to_owned(),
                    presets::PresetSource::User(path) => path.display().to_string(),
                };
                list.push(PresetRow {
                    name,
                    description: preset.description,
                    from,
                });
            }
            let mut stdout = io::stdout().lock();
            if out.json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for p in &list {
                    writeln!(stdout, "{:<10} {} ({})", p.name, p.description, p.from)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One row of `settings presets` (`--json`: the list of them).
#[derive(Debug, Serialize)]
struct PresetRow {
    name: String,
    description: String,
    /// "built in", or the user's preset file.
    from: String,
}

/// One declared key of `settings show`.
#[derive(Debug, Serialize)]
struct ShowRow<'a> {
    file: &'static str,
    key: &'a str,
    declared: &'a Value,
    layer: String,
    /// What the webui will use: the user's own edit where one is kept, else the declared value.
    effective: &'a Value,
    user_edit: bool,
    in_file: bool,
}

/// `settings show --json`.
#[derive(Debug, Serialize)]
struct ShowReport<'a> {
    source: &'a str,
    presets: Vec<&'a str>,
    settings: Vec<ShowRow<'a>>,
}

fn keys(launcher: &LauncherArgs, base: Base, as_json: bool) -> anyhow::Result<ExitCode> {
    let prepared = Prepared::new(launcher, base)?;
    let config = prepared.launch_config(
        "settings_keys",
        vec![
            "--data-dir".to_owned(),
            prepared.dirs.data.display().to_string(),
        ],
        false,
    );
    let reply = embed::settings_keys(&prepared.shim_dir, &serde_json::to_string(&config)?)?;
    let keys: serde_json::Map<String, Value> =
        serde_json::from_str(&reply).context("The shim returned invalid JSON for the keys")?;
    let mut stdout = io::stdout().lock();
    if as_json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&keys)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (key, info) in &keys {
        writeln!(
            stdout,
            "{key:<48} {:<6} {:<24} {}",
            text(&info["type"]),
            info["default"].to_string(),
            text(&info["label"])
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(plan: &Plan, data: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let (files, _) = settings::compute(plan, data)?;
    let mut stdout = io::stdout().lock();
    let mut rows = Vec::new();
    for file in &files {
        let declared = plan.declared(file.target);
        for (key, value, origin) in &declared.values {
            let kept = file.outcome.kept.iter().find(|c| &c.key == key);
            let current = file.current.as_ref().and_then(|c| c.get(key));
            rows.push(ShowRow {
                file: file.target.file_name(),
                key,
                declared: value,
                layer: origin.to_string(),
                effective: kept.map_or(value, |_| current.unwrap_or(value)),
                user_edit: kept.is_some(),
                in_file: current == Some(value),
            });
        }
    }
    if as_json {
        let out = ShowReport {
            source: &plan.source,
            presets: plan.presets.iter().map(|(n, _)| n.as_str()).collect(),
            settings: rows,
        };
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "managed by  {}", plan.source)?;
    let names: Vec<&str> = plan.presets.iter().map(|(n, _)| n.as_str()).collect();
    writeln!(
        stdout,
        "presets     {}",
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    )?;
    if rows.is_empty() {
        writeln!(stdout, "no declared settings")?;
    }
    for row in &rows {
        let note = if row.user_edit {
            format!("your edit (declared {})", row.declared)
        } else if row.in_file {
            String::new()
        } else {
            "applied at next start".to_owned()
        };
        writeln!(
            stdout,
            "{:<15} {:<44} {:<24} {:<16} {note}",
            row.file,
            row.key,
            row.effective.to_string(),
            row.layer,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(plan: &Plan, data: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let (files, _) = settings::compute(plan, data)?;
    let mut stdout = io::stdout().lock();
    if as_json {
        let out: serde_json::Map<String, Value> = files
            .iter()
            .map(|f| {
                (
                    f.target.file_name().to_owned(),
                    json!({"changes": f.outcome.changes, "kept_user_edits": f.outcome.kept}),
                )
            })
            .collect();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut any = false;
    for file in &files {
        for change in &file.outcome.changes {
            any = true;
            writeln!(stdout, "{}: {}", file.target.file_name(), describe(change))?;
        }
        for change in &file.outcome.kept {
            writeln!(stdout, "{}: {}", file.target.file_name(), describe(change))?;
        }
    }
    if !any {
        writeln!(
            stdout,
            "no changes: the next start leaves {} as they are",
            both()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn both() -> String {
    Target::ALL.map(Target::file_name).join(" and ")
}

/// One line per change: `~ key: old -> new (preset sdxl)`.
pub fn describe(change: &Change) -> String {
    let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_owned(), Value::to_string);
    let origin = change
        .origin
        .as_ref()
        .map_or("no longer declared".to_owned(), ToString::to_string);
    match change.action {
        Action::KeptUserEdit => format!(
            "= {}: keeping your edit {} ({} says {})",
            change.key,
            show(&change.before),
            origin,
            show(&Some(declared_value(change)))
        ),
        Action::Removed => format!(
            "- {}: {} (no longer declared)",
            change.key,
            show(&change.before)
        ),
        _ if change.before.is_none() => {
            format!("+ {}: {} ({origin})", change.key, show(&change.after))
        }
        _ => format!(
            "~ {}: {} -> {} ({origin})",
            change.key,
            show(&change.before),
            show(&change.after)
        ),
    }
}

fn declared_value(change: &Change) -> Value {
    change.after.clone().unwrap_or(Value::Null)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
