//! Subcommands and the shared preparation they all need.

pub mod doctor;
pub mod extensions;
pub mod models;
pub mod run;
pub mod settings;
pub mod shell;

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::LauncherArgs;
use crate::dirs::Dirs;
use crate::env_vars::baked;
use crate::layout::{RootSource, WebuiTree};
use crate::python_env::PythonEnv;
use crate::shim::{self, LaunchConfig, ShimPythonEnv};
use crate::sources::Sources;

/// The opt-in Python overlay's directory under the data dir (`webui_shim.overlay`).
pub const PYTHON_OVERLAY_DIR: &str = "python-overlay";

/// What every command resolves once, in `main`, from the launcher's arguments: where it was
/// started and the data and cache dirs. Commands that run Python resolve the rest from it
/// ([`Prepared`]); `completions`, `man` and `--version` need neither.
pub struct Base {
    pub cwd: PathBuf,
    pub dirs: Dirs,
}

impl Base {
    pub fn resolve(args: &LauncherArgs) -> anyhow::Result<Base> {
        let cwd = std::env::current_dir().context("Failed to read the current directory")?;
        let dirs = Dirs::resolve(args.data_dir.as_deref(), args.cache_dir.as_deref(), &cwd)?;
        Ok(Base { cwd, dirs })
    }
}

/// Everything resolved before the interpreter starts.
pub struct Prepared {
    pub cwd: PathBuf,
    pub tree: WebuiTree,
    pub dirs: Dirs,
    pub python: PythonEnv,
    pub shim_dir: PathBuf,
    /// The managed extensions directory: `--managed-extensions`, else the package's own.
    pub managed_extensions: Option<PathBuf>,
    /// `--python-overlay`: `<data>/python-overlay`.
    pub python_overlay: Option<PathBuf>,
}

impl Prepared {
    pub fn new(args: &LauncherArgs, base: Base) -> anyhow::Result<Prepared> {
        let Base { cwd, dirs } = base;
        let tree = WebuiTree::discover(args.webui_root.as_deref(), &cwd)?;
        let python = PythonEnv::discover(args.python_env.as_deref(), &cwd)?;
        let shim_dir = shim::locate()?;
        let managed_extensions = args
            .managed_extensions
            .as_ref()
            .map(|dir| cwd.join(dir))
            .or_else(|| baked::MANAGED_EXTENSIONS.map(PathBuf::from));
        if let Some(dir) = &managed_extensions {
            anyhow::ensure!(
                dir.is_dir(),
                "The managed extensions directory {} does not exist. Check --managed-extensions / {}.",
                dir.display(),
                crate::env_vars::SD_WEBUI_MANAGED_EXTENSIONS
            );
        }
        let python_overlay = args
            .python_overlay
            .then(|| dirs.data.join(PYTHON_OVERLAY_DIR));
        Ok(Prepared {
            cwd,
            tree,
            dirs,
            python,
            shim_dir,
            managed_extensions,
            python_overlay,
        })
    }

    /// The shim's configuration for `mode`, with the webui's argv.
    pub fn launch_config(
        &self,
        mode: &'static str,
        argv: Vec<String>,
        public_non_local: bool,
    ) -> LaunchConfig {
        let git = which::which("git").ok();
        let environment = crate::environment::webui_environment(&self.dirs, git.as_deref(), |k| {
            std::env::var(k).ok()
        });
        LaunchConfig {
            mode,
            webui_root: self.tree.root.clone(),
            data_dir: self.dirs.data.clone(),
            cache_dir: self.dirs.cache.clone(),
            launch_cwd: self.cwd.clone(),
            executable: self.python.executable.clone(),
            shim_dir: self.shim_dir.clone(),
            argv,
            environment,
            python_env: self.python.prefix.as_ref().map(|prefix| ShimPythonEnv {
                prefix: prefix.clone(),
                isolated: self.python.isolated,
            }),
            // A tree with precompiled bytecode (the Nix package) is used as is; otherwise
            // bytecode goes to the cache, never into the tree.
            pycache_prefix: (!self.tree.has_bytecode()).then(|| self.dirs.cache.join("pycache")),
            public_non_local,
            // Only the packaged tree is known to be at the pinned revision.
            webui_rev: (self.tree.source == RootSource::Baked && !self.tree.is_git_checkout())
                .then(|| Sources::pinned().webui.rev),
            settings: None,
            managed_extensions_dir: self.managed_extensions.clone(),
            python_overlay: self.python_overlay.clone(),
            root_view: None,
            managed_extensions_view: None,
        }
    }
}
