//! Where a model goes: `<data>/models/<folder>/<file>`, and the names that are allowed there.
//!
//! Folder and file names come from the catalog, the command line, a declared-models file or
//! a server (`Content-Disposition`, Civitai's API). None of them may climb out of the models
//! directory or hide a file from the webui, so they are checked here, once, by rejecting
//! (never rewriting) anything but plain path components.

use std::path::{Component, Path, PathBuf};

/// Suffix of the file a download streams into, beside its target. The webui lists models by
/// extension (`.safetensors`, `.ckpt`, `.pth`...), so `x.safetensors.part` is never loaded.
pub const PART_SUFFIX: &str = ".part";
/// Suffix of the JSON that remembers which server object a `.part` file holds.
pub const PART_META_SUFFIX: &str = ".part.json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "folder `{0}` must be a relative path of plain names (like `Stable-diffusion` or `Lora/sdxl`)"
    )]
    Folder(String),
    #[error("file name `{0}` must be a single plain name that does not start with `.`")]
    File(String),
}

/// A folder below `<data>/models`: relative, plain components only, no `..`.
pub fn validate_folder(folder: &str) -> Result<(), NameError> {
    let bad = || NameError::Folder(folder.to_owned());
    if folder.is_empty() || folder.contains('\0') || folder.contains('\\') {
        return Err(bad());
    }
    let path = Path::new(folder);
    let mut any = false;
    for component in path.components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => any = true,
            _ => return Err(bad()),
        }
    }
    if any { Ok(()) } else { Err(bad()) }
}

/// A single file name; hidden names are refused because the webui would not list them.
pub fn validate_file_name(name: &str) -> Result<(), NameError> {
    let bad = || NameError::File(name.to_owned());
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.ends_with(PART_SUFFIX)
        || name.ends_with(PART_META_SUFFIX)
    {
        return Err(bad());
    }
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(bad()),
    }
}

/// `<data>/models`.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

pub use crate::atomic_file::with_suffix;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_plain_relative_paths() {
        for ok in ["VAE", "Stable-diffusion", "Lora/sdxl"] {
            assert_eq!(validate_folder(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/abs", "../x", "a/../b", "a/./b/..", ".hidden", "a\\b", ".",
        ] {
            assert!(validate_folder(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_names_are_single_visible_names() {
        assert_eq!(validate_file_name("m.safetensors"), Ok(()));
        for bad in ["", ".x", "a/b", "..", "x.part", "x.part.json", "a\0b"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn part_file_sits_beside_the_target() {
        assert_eq!(
            with_suffix(Path::new("/d/models/VAE/v.safetensors"), PART_SUFFIX),
            Path::new("/d/models/VAE/v.safetensors.part")
        );
    }
}
