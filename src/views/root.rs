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
//!   follow a new tree or a new data-dir entry; symlinks are swapped atomically (rename). The
//!   union itself is [`super`]'s.
//!
//! The shim points `script_path` at the view when extension scripts load (upstream's modules
//! imported before keep the tree's path; later readers see the same files through the links),
//! and the proxy resolves a relative `/file=` path against the webui's working directory first,
//! then against the view.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Merge, ViewError};

/// Where the view of `data` lives under `cache`.
pub fn location(cache: &Path, data: &Path) -> PathBuf {
    let digest = Sha256::digest(data.as_os_str().as_encoded_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    cache.join("root-view").join(hex)
}

/// Builds (or refreshes) the view of `tree` and `data` and returns its path.
pub fn build(tree: &Path, data: &Path, cache: &Path) -> Result<PathBuf, ViewError> {
    let view = location(cache, data);
    super::refresh(
        &[tree.to_owned(), data.to_owned()],
        &view,
        Merge::TopOfFirstLayer,
    )?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::super::MERGED;
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

    /// `nix flake update`: the tree is at a new store path. Links into the old one were ours,
    /// so they follow the new tree instead of staying as an extension's (dangling once the old
    /// path is collected, and hiding the new tree's entries).
    #[test]
    fn a_new_tree_path_replaces_the_old_trees_links() {
        let temp = tempfile::tempdir().unwrap();
        let (tree, data, cache) = tree_and_data(temp.path());
        let view = build(&tree, &data, &cache).unwrap();
        let moved = temp.path().join("tree-2");
        std::fs::rename(&tree, &moved).unwrap();
        build(&moved, &data, &cache).unwrap();
        assert_eq!(
            std::fs::read_link(view.join("script.js")).unwrap(),
            moved.join("script.js")
        );
        assert_eq!(
            std::fs::read_link(view.join("modules/paths.py")).unwrap(),
            moved.join("modules/paths.py")
        );
        assert_eq!(
            std::fs::read_link(view.join("models/VAE-approx")).unwrap(),
            moved.join("models/VAE-approx")
        );
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
