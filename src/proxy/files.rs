//! The `/file=` resolver: which file requests the proxy answers itself.
//!
//! gradio 3.41 answers 403 to `/file=<path>` whenever any component of `<path>` starts with `.`,
//! and it checks that *before* its allow-list, so a data directory under `~/.local/share` can
//! never serve a gallery preview or an extension's script. The proxy therefore serves such a
//! file itself, but only when every one of these holds (checked in this order):
//!
//! 1. the request path, percent-decoded exactly once (as uvicorn does before gradio routes it),
//!    is valid UTF-8 without NUL or backslash, and no component is `..` — nor turns into `..`,
//!    `.`, a separator or invalid UTF-8 when decoded again (double encoding, overlong UTF-8);
//!    a request failing this is refused here and never reaches Python;
//! 2. the path is absolute and lies, lexically, inside a *data root* (the data dir and the
//!    output, temp and extension dirs the webui reports), with no component *below* that root
//!    starting with `.` — everything outside the roots goes to gradio unchanged, so gradio's own
//!    guard stays in force there;
//! 3. its canonical form (symlinks resolved) again lies inside a root with no dot component
//!    below it, so a symlink cannot lead out of the roots or into a hidden directory;
//! 4. the canonical target is a regular file: directories, devices, FIFOs and sockets are
//!    refused without being opened;
//! 5. (`checked_open.rs`) the canonical path opens without following any symlink and is still a
//!    regular file, and the response is served from that open file: a directory swapped for a
//!    symlink between the check and the open is refused.
//!
//! Refusals use the status gradio itself gives: 403 "File not allowed", or 404 "File not found"
//! for a path inside a root that does not exist. Rejected paths are never rewritten into
//! something else (`/a/../b` is not served as `/b`).
//!
//! The checks here are synchronous file-system calls; callers run them off the async threads.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use http::StatusCode;
use percent_encoding::percent_decode;

/// Extra rounds of percent-decoding applied to each component when looking for traversal
/// hidden by double (or deeper) encoding. The lookup itself uses the path decoded once.
const HIDDEN_TRAVERSAL_ROUNDS: usize = 4;

/// Why the proxy refuses a `/file=` request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403, gradio's "File not allowed": traversal, hidden components, symlinks leaving the
    /// roots, directories and special files.
    NotAllowed,
    /// 404, gradio's "File not found": a well-formed path inside a root that does not exist.
    NotFound,
}

impl Refusal {
    /// The HTTP status gradio gives for the same refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::NotAllowed => StatusCode::FORBIDDEN,
            Refusal::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// What to do with a `/file=` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve this canonical path, a regular file inside a data root.
    Serve(PathBuf),
    /// Answer with gradio's refusal; nothing is forwarded.
    Refuse(Refusal),
    /// Not inside a data root: gradio decides, with its own guard.
    Forward,
}

/// A `/file=` request's target after the syntactic checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The path as gradio would see it (decoded once), for messages.
    pub display: String,
    /// The absolute path with empty and `.` components removed; `None` for relative paths and
    /// URLs.
    path: Option<PathBuf>,
    /// A relative path, normalized the same way: gradio resolves it against its working
    /// directory (upstream links files below that directory relatively).
    relative: Option<PathBuf>,
}

