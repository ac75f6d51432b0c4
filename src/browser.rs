//! `--autolaunch`: open the public URL (upstream would open gradio's private one).

/// Best effort, through the desktop's opener (`opener`: xdg-open, `open`, WSL, ...): a
/// failure is logged, never fatal.
pub fn open(url: &str) {
    if let Err(error) = opener::open_browser(url) {
        tracing::warn!(%error, "cannot open a browser; open {url} yourself");
    }
}
