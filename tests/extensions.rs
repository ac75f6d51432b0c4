//! Managed and user extensions side by side, against the webui-shaped fixture: listing,
//! preload.py, scripts, JS/CSS through the proxy from a data dir under a dot directory, the
//! same-name rule, disabling, install.py requirements, and no pip process ever.

#[path = "launcher/fixture.rs"]
#[expect(
    dead_code,
    reason = "the harness is shared with tests/launcher.rs; this file uses part of it"
)]
mod fixture;

use std::path::{Path, PathBuf};

use fixture::{Running, TestEnv, free_port, http, tree_snapshot};
use serde_json::Value;

/// The fixture, or return from the test (after a SKIP line naming it) when there is no Python.
macro_rules! env_or_skip {
    () => {{
        fn here() {}
        match TestEnv::new(fixture::prereq::test_name(std::any::type_name_of_val(
            &here,
        ))) {
            Some(env) => env,
            None => return,
        }
    }};
}

/// The default data dir: `$HOME/.local/share/stable-diffusion-webui`, under a dot directory.
fn data_dir(env: &TestEnv) -> PathBuf {
    env.home.join(".local/share/stable-diffusion-webui")
}

fn json(port: u16, path: &str) -> Value {
    let (status, body) = http(port, "GET", path, "");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

/// `file=<path>` links of the page, as upstream links extension scripts and styles.
fn file_links(page: &str) -> Vec<String> {
    page.split("file=")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn managed_and_user_extensions_load_and_their_assets_pass_the_proxy() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    env.add_extension(&data);
    let managed = env.add_managed();
    let tree_before = tree_snapshot(&env.webui);
    let managed_before = tree_snapshot(&managed);
    let port = free_port();
    let mut cmd = env.command();
    // Bytecode on, as by default: none may land in the views in the data dir.
    cmd.env_remove("PYTHONDONTWRITEBYTECODE");
    cmd.arg("--managed-extensions").arg(&managed).args([
        "--port",
        &port.to_string(),
        "--full-featured-greeting",
        "hi",
        "--managed-greeter-name",
        "nix",
    ]);
    let mut run = Running::start(cmd);
    run.wait_ready(1);

    // Listed, in upstream's order, managed ones marked and carrying their pin.
    let list = json(port, "/extensions");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["managed-greeter", "full-featured", "needs-packages"],
        "{list}"
    );
    let greeter = by_name(&list, "managed-greeter");
    assert_eq!(greeter["managed"], true);
    assert_eq!(greeter["remote"], "https://example.invalid/managed-greeter");
    assert_eq!(greeter["version"], "01234567");
    assert_eq!(greeter["status"], "managed");
    assert_eq!(by_name(&list, "full-featured")["managed"], false);

    // Loaded: preload.py options were accepted and reached the scripts.
    let ping = json(port, "/full-featured/ping");
    assert_eq!(ping["greeting"], "hi");
    // Loaded from its writable view in the data dir, whose links lead into the managed dir.
    let views = data.join("managed-extensions");
    let ping = json(port, "/managed-greeter/ping");
    assert_eq!(ping["name"], "nix");
    let from = PathBuf::from(ping["from"].as_str().unwrap());
    assert!(from.starts_with(views.join("managed-greeter")), "{from:?}");
    assert_eq!(
        std::fs::canonicalize(&from).unwrap(),
        std::fs::canonicalize(managed.join("managed-greeter/scripts/greeter.py")).unwrap()
    );
    // What it wrote beside its own files (as regional prompter does) is in the view.
    for (written, bytes) in [
        ("greeter_presets.json", "[]"),
        ("masks/saved.txt", "saved by the extension"),
    ] {
        let path = views.join("managed-greeter").join(written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), bytes, "{path:?}");
        assert!(!path.is_symlink());
    }
    assert!(views.join("managed-greeter/masks/shipped.txt").is_symlink());
    let pycache: Vec<_> = tree_snapshot(&views)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains("__pycache__"))
        .collect();
    assert!(pycache.is_empty(), "bytecode in the data dir: {pycache:?}");

    // JS and CSS of both kinds, through the proxy; the user's live under ~/.local, where
    // gradio itself would answer 403.
    let (status, page) = http(port, "GET", "/page", "");
    assert_eq!(status, 200);
    let links = file_links(&page);
    assert_eq!(links.len(), 3, "{page}");
    for link in &links {
        let (status, body) = http(port, "GET", &format!("/file={link}"), "");
        assert_eq!(status, 200, "{link}: {body}");
        assert_eq!(body.as_bytes(), std::fs::read(link).unwrap(), "{link}");
    }
    assert!(
        links
            .iter()
            .any(|l| l.contains("/.local/") && l.ends_with("style.css"))
    );
    assert!(
        links
            .iter()
            .any(|l| l.contains("/.local/") && l.ends_with(".js"))
    );
    assert!(links.iter().any(|l| l.starts_with(views.to_str().unwrap())));

    // install.py of the user extension: the one message, and the extension is still loaded.
    assert_eq!(
        run.count("Extension 'needs-packages' needs"),
        1,
        "{}",
        run.output()
    );
    run.signal(libc::SIGINT);
    assert_eq!(run.wait_exit(), 0, "{}", run.output());
    assert_eq!(env.spawned(), "", "pip or git was spawned");
    assert_eq!(
        tree_snapshot(&env.webui),
        tree_before,
        "the tree was written to"
    );
    assert_eq!(
        tree_snapshot(&managed),
        managed_before,
        "the managed dir was written to"
    );
}

