//! The root view: the directory extensions see as the webui's root (`modules.paths.script_path`).
//!
//! Under upstream's own `launch.py` the tree, the data dir and the working directory are one
//! writable folder, and extensions rely on it: they create `<script_path>/tmp/...`, read
//! `<script_path>/models/...` or `config.json`, and link their files as `file=tmp/...`, relative
//! to the working directory. Here the tree is read-only (the Nix store) and the data dir is
//! elsewhere, so each of those fails. The root view puts the two back together without copying
//! or writing either:
//!
//! - a directory in the cache dir (`<cache>/root-view/<hash of the data dir>`), one per data
//!   dir, so instances sharing a cache dir do not share a view;
//! - one symlink per entry of the tree and of the data dir; where both have a directory of
//!   the same name (`models`, `extensions`, `embeddings`, ...) the view has a real directory
//!   that merges the two the same way, level by level (so `models/VAE-approx/model.pt` from the
//!   tree and `models/Stable-diffusion/*` from the data dir are both there); for any other clash
//!   the data dir's entry wins, as under upstream, where the data dir *is* the root;
//! - a name neither has (an extension's `tmp2/`, `wildcards/`, ...) is created by the extension
//!   as a real entry in the view, in the cache dir; it is kept across starts and never replaced
//!   by a later link (a warning says what it hides). Merged directories carry a marker file, so
//!   a rebuild tells them from an extension's;
//! - rebuilt at every start under a lock (a few dozen `symlink` calls), so links follow a new
//!   tree or a new data-dir entry; symlinks are swapped atomically (rename).
//!
//! The shim points `script_path` at the view only when extension scripts load (upstream's own
//! modules keep the tree: they read their files exactly as before), and the proxy resolves a
//! relative `/file=` path against the webui's working directory first, then against the view.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum RootViewError {
    #[error("Failed to build the root view `{path}`: {action}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> RootViewError + 'a {
    move |source| RootViewError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Where the view of `data` lives under `cache`.
