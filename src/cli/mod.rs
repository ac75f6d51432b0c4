//! Command-line types and the split between launcher flags and upstream webui flags.
//!
//! The launcher accepts every upstream webui flag and passes it through untouched, except the
//! few it must own because it fronts the network or owns the layout (`--data-dir`,
//! `--listen`, `--port`, `--server-name`, `--subpath`, TLS, `--autolaunch`). Those are declared
//! here; [`split`] pulls them (in any position) out of the command line and leaves the rest,
//! in order, for upstream's own parser, so an unknown flag gets upstream's own error.

pub mod extensions;
pub mod models;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::env_vars;
use crate::subpath::Subpath;

const AFTER_HELP: &str = "\
Every other option is passed to the webui unchanged (see `--webui-help` for upstream's list),
e.g. `stable-diffusion-webui --api --xformers --ckpt model.safetensors`.
Options marked (upstream) keep upstream's meaning; the launcher serves them itself.";

#[derive(Debug, Parser)]
#[command(
    name = "stable-diffusion-webui",
    about = "Run AUTOMATIC1111's stable-diffusion-webui from a read-only tree, with its data in \
             your data directory.",
    after_help = AFTER_HELP,
    override_usage = "stable-diffusion-webui [OPTIONS] [WEBUI OPTIONS]...\n       \
                      stable-diffusion-webui <COMMAND> [OPTIONS]",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub launcher: LauncherArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Upstream webui arguments, filled in by [`split`] (never by clap).
    #[arg(skip)]
    pub webui_args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the interpreter, torch, the webui tree and the directories; exit non-zero when
    /// the webui could not start.
    Doctor(DoctorArgs),
    /// Declarative settings: show, diff or apply presets and locks; list upstream's keys.
    Settings(SettingsArgs),
    /// Download, list, verify and remove models in the data dir (sha256-checked, resumable).
    Models(models::ModelsArgs),
    /// List extensions (built-in, managed, yours) and check their Python requirements.
    Extensions(extensions::ExtensionsArgs),
    /// Print a shell completion script (the Nix package installs them).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff; the Nix package installs it).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(subcommand)]
    pub command: SettingsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Every declared setting: its value, its layer (defaults, preset, locked) and whether
    /// config.json holds it or the user's own edit.
    Show(SettingsOutput),
    /// What the next start would change in config.json and ui-config.json.
    Diff(SettingsOutput),
    /// Write a preset's values into config.json / ui-config.json now, as your own edits
    /// (kept across starts; locked keys are skipped). A backup is made.
    Apply {
        /// Preset name (built in, or `<data>/presets/NAME.json`).
        preset: String,
    },
    /// List upstream's settings keys with type, default and label (read from the webui tree).
    Keys(SettingsOutput),
    /// List the available presets.
    Presets(SettingsOutput),
    /// Print the JSON Schema of the settings file or of a preset (editors validate with it).
    Schema {
        #[arg(value_enum, default_value = "settings-file")]
        kind: crate::settings::schema::SchemaKind,
    },
}

