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
//!   tree and `models/Stable-diffusion/*` from the data dir are both there); a top-level
//!   directory only the tree has is merged too (of its one layer), so a new name written inside
//!   it lands in the view instead of failing against the store; for any other clash the data
//!   dir's entry wins, as under upstream, where the data dir *is* the root;
//! - a name no layer has (an extension's `tmp2/`, `wildcards/`, ...) is created by the
//!   extension as a real entry in the view, in the cache dir; it is kept across starts and never
//!   replaced by a later link (a directory of it merges a later layer's entries beside its own;
//!   anything else is kept and a warning says what it hides). Merged directories carry a marker
//!   file, and only links into the tree or the data dir are ours to remove;
//! - rebuilt at every start under a lock (a few hundred `symlink` calls at most), so links
//!   follow a new tree or a new data-dir entry; symlinks are swapped atomically (rename).
//!
//! The shim points `script_path` at the view when extension scripts load (upstream's modules
//! imported before keep the tree's path; later readers see the same files through the links),
//! and the proxy resolves a relative `/file=` path against the webui's working directory first,
//! then against the view.

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

/// What a name of the view should be: a link to one entry, or a directory merging several
/// (lowest layer first; a later layer's entry wins a clash that is not two directories).
enum Want {
    Link(PathBuf),
    Merge(Vec<PathBuf>),
}

/// The two roots a link of ours points into; any other link in the view is an extension's.
struct Roots<'a> {
    tree: &'a Path,
    data: &'a Path,
}

impl Roots<'_> {
    fn ours(&self, link: &Path) -> bool {
        std::fs::read_link(link)
            .is_ok_and(|target| target.starts_with(self.tree) || target.starts_with(self.data))
    }
}

/// Builds (or refreshes) the view of `tree` and `data` and returns its path.
pub fn build(tree: &Path, data: &Path, cache: &Path) -> Result<PathBuf, RootViewError> {
    let view = location(cache, data);
    std::fs::create_dir_all(&view).map_err(io_error("create", &view))?;
    let _lock = Lock::take(&view.with_extension("lock"))?;
    let roots = Roots { tree, data };
    sync(&[tree.to_owned(), data.to_owned()], &view, &roots, true)?;
    Ok(view)
}

/// What the directory merging `layers` should hold. At the top (`top`), a directory only the
/// tree has is merged too (of one layer): a new name an extension writes inside it (say
/// `models/foo/` before the data dir has `models/`) then lands in the view, not in the tree.
fn wanted(
    layers: &[PathBuf],
    roots: &Roots,
    top: bool,
) -> Result<BTreeMap<OsString, Want>, RootViewError> {
    let mut wanted: BTreeMap<OsString, Want> = BTreeMap::new();
    for layer in layers {
        for (name, path) in visible_entries(layer)? {
            let want = match wanted.remove(&name) {
                Some(Want::Link(lower)) if lower.is_dir() && path.is_dir() => {
                    Want::Merge(vec![lower, path])
                }
                Some(Want::Merge(mut lower)) if path.is_dir() => {
                    lower.push(path);
                    Want::Merge(lower)
                }
                _ => Want::Link(path),
            };
            wanted.insert(name, want);
        }
    }
    if top {
        for want in wanted.values_mut() {
            if let Want::Link(path) = want
                && path.starts_with(roots.tree)
                && path.is_dir()
            {
                *want = Want::Merge(vec![path.clone()]);
            }
        }
    }
    Ok(wanted)
}

/// Makes the real directory `view` the merge of `layers` (see the module doc).
fn sync(layers: &[PathBuf], view: &Path, roots: &Roots, top: bool) -> Result<(), RootViewError> {
    let mut wanted = wanted(layers, roots, top)?;

    for (name, path) in visible_entries(view)? {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let ours = roots.ours(&path);
            match wanted.get(&name) {
                Some(Want::Link(target))
                    if std::fs::read_link(&path).ok().as_ref() == Some(target) =>
                {
                    wanted.remove(&name);
                }
                Some(Want::Link(_)) if ours => {} // replaced below, atomically
                _ if ours => {
                    std::fs::remove_file(&path).map_err(io_error("remove a stale link", &path))?
                }
                _ => keep(&path, wanted.remove(&name)),
            }
        } else if meta.is_dir() && wants_directory(wanted.get_mut(&name)) {
            // Ours from an earlier start, or a directory an extension made before the layers
            // had one of that name: either way it merges them now, and keeps what it holds.
            let Some(Want::Merge(sources)) = wanted.remove(&name) else {
                unreachable!("matched above")
            };
            mark(&path)?;
            sync(&sources, &path, roots, false)?;
        } else if meta.is_dir() && path.join(MERGED).exists() {
            unmerge(&path, roots)?;
            if path.exists() {
                keep(&path, wanted.remove(&name));
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
            Want::Merge(sources) => {
                std::fs::create_dir(&entry).map_err(io_error("create", &entry))?;
                mark(&entry)?;
                sync(&sources, &entry, roots, false)?;
            }
        }
    }
    Ok(())
}

