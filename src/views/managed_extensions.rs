//! Writable views of the managed extensions: `<data>/managed-extensions/<name>`.
//!
//! Extensions write next to their own files, and upstream lets them, since its extensions
//! directory is writable: sd-webui-regional-prompter creates `regional_prompter_presets.json` in
//! `scripts.basedir()` at load and saves masks under its `regional_masks/`
//! (`scripts/rp.py`: `PTPRESET = modules.scripts.basedir()`); sd-dynamic-prompts keeps its
//! wildcards in its own directory, ControlNet its annotator downloads. A managed extension's
//! directory is in the read-only store, so each of those fails there. The webui loads every
//! managed extension from its view instead: every directory merged at every depth (an
//! extension is a few hundred files), so a file it creates anywhere lands in the data dir, is
//! kept across starts and updates, and belongs to the user like the rest of the data dir.

use std::path::{Path, PathBuf};

use super::{Merge, ViewError};

/// The views' directory under the data dir.
pub const DIR: &str = "managed-extensions";

/// Builds (or refreshes) the view of each extension of `managed` (`<managed>/<name>/`) and
/// returns the directory holding them. A view whose extension is no longer managed is left
/// alone: what it holds is the user's, and the webui loads only the managed names.
pub fn build(managed: &Path, data: &Path) -> Result<PathBuf, ViewError> {
    let views = data.join(DIR);
    let read_error = |source| ViewError::Build {
        view: views.clone(),
        source,
    };
    let entries = fs_err::read_dir(managed).map_err(read_error)?;
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") || !entry.path().is_dir() {
            continue;
        }
        super::refresh(&[entry.path()], &views.join(&name), Merge::Everywhere)?;
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A managed directory as the Nix package builds it: one directory per extension.
    fn managed(root: &Path, name: &str, masks: &[&str]) -> PathBuf {
        let managed = root.join(name);
        let extension = managed.join("regional-prompter");
        write(&extension.join("scripts/rp.py"), name);
        write(&extension.join("style.css"), name);
        for mask in masks {
            write(&extension.join("regional_masks").join(mask), name);
        }
        write(&managed.join("manifest.json"), "{}");
        managed
    }

    #[test]
    fn an_extension_writes_beside_its_files_into_the_data_dir() {
        let temp = tempfile::tempdir().unwrap();
        let store = managed(temp.path(), "store-a", &["shipped.png"]);
        let data = temp.path().join("data");
        let views = build(&store, &data).unwrap();
        assert_eq!(views, data.join(DIR));
        let view = views.join("regional-prompter");
        let visible: Vec<_> = std::fs::read_dir(&views)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(
            visible,
            ["regional-prompter"],
            "one view per extension, nothing else in the user's data dir"
        );
        assert_eq!(
            std::fs::read_link(view.join("scripts/rp.py")).unwrap(),
            store.join("regional-prompter/scripts/rp.py")
        );
        // Presets at the top, a mask in a directory the extension ships: both in the view.
        std::fs::write(view.join("regional_prompter_presets.json"), "[]").unwrap();
        std::fs::write(view.join("regional_masks/mine.png"), "mine").unwrap();
        assert!(
            !store
                .join("regional-prompter/regional_masks/mine.png")
                .exists()
        );
        assert_eq!(
            std::fs::read_to_string(view.join("regional_masks/shipped.png")).unwrap(),
            "store-a"
        );
    }

    #[test]
    fn an_update_relinks_to_the_new_store_path_and_keeps_what_the_extension_wrote() {
        let temp = tempfile::tempdir().unwrap();
        let old = managed(temp.path(), "store-a", &["shipped.png", "dropped.png"]);
        let data = temp.path().join("data");
        let view = build(&old, &data).unwrap().join("regional-prompter");
        std::fs::write(view.join("regional_masks/mine.png"), "mine").unwrap();
        std::fs::write(view.join("regional_prompter_presets.json"), "[]").unwrap();

        // The next pin: another store path, one mask gone, one new.
        let new = managed(temp.path(), "store-b", &["shipped.png", "added.png"]);
        build(&new, &data).unwrap();
        for name in ["scripts/rp.py", "style.css", "regional_masks/shipped.png"] {
            assert_eq!(
                std::fs::read_link(view.join(name)).unwrap(),
                new.join("regional-prompter").join(name),
                "{name}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(view.join("regional_masks/added.png")).unwrap(),
            "store-b"
        );
        assert!(
            view.join("regional_masks/dropped.png")
                .symlink_metadata()
                .is_err(),
            "a link into the old store path is ours: removed"
        );
        assert_eq!(
            std::fs::read_to_string(view.join("regional_masks/mine.png")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(view.join("regional_prompter_presets.json")).unwrap(),
            "[]"
        );
    }
}