/// An extension that writes under `script_path` at import and links those files relative to the
/// root, as under upstream's launch.py: its writes land in the data dir (a name it has) or in
/// the root view in the cache dir (a new name), both are served for the relative links, and the
/// tree is untouched.
#[test]
fn an_extension_writing_under_the_webui_root_works_and_its_relative_links_are_served() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    env.add_fixture_extension(&data, "root-writing-extensions", "writes-to-root");
    let tree_before = tree_snapshot(&env.webui);
    let port = free_port();
    let mut cmd = env.command();
    // Bytecode is written as it is by default, so a module loaded through the root view
    // (upstream lists its own scripts/ there) would show up in the tree if it went there.
    cmd.env_remove("PYTHONDONTWRITEBYTECODE")
        .args(["--port", &port.to_string()]);
    let mut run = Running::start(cmd);
    run.wait_ready(1);

    let seen = json(port, "/writes-to-root/seen");
    assert_eq!(
        seen["launch.py"], true,
        "the tree's files through the root: {seen}"
    );
    assert_eq!(
        seen["config_states"], true,
        "the data dir's through the root: {seen}"
    );
    let root = PathBuf::from(seen["root"].as_str().unwrap());
    let cache = env.home.join(".cache/stable-diffusion-webui");
    assert!(root.starts_with(&cache), "{root:?} is not in the cache dir");

    for (link, bytes) in [
        ("tmp/writes-to-root.txt", "under the root's tmp/\n"),
        (
            "writes-to-root-cache/tags.txt",
            "a new directory under the root\n",
        ),
        (
            "scripts/from-an-extension/wildcards.txt",
            "inside a folder of the tree\n",
        ),
    ] {
        let (status, body) = http(port, "GET", &format!("/file={link}"), "");
        assert_eq!(status, 200, "{link}: {body}");
        assert_eq!(body, bytes, "{link}");
    }
    // Where they landed: the data dir's tmp/, and the root view itself.
    assert!(data.join("tmp/writes-to-root.txt").is_file());
    assert!(root.join("writes-to-root-cache/tags.txt").is_file());
    assert!(!root.join("writes-to-root-cache").is_symlink());
    assert!(
        root.join("scripts/from-an-extension/wildcards.txt")
            .is_file()
    );

    run.signal(libc::SIGINT);
    assert_eq!(run.wait_exit(), 0, "{}", run.output());
    assert_eq!(
        tree_snapshot(&env.webui),
        tree_before,
        "the tree was written to"
    );
}

#[test]
fn same_name_managed_wins_once_logged_and_nothing_is_touched_on_disk() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    let managed = env.add_managed();
    // The user's own copy of the managed extension, with a route of its own.
    let mine = data.join("extensions/managed-greeter");
    std::fs::create_dir_all(mine.join("scripts")).unwrap();
    std::fs::write(
        mine.join("scripts/mine.py"),
        "from modules import script_callbacks\n\
         script_callbacks.on_app_started(lambda demo, app: app.add_api_route('/mine', lambda: {'mine': True}))\n",
    )
    .unwrap();
    std::fs::write(
        mine.join("preload.py"),
        "raise SystemExit('the hidden copy was preloaded')\n",
    )
    .unwrap();
    let mine_before = tree_snapshot(&mine);
    let port = free_port();
    let mut cmd = env.command();
    cmd.arg("--managed-extensions")
        .arg(&managed)
        .args(["--port", &port.to_string()]);
    let mut run = Running::start(cmd);
    run.wait_ready(1);

    let list = json(port, "/extensions");
    let _ = json(port, "/extensions"); // a second scan, as the UI and API do
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(by_name(&list, "managed-greeter")["managed"], true);
    let (_, body) = http(port, "GET", "/mine", "");
    assert_eq!(
        body, "fixture webui",
        "the hidden user copy's script was loaded"
    );
    let ping = json(port, "/managed-greeter/ping");
    assert!(
        ping["from"]
            .as_str()
            .unwrap()
            .starts_with(data.join("managed-extensions").to_str().unwrap())
    );
    let notice = "Extension 'managed-greeter' is both managed";
    assert_eq!(run.count(notice), 1, "{}", run.output());
    assert!(
        run.output()
            .contains("the managed one is loaded; yours is left on disk, unused"),
        "{}",
        run.output()
    );
    run.signal(libc::SIGINT);
    assert_eq!(run.wait_exit(), 0);
    assert_eq!(tree_snapshot(&mine), mine_before);
}

