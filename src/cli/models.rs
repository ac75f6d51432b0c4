//! `models` subcommand arguments (plain data; the work is `crate::commands::models`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show the catalog and what is installed: size, and whether each file was verified.
    List(ListArgs),
    /// Download models into <data>/models/<folder>/, checked against their sha256 and
    /// resumable after an interruption.
    ///
    /// A model is a catalog name (`models list`), an http(s) URL, hf:ORG/REPO/FILE or
    /// civitai:VERSION_ID. URL and hf: downloads need --folder; a plain URL without
    /// --sha256 is downloaded but shown as unverified, with its hash printed so it can be
    /// pinned. Tokens come from HF_TOKEN (or `huggingface-cli login`) and
    /// CIVITAI_API_TOKEN; HF_ENDPOINT selects a Hugging Face mirror; HTTPS_PROXY and
    /// NO_PROXY are respected.
    Pull(PullArgs),
    /// Hash installed models again and compare with their expected sha256.
    Verify(VerifyArgs),
    /// Delete an installed model, and any partial download of it.
    Remove(RemoveArgs),
    /// Make sure every model declared in a JSON file is present and verified.
    ///
    /// The file is a list of catalog names, pinned files and Nix store files:
    /// ["sd15", {"url": "hf:ORG/REPO/FILE", "sha256": "...", "folder": "Lora", "name": "x.safetensors"},
    /// {"path": "/nix/store/...-x.safetensors", "sha256": "...", "folder": "VAE"}].
    /// Present files are checked (cheaply, when unchanged since last checked), missing ones
    /// are pulled. Store files are symlinked (never copied) and trusted without hashing (Nix
    /// checked them); a user's file in their place is left alone and reported. Used by the
    /// NixOS module at start-up.
    Ensure(EnsureArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TransferArgs {
    /// How many files to download at once.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub jobs: usize,
    /// Print plain progress lines even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalog names, URLs, hf:ORG/REPO/FILE or civitai:VERSION_ID.
    #[arg(value_name = "MODEL")]
    pub models: Vec<String>,
    /// Pull every catalog model of this group (`major`, `first-use`).
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// The expected sha256 (for a single model).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Folder below <data>/models, e.g. Stable-diffusion, VAE, Lora (for a single model).
    #[arg(long, value_name = "FOLDER")]
    pub folder: Option<String>,
    /// File name to save as (for a single model).
    #[arg(long, value_name = "NAME")]
    pub file_name: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A catalog name, `folder/file`, or an installed file name; all installed models if omitted.
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// A catalog name, `folder/file`, or an installed file name.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// JSON file listing the declared models.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    #[command(flatten)]
    pub transfer: TransferArgs,
}