#[derive(Debug, Args)]
pub struct SettingsOutput {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LauncherArgs {
    /// The upstream webui tree to run (a checkout laid out like upstream, with repositories/).
    #[arg(long, global = true, env = env_vars::SD_WEBUI_ROOT, value_name = "PATH", help_heading = "Launcher")]
    pub webui_root: Option<PathBuf>,
    /// A virtualenv (or Python environment prefix) holding the webui's packages.
    #[arg(long, global = true, env = env_vars::SD_WEBUI_PYTHON_ENV, value_name = "PATH", help_heading = "Launcher")]
    pub python_env: Option<PathBuf>,
    /// (upstream) Where all user data lives [default: $XDG_DATA_HOME/stable-diffusion-webui].
    #[arg(long, global = true, env = env_vars::SD_WEBUI_DATA_DIR, value_name = "PATH", help_heading = "Launcher")]
    pub data_dir: Option<PathBuf>,
    /// Caches: Hugging Face, torch hub, torch compile (inductor, Triton), matplotlib, bytecode
    /// [default: $XDG_CACHE_HOME/stable-diffusion-webui].
    #[arg(long, global = true, env = env_vars::SD_WEBUI_CACHE_DIR, value_name = "PATH", help_heading = "Launcher")]
    pub cache_dir: Option<PathBuf>,
    /// Declarative settings file (defaults, presets, locks; written by the Nix module).
    #[arg(long, global = true, env = env_vars::SD_WEBUI_SETTINGS_FILE, value_name = "PATH", help_heading = "Launcher")]
    pub settings_file: Option<PathBuf>,
    /// Read-only directory of managed extensions, loaded next to the built-in ones
    /// [default: the package's own, if it has any].
    #[arg(long, global = true, env = env_vars::SD_WEBUI_MANAGED_EXTENSIONS, value_name = "PATH", help_heading = "Launcher")]
    pub managed_extensions: Option<PathBuf>,
    /// Let extension installers pip-install missing packages into `<data>/python-overlay`
    /// (off by default; it can never replace the environment's own packages).
    #[arg(long, global = true, env = env_vars::SD_WEBUI_PYTHON_OVERLAY, help_heading = "Launcher")]
    pub python_overlay: bool,
    /// Apply a settings preset (built in: cpu, low-vram, mac, private, sdxl, or
    /// `<data>/presets/NAME.json`); repeatable, later presets win.
    #[arg(
        long = "preset",
        global = true,
        value_name = "NAME",
        help_heading = "Launcher"
    )]
    pub presets: Vec<String>,
    /// Show upstream's webui options and exit.
    #[arg(long, help_heading = "Launcher")]
    pub webui_help: bool,
    /// Print the launcher's version and the pinned webui revision.
    #[arg(short = 'V', long, help_heading = "Launcher")]
    pub version: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct NetworkArgs {
    /// (upstream) Listen on all interfaces instead of 127.0.0.1.
    #[arg(long, help_heading = "Network")]
    pub listen: bool,
    /// (upstream) Port to serve the UI on [default: 7860].
    #[arg(long, help_heading = "Network")]
    pub port: Option<u16>,
    /// (upstream) Address or host name to listen on.
    #[arg(long, value_name = "NAME", help_heading = "Network")]
    pub server_name: Option<String>,
    /// (upstream) Serve the UI under this path prefix, e.g. `sd` for /sd/.
    #[arg(long, value_name = "PATH", value_parser = Subpath::parse, help_heading = "Network")]
    pub subpath: Option<Subpath>,
    /// (upstream) TLS private key file.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_certfile",
        help_heading = "Network"
    )]
    pub tls_keyfile: Option<PathBuf>,
    /// (upstream) TLS certificate file.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_keyfile",
        help_heading = "Network"
    )]
    pub tls_certfile: Option<PathBuf>,
    /// (upstream) Open the UI in the default browser once it is ready.
    #[arg(long, help_heading = "Network")]
    pub autolaunch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("Argument {0:?} is not valid UTF-8")]
    NotUtf8(std::ffi::OsString),
}

/// Parse the command line: launcher flags by clap, everything else kept for upstream.
///
/// `extra` are arguments from `COMMANDLINE_ARGS`, which upstream appends to its own.
pub fn parse(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    extra: Vec<String>,
) -> Result<Cli, clap::Error> {
    let mut args: Vec<String> = match args
        .into_iter()
        .map(|a| a.into_string().map_err(SplitError::NotUtf8))
        .collect::<Result<_, _>>()
    {
        Ok(args) => args,
        Err(e) => return Err(Cli::command().error(clap::error::ErrorKind::InvalidUtf8, e)),
    };
    let command = Cli::command();
    // A subcommand, possibly after launcher options (`--data-dir X models list`): the first
    // argument that is not a launcher option or its value names it (never one after `--`).
    let subcommand = first_unowned(&command, &args).filter(|&at| {
        command
            .get_subcommands()
            .any(|s| s.get_name() == args[at].as_str())
    });
    if let Some(at) = subcommand {
        // Launcher options are global: clap takes them after the subcommand's name. Only those
        // before the name move; the ones after it are already there (moving them too gave
        // "cannot be used multiple times" for `doctor --data-dir X`).
        let (leading, _) = split(&command, &args[..at]);
        let reordered = leading
            .iter()
            .take(1)
            .chain([&args[at]])
            .chain(leading.iter().skip(1))
            .chain(args.iter().skip(at + 1))
            .cloned()
            .collect::<Vec<_>>();
        return Cli::try_parse_from(reordered);
    }
    args.extend(extra);
    let (launcher, webui) = split(&command, &args);
    let mut cli = Cli::try_parse_from(launcher)?;
    cli.webui_args = webui;
    Ok(cli)
}

