//! `stable-diffusion-webui settings ...` and the start-up merge, against the webui-shaped
//! fixture (locks go through the fixture's `Options.set`, shaped like upstream's).

#[path = "launcher/fixture.rs"]
#[expect(
    dead_code,
    reason = "the harness is shared with tests/launcher.rs; this file uses part of it"
)]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

use fixture::{Running, TestEnv, free_port, http};
use serde_json::{Value, json};

fn launcher(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stable-diffusion-webui"));
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home);
    cmd
}

fn write_settings(dir: &Path, value: Value) -> PathBuf {
    let path = dir.join("settings.json");
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    path
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn diff_show_and_apply_work_on_the_data_dir_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("config.json"),
        r#"{"samples_format": "png", "mine": 1}"#,
    )
    .unwrap();
    let file = write_settings(
        tmp.path(),
        json!({"version": 1, "source": "the test", "presets": ["sdxl"],
               "config": {"locked": {"samples_format": "webp"}}}),
    );
    let settings = |args: &[&str]| {
        let mut cmd = launcher(tmp.path());
        cmd.arg("settings")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .arg("--settings-file")
            .arg(&file);
        cmd
    };
    let diff = run_ok(&mut settings(&["diff"]));
    assert!(
        diff.contains("config.json: ~ samples_format: \"png\" -> \"webp\" (locked)"),
        "{diff}"
    );
    assert!(
        diff.contains("ui-config.json: + txt2img/Width/value: 1024 (preset sdxl)"),
        "{diff}"
    );
    // diff writes nothing.
    assert_eq!(
        read_json(&data.join("config.json"))["samples_format"],
        "png"
    );
    let show = run_ok(&mut settings(&["show", "--json"]));
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["source"], "the test");
    assert_eq!(show["presets"], json!(["sdxl"]));

    let applied = run_ok(&mut settings(&["apply", "cpu"]));
    assert!(
        applied.contains("live_previews_enable = false"),
        "{applied}"
    );
    let config = read_json(&data.join("config.json"));
    assert_eq!(config["live_previews_enable"], false);
    assert_eq!(config["mine"], 1);
    assert!(std::fs::read_dir(&data).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("config.json.bak-")
    }));

    let presets = run_ok(&mut settings(&["presets"]));
    for name in ["cpu", "low-vram", "mac", "private", "sdxl"] {
        assert!(presets.contains(name), "{presets}");
    }
    let out = settings(&["apply", "no-such-preset"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unknown preset `no-such-preset`") && err.contains("low-vram"),
        "{err}"
    );
}

#[test]
fn a_corrupt_config_is_named_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("config.json.bak-20260101T000000Z"), "{}").unwrap();
    std::fs::write(data.join("config.json"), b"{\"a\": ").unwrap();
    let out = launcher(tmp.path())
        .args(["settings", "diff", "--preset", "cpu", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("config.json.bak-20260101T000000Z"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(data.join("config.json")).unwrap(),
        b"{\"a\": "
    );
}

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

fn options(port: u16) -> Value {
    let (status, body) = http(port, "GET", "/options", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn locked_keys_are_refused_by_the_webui_and_survive_a_restart() {
    let env = env_or_skip!();
    let data = env.tmp.path().join("data");
    std::fs::create_dir_all(data.join("presets")).unwrap();
    std::fs::write(
        data.join("presets/mine.json"),
        r#"{"description": "test", "config": {"outdir_txt2img_samples": "from-preset"}}"#,
    )
    .unwrap();
    std::fs::write(data.join("config.json"), r#"{"unmanaged": [1, 2]}"#).unwrap();
    let file = write_settings(
        env.tmp.path(),
        json!({"version": 1, "source": "the NixOS module",
               "config": {"defaults": {"temp_dir": "declared-tmp"},
                          "locked": {"outdir_samples": "/locked/out"}}}),
    );
    let start = || {
        let port = free_port();
        let mut cmd = env.command();
        cmd.args(["--port", &port.to_string(), "--data-dir"])
            .arg(&data)
            .arg("--settings-file")
            .arg(&file)
            .args(["--preset", "mine"]);
        let mut run = Running::start(cmd);
        run.wait_ready(1);
        (run, port)
    };

    let (mut run, port) = start();
    let opts = options(port);
    assert_eq!(opts["outdir_samples"], "/locked/out");
    assert_eq!(opts["outdir_txt2img_samples"], "from-preset");
    assert_eq!(opts["temp_dir"], "declared-tmp");
    assert_eq!(opts["unmanaged"], json!([1, 2]));

    // Like the Settings tab: one locked key, one free key.
    let (status, body) = http(
        port,
        "POST",
        "/options",
        r#"{"outdir_samples": "/elsewhere", "temp_dir": "my-tmp"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["result"], json!(["temp_dir"]));
    assert_eq!(options(port)["outdir_samples"], "/locked/out");
    run.wait_for("setting 'outdir_samples' is locked by the NixOS module", 1);
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait_exit(), 0, "{}", run.output());

    // The user's edit of an unlocked key beats the settings file's default at the next start.
    let on_disk = read_json(&data.join("config.json"));
    assert_eq!(on_disk["temp_dir"], "my-tmp");
    let (mut run, port) = start();
    let opts = options(port);
    assert_eq!(opts["outdir_samples"], "/locked/out");
    assert_eq!(opts["temp_dir"], "my-tmp");
    assert_eq!(opts["unmanaged"], json!([1, 2]));
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait_exit(), 0, "{}", run.output());
}

#[test]
fn a_corrupt_config_stops_the_start() {
    let env = env_or_skip!();
    let data = env.tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("config.json"), b"{\"outdir_samples\": ").unwrap();
    let out = env
        .command()
        .args(["--preset", "cpu", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.json") && err.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(data.join("config.json")).unwrap(),
        b"{\"outdir_samples\": "
    );
}
