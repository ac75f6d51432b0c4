//! `stable-diffusion-webui doctor`: what the launcher would run, and what is missing.

use std::io::{self, Write};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::{DoctorArgs, LauncherArgs};
use crate::commands::Prepared;
use crate::embed;
use crate::sources::Sources;

pub fn run(launcher: &LauncherArgs, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let sources = Sources::pinned();
    let mut report = json!({
        "launcher": env!("CARGO_PKG_VERSION"),
        "pinned_webui": format!("{}/{}@{}", sources.webui.owner, sources.webui.repo, sources.webui.rev),
    });
    let mut problems: Vec<String> = Vec::new();
    match Prepared::new(launcher) {
        Ok(prepared) => {
            report["webui_root"] = json!(prepared.tree.root);
            report["repositories"] = repositories(&prepared, &sources);
            report["data_dir"] = json!(prepared.dirs.data);
            report["cache_dir"] = json!(prepared.dirs.cache);
            report["python_env"] = json!({
                "source": prepared.python.source.describe(),
                "prefix": prepared.python.prefix,
                "executable": prepared.python.executable,
            });
            report["shim_dir"] = json!(prepared.shim_dir);
            report["managed_extensions"] = json!(prepared.managed_extensions);
            report["python_overlay"] = json!({
                "enabled": prepared.python_overlay.is_some(),
                "path": prepared.dirs.data.join(crate::commands::PYTHON_OVERLAY_DIR),
            });
            let config = prepared.launch_config("doctor", Vec::new(), false);
            match embed::doctor_report(&prepared.shim_dir, &serde_json::to_string(&config)?) {
                Ok(text) => {
                    let python: Value = serde_json::from_str(&text)?;
                    collect_python_problems(&python, &mut problems);
                    report["python"] = python;
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        Err(e) => problems.push(format!("{e:#}")),
    }
    report["problems"] = json!(problems);
    if args.json {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_human(&mut io::stdout().lock(), &report)?;
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Each pinned repository: present or not, and its git revision when it is a checkout.
fn repositories(prepared: &Prepared, sources: &Sources) -> Value {
    let entries = sources.repositories.iter().map(|(name, pin)| {
        let dir = prepared.tree.root.join("repositories").join(name);
        let actual = dir.join(".git").exists().then(|| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        });
        (
            name.clone(),
            json!({ "pinned": pin.rev, "present": dir.is_dir(), "checkout_rev": actual.flatten() }),
        )
    });
    Value::Object(entries.collect())
}

fn collect_python_problems(python: &Value, problems: &mut Vec<String>) {
    if let Some(error) = python.get("error").and_then(Value::as_str) {
        problems.push(error.to_owned());
    }
    if let Some(error) = python.get("torch_error").and_then(Value::as_str) {
        problems.push(format!("torch cannot be imported: {error}"));
    }
    if let Some(missing) = python.get("missing").and_then(Value::as_array)
        && !missing.is_empty()
    {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        problems.push(format!("missing Python packages: {}", names.join(", ")));
    }
}

fn print_human(stdout: &mut impl Write, report: &Value) -> io::Result<()> {
    let get = |key: &str| {
        report
            .get(key)
            .map(display)
            .unwrap_or_else(|| "-".to_owned())
    };
    writeln!(stdout, "launcher      {}", get("launcher"))?;
    writeln!(stdout, "pinned webui  {}", get("pinned_webui"))?;
    writeln!(stdout, "webui tree    {}", get("webui_root"))?;
    if let Some(repos) = report.get("repositories").and_then(Value::as_object) {
        for (name, info) in repos {
            let present = info["present"].as_bool().unwrap_or(false);
            let rev = info["checkout_rev"]
                .as_str()
                .unwrap_or("not a git checkout");
            let matches = info["checkout_rev"] == info["pinned"];
            let note = if !present {
                "MISSING".to_owned()
            } else if info["checkout_rev"].is_null() || matches {
                "ok".to_owned()
            } else {
                format!("at {rev}, pinned {}", display(&info["pinned"]))
            };
            writeln!(stdout, "  repositories/{name:<32} {note}")?;
        }
    }
    writeln!(stdout, "data dir      {}", get("data_dir"))?;
    writeln!(stdout, "cache dir     {}", get("cache_dir"))?;
    writeln!(
        stdout,
        "extensions    managed: {}",
        report
            .get("managed_extensions")
            .filter(|v| !v.is_null())
            .map(display)
            .unwrap_or_else(|| "none".to_owned())
    )?;
    if let Some(overlay) = report.get("python_overlay") {
        let state = if overlay["enabled"].as_bool().unwrap_or(false) {
            "ON (extension installs go there; impure)"
        } else {
            "off (--python-overlay to allow extension installs there)"
        };
        writeln!(
            stdout,
            "py overlay    {} {state}",
            display(&overlay["path"])
        )?;
    }
    if let Some(env) = report.get("python_env") {
        writeln!(
            stdout,
            "python env    {} ({})",
            display(&env["executable"]),
            display(&env["source"])
        )?;
    }
    if let Some(python) = report.get("python") {
        writeln!(stdout, "python        {}", display(&python["python"]))?;
        let torch = python
            .get("torch")
            .map(display)
            .unwrap_or_else(|| "not importable".into());
        let accel = python
            .get("accelerator")
            .map(display)
            .unwrap_or_else(|| "-".into());
        writeln!(stdout, "torch         {torch} ({accel})")?;
        if let Some(mismatched) = python.get("mismatched").and_then(Value::as_array)
            && !mismatched.is_empty()
        {
            writeln!(
                stdout,
                "version differences from upstream's pins (usually fine):"
            )?;
            for m in mismatched {
                writeln!(stdout, "  {}", display(m))?;
            }
        }
    }
    match report.get("problems").and_then(Value::as_array) {
        Some(problems) if !problems.is_empty() => {
            writeln!(stdout, "\nThe webui cannot start:")?;
            for p in problems {
                writeln!(stdout, "  - {}", display(p))?;
            }
        }
        _ => writeln!(stdout, "\nNo problems found.")?,
    }
    Ok(())
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
