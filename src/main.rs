//! `stable-diffusion-webui`: parse, set up logging, dispatch. All work lives in the library.

use std::io::{self, Write};
use std::process::ExitCode;

use stable_diffusion_webui::cli::{self, Command};
use stable_diffusion_webui::commands;
use stable_diffusion_webui::env_vars;
use stable_diffusion_webui::sources::Sources;

fn main() -> ExitCode {
    let extra = std::env::var(env_vars::COMMANDLINE_ARGS)
        .ok()
        .and_then(|value| shlex::split(&value))
        .unwrap_or_default();
    let cli = match cli::parse(std::env::args_os(), extra) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    init_logging();
    // Resolved once, here, for the commands that need it (ripgrep's two stages: raw arguments,
    // then one resolved configuration passed down).
    let base = || commands::Base::resolve(&cli.launcher);
    let result = match &cli.command {
        _ if cli.launcher.version => version(),
        Some(Command::Doctor(args)) => commands::doctor::run(&cli.launcher, base(), args),
        Some(Command::Settings(args)) => {
            base().and_then(|base| commands::settings::run(&cli.launcher, base, args))
        }
        Some(Command::Models(args)) => base().and_then(|base| commands::models::run(base, args)),
        Some(Command::Extensions(args)) => {
            base().and_then(|base| commands::extensions::run(&cli.launcher, base, args))
        }
        Some(Command::Completions { shell }) => commands::shell::completions(*shell),
        Some(Command::Man) => commands::shell::man(),
        None => match base() {
            Ok(base) => commands::run::run(cli, base),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(code) => code,
        // The reader went away (`... | head`): as ripgrep does, that is a normal end.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn version() -> anyhow::Result<ExitCode> {
    let webui = Sources::pinned().webui;
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "stable-diffusion-webui {}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        stdout,
        "webui {}/{}@{} (pinned)",
        webui.owner, webui.repo, webui.rev
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Whether any link of the chain is an [`io::ErrorKind::BrokenPipe`].
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_vars::SD_WEBUI_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
