//! `stable-diffusion-webui models ...`: list, pull, verify, remove and ensure models in the
//! data dir. The work is in [`crate::models`]; this file owns the terminal: progress bars
//! when stderr is a terminal, plain lines otherwise (logs, systemd, CI).

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::models::{
    EnsureArgs, ListArgs, ModelsArgs, ModelsCommand, PullArgs, RemoveArgs, TransferArgs, VerifyArgs,
};
use crate::commands::Base;
use crate::models::download::Reporter;
use crate::models::plan::{Overrides, Planned};
use crate::models::{
    Check, Linked, Models, Pulled, State, human_bytes, nix_store_dir, parse_sha256,
};
use crate::progress::{Bars, Lines};

/// One model of `models list --json`.
#[derive(Debug, serde::Serialize)]
struct ListRow<'a> {
    /// The catalog name, for catalog models.
    name: Option<&'a str>,
    title: Option<&'a str>,
    /// `folder/file` below `<data>/models`.
    path: &'a str,
    groups: &'a [String],
    license: Option<&'a str>,
    expected_size: Option<u64>,
    expected_sha256: Option<&'a str>,
    installed: bool,
    size: Option<u64>,
    /// missing, partial, verified, unverified, not-checked or mismatch.
    status: &'static str,
    /// The file's hash where it is worth showing (unverified: to pin it; mismatch: what it is).
    sha256: Option<String>,
}

pub fn run(base: Base, args: &ModelsArgs) -> anyhow::Result<ExitCode> {
    let Base { dirs, .. } = base;
    let models = Models::from_env(dirs.data.clone())?;
    tracing::debug!(data = %dirs.data.display(), endpoints = ?models.endpoints, "models");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("models")
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    runtime.block_on(async {
        match &args.command {
            ModelsCommand::List(a) => list(&models, a),
            ModelsCommand::Pull(a) => pull(&models, a).await,
            ModelsCommand::Verify(a) => verify(&models, a).await,
            ModelsCommand::Remove(a) => remove(&models, a),
            ModelsCommand::Ensure(a) => ensure(&models, a).await,
        }
    })
}

