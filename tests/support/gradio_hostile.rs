//! The hostile `/file=` request table and the files it aims at, shared by the resolver tests
//! (no gradio) and the end-to-end tests (through the proxy to a real gradio).
//!
//! Every entry must be refused: by the proxy itself (403 or 404, decided by the resolver) or,
//! for paths outside the data roots, by gradio's own guard after the proxy forwarded it.
//! No response may contain [`SECRET`].

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::Path;

/// Written into every file a hostile request tries to read.
pub const SECRET: &[u8] = b"TOP-SECRET-7f3a9c";

/// Bytes of the one legitimate file planted next to the traps, `outputs/ok.png`.
pub const OK_BYTES: &[u8] = b"\x89PNG\r\n\x1a\nnot really a png, but a regular file";

/// What the resolver must decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused by the proxy with 403.
    Forbidden,
    /// Refused by the proxy with 404.
    NotFound,
    /// Outside the roots: left to gradio, which refuses it.
    Gradio,
}

/// One hostile request: the raw request target (sent byte for byte), the expected decision,
/// and the class it belongs to.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub target: String,
    pub expect: Expect,
    pub class: &'static str,
}

/// Plants the traps: in `root` (a data root) and in `outside` (a directory that is not a root
/// and holds `secret.txt`).
pub fn plant(root: &Path, outside: &Path) {
    use std::os::unix::fs::symlink;
    let outputs = root.join("outputs");
    for dir in [
        outputs.clone(),
        outputs.join("sub"),
        root.join(".git"),
        root.join(".cache"),
        outside.to_path_buf(),
    ] {
        std::fs::create_dir_all(&dir).expect("create fixture dir");
    }
    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).expect("write fixture");
    let mut secret = b"[core]\n".to_vec();
    secret.extend_from_slice(SECRET);
    write(&outside.join("secret.txt"), &secret);
    write(&root.join(".git/config"), &secret);
    write(&root.join(".env"), &secret);
    write(&outputs.join(".hidden.png"), &secret);
    write(&root.join(".cache/y.png"), &secret);
    write(&outputs.join("ok.png"), OK_BYTES);
    let link = |target: &Path, name: &str| {
        let at = outputs.join(name);
        let _ = std::fs::remove_file(&at);
        symlink(target, at).expect("symlink fixture");
    };
    link(&outside.join("secret.txt"), "escape.png");
    link(&root.join(".git/config"), "dotlink.png");
    link(Path::new("/etc"), "linkdir");
    link(Path::new("/dev/null"), "devnull.png");
    link(Path::new("loop.png"), "loop.png");
    link(outside, "outside-dir");
    link(&root.join(".git"), "gitdir");
    // Legitimate: a symlink that stays inside the root.
    link(&outputs.join("ok.png"), "ok-link.png");
    let fifo = outputs.join("pipe.png");
    let _ = std::fs::remove_file(&fifo);
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
}

