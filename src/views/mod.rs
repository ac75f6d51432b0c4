//! Writable views of read-only directories: symlink unions that extensions can write into.
//!
//! Under upstream's own `launch.py` everything an extension touches is one writable folder.
//! Here the webui tree and the managed extensions are in the read-only Nix store, so an
//! extension that writes next to its own files, or under the webui root, fails. A view puts a
//! writable directory in front of them without copying or writing either:
//!
//! - one symlink per entry of the *layers* (read-only sources, lowest first); where layers
//!   have a directory of the same name the view has a real directory merging them the same
//!   way, level by level; which single-layer directories are merged too is the view's
//!   [`Merge`] rule, so a new name written inside one lands in the view, not in the store;
//!   for any other clash the later layer's entry wins;
//! - a name no layer has is the extension's: created as a real entry in the view, kept across
//!   rebuilds and never replaced by a later link (a directory of it merges a later layer's
//!   entries beside its own; anything else is kept and a warning says what it hides). Merged
//!   directories carry a marker file, and only links into a layer, present or past, are ours
//!   to remove: the layers of the last build are recorded in the view (`.view-sources`), so after
//!   an update (new store paths) links to the old ones are replaced, not kept as an
//!   extension's;
//! - rebuilt at every start under a lock, so links follow new layers; symlinks are swapped
//!   atomically (rename).
//!
//! What a view cannot do: rewrite a file a layer has (the write follows the link into the
//! store and fails, as on any read-only install). Extensions create files; the corpus
//! (`docs/extensions-compatibility.md`) found none that rewrites its own.