/// The launcher's own flags (`--name`) and whether each takes a value.
fn owned_flags(command: &clap::Command) -> Vec<(String, bool)> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let takes_value = arg.get_action().takes_values();
            arg.get_long().map(|l| (format!("--{l}"), takes_value))
        })
        .chain([
            ("--help".to_owned(), false),
            ("-h".to_owned(), false),
            ("-V".to_owned(), false),
        ])
        .collect()
}

/// Index of the first argument that is neither a launcher flag nor its value; `None` when
/// there is none before `--` (what follows `--` is the webui's).
fn first_unowned(command: &clap::Command, args: &[String]) -> Option<usize> {
    let owned = owned_flags(command);
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        if arg == "--" {
            return None;
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        match owned.iter().find(|(flag, _)| flag == name) {
            Some((_, true)) if !arg.contains('=') => at += 2,
            Some(_) => at += 1,
            None => return Some(at),
        }
    }
    None
}

/// Separate launcher-owned flags (with their values) from upstream's, keeping both in order.
pub fn split(command: &clap::Command, args: &[String]) -> (Vec<String>, Vec<String>) {
    let owned = owned_flags(command);
    let mut launcher = args.first().cloned().into_iter().collect::<Vec<_>>();
    let mut webui = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            webui.extend(rest.by_ref().cloned());
            break;
        }
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        match owned.iter().find(|(flag, _)| flag == name) {
            Some((_, takes_value)) => {
                launcher.push(arg.clone());
                if *takes_value
                    && !arg.contains('=')
                    && let Some(value) = rest.next()
                {
                    launcher.push(value.clone());
                }
            }
            None => webui.push(arg.clone()),
        }
    }
    (launcher, webui)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn owned_flags_are_pulled_out_anywhere_and_the_rest_keeps_its_order() {
        let (launcher, webui) = split(
            &Cli::command(),
            &strings(&[
                "sdw",
                "--api",
                "--port",
                "9000",
                "--ckpt",
                "m.safetensors",
                "--data-dir=/d",
                "--listen",
                "--unknown-flag",
                "x",
            ]),
        );
        assert_eq!(
            launcher,
            strings(&["sdw", "--port", "9000", "--data-dir=/d", "--listen"])
        );
        assert_eq!(
            webui,
            strings(&["--api", "--ckpt", "m.safetensors", "--unknown-flag", "x"])
        );
    }

    #[test]
    fn a_subcommand_may_follow_launcher_options() {
        let cli = parse(
            [
                "sdw",
                "--data-dir",
                "/d",
                "--python-overlay",
                "extensions",
                "list",
            ]
            .map(Into::into),
            Vec::new(),
        )
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Extensions(_))));
        assert_eq!(
            cli.launcher.data_dir.as_deref(),
            Some(std::path::Path::new("/d"))
        );
        assert!(cli.launcher.python_overlay);
        // Not a subcommand: an upstream flag first means a webui run.
        let cli = parse(["sdw", "--api", "extensions"].map(Into::into), Vec::new()).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.webui_args, strings(&["--api", "extensions"]));
    }

    #[test]
    fn everything_after_double_dash_goes_to_the_webui() {
        let (launcher, webui) = split(
            &Cli::command(),
            &strings(&["sdw", "--listen", "--", "--port", "1"]),
        );
        assert_eq!(launcher, strings(&["sdw", "--listen"]));
        assert_eq!(webui, strings(&["--port", "1"]));
    }

    #[test]
    fn settings_flags_belong_to_the_launcher() {
        let cli = parse(
            [
                "sdw".into(),
                "--preset".into(),
                "cpu".into(),
                "--api".into(),
                "--preset=sdxl".into(),
                "--settings-file".into(),
                "/s.json".into(),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(cli.launcher.presets, strings(&["cpu", "sdxl"]));
        assert_eq!(
            cli.launcher.settings_file.as_deref(),
            Some(std::path::Path::new("/s.json"))
        );
        assert_eq!(cli.webui_args, strings(&["--api"]));
    }

    #[test]
    fn commandline_args_count_as_user_arguments() {
        let cli = parse(
            ["sdw".into(), "--api".into()],
            strings(&["--port", "7000", "--xformers"]),
        )
        .unwrap();
        assert_eq!(cli.network.port, Some(7000));
        assert_eq!(cli.webui_args, strings(&["--api", "--xformers"]));
    }
}