impl Target {
    /// The lexically normalized absolute path, when the target is absolute.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Recognizes `/file=<path>` and the deprecated `/file/<path>`, and applies the syntactic
/// checks (step 1 of the module doc).
///
/// `raw_path` is the request path as received (still percent-encoded, without the query and
/// without the subpath prefix). Returns `None` when the request is not for gradio's file
/// route, `Some(Err(_))` when it must be refused.
pub fn parse(raw_path: &str) -> Option<Result<Target, Refusal>> {
    // uvicorn decodes the path once before routing, so `/fil%65=` reaches gradio's file route
    // too: recognize the route on the decoded bytes, as gradio does.
    let decoded: Vec<u8> = percent_decode(raw_path.as_bytes()).collect();
    let rest = decoded
        .strip_prefix(b"/file=")
        .or_else(|| decoded.strip_prefix(b"/file/"))?;
    Some(check_syntax(rest))
}

fn check_syntax(rest: &[u8]) -> Result<Target, Refusal> {
    if rest.iter().any(|&b| b == 0 || b == b'\\') {
        return Err(Refusal::NotAllowed);
    }
    let text = std::str::from_utf8(rest).map_err(|_| Refusal::NotAllowed)?;
    let mut normal = Vec::new();
    for component in text.split('/') {
        if component == ".." || hides_traversal(component) {
            return Err(Refusal::NotAllowed);
        }
        if !component.is_empty() && component != "." {
            normal.push(component);
        }
    }
    let absolute = text.starts_with('/');
    let relative = (!absolute && !normal.is_empty() && !text.contains("://"))
        .then(|| normal.iter().collect::<PathBuf>());
    let path = absolute.then(|| {
        let mut path = PathBuf::from("/");
        path.extend(normal);
        path
    });
    Ok(Target {
        display: text.to_owned(),
        path,
        relative,
    })
}

/// True when decoding `component` again yields traversal: `..` or `.`, a separator, NUL, or
/// bytes that are not UTF-8 (overlong encodings of `.` and `/`).
fn hides_traversal(component: &str) -> bool {
    let mut current = component.as_bytes().to_vec();
    for _ in 0..HIDDEN_TRAVERSAL_ROUNDS {
        if !current.contains(&b'%') {
            return false;
        }
        let next: Vec<u8> = percent_decode(&current).collect();
        if next == current {
            return false;
        }
        if next.iter().any(|&b| b == 0 || b == b'/' || b == b'\\')
            || std::str::from_utf8(&next).is_err()
            || next == b".."
            || next == b"."
        {
            return true;
        }
        current = next;
    }
    // Still changing after this many rounds: nobody names a file like that.
    current.contains(&b'%') && percent_decode(&current).ne(current.iter().copied())
}

/// One data root: the path the webui reported and, once it exists, its canonical form.
#[derive(Debug)]
struct Root {
    given: PathBuf,
    canonical: OnceLock<PathBuf>,
}

impl Root {
    /// The canonical path, resolved on first success: a root that does not exist yet (an
    /// outputs folder before the first image) is looked up again until it does.
    fn canonical(&self) -> Option<&Path> {
        if let Some(path) = self.canonical.get() {
            return Some(path);
        }
        match std::fs::canonicalize(&self.given) {
            Ok(path) => Some(self.canonical.get_or_init(|| path)),
            Err(_) => None,
        }
    }
}

/// The data roots the proxy may serve from, canonicalized once per backend state change.
#[derive(Debug, Default)]
pub struct FileRoots {
    roots: Vec<Root>,
    /// gradio's working directory: relative targets are resolved against it, as gradio does.
    working_dir: Option<PathBuf>,
    /// The root view: a relative target that does not exist below the working directory is
    /// looked for here (under upstream the two are one directory).
    root_view: Option<PathBuf>,
}

impl FileRoots {
    /// Builds the root set from the directories the webui reports.
    ///
    /// Relative paths and `/` itself are ignored (logged): a relative root has no meaning for
    /// the proxy and `/` would serve every non-hidden file on the machine.
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut roots: Vec<Root> = Vec::new();
        for path in paths {
            if !path.is_absolute() {
                tracing::warn!(root = %path.display(), "ignoring relative file root");
                continue;
            }
            let canonical = std::fs::canonicalize(&path).ok();
            // A `..` in the given form would make the lexical comparison meaningless: keep
            // only the canonical form then.
            let given = if path.components().any(|c| c == Component::ParentDir) {
                match &canonical {
                    Some(canonical) => canonical.clone(),
                    None => {
                        tracing::warn!(root = %path.display(), "ignoring unresolvable file root");
                        continue;
                    }
                }
            } else {
                path.components().collect()
            };
            if given == Path::new("/") || canonical.as_deref() == Some(Path::new("/")) {
                tracing::warn!(root = %path.display(), "ignoring `/` as a file root");
                continue;
            }
            if roots.iter().any(|root| root.given == given) {
                continue;
            }
            tracing::debug!(
                root = %given.display(),
                canonical = ?canonical.as_deref().map(Path::display),
                "file root"
            );
            let lock = OnceLock::new();
            if let Some(canonical) = canonical {
                let _ = lock.set(canonical);
            }
            roots.push(Root {
                given,
                canonical: lock,
            });
        }
        FileRoots {
            roots,
            working_dir: None,
            root_view: None,
        }
    }

    /// Resolve relative targets against gradio's working directory (absolute paths only).
    pub fn with_working_dir(mut self, working_dir: Option<PathBuf>) -> Self {
        self.working_dir = working_dir.filter(|dir| dir.is_absolute());
        self
    }

