//! Opening a file the resolver approved, so that what is sent is what was checked.
//!
//! [`FileRoots::resolve`](super::files::FileRoots::resolve) checks a canonical path (no
//! symlinks in it, inside a root, a regular file), but between that check and the open a
//! process that can write into a data root could swap a directory on that path for a symlink
//! leading out of the roots. So the approved path is opened once more without following any
//! symlink, checked to still be a regular file, and the response is served from that open file:
//! on Linux through `/proc/self/fd/<n>`, which reopens the very same inode whatever happens to
//! the path afterwards.
//!
//! On Linux the open is `openat2(RESOLVE_NO_SYMLINKS)`: the kernel refuses a symlink in any
//! component. Where `openat2` is missing (kernels before 5.6, seccomp filters of older container
//! runtimes) the path is opened with `O_NOFOLLOW` and `/proc/self/fd/<n>` must read back as the
//! approved path. Elsewhere (macOS) only the last component is protected (`O_NOFOLLOW`), and the
//! file is served by path.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::files::Refusal;

/// An approved file, open; it stays open until the response has been set up.
#[derive(Debug)]
pub struct CheckedFile {
    file: File,
    path: PathBuf,
}

impl CheckedFile {
    /// Opens `path` (canonical, approved by the resolver) without following symlinks and checks
    /// that it is still a regular file. Never blocks on a FIFO swapped in meanwhile.
    pub fn open(path: &Path) -> Result<CheckedFile, Refusal> {
        let file = open_no_symlinks(path).map_err(|err| refusal_for(&err))?;
        let meta = file.metadata().map_err(|err| refusal_for(&err))?;
        if !meta.is_file() {
            return Err(Refusal::NotAllowed);
        }
        Ok(CheckedFile {
            file,
            path: path.to_owned(),
        })
    }

    /// The approved path: names the file in logs and gives its content type.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file server should open: the open file itself where the platform allows it.
    pub fn reopen_path(&self) -> PathBuf {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.path.clone()
        }
    }
}

fn refusal_for(err: &io::Error) -> Refusal {
    match err.kind() {
        io::ErrorKind::NotFound => Refusal::NotFound,
        _ => Refusal::NotAllowed,
    }
}

/// The flags of every open here: read-only, no controlling terminal, and `O_NONBLOCK` so a
/// FIFO that slipped past the checks cannot hang the worker.
#[cfg(target_os = "linux")]
fn open_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOFOLLOW
}

#[cfg(target_os = "linux")]
fn open_no_symlinks(path: &Path) -> io::Result<File> {
    use rustix::fs::{CWD, Mode, ResolveFlags};
    use rustix::io::Errno;

    // openat2 (Linux 5.6) refuses a symlink in any component, not only the last.
    match rustix::fs::openat2(
        CWD,
        path,
        open_flags(),
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(File::from(fd)),
        // Older kernels, or a seccomp filter that forbids it.
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_and_read_back(path),
        Err(errno) => Err(errno.into()),
    }
}

/// Without openat2: open, then ask the kernel which path the descriptor has.
#[cfg(target_os = "linux")]
fn open_and_read_back(path: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;

    let fd = rustix::fs::open(path, open_flags(), rustix::fs::Mode::empty())?;
    let file = File::from(fd);
    let actual = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if actual != path {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    Ok(file)
}

#[cfg(not(target_os = "linux"))]
fn open_no_symlinks(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::files::{Decision, FileRoots};

    #[test]
    fn serves_the_checked_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image.png");
        std::fs::write(&file, b"png bytes").unwrap();
        let canonical = std::fs::canonicalize(&file).unwrap();
        let checked = CheckedFile::open(&canonical).unwrap();
        assert_eq!(checked.path(), canonical);
        assert_eq!(std::fs::read(checked.reopen_path()).unwrap(), b"png bytes");
    }

    /// The race the module exists for: the resolver approves a path, then a directory on it
    /// becomes a symlink to a secret outside the roots before the file is opened.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_check_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(base.path()).unwrap();
        let root = base.join("data");
        let outputs = root.join("outputs");
        std::fs::create_dir_all(&outputs).unwrap();
        std::fs::write(outputs.join("img.png"), b"image").unwrap();
        let secret_dir = base.join("secret");
        std::fs::create_dir(&secret_dir).unwrap();
        std::fs::write(secret_dir.join("img.png"), b"secret").unwrap();

        let roots = FileRoots::new([root.clone()]);
        let raw = format!("/file={}", outputs.join("img.png").display());
        let Some(Decision::Serve(approved)) = roots.classify(&raw) else {
            panic!("the file inside the root is approved");
        };

        std::fs::rename(&outputs, base.join("moved")).unwrap();
        std::os::unix::fs::symlink(&secret_dir, &outputs).unwrap();
        // The resolver itself would now refuse; the open of the approved path must too.
        assert_eq!(
            roots.classify(&raw),
            Some(Decision::Refuse(Refusal::NotAllowed))
        );
        assert_eq!(
            CheckedFile::open(&approved).unwrap_err(),
            Refusal::NotAllowed
        );
    }

    #[test]
    fn a_fifo_swapped_in_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.png");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string; creates a FIFO in a fresh temporary directory.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert_eq!(CheckedFile::open(&path).unwrap_err(), Refusal::NotAllowed);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn without_openat2_a_path_through_a_symlink_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(base.path()).unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        std::fs::write(base.join("real/img.png"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let open = |path: &Path| open_and_read_back(path);
        assert!(open(&base.join("real/img.png")).is_ok());
        let err = open(&base.join("link/img.png")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_vanished_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            CheckedFile::open(&dir.path().join("gone.png")).unwrap_err(),
            Refusal::NotFound
        );
    }
}
