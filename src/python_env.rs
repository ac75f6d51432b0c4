//! Which Python environment the embedded interpreter uses, and the real interpreter path.
//!
//! Precedence: `--python-env`/`SD_WEBUI_PYTHON_ENV`, then the environment the Nix package was
//! built with, then an activated virtualenv (`VIRTUAL_ENV`), then the bare interpreter. The
//! Nix environment wins over `VIRTUAL_ENV` so an unrelated activated venv cannot break a
//! packaged launcher.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::env_vars::{self, baked};

#[derive(Debug, thiserror::Error)]
pub enum PythonEnvError {
    #[error("The Python environment `{path}` (from {source_name}) does not exist")]
    Missing {
        path: PathBuf,
        source_name: &'static str,
    },
    #[error(
        "The Python environment `{path}` (from {source_name}) has no `bin/python3`; pass the \
         directory that contains bin/ and lib/ (a virtualenv's root)"
    )]
    NoInterpreter {
        path: PathBuf,
        source_name: &'static str,
    },
    #[error(
        "The launcher was built without a known interpreter path; set --python-env to a virtualenv"
    )]
    NoBuildPython,
}

/// Where the environment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EnvSource {
    Flag,
    Baked,
    VirtualEnv,
    BareInterpreter,
}

impl EnvSource {
    pub fn describe(self) -> &'static str {
        match self {
            EnvSource::Flag => "--python-env",
            EnvSource::Baked => "the package's Python environment",
            EnvSource::VirtualEnv => "VIRTUAL_ENV",
            EnvSource::BareInterpreter => "the launcher's interpreter",
        }
    }
}

/// The environment handed to the shim.
#[derive(Debug, Clone, Serialize)]
pub struct PythonEnv {
    /// Environment prefix (contains `lib/pythonX.Y/site-packages`), if any.
    pub prefix: Option<PathBuf>,
    /// A venv without `include-system-site-packages = true`: hide the base site-packages.
    pub isolated: bool,
    /// The interpreter subprocesses must use (`sys.executable`).
    pub executable: PathBuf,
    pub source: EnvSource,
}

impl PythonEnv {
    pub fn discover(flag: Option<&Path>, cwd: &Path) -> Result<PythonEnv, PythonEnvError> {
        let virtual_env = std::env::var_os(env_vars::VIRTUAL_ENV).map(PathBuf::from);
        let chosen = flag
            .map(|p| (cwd.join(p), EnvSource::Flag))
            .or_else(|| baked::DEFAULT_PYTHON_ENV.map(|p| (PathBuf::from(p), EnvSource::Baked)))
            .or_else(|| virtual_env.map(|p| (p, EnvSource::VirtualEnv)));
        let Some((prefix, source)) = chosen else {
            let executable = baked::BUILD_PYTHON
                .map(PathBuf::from)
                .ok_or(PythonEnvError::NoBuildPython)?;
            return Ok(PythonEnv {
                prefix: None,
                isolated: false,
                executable,
                source: EnvSource::BareInterpreter,
            });
        };
        let source_name = source.describe();
        if !prefix.is_dir() {
            return Err(PythonEnvError::Missing {
                path: prefix,
                source_name,
            });
        }
        // Not canonicalized: a venv's bin/python is a symlink whose *path* selects the venv.
        let executable = ["python3", "python"]
            .iter()
            .map(|name| prefix.join("bin").join(name))
            .find(|p| p.exists())
            .ok_or_else(|| PythonEnvError::NoInterpreter {
                path: prefix.clone(),
                source_name,
            })?;
        let isolated = venv_is_isolated(&prefix);
        tracing::debug!(prefix = %prefix.display(), source = source_name, isolated, "python environment");
        Ok(PythonEnv {
            prefix: Some(prefix),
            isolated,
            executable,
            source,
        })
    }
}

/// A venv (`pyvenv.cfg` present) hides the base site-packages unless it says otherwise.
fn venv_is_isolated(prefix: &Path) -> bool {
    let Ok(text) = fs_err::read_to_string(prefix.join("pyvenv.cfg")) else {
        return false;
    };
    !text.lines().any(|line| {
        line.split_once('=').is_some_and(|(k, v)| {
            k.trim() == "include-system-site-packages" && v.trim().eq_ignore_ascii_case("true")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_cfg_decides_isolation() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!venv_is_isolated(tmp.path()), "no pyvenv.cfg: not a venv");
        std::fs::write(tmp.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert!(venv_is_isolated(tmp.path()));
        std::fs::write(
            tmp.path().join("pyvenv.cfg"),
            "home = /usr/bin\ninclude-system-site-packages = true\n",
        )
        .unwrap();
        assert!(!venv_is_isolated(tmp.path()));
    }
}
