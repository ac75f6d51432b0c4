//! The `/file=` resolver against hostile paths: a table of every class of attack, a property
//! test, and the same table through the running proxy (with a stub in gradio's place, so these
//! tests need no Python). The real-gradio run of the table is in `proxy_gradio.rs`.

#[path = "support/gradio_harness.rs"]
mod harness;
#[path = "support/gradio_hostile.rs"]
mod hostile;
#[path = "support/gradio_stub.rs"]
mod stub;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use hostile::{Expect, OK_BYTES, SECRET};
use proptest::prelude::*;
use stable_diffusion_webui::proxy::files::{Decision, FileRoots, Refusal};

/// A data root under a dot-directory, with the traps planted, and a directory outside it.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::Builder::new()
        .prefix("proxypaths-")
        .tempdir()
        .expect("temp dir");
    let base = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let root = base.join("home/.local/share/sdw");
    let outside = base.join("outside");
    hostile::plant(&root, &outside);
    Tree {
        _dir: dir,
        root,
        outside,
    }
}

fn expect_of(decision: &Decision) -> Option<Expect> {
    match decision {
        Decision::Serve(_) => None,
        Decision::Refuse(Refusal::NotAllowed) => Some(Expect::Forbidden),
        Decision::Refuse(Refusal::NotFound) => Some(Expect::NotFound),
        Decision::Forward => Some(Expect::Gradio),
    }
}