#[test]
fn disabled_extensions_setting_disables_a_managed_extension() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.json"),
        r#"{"disabled_extensions": ["managed-greeter"]}"#,
    )
    .unwrap();
    let managed = env.add_managed();
    let port = free_port();
    let mut cmd = env.command();
    cmd.arg("--managed-extensions")
        .arg(&managed)
        .args(["--port", &port.to_string()]);
    let mut run = Running::start(cmd);
    run.wait_ready(1);
    let list = json(port, "/extensions");
    assert_eq!(by_name(&list, "managed-greeter")["enabled"], false);
    let (_, body) = http(port, "GET", "/managed-greeter/ping", "");
    assert_eq!(body, "fixture webui", "a disabled extension's script ran");
    let cli = run_cli(&env, &managed, &["extensions", "list", "--no-check"]);
    assert!(
        cli.lines()
            .any(|l| l.starts_with("managed-greeter") && l.contains("disabled")),
        "{cli}"
    );
    run.signal(libc::SIGINT);
    assert_eq!(run.wait_exit(), 0);

    // Its preload.py did not run either: the option it adds is unknown to upstream's parser.
    let mut cmd = env.command();
    cmd.arg("--managed-extensions").arg(&managed).args([
        "--port",
        &free_port().to_string(),
        "--managed-greeter-name",
        "x",
    ]);
    let mut run = Running::start(cmd);
    assert_ne!(run.wait_exit(), 0);
    assert!(
        run.output()
            .contains("unrecognized arguments: --managed-greeter-name x"),
        "{}",
        run.output()
    );
}

fn cli(env: &TestEnv, managed: &Path, args: &[&str]) -> std::process::Output {
    env.command()
        .arg("--managed-extensions")
        .arg(managed)
        .args(args)
        .output()
        .unwrap()
}

fn run_cli(env: &TestEnv, managed: &Path, args: &[&str]) -> String {
    let out = cli(env, managed, args);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn extensions_list_and_check_report_kind_source_state_and_requirements() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    env.add_extension(&data);
    let managed = env.add_managed();
    std::fs::create_dir_all(env.webui.join("extensions-builtin/builtin-one")).unwrap();

    let list = run_cli(&env, &managed, &["extensions", "list", "--json"]);
    let list: Value = serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let kinds: Vec<(&str, &str, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("builtin-one", "builtin", true),
            ("managed-greeter", "managed", true),
            ("full-featured", "user", true),
            ("needs-packages", "user", true),
        ]
    );
    let greeter = by_name(&list, "managed-greeter");
    assert_eq!(
        greeter["revision"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(greeter["localizations"][0], "xx_XX");
    assert_eq!(
        by_name(&list, "needs-packages")["requirements"]["missing"][0],
        "definitely-absent-package==1.0"
    );
    assert!(by_name(&list, "full-featured")["requirements"].is_null());

    let table = run_cli(&env, &managed, &["extensions", "list"]);
    assert!(
        table.lines().any(|l| l.starts_with("needs-packages")
            && l.contains("MISSING definitely-absent-package==1.0")),
        "{table}"
    );

    let out = cli(&env, &managed, &["extensions", "check", "needs-packages"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("missing: definitely-absent-package==1.0"),
        "{text}"
    );
    let out = cli(&env, &managed, &["extensions", "check", "full-featured"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("preload.py: yes, scripts: 1, javascript: 1, style.css: yes"),
        "{text}"
    );
    let out = env
        .command()
        .args(["extensions", "check", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No extension named \"nope\""));
    assert_eq!(env.spawned(), "", "pip or git was spawned");
}

/// An extension that starts pip itself (`subprocess` and `os.system`, in `install.py` and at
/// script load), as adetailer and sd-dynamic-prompts do: a present package is a no-op, the absent
/// ones end in the launcher's one message (install.py) or a refusal naming them (a script), and
/// no pip process starts.
#[test]
fn an_extension_starting_pip_itself_gets_the_launchers_check_and_no_pip_runs() {
    let env = env_or_skip!();
    let data = data_dir(&env);
    env.add_fixture_extension(&data, "pip-calling-extensions", "starts-pip-itself");
    let port = free_port();
    let mut cmd = env.command();
    cmd.args(["--port", &port.to_string()]);
    let mut run = Running::start(cmd);
    run.wait_ready(1);

    let output = run.output();
    assert!(
        output.contains("starts-pip-itself: install.py finished"),
        "{output}"
    );
    assert_eq!(
        run.count("Extension 'starts-pip-itself' needs Python packages that are not installed: absent-by-subprocess==2.0, absent-by-shell."),
        1,
        "{output}"
    );
    let refused = json(port, "/starts-pip-itself/refused");
    let refused = refused["refused"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("PipBlocked: ")
            && refused.contains("needs Python packages that are not installed: absent-at-load.")
            && refused.contains("The launcher never runs pip."),
        "{refused}"
    );
    run.signal(libc::SIGINT);
    assert_eq!(run.wait_exit(), 0, "{}", run.output());
    assert_eq!(env.spawned(), "", "pip was spawned");
}
