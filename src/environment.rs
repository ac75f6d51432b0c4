//! Environment variables for the webui process (applied by the shim before upstream runs).

use std::collections::BTreeMap;

use crate::dirs::Dirs;
use crate::env_vars;

/// What the webui's environment must contain, given the current environment (`lookup`).
///
/// Values the user already set are respected where it makes sense (caches, MPS fallback).
pub fn webui_environment(
    dirs: &Dirs,
    git: Option<&std::path::Path>,
    lookup: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        env.insert(key.to_owned(), value);
    };
    set("GRADIO_ANALYTICS_ENABLED", "False".into());
    // Upstream opens a browser unless this is "1"; the launcher owns --autolaunch (the
    // browser must open the public address, not gradio's private one).
    set("SD_WEBUI_RESTARTING", "1".into());
    // Consumed by the launcher (see cli::parse); upstream must not append it again.
    set(env_vars::COMMANDLINE_ARGS, String::new());
    // GitPython refuses to import without a git executable; the webui works without git.
    set("GIT_PYTHON_REFRESH", "quiet".into());
    if let Some(git) = git
        && lookup("GIT_PYTHON_GIT_EXECUTABLE").is_none()
    {
        set("GIT_PYTHON_GIT_EXECUTABLE", git.display().to_string());
    }
    // gradio checks its own loopback URL with `requests`, which would go through a proxy.
    for key in ["NO_PROXY", "no_proxy"] {
        let current = lookup(key).unwrap_or_default();
        let mut entries: Vec<&str> = current.split(',').filter(|s| !s.is_empty()).collect();
        for host in ["localhost", "127.0.0.1", "::1"] {
            if !entries.contains(&host) {
                entries.push(host);
            }
        }
        set(key, entries.join(","));
    }
    let cache = |sub: &str| dirs.cache.join(sub).display().to_string();
    // torch >= 2.9 computes its inductor cache dir when torch._dynamo is imported (torchvision
    // imports it), as /tmp/torchinductor_<getpass.getuser()>: that raises for a uid without a
    // passwd entry (`docker run --user`, setpriv), and shares /tmp. Triton's goes under ~.
    for (key, sub) in [
        ("HF_HOME", "huggingface"),
        ("TORCH_HOME", "torch"),
        ("TORCHINDUCTOR_CACHE_DIR", "torchinductor"),
        ("TRITON_CACHE_DIR", "triton"),
        ("MPLCONFIGDIR", "matplotlib"),
        // numba (rembg's pymatting, ...) caches compiled code beside the module, or under
        // ~/.cache when that is read-only, as it is here (the extensions corpus found it).
        ("NUMBA_CACHE_DIR", "numba"),
    ] {
        if lookup(key).is_none() {
            set(key, cache(sub));
        }
    }
    if cfg!(target_os = "macos") && lookup("PYTORCH_ENABLE_MPS_FALLBACK").is_none() {
        // As upstream's webui-macos-env.sh: run ops MPS lacks on the CPU instead of failing.
        set("PYTORCH_ENABLE_MPS_FALLBACK", "1".into());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dirs() -> Dirs {
        Dirs {
            data: PathBuf::from("/d"),
            cache: PathBuf::from("/c"),
        }
    }

    #[test]
    fn caches_go_to_the_cache_dir_unless_the_user_chose() {
        let env = webui_environment(&dirs(), None, |k| (k == "HF_HOME").then(|| "/mine".into()));
        assert!(!env.contains_key("HF_HOME"), "user's HF_HOME is kept");
        assert_eq!(env["TORCH_HOME"], "/c/torch");
        assert_eq!(env["TORCHINDUCTOR_CACHE_DIR"], "/c/torchinductor");
        assert_eq!(env["TRITON_CACHE_DIR"], "/c/triton");
        assert_eq!(env["NUMBA_CACHE_DIR"], "/c/numba");
        assert_eq!(env["COMMANDLINE_ARGS"], "");
        assert_eq!(env["GRADIO_ANALYTICS_ENABLED"], "False");
    }

    #[test]
    fn no_proxy_keeps_user_entries_and_adds_loopback_once() {
        let env = webui_environment(&dirs(), None, |k| {
            (k == "NO_PROXY").then(|| "corp.example,localhost".into())
        });
        assert_eq!(env["NO_PROXY"], "corp.example,localhost,127.0.0.1,::1");
        assert_eq!(env["no_proxy"], "localhost,127.0.0.1,::1");
    }
}