/// The table for data root `root` and non-root directory `outside` (both absolute, needing no
/// percent-encoding).
pub fn table(root: &Path, outside: &Path) -> Vec<Hostile> {
    use Expect::{Forbidden as F, Gradio as G, NotFound as N};
    let r = root.display().to_string();
    let o = outside.display().to_string();
    let entries: Vec<(String, Expect, &'static str)> = vec![
        // `..` in every spelling.
        (format!("/file={r}/../secret.txt"), F, "dotdot"),
        (format!("/file={r}/outputs/../../secret.txt"), F, "dotdot"),
        (format!("/file={r}/outputs/.."), F, "dotdot"),
        (format!("/file={r}/outputs/./../../x"), F, "dotdot"),
        (format!("/file={r}/.git/../outputs/ok.png"), F, "dotdot"),
        (format!("/file={r}/outputs/sub/../ok.png"), F, "dotdot"),
        ("/file=../../../../etc/passwd".to_owned(), F, "dotdot"),
        (format!("/file={r}/%2e%2e/secret.txt"), F, "percent"),
        (format!("/file={r}/%2E%2E/secret.txt"), F, "percent"),
        (format!("/file={r}/.%2e/secret.txt"), F, "mixed"),
        (format!("/file={r}/%2e./secret.txt"), F, "mixed"),
        (format!("/file={r}/outputs/%2e%2e"), F, "percent"),
        (format!("/file={r}/..%2fsecret.txt"), F, "percent"),
        (
            format!("/file={r}/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
            F,
            "percent",
        ),
        ("/file=%2e%2e/%2e%2e/etc/passwd".to_owned(), F, "percent"),
        ("/file=..%2f..%2fetc%2fpasswd".to_owned(), F, "percent"),
        (
            format!("/file={r}/outputs/ok.png%2f..%2f..%2f..%2fsecret.txt"),
            F,
            "percent",
        ),
        (
            format!("/file={r}/%252e%252e/secret.txt"),
            F,
            "double-percent",
        ),
        (
            format!("/file={r}/%25252e%25252e/secret.txt"),
            F,
            "double-percent",
        ),
        (format!("/file={r}/..%252fsecret.txt"), F, "double-percent"),
        (
            format!("/file={r}/%252e%252e%252fsecret.txt"),
            F,
            "double-percent",
        ),
        (format!("/file={r}/outputs/%252e"), F, "double-percent"),
        (
            format!("/file={r}/%c0%ae%c0%ae/secret.txt"),
            F,
            "overlong-utf8",
        ),
        (
            format!("/file={r}/%e0%80%ae%e0%80%ae/secret.txt"),
            F,
            "overlong-utf8",
        ),
        (
            format!("/file={r}/%c0%2e%c0%2e/secret.txt"),
            F,
            "overlong-utf8",
        ),
        (
            format!("/file={r}/%c0%af..%c0%afsecret.txt"),
            F,
            "overlong-utf8",
        ),
        (
            format!("/file={r}/%25c0%25ae%25c0%25ae/secret.txt"),
            F,
            "overlong-utf8",
        ),
        (format!("/file={r}/%ff%fe/ok.png"), F, "invalid-utf8"),
        // Backslashes and NUL.
        (
            format!("/file={r}/outputs/..%5c..%5csecret.txt"),
            F,
            "backslash",
        ),
        (format!("/file={r}/outputs%5cok.png"), F, "backslash"),
        (
            format!("/file={r}/outputs/%255c..%255csecret.txt"),
            F,
            "backslash",
        ),
        (format!("/file={r}/outputs/ok.png%00.js"), F, "nul"),
        (format!("/file={r}/outputs%00/ok.png"), F, "nul"),
        (format!("/file={r}/outputs/%2500ok.png"), F, "nul"),
        // Hidden files and directories below the root.
        (format!("/file={r}/.git/config"), F, "dotfile"),
        (format!("/file={r}/.env"), F, "dotfile"),
        (format!("/file={r}/outputs/.hidden.png"), F, "dotfile"),
        (format!("/file={r}/.cache/y.png"), F, "dotfile"),
        (format!("/file={r}/%2egit/config"), F, "dotfile"),
        (format!("/file={r}/.git%2fconfig"), F, "dotfile"),
        (format!("/fil%65={r}/.git/config"), F, "dotfile"),
        (format!("/file/{r}/.git/config"), F, "dotfile"),
        // Symlinks resolving outside the root or into hidden places.
        (format!("/file={r}/outputs/escape.png"), F, "symlink"),
        (format!("/file={r}/outputs/dotlink.png"), F, "symlink"),
        (format!("/file={r}/outputs/linkdir/passwd"), F, "symlink"),
        (
            format!("/file={r}/outputs/outside-dir/secret.txt"),
            F,
            "symlink",
        ),
        (format!("/file={r}/outputs/gitdir/config"), F, "symlink"),
        (format!("/file={r}/outputs/loop.png"), F, "symlink"),
        // Not regular files.
        (format!("/file={r}/outputs"), F, "directory"),
        (format!("/file={r}/outputs/"), F, "directory"),
        (format!("/file={r}/outputs/sub"), F, "directory"),
        (format!("/file={r}"), F, "directory"),
        (format!("/file={r}/outputs/%2e"), F, "directory"),
        (format!("/file={r}/outputs/pipe.png"), F, "fifo"),
        (format!("/file={r}/outputs/devnull.png"), F, "device"),
        // Missing inside the root.
        (format!("/file={r}/outputs/missing.png"), N, "missing"),
        (format!("/file={r}/outputs/ok.png/x"), N, "missing"),
        (format!("/file={r}/outputs/OK.PNG"), N, "missing"),
        // Absolute paths outside every root: gradio's guard answers.
        ("/file=/etc/passwd".to_owned(), G, "absolute"),
        ("/file//etc/passwd".to_owned(), G, "absolute"),
        ("/file=%2fetc%2fpasswd".to_owned(), G, "absolute"),
        ("/file=/proc/self/environ".to_owned(), G, "absolute"),
        (format!("/file={o}/secret.txt"), G, "absolute"),
        (format!("/file={r}-other/secret.txt"), G, "absolute"),
    ];
    entries
        .into_iter()
        .map(|(target, expect, class)| Hostile {
            target,
            expect,
            class,
        })
        .collect()
}
