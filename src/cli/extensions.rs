//! `extensions` subcommand arguments (plain data; the work is `crate::commands::extensions`).

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ExtensionsArgs {
    #[command(subcommand)]
    pub command: ExtensionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExtensionsCommand {
    /// Every extension: built-in, managed, yours; enabled or not; source and revision;
    /// missing Python requirements.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Do not run install.py scripts to check requirements.
        #[arg(long)]
        no_check: bool,
    },
    /// One extension in detail; exits 1 when its requirements are not met.
    Check {
        /// The extension's directory name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