fn list(models: &Models, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    let rows = models.list();
    if args.json {
        let json: Vec<ListRow<'_>> = rows
            .iter()
            .map(|row| {
                let (installed, size, status, sha256) = match &row.state {
                    State::Missing => (false, None, "missing", None),
                    State::Partial { have, .. } => (false, Some(*have), "partial", None),
                    State::Installed { size, check } => {
                        let (status, sha) = match check {
                            Check::Verified => ("verified", None),
                            Check::Unverified { sha256 } => ("unverified", Some(sha256.clone())),
                            Check::NotChecked => ("not-checked", None),
                            Check::Mismatch { actual, .. } => ("mismatch", Some(actual.clone())),
                        };
                        (true, Some(*size), status, sha)
                    }
                };
                let entry = row.catalog.as_ref();
                ListRow {
                    name: entry.map(|e| e.name.as_str()),
                    title: entry.map(|e| e.title.as_str()),
                    path: &row.relative,
                    groups: entry.map(|e| e.groups.as_slice()).unwrap_or_default(),
                    license: entry.map(|e| e.license.as_str()),
                    expected_size: entry.and_then(|e| e.size),
                    expected_sha256: entry.and_then(|e| e.sha256.as_deref()),
                    installed,
                    size,
                    status,
                    sha256,
                }
            })
            .collect();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(stdout, "Models in {}", models.models_dir().display())?;
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|row| {
            let entry = row.catalog.as_ref();
            let name = entry.map_or_else(|| "-".to_owned(), |e| e.name.clone());
            let (size, status) = match &row.state {
                State::Missing => (
                    entry
                        .and_then(|e| e.size)
                        .map(human_bytes)
                        .unwrap_or_default(),
                    "-".to_owned(),
                ),
                State::Partial { have, total } => (
                    total
                        .or(entry.and_then(|e| e.size))
                        .map(human_bytes)
                        .unwrap_or_default(),
                    match total {
                        Some(total) if *total > 0 => format!(
                            "partial, {}% (pull again to resume)",
                            have.saturating_mul(100) / total
                        ),
                        _ => format!("partial, {} (pull again to resume)", human_bytes(*have)),
                    },
                ),
                State::Installed { size, check } => (
                    human_bytes(*size),
                    match check {
                        Check::Verified => "installed, verified".to_owned(),
                        Check::Unverified { .. } => {
                            "installed, unverified (no published sha256)".to_owned()
                        }
                        Check::NotChecked => {
                            "installed, not checked (run `models verify`)".to_owned()
                        }
                        Check::Mismatch { .. } => {
                            "installed, SHA256 MISMATCH (run `models verify`)".to_owned()
                        }
                    },
                ),
            };
            [name, size, status, row.relative.clone()]
        })
        .collect();
    // Four left/right-aligned columns, by hand: a table crate would add a dependency for this.
    let headers = ["NAME", "SIZE", "STATUS", "FILE"];
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        format!(
            "{:w0$}  {:>w1$}  {:w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .trim_end()
        .to_owned()
    };
    writeln!(stdout, "{}", line(headers))?;
    for row in &table {
        writeln!(stdout, "{}", line([&row[0], &row[1], &row[2], &row[3]]))?;
    }
    writeln!(
        stdout,
        "\nGroups: {} (`models pull --group NAME`).",
        models.catalog.groups().join(", ")
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn pull(models: &Models, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let mut references = args.models.clone();
    for group in &args.group {
        references.extend(models.group(group)?);
    }
    if references.is_empty() {
        anyhow::bail!("Name at least one model (see `models list`) or a --group");
    }
    let single = args.sha256.is_some() || args.folder.is_some() || args.file_name.is_some();
    if single && references.len() != 1 {
        anyhow::bail!("--sha256, --folder and --file-name apply to a single model");
    }
    let overrides = Overrides {
        sha256: args.sha256.as_deref().map(parse_sha256).transpose()?,
        folder: args.folder.clone(),
        file_name: args.file_name.clone(),
    };
    let mut plans = Vec::new();
    for reference in &references {
        plans.push(models.plan(reference, &overrides).await?);
    }
    transfer(models, &plans, &args.transfer).await
}

async fn ensure(models: &Models, args: &EnsureArgs) -> anyhow::Result<ExitCode> {
    let plans = models.plan_declared(&args.from).await?;
    let store = nix_store_dir(|key| std::env::var(key).ok());
    let links = models.link_declared(&args.from, &store)?;
    if plans.is_empty() && links.is_empty() {
        eprintln!("No models declared in `{}`.", args.from.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for link in links {
        match link {
            Ok(Linked::Created { link, store_path }) => {
                eprintln!("{}: linked to {}", link.display(), store_path.display())
            }
            Ok(Linked::Updated { link, store_path }) => {
                eprintln!("{}: now linked to {}", link.display(), store_path.display())
            }
            Ok(Linked::Present { .. }) => {}
            Err(error) => {
                failed = true;
                eprintln!("{}", crate::models::download::error_chain(&error));
            }
        }
    }
    let code = if plans.is_empty() {
        ExitCode::SUCCESS
    } else {
        transfer(models, &plans, &args.transfer).await?
    };
    Ok(if failed { ExitCode::FAILURE } else { code })
}

/// Run the downloads with progress, then say what happened to each file.
async fn transfer(
    models: &Models,
    plans: &[Planned],
    args: &TransferArgs,
) -> anyhow::Result<ExitCode> {
    let bars = !args.no_progress && std::io::stderr().is_terminal();
    let reporter: Box<dyn Reporter> = if bars {
        Box::new(Bars::new(plans.iter().map(short_label).collect()))
    } else {
        Box::new(Lines::new(plans.iter().map(short_label).collect()))
    };
    let results = models.pull(plans, args.jobs, reporter.as_ref()).await;
    drop(reporter);
    let mut failed = 0;
    for (plan, result) in plans.iter().zip(results) {
        match result {
            Ok(Pulled::Downloaded(outcome)) if outcome.verified => eprintln!(
                "{}: verified and installed as {} ({})",
                plan.reference,
                outcome.path.display(),
                human_bytes(outcome.size)
            ),
            Ok(Pulled::Downloaded(outcome)) => eprintln!(
                "{}: installed as {} ({}), NOT verified: there is no published sha256 to check it against.\n  Its sha256 is {}; pass --sha256 {} to pin it.",
                plan.reference,
                outcome.path.display(),
                human_bytes(outcome.size),
                outcome.sha256,
                outcome.sha256
            ),
            Ok(Pulled::Present { path, verified, .. }) => eprintln!(
                "{}: already installed as {}{}",
                plan.reference,
                path.display(),
                if verified {
                    ", verified"
                } else {
                    " (not verified: no expected sha256)"
                }
            ),
            Err(error) => {
                failed += 1;
                eprintln!(
                    "{}: {}",
                    plan.reference,
                    crate::models::download::error_chain(&error)
                );
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn verify(models: &Models, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let results = models.verify(args.model.as_deref()).await?;
    if results.is_empty() {
        eprintln!("No models installed in {}.", models.models_dir().display());
    }
    let mut stdout = io::stdout().lock();
    let mut bad = 0;
    for result in &results {
        match &result.expected {
            Some(expected) if !result.ok() => {
                bad += 1;
                writeln!(
                    stdout,
                    "MISMATCH  {}: expected sha256 {expected}, got {}",
                    result.relative, result.sha256
                )?;
            }
            Some(_) => writeln!(stdout, "ok        {}", result.relative)?,
            None => writeln!(
                stdout,
                "unpinned  {}: sha256 {} (no published hash to compare with)",
                result.relative, result.sha256
            )?,
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn remove(models: &Models, args: &RemoveArgs) -> anyhow::Result<ExitCode> {
    let (relative, files) = models.removal(&args.model)?;
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "Not removing `{relative}` without confirmation: pass --yes (stdin is not a terminal)"
            );
        }
        eprint!("Remove {relative} ({})? [y/N] ", human_bytes(total));
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("Failed to read the answer")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("Nothing removed.");
            return Ok(ExitCode::FAILURE);
        }
    }
    models.remove(&relative, &files)?;
    for (path, _) in &files {
        eprintln!("removed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What a progress line calls a download: the catalog name, else `folder/file`.
fn short_label(plan: &Planned) -> String {
    plan.catalog
        .clone()
        .unwrap_or_else(|| plan.relative.clone())
}