#[test]
fn hostile_table_is_refused_by_the_resolver() {
    let tree = tree();
    let roots = FileRoots::new([tree.root.clone()]);
    let table = hostile::table(&tree.root, &tree.outside);
    assert!(table.len() >= 40, "only {} hostile paths", table.len());
    let classes: BTreeSet<&str> = table.iter().map(|h| h.class).collect();
    for class in [
        "dotdot",
        "percent",
        "double-percent",
        "overlong-utf8",
        "mixed",
        "backslash",
        "nul",
        "symlink",
        "directory",
        "fifo",
        "device",
        "dotfile",
        "absolute",
    ] {
        assert!(classes.contains(class), "no {class} entry in the table");
    }
    let mut failures = Vec::new();
    for entry in &table {
        let decision = roots
            .classify(&entry.target)
            .unwrap_or_else(|| panic!("{} is a /file= request", entry.target));
        if expect_of(&decision) != Some(entry.expect) {
            failures.push(format!(
                "{} [{}]: expected {:?}, got {decision:?}",
                entry.target, entry.class, entry.expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn legitimate_files_are_served() {
    let tree = tree();
    let roots = FileRoots::new([tree.root.clone()]);
    let ok = tree.root.join("outputs/ok.png");
    for target in [
        format!("/file={}", ok.display()),
        format!("/file/{}", ok.display()),
        format!("/file={}/outputs//./ok.png", tree.root.display()),
        format!("/file={}/outputs/ok-link.png", tree.root.display()),
        format!("/file={}/outputs/ok%2epng", tree.root.display()),
        format!(
            "/file=%2F{}",
            ok.display().to_string().trim_start_matches('/')
        ),
    ] {
        assert_eq!(
            roots.classify(&target),
            Some(Decision::Serve(ok.clone())),
            "{target}"
        );
    }
}

#[test]
fn a_root_reached_through_a_symlink_serves_under_both_names() {
    let tree = tree();
    let alias = tree.outside.join("alias");
    std::os::unix::fs::symlink(&tree.root, &alias).expect("symlink");
    let roots = FileRoots::new([alias.clone()]);
    let ok = tree.root.join("outputs/ok.png");
    for target in [
        format!("/file={}/outputs/ok.png", alias.display()),
        format!("/file={}", ok.display()),
    ] {
        assert_eq!(roots.classify(&target), Some(Decision::Serve(ok.clone())));
    }
}

#[test]
fn a_root_created_after_ready_is_picked_up() {
    let tree = tree();
    let later = tree.root.join("later-outputs");
    let roots = FileRoots::new([later.clone()]);
    let target = format!("/file={}/img.png", later.display());
    assert_eq!(
        roots.classify(&target),
        Some(Decision::Refuse(Refusal::NotFound))
    );
    std::fs::create_dir_all(&later).expect("mkdir");
    std::fs::write(later.join("img.png"), b"x").expect("write");
    assert_eq!(
        roots.classify(&target),
        Some(Decision::Serve(later.join("img.png")))
    );
}

#[test]
fn devices_inside_a_root_are_refused() {
    let roots = FileRoots::new([PathBuf::from("/dev")]);
    assert_eq!(
        roots.classify("/file=/dev/null"),
        Some(Decision::Refuse(Refusal::NotAllowed))
    );
}

#[test]
fn slash_and_relative_roots_are_ignored() {
    let roots = FileRoots::new([PathBuf::from("/"), PathBuf::from("relative/dir")]);
    assert_eq!(
        roots.classify("/file=/etc/hostname"),
        Some(Decision::Forward)
    );
}

#[test]
fn other_routes_are_not_file_requests() {
    let roots = FileRoots::new([PathBuf::from("/tmp")]);
    for path in [
        "/",
        "/config",
        "/files=/tmp/x",
        "/file",
        "/queue/join",
        "/api/predict",
    ] {
        assert_eq!(roots.classify(path), None, "{path}");
    }
}

/// What a served path must satisfy, whatever the request looked like.
fn assert_safe(served: &Path, root: &Path) {
    let canonical = std::fs::canonicalize(served).expect("served path exists");
    assert_eq!(canonical, served, "served path is canonical");
    let below = served
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("{} is outside {}", served.display(), root.display()));
    for component in below.components() {
        match component {
            Component::Normal(name) => assert!(
                !name.to_string_lossy().starts_with('.'),
                "hidden component in {}",
                served.display()
            ),
            other => panic!("unexpected {other:?} in {}", served.display()),
        }
    }
    assert!(std::fs::metadata(served).expect("stat").is_file());
    let bytes = std::fs::read(served).expect("read");
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET));
}

const SEGMENTS: &[&str] = &[
    "outputs",
    "sub",
    "ok.png",
    "ok-link.png",
    "a",
    "",
    ".",
    "..",
    "%2e",
    "%2e%2e",
    ".%2e",
    "%252e%252e",
    "%25252e",
    ".git",
    "config",
    ".env",
    ".hidden.png",
    ".cache",
    "y.png",
    "escape.png",
    "dotlink.png",
    "linkdir",
    "passwd",
    "outside-dir",
    "secret.txt",
    "gitdir",
    "devnull.png",
    "pipe.png",
    "loop.png",
    "%2f",
    "%252f",
    "%5c",
    "\\",
    "%00",
    "%2500",
    "%c0%ae",
    "%c0%af",
    "%e0%80%ae",
    "%ff",
    "home",
    ".local",
    "share",
    "sdw",
    "etc",
];

/// Final segments: the legitimate file (so that some cases are served) and the traps.
const LAST_SEGMENTS: &[&str] = &[
    "ok.png",
    "ok-link.png",
    "secret.txt",
    "config",
    ".hidden.png",
    "escape.png",
    "dotlink.png",
    "pipe.png",
    "devnull.png",
    "loop.png",
    "passwd",
    "..",
    "%2e%2e",
];

/// Whatever the combination of hostile segments and starting points, anything served is a
/// canonical regular file inside the root with no hidden component below it. Also checks that
/// the generator does reach the legitimate file, so the property is not vacuous.
#[test]
fn nothing_served_leaves_the_root() {
    use proptest::test_runner::{Config, TestRunner};
    let tree = tree();
    let roots = FileRoots::new([tree.root.clone()]);
    let base = tree
        .root
        .parent()
        .and_then(Path::parent)
        .expect("home/.local")
        .to_owned();
    let strategy = (
        0usize..6,
        proptest::collection::vec(proptest::sample::select(SEGMENTS), 0..6),
        proptest::sample::select(LAST_SEGMENTS),
        any::<bool>(),
    );
    let served = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        ..Config::default()
    });
    runner
        .run(&strategy, |(start, segments, last, deprecated)| {
            let prefix = match start {
                0 => tree.root.display().to_string(),
                1 => format!("{}/outputs", tree.root.display()),
                2 => base.display().to_string(),
                3 => tree.outside.display().to_string(),
                4 => String::new(),
                _ => "/".to_owned(),
            };
            let route = if deprecated { "/file/" } else { "/file=" };
            let mut parts = segments;
            parts.push(last);
            let target = format!("{route}{prefix}/{}", parts.join("/"));
            if let Some(Decision::Serve(path)) = roots.classify(&target) {
                served.set(served.get() + 1);
                assert_safe(&path, &tree.root);
                prop_assert_eq!(std::fs::read(&path).expect("read"), OK_BYTES.to_vec());
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("{} of 4000 generated requests were served", served.get());
    assert!(
        served.get() > 0,
        "the generator never reached the legitimate file"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary text after the route never panics and never serves anything but the one
    /// legitimate file.
    #[test]
    fn arbitrary_targets_never_escape(tail in "\\PC{0,60}") {
        let tree = shared_tree();
        let roots = FileRoots::new([tree.root.clone()]);
        let target = format!("/file={}/{tail}", tree.root.display());
        if let Some(Decision::Serve(path)) = roots.classify(&target) {
            assert_safe(&path, &tree.root);
        }
    }
}

/// One planted tree for all proptest cases (planting per case would dominate the run time).
fn shared_tree() -> &'static Tree {
    static TREE: std::sync::OnceLock<Tree> = std::sync::OnceLock::new();
    TREE.get_or_init(tree)
}

/// The table again, through the proxy's HTTP stack: refusals come from the proxy itself and
/// never reach the backend; only paths outside the roots are forwarded.
#[tokio::test]
async fn hostile_table_through_the_proxy_never_reaches_the_backend_unless_outside_roots() {
    let tree = tree();
    let stub = stub::Stub::start().await;
    let proxy = harness::RunningProxy::ready(stub.addr, vec![tree.root.clone()]).await;
    let mut failures = Vec::new();
    for entry in hostile::table(&tree.root, &tree.outside) {
        let before = stub.seen().len();
        let response = harness::raw_get(proxy.addr, &entry.target).await;
        let forwarded = stub.seen().len() > before;
        let ok = match entry.expect {
            Expect::Forbidden => response.status == 403 && !forwarded,
            Expect::NotFound => response.status == 404 && !forwarded,
            Expect::Gradio => forwarded,
        };
        if !ok || response.body_contains(SECRET) {
            failures.push(format!(
                "{} [{}]: status {}, forwarded {forwarded}",
                entry.target, entry.class, response.status
            ));
        }
        if matches!(entry.expect, Expect::Forbidden | Expect::NotFound) {
            assert_eq!(response.header("content-type"), Some("application/json"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.stop().await.expect("clean stop");
}
