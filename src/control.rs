//! Process control shared by the embedded webui and the launcher's async side.
//!
//! The shim reports readiness and asks for stop/restart through the `_webui_launcher` Python
//! module defined here; the proxy and the signal handling read the same state. It is a
//! process-wide singleton because CPython is one per process and calls into Rust from any
//! thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

pub use crate::proxy::BackendState;

/// How long a requested stop may take before the launcher forces the exit.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

pub struct Control {
    state: watch::Sender<BackendState>,
    restart: AtomicBool,
    stopping: AtomicBool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The process's control state (created on first use).
pub fn get() -> &'static Control {
    CONTROL.get_or_init(|| Control {
        state: watch::channel(BackendState::Starting).0,
        restart: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
    })
}

impl Control {
    pub fn subscribe(&self) -> watch::Receiver<BackendState> {
        self.state.subscribe()
    }

    pub fn set_state(&self, state: BackendState) {
        self.state.send_replace(state);
    }

    pub fn restart_requested(&self) -> bool {
        self.restart.load(Ordering::SeqCst)
    }

    /// Ask the webui to stop: raise KeyboardInterrupt on Python's main thread (upstream's
    /// webui() loop turns it into a clean stop) and arm the watchdog.
    pub fn stop(&self, restart: bool) {
        if restart {
            self.restart.store(true, Ordering::SeqCst);
        }
        self.set_state(BackendState::Stopping);
        // SAFETY: PyErr_SetInterrupt is async-signal-safe and needs no GIL.
        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
        self.arm_watchdog();
    }

    /// A stop is under way (Python saw Ctrl-C itself): arm the watchdog once.
    pub fn arm_watchdog(&self) {
        self.set_state(BackendState::Stopping);
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        std::thread::spawn(|| {
            std::thread::sleep(STOP_GRACE);
            tracing::error!(
                "the webui did not stop within {}s; forcing it",
                STOP_GRACE.as_secs()
            );
            if get().restart_requested() {
                crate::restart::reexec();
            }
            std::process::exit(1);
        });
    }
}

/// The Python side of [`Control`], importable by the shim as `_webui_launcher`.
#[pyo3::pymodule]
pub mod _webui_launcher {
    use super::{BackendState, get};
    use pyo3::prelude::*;
    use std::path::PathBuf;

    /// Upstream reached its app-started point: gradio may receive requests, and the proxy
    /// may serve `/file=` from `file_roots` (the webui's data, output, temp and extension dirs).
    /// `working_dir` is gradio's, for relative `/file=` paths; `root_view` is where such a path
    /// is looked for when it is not below the working directory.
    #[pyfunction]
    #[pyo3(signature = (file_roots, working_dir=None, root_view=None))]
    fn backend_ready(
        file_roots: Vec<PathBuf>,
        working_dir: Option<PathBuf>,
        root_view: Option<PathBuf>,
    ) {
        tracing::debug!(?file_roots, ?working_dir, ?root_view, "webui ready");
        get().set_state(BackendState::Ready {
            file_roots,
            working_dir,
            root_view,
        });
    }

    /// gradio is about to close (UI reload or stop).
    #[pyfunction]
    fn backend_stopping() {
        get().set_state(BackendState::Stopping);
    }

    /// Upstream's restart_program(): the launcher re-executes itself after the stop.
    #[pyfunction]
    fn request_restart() {
        get()
            .restart
            .store(true, std::sync::atomic::Ordering::SeqCst);
        get().arm_watchdog();
    }

    /// Upstream's stop_program().
    #[pyfunction]
    fn request_stop() {
        get().arm_watchdog();
    }

    /// Ctrl-C reached Python's handler.
    #[pyfunction]
    fn stop_requested() {
        get().arm_watchdog();
    }

    #[pymodule_export]
    use super::DownloadError;

    /// Upstream's `load_file_from_url`, through the launcher's verified downloader (see
    /// `models::first_use`): returns the file's path. Blocks the calling thread, not the
    /// interpreter (the GIL is released while downloading). Failures raise `DownloadError`
    /// with the launcher's message.
    #[pyfunction]
    #[pyo3(signature = (url, model_dir, file_name=None, hash_prefix=None, re_download=false, data_dir=None))]
    fn download(
        py: Python<'_>,
        url: String,
        model_dir: PathBuf,
        file_name: Option<String>,
        hash_prefix: Option<String>,
        re_download: bool,
        data_dir: Option<PathBuf>,
    ) -> PyResult<PathBuf> {
        let request = crate::models::first_use::Request {
            url,
            dir: model_dir,
            file_name,
            hash_prefix,
            replace: re_download,
        };
        py.detach(move || super::first_use_download(&request, data_dir.as_deref()))
            .map_err(DownloadError::new_err)
    }
}

pyo3::create_exception!(
    _webui_launcher,
    DownloadError,
    pyo3::exceptions::PyException,
    "A download through the launcher failed (its message says why; nothing was left in place)."
);

/// The body of `_webui_launcher.download`, without the GIL: builds what a one-off download
/// needs from the environment (catalog, endpoints, tokens, proxies) and runs it to the end.
fn first_use_download(
    request: &crate::models::first_use::Request,
    data_dir: Option<&std::path::Path>,
) -> Result<std::path::PathBuf, String> {
    use crate::models::download::error_chain;
    use crate::models::first_use::{Context, Fetched, fetch};
    use crate::models::{Models, human_bytes};
    use crate::progress::Lines;

    let models = Models::from_env(data_dir.map(std::path::Path::to_owned).unwrap_or_default())
        .map_err(|e| error_chain(&e))?;
    let context = Context {
        catalog: &models.catalog,
        endpoints: &models.endpoints,
        tokens: &models.tokens,
        downloader: &models.downloader,
        data_dir,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("Failed to start the download runtime: {e}"))?;
    let label = request
        .file_name
        .clone()
        .unwrap_or_else(|| request.url.clone());
    let fetched = runtime
        .block_on(fetch(&context, request, &Lines::new(vec![label])))
        .map_err(|e| error_chain(&e))?;
    if let Fetched::Downloaded { outcome, catalog } = &fetched {
        let what = match (catalog, outcome.verified) {
            (Some(name), true) => format!("sha256 verified (catalog entry `{name}`)"),
            (None, true) => "sha256 verified (the hash the webui asked for)".to_owned(),
            (_, false) => format!(
                "NOT verified: no known sha256 for this URL (its sha256 is {})",
                outcome.sha256
            ),
        };
        eprintln!(
            "Downloaded `{}` ({}): {what}",
            outcome.path.display(),
            human_bytes(outcome.size)
        );
    }
    Ok(fetched.path().to_owned())
}