pub mod managed_extensions;
pub mod root;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The cause (fs_err's) names the operation and the path.
    #[error("Failed to build the writable view `{view}`")]
    Build {
        view: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Marks a directory of the view as a merge this module made (and may remove).
const MERGED: &str = ".root-view-merged";

/// The layers of the last build, one path per line: links into them are ours.
const SOURCES: &str = ".view-sources";

/// Which directories that only one layer has become merges (real directories of links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The top-level directories of the first layer (the webui tree: `scripts/`, `modules/`).
    TopOfFirstLayer,
    /// Every directory at every depth (an extension's own directory, small).
    Everywhere,
}

/// What a name of the view should be: a link to one entry, or a directory merging several
/// (lowest layer first; a later layer's entry wins a clash that is not two directories).
enum Want {
    Link(PathBuf),
    Merge(Vec<PathBuf>),
}

/// The layers links of ours point into (this build's and the last one's); any other link in
/// the view is an extension's.
struct Roots {
    layers: Vec<PathBuf>,
    previous: Vec<PathBuf>,
    merge: Merge,
}

impl Roots {
    fn ours(&self, link: &Path) -> bool {
        fs_err::read_link(link).is_ok_and(|target| {
            self.layers
                .iter()
                .chain(&self.previous)
                .any(|root| target.starts_with(root))
        })
    }

    /// Whether a directory only `path`'s layer has becomes a merge at this depth.
    fn merges_single(&self, path: &Path, top: bool) -> bool {
        match self.merge {
            Merge::Everywhere => true,
            Merge::TopOfFirstLayer => {
                top && self.layers.first().is_some_and(|l| path.starts_with(l))
            }
        }
    }
}

/// Builds (or refreshes) `view` as the union of `layers` under an exclusive lock on
/// `.<view name>.lock` beside it.
pub(crate) fn refresh(layers: &[PathBuf], view: &Path, merge: Merge) -> Result<(), ViewError> {
    refresh_io(layers, view, merge).map_err(|source| ViewError::Build {
        view: view.to_owned(),
        source,
    })
}

fn refresh_io(layers: &[PathBuf], view: &Path, merge: Merge) -> io::Result<()> {
    fs_err::create_dir_all(view)?;
    // Beside the view, hidden: `<parent>/.<name>.lock` (a dotted extension name keeps its own).
    let name = view.file_name().unwrap_or_default().to_string_lossy();
    let lock = view.with_file_name(format!(".{name}.lock"));
    let _lock = Lock::take(&lock)?;
    let sources = view.join(SOURCES);
    let previous = match fs_err::read_to_string(&sources) {
        Ok(text) => text.lines().map(PathBuf::from).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let roots = Roots {
        layers: layers.to_vec(),
        previous,
        merge,
    };
    if roots.previous != roots.layers {
        // Old and new first: a start that dies half-way leaves links the next one still owns.
        write_sources(&sources, roots.previous.iter().chain(&roots.layers))?;
    }
    sync(layers, view, &roots, true)?;
    if roots.previous != roots.layers {
        write_sources(&sources, &roots.layers)?;
    }
    Ok(())
}

fn write_sources<'a>(path: &Path, layers: impl IntoIterator<Item = &'a PathBuf>) -> io::Result<()> {
    let text: String = layers
        .into_iter()
        .map(|l| format!("{}\n", l.display()))
        .collect();
    crate::atomic_file::write(path, text.as_bytes()).map_err(|e| io::Error::new(e.source.kind(), e))
}

/// What the directory merging `layers` should hold (see [`Roots::merges_single`]).
fn wanted(layers: &[PathBuf], roots: &Roots, top: bool) -> io::Result<BTreeMap<OsString, Want>> {
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
    for want in wanted.values_mut() {
        if let Want::Link(path) = want
            && roots.merges_single(path, top)
            && path.is_dir()
        {
            *want = Want::Merge(vec![path.clone()]);
        }
    }
    Ok(wanted)
}

/// Makes the real directory `view` the merge of `layers` (see the module doc).
fn sync(layers: &[PathBuf], view: &Path, roots: &Roots, top: bool) -> io::Result<()> {
    let mut wanted = wanted(layers, roots, top)?;

    for (name, path) in visible_entries(view)? {
        let Ok(meta) = fs_err::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let ours = roots.ours(&path);
            match wanted.get(&name) {
                Some(Want::Link(target))
                    if fs_err::read_link(&path).ok().as_ref() == Some(target) =>
                {
                    wanted.remove(&name);
                }
                Some(Want::Link(_)) if ours => {} // replaced below, atomically
                _ if ours => fs_err::remove_file(&path)?,
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
                let _ = fs_err::remove_file(&temporary);
                fs_err::os::unix::fs::symlink(&target, &temporary)?;
                fs_err::rename(&temporary, &entry)?;
            }
            Want::Merge(sources) => {
                fs_err::create_dir(&entry)?;
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

fn mark(dir: &Path) -> io::Result<()> {
    let marker = dir.join(MERGED);
    if marker.exists() {
        return Ok(());
    }
    fs_err::write(&marker, b"")
}

/// An entry written by an extension stays; say what it hides.
fn keep(path: &Path, hidden: Option<Want>) {
    let hidden = match hidden {
        Some(Want::Link(target)) => target,
        Some(Want::Merge(sources)) => sources.last().cloned().unwrap_or_default(),
        None => return,
    };
    tracing::warn!(
        "keeping `{}` (written there by an extension); `{}` is not visible through the view",
        path.display(),
        hidden.display()
    );
}

/// Takes apart a merged directory that is no longer one: our links and markers go; what an
/// extension wrote inside (files, directories, links of its own) stays, and so does the
/// directory then.
fn unmerge(dir: &Path, roots: &Roots) -> io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        let Ok(meta) = fs_err::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if roots.ours(&path) {
                fs_err::remove_file(&path)?;
            }
        } else if meta.is_dir() && path.join(MERGED).exists() {
            unmerge(&path, roots)?;
        }
    }
    let marker = dir.join(MERGED);
    fs_err::remove_file(&marker)?;
    // Fails when an extension left something here: then the directory stays, as theirs.
    let _ = fs_err::remove_dir(dir);
    Ok(())
}

/// The entries of `dir` that upstream and gradio would show (no dot names), with their paths.
fn visible_entries(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
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
    _file: fs_err::File,
}

impl Lock {
    fn take(path: &Path) -> io::Result<Lock> {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.lock()?;
        Ok(Lock { _file: file })
    }
}