/// True when the name should be a directory here (a merge), turning a wanted link to a
/// directory into a merge of that one directory: a real directory in the view (an extension's,
/// made before the layers had that name) then shows the layer's entries beside its own instead
/// of hiding them.
fn wants_directory(want: Option<&mut Want>) -> bool {
    let Some(want) = want else {
        return false;
    };
    if let Want::Link(target) = want {
        if !target.is_dir() {
            return false;
        }
        *want = Want::Merge(vec![target.clone()]);
    }
    true
}

fn mark(dir: &Path) -> Result<(), RootViewError> {
    let marker = dir.join(MERGED);
    if marker.exists() {
        return Ok(());
    }
    std::fs::write(&marker, b"").map_err(io_error("mark", &marker))
}

/// An entry written by an extension stays; say what it hides.
fn keep(path: &Path, hidden: Option<Want>) {
    let hidden = match hidden {
        Some(Want::Link(target)) => target,
        Some(Want::Merge(sources)) => sources.last().cloned().unwrap_or_default(),
        None => return,
    };
    tracing::warn!(
        "keeping `{}` (written there by an extension); `{}` is not visible through the root view",
        path.display(),
        hidden.display()
    );
}

/// Takes apart a merged directory that is no longer one: our links and markers go; what an
/// extension wrote inside (files, directories, links of its own) stays, and so does the
/// directory then.
fn unmerge(dir: &Path, roots: &Roots) -> Result<(), RootViewError> {
    for entry in std::fs::read_dir(dir).map_err(io_error("read", dir))? {
        let path = entry.map_err(io_error("read", dir))?.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if roots.ours(&path) {
                std::fs::remove_file(&path).map_err(io_error("remove a stale link", &path))?;
            }
        } else if meta.is_dir() && path.join(MERGED).exists() {
            unmerge(&path, roots)?;
        }
    }
    let marker = dir.join(MERGED);
    std::fs::remove_file(&marker).map_err(io_error("remove", &marker))?;
    // Fails when an extension left something here: then the directory stays, as theirs.
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
        std::fs::write(tree.join("modules/paths.py"), "tree").unwrap();
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
        // A directory only the tree has is merged too, at the top: its entries are links.
        assert!(view.join("modules").join(MERGED).exists());
        assert_eq!(link("modules/paths.py"), tree.join("modules/paths.py"));
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
        // A new name inside a directory only the tree has lands in the view, not the tree.
        std::fs::create_dir(view.join("modules/new")).unwrap();
        assert!(!tree.join("modules/new").exists());
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
        std::fs::create_dir_all(data.join("extensions/user-ext")).unwrap();
        build(&tree, &data, &cache).unwrap();
        // `models`: the tree's alone now; the data dir's links are gone.
        assert_eq!(
            std::fs::read_link(view.join("models/VAE-approx")).unwrap(),
            tree.join("models/VAE-approx")
        );
        assert!(
            view.join("models/Stable-diffusion")
                .symlink_metadata()
                .is_err()
        );
        // `extensions`: the data dir's alone, beside what an extension wrote there, not hidden.
        assert_eq!(
            std::fs::read_to_string(view.join("extensions/notes.txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_link(view.join("extensions/user-ext")).unwrap(),
            data.join("extensions/user-ext")
        );
        // An extension's own link is not ours to remove.
        std::os::unix::fs::symlink("/etc/hostname", view.join("extensions/their-link")).unwrap();
        build(&tree, &data, &cache).unwrap();
        assert!(view.join("extensions/their-link").is_symlink());
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