pub fn location(cache: &Path, data: &Path) -> PathBuf {
    let digest = Sha256::digest(data.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    cache.join("root-view").join(hex)
}

/// Marks a directory of the view as a merge this module made (and may remove).
const MERGED: &str = ".root-view-merged";

/// What a name of the view should be.
enum Want {
    Link(PathBuf),
    Merge(PathBuf, PathBuf),
}

/// Builds (or refreshes) the view of `tree` and `data` and returns its path.
pub fn build(tree: &Path, data: &Path, cache: &Path) -> Result<PathBuf, RootViewError> {
    let view = location(cache, data);
    std::fs::create_dir_all(&view).map_err(io_error("create", &view))?;
    let _lock = Lock::take(&view.with_extension("lock"))?;
    sync(tree, data, &view)?;
    Ok(view)
}

/// Makes the real directory `view` the merge of `tree` and `data` (see the module doc).
fn sync(tree: &Path, data: &Path, view: &Path) -> Result<(), RootViewError> {
    let mut wanted: BTreeMap<OsString, Want> = visible_entries(tree)?
        .into_iter()
        .map(|(name, path)| (name, Want::Link(path)))
        .collect();
    for (name, path) in visible_entries(data)? {
        let want = match wanted.remove(&name) {
            Some(Want::Link(in_tree)) if in_tree.is_dir() && path.is_dir() => {
                Want::Merge(in_tree, path)
            }
            _ => Want::Link(path),
        };
        wanted.insert(name, want);
    }

    for (name, path) in visible_entries(view)? {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ours_merged = meta.is_dir() && path.join(MERGED).exists();
        if meta.file_type().is_symlink() {
            match wanted.get(&name) {
                Some(Want::Link(target))
                    if std::fs::read_link(&path).ok().as_ref() == Some(target) =>
                {
                    wanted.remove(&name);
                }
                Some(Want::Link(_)) => {} // replaced below, atomically
                _ => std::fs::remove_file(&path).map_err(io_error("remove a stale link", &path))?,
            }
        } else if ours_merged {
            if let Some(Want::Merge(in_tree, in_data)) = wanted.get(&name) {
                sync(in_tree, in_data, &path)?;
                wanted.remove(&name);
            } else {
                unmerge(&path)?;
                if path.exists() {
                    keep(&path, wanted.remove(&name));
                }
            }
        } else {
            keep(&path, wanted.remove(&name));
        }
    }

    for (name, want) in wanted {
        let entry = view.join(&name);
        match want {
            Want::Link(target) => {
                let temporary = view.join(format!(".link-{}", std::process::id()));
                let _ = std::fs::remove_file(&temporary);
                std::os::unix::fs::symlink(&target, &temporary)
                    .map_err(io_error("link", &temporary))?;
                std::fs::rename(&temporary, &entry).map_err(io_error("link", &entry))?;
            }
            Want::Merge(in_tree, in_data) => {
                std::fs::create_dir(&entry).map_err(io_error("create", &entry))?;
                let marker = entry.join(MERGED);
                std::fs::write(&marker, b"").map_err(io_error("mark", &marker))?;
                sync(&in_tree, &in_data, &entry)?;
            }
        }
    }
    Ok(())
}

/// An entry written by an extension stays; say what it hides.
fn keep(path: &Path, hidden: Option<Want>) {
    let hidden = match hidden {
        Some(Want::Link(target) | Want::Merge(_, target)) => target,
        None => return,
    };
    tracing::warn!(
        "keeping `{}` (written there by an extension); `{}` is not visible through the root view",
        path.display(),
        hidden.display()
    );
}

/// Takes apart a merged directory that is no longer one: our links and markers go; what an
/// extension wrote inside stays (and so does the directory then).
fn unmerge(dir: &Path) -> Result<(), RootViewError> {
    for entry in std::fs::read_dir(dir).map_err(io_error("read", dir))? {
        let path = entry.map_err(io_error("read", dir))?.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            std::fs::remove_file(&path).map_err(io_error("remove a stale link", &path))?;
        } else if meta.is_dir() && path.join(MERGED).exists() {
            unmerge(&path)?;
        }
    }
    let marker = dir.join(MERGED);
    std::fs::remove_file(&marker).map_err(io_error("remove", &marker))?;
    // Fails when an extension left files here: then the directory stays, as theirs.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// The entries of `dir` that upstream and gradio would show (no dot names), with their paths.
fn visible_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>, RootViewError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("read", dir))? {
        let entry = entry.map_err(io_error("read", dir))?;
        let name = entry.file_name();
        if !name.as_encoded_bytes().starts_with(b".") {
            entries.push((name, entry.path()));
        }
    }
    Ok(entries)
}