    /// Look for relative targets in the root view too (absolute paths only).
    pub fn with_root_view(mut self, root_view: Option<PathBuf>) -> Self {
        self.root_view = root_view.filter(|dir| dir.is_absolute());
        self
    }

    /// The absolute paths a target may name, in order: as given; a relative one below the
    /// working directory, then below the root view (upstream's root and working directory are
    /// one directory, so extensions link files relative to either). Lexical: no file system.
    fn candidates(&self, target: &Target) -> Vec<PathBuf> {
        match (target.path(), &target.relative) {
            (Some(path), _) => vec![path.to_owned()],
            (None, Some(relative)) => [&self.working_dir, &self.root_view]
                .into_iter()
                .flatten()
                .map(|base| base.join(relative))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The path a target names: the first candidate that exists, else the first.
    fn absolute(&self, target: &Target) -> Option<PathBuf> {
        let candidates = self.candidates(target);
        candidates
            .iter()
            .find(|path| std::fs::symlink_metadata(path).is_ok())
            .or(candidates.first())
            .cloned()
    }

    /// True when the target lies lexically inside a root: then the proxy decides, otherwise
    /// gradio does.
    pub fn owns(&self, target: &Target) -> bool {
        self.candidates(target).iter().any(|path| {
            self.roots.iter().any(|root| {
                path.starts_with(&root.given)
                    || root.canonical().is_some_and(|c| path.starts_with(c))
            })
        })
    }

    /// Steps 2–4 of the module doc. Touches the file system (canonicalize, stat); never opens
    /// the target.
    pub fn resolve(&self, target: &Target) -> Decision {
        let Some(path) = self.absolute(target) else {
            return Decision::Forward;
        };
        let path = path.as_path();
        let mut owned = false;
        let mut visible = false;
        for root in &self.roots {
            let forms = [Some(root.given.as_path()), root.canonical()];
            for form in forms.into_iter().flatten() {
                if let Ok(below) = path.strip_prefix(form) {
                    owned = true;
                    visible |= !has_hidden_component(below);
                }
            }
        }
        if !owned {
            return Decision::Forward;
        }
        if !visible {
            return Decision::Refuse(Refusal::NotAllowed);
        }
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(err) => return Decision::Refuse(refusal_for(&err)),
        };
        let contained = self.roots.iter().any(|root| {
            root.canonical()
                .and_then(|c| canonical.strip_prefix(c).ok())
                .is_some_and(|below| !has_hidden_component(below))
        });
        if !contained {
            return Decision::Refuse(Refusal::NotAllowed);
        }
        match std::fs::metadata(&canonical) {
            Ok(meta) if meta.is_file() => Decision::Serve(canonical),
            Ok(_) => Decision::Refuse(Refusal::NotAllowed),
            Err(err) => Decision::Refuse(refusal_for(&err)),
        }
    }

    /// The whole decision for a raw request path: `None` when it is not a `/file=` request.
    pub fn classify(&self, raw_path: &str) -> Option<Decision> {
        Some(match parse(raw_path)? {
            Ok(target) => self.resolve(&target),
            Err(refusal) => Decision::Refuse(refusal),
        })
    }
}

/// True when a path below a root has a component gradio would call hidden (or a `..`, which
/// canonical paths never have but a lexical one must not sneak past either).
fn has_hidden_component(below: &Path) -> bool {
    below.components().any(|component| match component {
        Component::Normal(name) => starts_with_dot(name),
        Component::CurDir => false,
        Component::ParentDir | Component::RootDir | Component::Prefix(_) => true,
    })
}

fn starts_with_dot(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn refusal_for(err: &io::Error) -> Refusal {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Refusal::NotFound,
        _ => Refusal::NotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_recognizes_both_routes() {
        assert!(parse("/file=/a/b.png").is_some());
        assert!(parse("/file//a/b.png").is_some());
        assert!(parse("/fil%65=/a/b.png").is_some());
        assert!(parse("/files/a").is_none());
        assert!(parse("/config").is_none());
    }

    #[test]
    fn parse_normalizes_harmless_spellings() {
        let target = parse("/file=/a//b/./c.png").unwrap().unwrap();
        assert_eq!(target.path(), Some(Path::new("/a/b/c.png")));
        let relative = parse("/file=script.js").unwrap().unwrap();
        assert_eq!(relative.path(), None);
    }

    #[test]
    fn relative_targets_not_below_the_working_directory_are_looked_for_in_the_root_view() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(".local/share/sd");
        let tree = dir.path().join("store/webui");
        let view = dir.path().join(".cache/sd/root-view/0123");
        for d in [data.join("tmp"), tree.join("javascript"), view.join("tmp2")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(data.join("tmp/in-data.txt"), "data").unwrap();
        std::fs::write(tree.join("javascript/ui.js"), "tree").unwrap();
        std::fs::write(view.join("tmp2/wc.txt"), "view").unwrap();
        std::os::unix::fs::symlink(tree.join("javascript"), view.join("javascript")).unwrap();
        std::os::unix::fs::symlink(data.join("tmp"), view.join("tmp")).unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "s").unwrap();
        std::os::unix::fs::symlink(&secret, view.join("leak.txt")).unwrap();
        let roots = FileRoots::new([data.clone(), tree.clone(), view.clone()])
            .with_working_dir(Some(data.clone()))
            .with_root_view(Some(view.clone()));
        let decide = |raw: &str| roots.resolve(&parse(raw).unwrap().unwrap());
        let canonical = |p: PathBuf| Decision::Serve(std::fs::canonicalize(p).unwrap());

        // The working directory first, as gradio; then the view: its own files and, through
        // its links, the tree's.
        assert_eq!(
            decide("/file=tmp/in-data.txt"),
            canonical(data.join("tmp/in-data.txt"))
        );
        assert_eq!(
            decide("/file=tmp2/wc.txt"),
            canonical(view.join("tmp2/wc.txt"))
        );
        assert_eq!(
            decide("/file=javascript/ui.js"),
            canonical(tree.join("javascript/ui.js"))
        );
        // A link in the view leading out of every root is refused; so is what exists nowhere.
        assert_eq!(
            decide("/file=leak.txt"),
            Decision::Refuse(Refusal::NotAllowed)
        );
        assert_eq!(
            decide("/file=nowhere.txt"),
            Decision::Refuse(Refusal::NotFound)
        );
        assert!(roots.owns(&parse("/file=tmp2/wc.txt").unwrap().unwrap()));
    }

    #[test]
    fn relative_targets_resolve_against_gradios_working_directory_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(".local/share/sd");
        std::fs::create_dir_all(data.join("extensions/x")).unwrap();
        std::fs::write(data.join("extensions/x/style.css"), "a{}").unwrap();
        std::fs::create_dir_all(data.join(".hidden")).unwrap();
        std::fs::write(data.join(".hidden/secret"), "s").unwrap();
        let target = |raw: &str| parse(raw).unwrap().unwrap();
        let css = target("/file=extensions/x/style.css");

        // Without a working directory a relative path is gradio's business.
        let roots = FileRoots::new([data.clone()]);
        assert_eq!(roots.resolve(&css), Decision::Forward);

        let roots = roots.with_working_dir(Some(data.clone()));
        let expected = std::fs::canonicalize(data.join("extensions/x/style.css")).unwrap();
        assert_eq!(roots.resolve(&css), Decision::Serve(expected));
        assert_eq!(
            roots.resolve(&target("/file=.hidden/secret")),
            Decision::Refuse(Refusal::NotAllowed)
        );
        assert_eq!(
            roots.resolve(&target("/file=extensions/nope.js")),
            Decision::Refuse(Refusal::NotFound)
        );
        assert!(matches!(
            parse("/file=../x"),
            Some(Err(Refusal::NotAllowed))
        ));
        // The dot component above the root is what the proxy fixes; outside the roots,
        // gradio decides.
        let roots =
            FileRoots::new([data.join("extensions")]).with_working_dir(Some(dir.path().into()));
        assert!(matches!(
            roots.resolve(&target("/file=.local/share/sd/extensions/x/style.css")),
            Decision::Serve(_)
        ));
        assert_eq!(roots.resolve(&target("/file=other.txt")), Decision::Forward);
    }

    #[test]
    fn literal_percent_in_a_name_is_not_traversal() {
        let target = parse("/file=/a/100%2525.png").unwrap().unwrap();
        assert_eq!(target.path(), Some(Path::new("/a/100%25.png")));
    }

    #[test]
    fn hidden_traversal_is_found() {
        for raw in [
            "%2e%2e",
            "%2E.",
            "%252e%252e",
            "%25252e%25252e",
            "%c0%ae%c0%ae",
            "a%2fb",
        ] {
            assert!(hides_traversal(raw), "{raw}");
        }
        for raw in ["plain", "50%", "100%25", "%zz"] {
            assert!(!hides_traversal(raw), "{raw}");
        }
    }
}
