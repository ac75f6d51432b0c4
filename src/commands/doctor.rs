//! `stable-diffusion-webui doctor`: what the launcher would run, and what is missing.
//!
//! The report is one typed value (`Report`): `--json` serialises it, the plain output reads
//! its fields, so a renamed field breaks the build rather than the output.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::cli::{DoctorArgs, LauncherArgs};
use crate::commands::{Base, Prepared};
use crate::embed;
use crate::sources::Sources;

#[derive(Debug, Serialize)]
struct Report {
    launcher: &'static str,
    pinned_webui: String,
    /// Absent when the launcher could not resolve its setup (the reason is in `problems`).
    #[serde(flatten)]
    setup: Option<Setup>,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Setup {
    webui_root: PathBuf,
    repositories: BTreeMap<String, Repository>,
    data_dir: PathBuf,
    cache_dir: PathBuf,
    python_env: PythonEnvReport,
    shim_dir: PathBuf,
    managed_extensions: Option<PathBuf>,
    python_overlay: Overlay,
    #[serde(skip_serializing_if = "Option::is_none")]
    python: Option<PythonFacts>,
}

#[derive(Debug, Serialize)]
struct Repository {
    pinned: String,
    present: bool,
    /// The checkout's `HEAD`, when the directory is a git checkout.
    checkout_rev: Option<String>,
}

#[derive(Debug, Serialize)]
struct PythonEnvReport {
    source: String,
    prefix: Option<PathBuf>,
    executable: PathBuf,
}

#[derive(Debug, Serialize)]
struct Overlay {
    enabled: bool,
    path: PathBuf,
}

/// What `webui_shim.bootstrap.doctor_report` found inside the environment.
#[derive(Debug, Serialize, Deserialize)]
struct PythonFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    python: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    torch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accelerator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    torch_error: Option<String>,
    #[serde(default)]
    missing: Vec<String>,
    #[serde(default)]
    mismatched: Vec<String>,
    /// Everything else the shim reports (executable, prefix, site_packages, cuda_version),
    /// passed through to `--json` as it is.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl PythonFacts {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        problems.extend(self.error.clone());
        if let Some(error) = &self.torch_error {
            problems.push(format!("torch cannot be imported: {error}"));
        }
        if !self.missing.is_empty() {
            problems.push(format!(
                "missing Python packages: {}",
                self.missing.join(", ")
            ));
        }
        problems
    }
}

