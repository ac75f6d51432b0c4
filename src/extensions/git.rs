//! The remote and revision of a user extension's git checkout, read from `.git` directly
//! (no git process, no GitPython): enough for a listing.

use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepoInfo {
    pub remote: Option<String>,
    pub head: Option<String>,
}

/// What `<dir>/.git` says; empty when it is not a checkout or cannot be read.
pub fn read(dir: &Path) -> RepoInfo {
    let Some(git_dir) = git_dir(dir) else {
        return RepoInfo::default();
    };
    RepoInfo {
        remote: std::fs::read_to_string(git_dir.join("config"))
            .ok()
            .and_then(|config| origin_url(&config)),
        head: head(&git_dir),
    }
}

/// `.git` is a directory, or (worktrees, submodules) a file saying `gitdir: PATH`.
fn git_dir(dir: &Path) -> Option<PathBuf> {
    let dot_git = dir.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.strip_prefix("gitdir:")?.trim();
    Some(dir.join(target))
}

fn head(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:").map(str::trim) else {
        return Some(head.to_owned());
    };
    if let Ok(rev) = std::fs::read_to_string(git_dir.join(reference)) {
        return Some(rev.trim().to_owned());
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (rev, name) = line.split_once(' ')?;
        (name.trim() == reference).then(|| rev.to_owned())
    })
}

/// `url` of `[remote "origin"]` (or the first remote) in a git config file.
fn origin_url(config: &str) -> Option<String> {
    let mut section = String::new();
    let mut first = None;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "url" || !section.starts_with("[remote ") {
            continue;
        }
        let url = value.trim().to_owned();
        if section == "[remote \"origin\"]" {
            return Some(url);
        }
        first.get_or_insert(url);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_origin_and_packed_head() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(&git).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(
            git.join("packed-refs"),
            "# pack-refs with: peeled\nabc123 refs/heads/main\n",
        )
        .unwrap();
        std::fs::write(
            git.join("config"),
            "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://u.example/x\n\
             [remote \"origin\"]\n\turl = https://github.com/o/x.git\n",
        )
        .unwrap();
        assert_eq!(
            read(dir.path()),
            RepoInfo {
                remote: Some("https://github.com/o/x.git".into()),
                head: Some("abc123".into()),
            }
        );
    }

    #[test]
    fn loose_ref_detached_head_and_gitdir_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.git");
        std::fs::create_dir_all(real.join("refs/heads")).unwrap();
        std::fs::write(real.join("HEAD"), "ref: refs/heads/dev\n").unwrap();
        std::fs::write(real.join("refs/heads/dev"), "def456\n").unwrap();
        let ext = dir.path().join("ext");
        std::fs::create_dir_all(&ext).unwrap();
        std::fs::write(ext.join(".git"), format!("gitdir: {}\n", real.display())).unwrap();
        assert_eq!(read(&ext).head.as_deref(), Some("def456"));

        std::fs::write(real.join("HEAD"), "0123abcd\n").unwrap();
        assert_eq!(read(&ext).head.as_deref(), Some("0123abcd"));
        assert_eq!(read(dir.path()), RepoInfo::default());
    }
}
