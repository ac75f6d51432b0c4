//! Test prerequisites, and what a missing one does. It is never silent: a skipped test prints
//! `SKIP <test>: <reason>` straight to stderr (libtest captures `eprintln!` of a passing test,
//! which would hide it), or it fails.
//!
//! - **The Python environment** (an interpreter with `packaging` for the webui-shaped fixture;
//!   gradio 3.41.2 for the proxy tests) must exist when a run says it provides one:
//!   `SD_WEBUI_TEST_REQUIRE=1` (`.ci/run`), or `SD_WEBUI_TEST_PYTHON` set (`.ci/run`, Nix's
//!   `checks.cargo-test`, the dev shell). Then a missing or unusable one fails the test. Only
//!   a bare `cargo test` with neither may skip.
//! - **IPv6 loopback and `/dev/full`** belong to the machine, not to the test setup (sandboxes
//!   and containers often lack them): they may skip, visibly.

#![allow(
    dead_code,
    reason = "included by several test binaries, each using a part"
)]

use std::io::Write;

/// The interpreter the tests use.
pub const PYTHON_VAR: &str = "SD_WEBUI_TEST_PYTHON";
/// `1`: every Python prerequisite must be met (CI).
pub const REQUIRE_VAR: &str = "SD_WEBUI_TEST_REQUIRE";

/// Says that `test` is skipped and why, on the real stderr.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

/// The Python environment must be there: CI asked for it, or an interpreter was named.
pub fn python_required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
        || std::env::var_os(PYTHON_VAR).is_some_and(|v| !v.is_empty())
}

/// The test's name from the `type_name` of a fn item declared in its body
/// (`launcher::some_test::here` → `some_test`).
pub fn test_name(item_path: &'static str) -> &'static str {
    let path = item_path.rsplit_once("::").map_or(item_path, |(p, _)| p);
    let path = path.trim_end_matches("::{{closure}}");
    path.rsplit_once("::").map_or(path, |(_, name)| name)
}