/// `base` may have failed: doctor reports that as a problem, like everything else it finds.
pub fn run(
    launcher: &LauncherArgs,
    base: anyhow::Result<Base>,
    args: &DoctorArgs,
) -> anyhow::Result<ExitCode> {
    let sources = Sources::pinned();
    let mut problems = Vec::new();
    let setup = match base.and_then(|base| Prepared::new(launcher, base)) {
        Ok(prepared) => Some(setup(&prepared, &sources, &mut problems)?),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let report = Report {
        launcher: env!("CARGO_PKG_VERSION"),
        pinned_webui: format!(
            "{}/{}@{}",
            sources.webui.owner, sources.webui.repo, sources.webui.rev
        ),
        setup,
        problems,
    };
    let mut stdout = io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_human(&mut stdout, &report)?;
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn setup(
    prepared: &Prepared,
    sources: &Sources,
    problems: &mut Vec<String>,
) -> anyhow::Result<Setup> {
    let config = prepared.launch_config("doctor", Vec::new(), false);
    let python = match embed::doctor_report(&prepared.shim_dir, &serde_json::to_string(&config)?) {
        Ok(text) => {
            let facts: PythonFacts = serde_json::from_str(&text)?;
            problems.extend(facts.problems());
            Some(facts)
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    Ok(Setup {
        webui_root: prepared.tree.root.clone(),
        repositories: repositories(prepared, sources),
        data_dir: prepared.dirs.data.clone(),
        cache_dir: prepared.dirs.cache.clone(),
        python_env: PythonEnvReport {
            source: prepared.python.source.describe().to_owned(),
            prefix: prepared.python.prefix.clone(),
            executable: prepared.python.executable.clone(),
        },
        shim_dir: prepared.shim_dir.clone(),
        managed_extensions: prepared.managed_extensions.clone(),
        python_overlay: Overlay {
            enabled: prepared.python_overlay.is_some(),
            path: prepared.dirs.data.join(crate::commands::PYTHON_OVERLAY_DIR),
        },
        python,
    })
}

/// Each pinned repository: present or not, and its git revision when it is a checkout.
fn repositories(prepared: &Prepared, sources: &Sources) -> BTreeMap<String, Repository> {
    sources
        .repositories
        .iter()
        .map(|(name, pin)| {
            let dir = prepared.tree.root.join("repositories").join(name);
            let checkout_rev = dir
                .join(".git")
                .exists()
                .then(|| {
                    std::process::Command::new("git")
                        .arg("-C")
                        .arg(&dir)
                        .args(["rev-parse", "HEAD"])
                        .output()
                        .ok()
                        .filter(|o| o.status.success())
                        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                })
                .flatten();
            let repository = Repository {
                pinned: pin.rev.clone(),
                present: dir.is_dir(),
                checkout_rev,
            };
            (name.clone(), repository)
        })
        .collect()
}

fn print_human(stdout: &mut impl Write, report: &Report) -> io::Result<()> {
    writeln!(stdout, "launcher      {}", report.launcher)?;
    writeln!(stdout, "pinned webui  {}", report.pinned_webui)?;
    match &report.setup {
        Some(setup) => print_setup(stdout, setup)?,
        None => {
            writeln!(stdout, "webui tree    -")?;
            writeln!(stdout, "data dir      -")?;
            writeln!(stdout, "cache dir     -")?;
            writeln!(stdout, "extensions    managed: none")?;
        }
    }
    if report.problems.is_empty() {
        writeln!(stdout, "\nNo problems found.")?;
    } else {
        writeln!(stdout, "\nThe webui cannot start:")?;
        for problem in &report.problems {
            writeln!(stdout, "  - {problem}")?;
        }
    }
    Ok(())
}

fn print_setup(stdout: &mut impl Write, setup: &Setup) -> io::Result<()> {
    writeln!(stdout, "webui tree    {}", setup.webui_root.display())?;
    for (name, repository) in &setup.repositories {
        let note = match &repository.checkout_rev {
            _ if !repository.present => "MISSING".to_owned(),
            Some(rev) if *rev != repository.pinned => {
                format!("at {rev}, pinned {}", repository.pinned)
            }
            _ => "ok".to_owned(),
        };
        writeln!(stdout, "  repositories/{name:<32} {note}")?;
    }
    writeln!(stdout, "data dir      {}", setup.data_dir.display())?;
    writeln!(stdout, "cache dir     {}", setup.cache_dir.display())?;
    let managed = setup
        .managed_extensions
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    writeln!(stdout, "extensions    managed: {managed}")?;
    let state = if setup.python_overlay.enabled {
        "ON (extension installs go there; impure)"
    } else {
        "off (--python-overlay to allow extension installs there)"
    };
    writeln!(
        stdout,
        "py overlay    {} {state}",
        setup.python_overlay.path.display()
    )?;
    writeln!(
        stdout,
        "python env    {} ({})",
        setup.python_env.executable.display(),
        setup.python_env.source
    )?;
    if let Some(python) = &setup.python {
        writeln!(
            stdout,
            "python        {}",
            python.python.as_deref().unwrap_or("-")
        )?;
        writeln!(
            stdout,
            "torch         {} ({})",
            python.torch.as_deref().unwrap_or("not importable"),
            python.accelerator.as_deref().unwrap_or("-")
        )?;
        if !python.mismatched.is_empty() {
            writeln!(
                stdout,
                "version differences from upstream's pins (usually fine):"
            )?;
            for mismatch in &python.mismatched {
                writeln!(stdout, "  {mismatch}")?;
            }
        }
    }
    Ok(())
}
