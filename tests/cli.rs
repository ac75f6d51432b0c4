//! The command line as users meet it: what goes to stdout, and what is refused at parse time.

use std::path::Path;
use std::process::{Command, Stdio};

fn launcher(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stable-diffusion-webui"));
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(home);
    cmd
}

/// Issue #18, bug 1: `stable-diffusion-webui settings keys | head -1` panicked in `println!`
/// and exited 101. A reader that went away is a normal end (exit 0, nothing on stderr about
/// it), for every command that prints. The pipe's read end is closed before the child starts,
/// so its first write fails with EPIPE every time.
#[test]
fn i18_a_closed_stdout_is_a_normal_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["--version"],
        &["models", "list", "--data-dir", data],
        &["models", "list", "--json", "--data-dir", data],
        &["settings", "show", "--data-dir", data],
        &["settings", "show", "--json", "--data-dir", data],
        &["settings", "diff", "--data-dir", data],
        &["settings", "presets", "--data-dir", data],
        &["settings", "presets", "--json", "--data-dir", data],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = launcher(tmp.path())
            .args(*args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("panicked") || stderr.contains("error") {
            failures.push(format!(
                "{}: {} with stderr:\n{stderr}",
                args.join(" "),
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue #18, bug 3: `--subpath` had two rule sets (the network plan accepted `a/../b` and
/// refused `~`, the proxy the reverse), checked late, after Python had started. Now one rule,
/// applied when the command line is parsed: a refused value stops before anything runs
/// (`--version` is answered only after parsing succeeded).
#[test]
fn i18_subpath_is_checked_once_when_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let accepted = ["/sd", "sd/", "", "/", "~x", "a/b", "v1.2_x-y"];
    let refused = ["/a/../b", "a b", "a//b", "./sd", "a%2fb"];
    let mut failures = Vec::new();
    for raw in accepted.iter().chain(&refused) {
        let out = launcher(tmp.path())
            .args(["--subpath", raw, "--version"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected_error = format!(
            "error: invalid value '{raw}' for '--subpath <PATH>': `{raw}` is not a path \
             prefix: use letters, digits, `-`, `_`, `.`, `~` and `/`, with no empty, `.` or \
             `..` segment"
        );
        let ok = if accepted.contains(raw) {
            out.status.success() && stderr.is_empty()
        } else {
            out.status.code() == Some(2)
                && out.stdout.is_empty()
                && stderr.contains(&expected_error)
        };
        if !ok {
            failures.push(format!(
                "--subpath {raw:?}: {}, stderr:\n{stderr}",
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Completions for bash, zsh and fish, and the man page, as the Nix package's `postInstall`
/// makes them (`completions SHELL`, `man`): each names every subcommand, the bash and zsh
/// scripts parse in their shells where those are installed, and the page is roff.
#[test]
fn completions_and_man_page_cover_every_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let subcommands = ["doctor", "settings", "models", "extensions", "completions"];
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = launcher(tmp.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(script.contains("data-dir"), "{shell}: launcher options");
        let path = tmp.path().join(format!("completion.{shell}"));
        std::fs::write(&path, &script).unwrap();
        match Command::new(checker).arg("-n").arg(&path).output() {
            Ok(check) => assert!(check.status.success(), "{shell} -n: {check:?}"),
            Err(_) => eprintln!("SKIP {shell} -n: no {checker} here"),
        }
    }
    let out = launcher(tmp.path()).arg("man").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH stable-diffusion-webui 1"), "{page}");
    for sub in subcommands {
        assert!(page.contains(sub), "man page lacks {sub}");
    }
    // `man` is for packagers: not in --help.
    let help = launcher(tmp.path()).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("completions") && !help.contains("\n  man "),
        "{help}"
    );
}

/// Launcher options go before or after the subcommand's name, as `--help` shows them. After it,
/// they were moved in front of it and kept in place too, so clap saw them twice: `doctor
/// --data-dir X` failed with "cannot be used multiple times".
#[test]
fn launcher_options_are_taken_before_or_after_the_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["doctor", "--data-dir", data, "--json"],
        &["--data-dir", data, "doctor", "--json"],
        &["settings", "presets", "--data-dir", data],
        &["--data-dir", data, "settings", "presets"],
        &["models", "list", "--data-dir", data],
        &["--cache-dir", data, "models", "list", "--data-dir", data],
        // A launcher option's value that is also a subcommand's name is still its value.
        &[
            "--data-dir",
            "models",
            "--cache-dir",
            data,
            "models",
            "list",
        ],
        &["--preset", "doctor", "--data-dir", data, "doctor", "--json"],
    ];
    for args in cases {
        let out = launcher(tmp.path()).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot be used"), "{args:?}: {stderr}");
    }
}
