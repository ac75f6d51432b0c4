//! `stable-diffusion-webui extensions list|check`: what upstream will load, from where, at
//! which revision, and whether each extension's Python requirements are in the environment.
//!
//! Requirements are what the extension's `install.py` asks of `launch.is_installed` /
//! `launch.run_pip`: it runs under the shim's installer in check-only mode (no pip, no
//! overlay install), exactly as at start but without side effects on the environment.

use std::io::{self, Write};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use serde::Serialize;

use crate::cli::LauncherArgs;
use crate::cli::extensions::{ExtensionsArgs, ExtensionsCommand};
use crate::commands::{Base, Prepared};
use crate::env_vars;
use crate::extensions::{Extension, Inventory, Kind, Locations};

/// What an extension's install.py asked for that the environment lacks.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Requirements {
    pub missing: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    extension: &'a Extension,
    requirements: Option<Requirements>,
}

pub fn run(launcher: &LauncherArgs, base: Base, args: &ExtensionsArgs) -> anyhow::Result<ExitCode> {
    let prepared = Prepared::new(launcher, base)?;
    let inventory = Inventory::scan(&Locations {
        tree: &prepared.tree.root,
        managed: prepared.managed_extensions.as_deref(),
        data: &prepared.dirs.data,
    })?;
    match &args.command {
        ExtensionsCommand::List { json, no_check } => {
            let mut rows = Vec::new();
            for extension in &inventory.extensions {
                let requirements = if *no_check || extension.shadowed_by.is_some() {
                    None
                } else {
                    check_requirements(&prepared, extension)?
                };
                rows.push(Row {
                    extension,
                    requirements,
                });
            }
            if *json {
                let mut stdout = io::stdout().lock();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                print_table(&mut io::stdout().lock(), &inventory, &rows, *no_check)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ExtensionsCommand::Check { name, json } => {
            let extension = inventory.find(name).with_context(|| {
                format!(
                    "No extension named {name:?} (looked in {}, {}{}). \
                     `stable-diffusion-webui extensions list` shows them all.",
                    prepared.tree.root.join("extensions-builtin").display(),
                    inventory
                        .managed_dir
                        .as_ref()
                        .map(|d| format!("{}, ", d.display()))
                        .unwrap_or_default(),
                    inventory.user_dir.display()
                )
            })?;
            let requirements = check_requirements(&prepared, extension)?;
            let ok = requirements
                .as_ref()
                .is_none_or(|r| r.missing.is_empty() && r.error.is_none());
            let row = Row {
                extension,
                requirements,
            };
            if *json {
                let mut stdout = io::stdout().lock();
                writeln!(stdout, "{}", serde_json::to_string_pretty(&row)?)?;
            } else {
                print_detail(&mut io::stdout().lock(), &row)?;
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Run install.py under the shim's installer in check-only mode; None without install.py.
fn check_requirements(
    prepared: &Prepared,
    extension: &Extension,
) -> anyhow::Result<Option<Requirements>> {
    if !extension.has_installer {
        return Ok(None);
    }
    let report = tempfile::NamedTempFile::new().context("Failed to create a temporary file")?;
    let config = prepared.launch_config("extensions", Vec::new(), false);
    // The shim's installer sets up the rest of its process itself (webui_shim/installer.py):
    // it gets the launch configuration and the shim on PYTHONPATH, nothing else.
    let pythonpath = std::env::join_paths(
        std::iter::once(prepared.shim_dir.clone())
            .chain(std::env::var_os(env_vars::PYTHONPATH).map(Into::into)),
    )?;
    let cwd = if prepared.dirs.data.is_dir() {
        prepared.dirs.data.as_path()
    } else {
        prepared.cwd.as_path()
    };
    let output = Command::new(&prepared.python.executable)
        .args(["-m", "webui_shim.installer", "--check", "--report"])
        .arg(report.path())
        .arg(&extension.path)
        .env(
            env_vars::SD_WEBUI_SHIM_CONFIG,
            serde_json::to_string(&config)?,
        )
        .env(env_vars::PYTHONPATH, pythonpath)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("Failed to run {}", prepared.python.executable.display()))?;
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    match serde_json::from_str::<Requirements>(&text) {
        Ok(requirements) => Ok(Some(requirements)),
        Err(_) => Ok(Some(Requirements {
            missing: Vec::new(),
            error: Some(format!(
                "the installer check did not finish ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        })),
    }
}

fn state(extension: &Extension, inventory: &Inventory) -> String {
    if let Some(by) = &extension.shadowed_by {
        return format!("hidden by managed {}", by.display());
    }
    if extension.disabled {
        return "disabled".into();
    }
    if !extension.enabled {
        return format!("off (disable_all_extensions: {:?})", inventory.disable_all).to_lowercase();
    }
    "enabled".into()
}

fn requirements_note(requirements: &Option<Requirements>, checked: bool) -> String {
    match requirements {
        None if checked => "ok".into(),
        None => "-".into(),
        Some(r) if !r.missing.is_empty() => format!("MISSING {}", r.missing.join(", ")),
        Some(Requirements { error: Some(_), .. }) => "install.py FAILED".into(),
        Some(_) => "ok".into(),
    }
}

fn print_table(
    stdout: &mut impl Write,
    inventory: &Inventory,
    rows: &[Row<'_>],
    no_check: bool,
) -> io::Result<()> {
    writeln!(
        stdout,
        "{:<36} {:<9} {:<24} {:<14} SOURCE",
        "NAME", "KIND", "STATE", "REQUIREMENTS"
    )?;
    for row in rows {
        let e = row.extension;
        let source = match (&e.source, &e.revision) {
            (Some(s), Some(r)) => format!("{s} @ {}", short(r)),
            (Some(s), None) => s.clone(),
            (None, Some(r)) => short(r).to_owned(),
            (None, None) if e.kind == Kind::Builtin => "webui tree".into(),
            (None, None) => "-".into(),
        };
        writeln!(
            stdout,
            "{:<36} {:<9} {:<24} {:<14} {}",
            e.name,
            e.kind.label(),
            state(e, inventory),
            requirements_note(&row.requirements, !no_check && e.shadowed_by.is_none()),
            source
        )?;
    }
    if let Some(dir) = &inventory.managed_dir {
        writeln!(stdout, "\nmanaged: {}", dir.display())?;
    }
    writeln!(stdout, "yours:   {}", inventory.user_dir.display())?;
    let failing = rows.iter().find(|row| {
        row.requirements
            .as_ref()
            .is_some_and(|r| !r.missing.is_empty() || r.error.is_some())
    });
    if let Some(row) = failing {
        writeln!(
            stdout,
            "\n`stable-diffusion-webui extensions check {}` for details.",
            row.extension.name
        )?;
    }
    Ok(())
}

fn print_detail(stdout: &mut impl Write, row: &Row<'_>) -> io::Result<()> {
    let e = row.extension;
    writeln!(stdout, "{} ({})", e.name, e.kind.label())?;
    writeln!(stdout, "  path          {}", e.path.display())?;
    if let Some(by) = &e.shadowed_by {
        writeln!(
            stdout,
            "  not loaded    a managed extension of the same name wins: {}",
            by.display()
        )?;
    }
    writeln!(stdout, "  enabled       {}", e.enabled)?;
    writeln!(
        stdout,
        "  source        {}",
        e.source.as_deref().unwrap_or("-")
    )?;
    writeln!(
        stdout,
        "  revision      {}",
        e.revision.as_deref().unwrap_or("-")
    )?;
    writeln!(
        stdout,
        "  files         preload.py: {}, scripts: {}, javascript: {}, style.css: {}, localizations: {}",
        yes(e.has_preload),
        e.scripts,
        e.javascript,
        yes(e.has_style),
        if e.localizations.is_empty() {
            "-".into()
        } else {
            e.localizations.join(", ")
        }
    )?;
    match &row.requirements {
        None => writeln!(stdout, "  requirements  no install.py"),
        Some(r) => {
            if r.missing.is_empty() && r.error.is_none() {
                writeln!(stdout, "  requirements  all present")?;
            }
            if !r.missing.is_empty() {
                writeln!(stdout, "  requirements  missing: {}", r.missing.join(", "))?;
            }
            if let Some(error) = &r.error {
                writeln!(
                    stdout,
                    "  install.py    {}",
                    error.replace('\n', "\n                ")
                )?;
            }
            Ok(())
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}