/// An exclusive `flock` held while the view is rebuilt (two launchers on one data dir).
struct Lock {
    /// Held, not read: closing it releases the lock.
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock, RootViewError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_error("open the lock", path))?;
        // SAFETY: flock on a file descriptor we own; it has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io_error("lock", path)(io::Error::last_os_error()));
        }
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_and_data(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let (tree, data, cache) = (root.join("tree"), root.join("data"), root.join("cache"));
        for dir in ["modules", "javascript", "models/VAE-approx", "extensions"] {
            std::fs::create_dir_all(tree.join(dir)).unwrap();
        }
        std::fs::write(tree.join("script.js"), "tree").unwrap();
        std::fs::create_dir_all(tree.join(".git")).unwrap();
        for dir in ["models/Stable-diffusion", "extensions", "tmp", "outputs"] {
            std::fs::create_dir_all(data.join(dir)).unwrap();
        }
        std::fs::write(
            data.join("models/Stable-diffusion/tiny.safetensors"),
            "data",
        )
        .unwrap();
        std::fs::write(data.join("config.json"), "{}").unwrap();
        (tree, data, cache)
    }

    #[test]
    fn the_view_is_the_tree_overlaid_by_the_data_dir() {
        let temp = tempfile::tempdir().unwrap();
        let (tree, data, cache) = tree_and_data(temp.path());
        let view = build(&tree, &data, &cache).unwrap();
        let link = |name: &str| std::fs::read_link(view.join(name)).unwrap();
        assert_eq!(link("modules"), tree.join("modules"));
        assert_eq!(link("script.js"), tree.join("script.js"));
        assert_eq!(link("tmp"), data.join("tmp"));
        // Both have `models`: merged, each file from where it is.
        assert!(view.join("models").is_dir() && !view.join("models").is_symlink());
        assert_eq!(link("models/VAE-approx"), tree.join("models/VAE-approx"));
        assert_eq!(
            link("models/Stable-diffusion"),
            data.join("models/Stable-diffusion")
        );
        assert_eq!(
            std::fs::read_to_string(view.join("models/Stable-diffusion/tiny.safetensors")).unwrap(),
            "data"
        );
        assert_eq!(link("config.json"), data.join("config.json"));
        assert!(
            !view.join(".git").exists(),
            "dot entries are not part of the view"
        );
        // A write through the view lands in the data dir, never in the tree.
        std::fs::write(view.join("tmp").join("x.txt"), "x").unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("tmp/x.txt")).unwrap(),
            "x"
        );
    }

    #[test]
    fn a_rebuild_follows_changes_and_keeps_what_extensions_wrote() {
        let temp = tempfile::tempdir().unwrap();
        let (tree, data, cache) = tree_and_data(temp.path());
        let view = build(&tree, &data, &cache).unwrap();
        // An extension's own directory in the view, and a name that later appears in the data dir.
        std::fs::create_dir(view.join("wildcards")).unwrap();
        std::fs::write(view.join("wildcards/a.txt"), "a").unwrap();
        std::fs::create_dir(view.join("log")).unwrap();
        std::fs::create_dir(data.join("log")).unwrap();
        std::fs::remove_dir(data.join("outputs")).unwrap();
        std::fs::create_dir(data.join("styles")).unwrap();

        let again = build(&tree, &data, &cache).unwrap();
        assert_eq!(again, view);
        assert_eq!(
            std::fs::read_to_string(view.join("wildcards/a.txt")).unwrap(),
            "a"
        );
        assert!(
            view.join("log").is_dir() && !view.join("log").is_symlink(),
            "kept, not replaced"
        );
        assert!(
            view.join("outputs").symlink_metadata().is_err(),
            "stale link removed"
        );
        assert_eq!(
            std::fs::read_link(view.join("styles")).unwrap(),
            data.join("styles")
        );
        let leftovers: Vec<_> = std::fs::read_dir(&view)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".link-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_merge_that_ends_is_taken_apart_but_an_extensions_file_in_it_stays() {
        let temp = tempfile::tempdir().unwrap();
        let (tree, data, cache) = tree_and_data(temp.path());
        let view = build(&tree, &data, &cache).unwrap();
        std::fs::write(view.join("extensions/notes.txt"), "mine").unwrap();
        // `extensions` now only in the data dir; `models` only in the tree.
        std::fs::remove_dir_all(tree.join("extensions")).unwrap();
        std::fs::remove_dir_all(data.join("models")).unwrap();
        build(&tree, &data, &cache).unwrap();
        assert_eq!(
            std::fs::read_link(view.join("models")).unwrap(),
            tree.join("models")
        );
        assert!(
            !view.join("extensions").is_symlink(),
            "the extension's file keeps it a directory"
        );
        assert_eq!(
            std::fs::read_to_string(view.join("extensions/notes.txt")).unwrap(),
            "mine"
        );
        assert!(!view.join("extensions").join(MERGED).exists());
    }

    #[test]
    fn each_data_dir_has_its_own_view() {
        let cache = Path::new("/cache");
        assert_ne!(
            location(cache, Path::new("/srv/a")),
            location(cache, Path::new("/srv/b"))
        );
        assert!(location(cache, Path::new("/srv/a")).starts_with("/cache/root-view"));
    }
}
