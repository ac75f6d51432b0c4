//! `--autolaunch`: open the public URL (upstream would open gradio's private one).

/// Best effort: a missing opener is logged, never fatal.
pub fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(error) => {
            tracing::warn!(%error, "cannot open a browser with `{opener}`; open {url} yourself")
        }
    }
}
