//! `completions SHELL` and `man`: what shells and `man` need, generated from the clap types,
//! so they never disagree with `--help`.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut stdout = io::stdout().lock();
    clap_complete::generate(shell, &mut command, "stable-diffusion-webui", &mut stdout);
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn man() -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    clap_mangen::Man::new(Cli::command()).render(&mut stdout)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
