//! The embedded CPython: initialised once, on the process's main thread (upstream installs a
//! SIGINT handler, which only works there), running the shim's entry points.

use std::path::Path;

use pyo3::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("The Python shim failed in `{function}` (traceback above)")]
    Python { function: &'static str },
}

/// Initialise CPython (once) with the launcher's `_webui_launcher` module available.
fn initialize() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        pyo3::append_to_inittab!(_webui_launcher);
        Python::initialize();
    });
}

use crate::control::_webui_launcher;

/// Call `webui_shim.bootstrap.<function>(config_json)`; `extract` converts its result.
fn call_shim<T>(
    shim_dir: &Path,
    function: &'static str,
    config_json: &str,
    extract: impl for<'py> FnOnce(Bound<'py, PyAny>) -> PyResult<T>,
) -> Result<T, EmbedError> {
    initialize();
    Python::attach(|py| {
        let result = (|| -> PyResult<T> {
            py.import("sys")?
                .getattr("path")?
                .call_method1("insert", (0, shim_dir.to_string_lossy().as_ref()))?;
            let bootstrap = py.import("webui_shim.bootstrap")?;
            extract(bootstrap.getattr(function)?.call1((config_json,))?)
        })();
        result.map_err(|err| {
            err.print(py);
            EmbedError::Python { function }
        })
    })
}

/// Run the webui (or another run-like mode); returns the process exit status.
pub fn run_webui(shim_dir: &Path, config_json: &str) -> Result<i32, EmbedError> {
    call_shim(shim_dir, "main", config_json, |value| {
        value.extract::<i32>()
    })
}

/// Gather `doctor` facts inside the real environment; returns JSON.
pub fn doctor_report(shim_dir: &Path, config_json: &str) -> Result<String, EmbedError> {
    call_shim(shim_dir, "doctor_report", config_json, |value| {
        value.extract::<String>()
    })
}

/// upstream's settings keys with type, default and label (`webui_shim.settings`); returns JSON.
pub fn settings_keys(shim_dir: &Path, config_json: &str) -> Result<String, EmbedError> {
    call_shim(shim_dir, "settings_keys", config_json, |value| {
        value.extract::<String>()
    })
}
