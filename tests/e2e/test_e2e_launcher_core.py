"""Launcher core: upstream started through the launcher on a CPU, from a tree it must not write to.

* As the current user, against SD_WEBUI_TEST_ROOT itself: checksums prove nothing was written there (as root,
  permissions would not have stopped a write).
* As an unprivileged uid (``setpriv --reuid``), against a read-only copy of the tree: here the kernel
  enforces read-only-ness, the way a Nix store does. Needs root (for setpriv) and a Python environment
  that uid can read: SD_WEBUI_TEST_VENV, or SD_WEBUI_TEST_UNPRIVILEGED_VENV when the former is not
  readable by other users (e.g. its bin/python3 links into /root). The uid is SD_WEBUI_TEST_UID (12345).

Both: `--api --no-download-sd-model`, an empty data dir under a dot directory, GET / and
GET /sdapi/v1/options answer 200, SIGINT (Ctrl-C) exits 0 and leaves nothing running or listening.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import e2e_harness as h
import pytest
from conftest import Site, start_launcher

WEBUI_ARGS = ["--api", "--no-download-sd-model"]


def _check_serves_and_stops(server: h.Server, url: str) -> None:
    home = h.http("GET", url)
    assert home.status == 200, home.text()
    assert b"<html" in home.body[:2000].lower()
    options = h.http("GET", url + "sdapi/v1/options")
    assert options.status == 200, options.text()
    assert isinstance(options.json(), dict) and "sd_model_checkpoint" in options.json()
    ports = server.listening_ports() | {server.port}
    rc = server.stop(signal.SIGINT)
    assert rc == 0, f"exit status {rc} after SIGINT; log:\n{server.log_tail()}"
    assert not server.group_alive(), "processes of the launcher's process group outlived it"
    still = [p for p in sorted(ports) if not h.port_refuses(p)]
    assert not still, f"still accepting connections on {still}"


def test_cpu_start_from_the_tree_writes_nothing_into_it(e2e, tmp_path, artifacts):
    site = Site.create(tmp_path)
    before = h.tree_digest(e2e.root)
    server, url = start_launcher(e2e, site, webui_args=WEBUI_ARGS, log_name="core-launcher.log", artifacts=artifacts)
    try:
        _check_serves_and_stops(server, url)
    finally:
        server.kill()
    changes = h.digest_changes(before, h.tree_digest(e2e.root))
    assert not changes, "the launcher wrote into the upstream tree:\n" + "\n".join(changes)
    assert (site.data / "ui-config.json").is_file(), "upstream's UI settings did not go to the data dir"


def _as_uid(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _uid_can(uid: int, *test_args: str) -> bool:
    return subprocess.run([*_as_uid(uid), "test", *test_args], timeout=30).returncode == 0


def test_unprivileged_uid_read_only_copy(e2e, artifacts):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid with setpriv")
    uid = int(os.environ.get("SD_WEBUI_TEST_UID", "12345"))
    venv = Path(os.environ.get("SD_WEBUI_TEST_UNPRIVILEGED_VENV") or e2e.venv).absolute()
    site_packages = sorted((venv / "lib").glob("python3*/site-packages"))
    for what, args in [
        (f"the launcher {e2e.launcher}", ("-x", str(e2e.launcher))),
        (f"{venv}/bin/python3", ("-x", str(venv / "bin" / "python3"))),
        (f"{venv}'s site-packages", ("-r", str(site_packages[0]) if site_packages else str(venv / "lib"))),
        (f"the tree {e2e.root}", ("-r", str(e2e.root / "launch.py"))),
    ]:
        if not _uid_can(uid, *args):
            pytest.skip(
                f"uid {uid} cannot use {what} (a parent directory is not readable by others?); "
                "set SD_WEBUI_TEST_UNPRIVILEGED_VENV to an environment that uid can read"
            )

    base = Path(tempfile.mkdtemp(prefix="sdw-e2e-ro-"))  # outside pytest's 0700 tmp root
    base.chmod(0o755)
    tree = base / "webui"
    try:
        h.copy_tree(e2e.root, tree)
        h.make_read_only(tree)
        site = Site.create(base / "user")
        for dirpath, dirnames, filenames in os.walk(site.base):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, uid, uid)
        assert not _uid_can(uid, "-w", str(tree)), "the copy is writable by the test uid"
        before = h.tree_digest(tree)
        original_before = h.tree_digest(e2e.root)
        server, url = start_launcher(
            e2e,
            site,
            webui_args=WEBUI_ARGS,
            log_name="core-launcher-unprivileged.log",
            artifacts=artifacts,
            root=tree,
            venv=venv,
            prefix=_as_uid(uid),
        )
        try:
            assert all(p.uids().real == uid for p in server.process_tree()), "the launcher does not run as the test uid"
            _check_serves_and_stops(server, url)
        finally:
            server.kill()
        changes = h.digest_changes(before, h.tree_digest(tree))
        assert not changes, "the tree copy changed:\n" + "\n".join(changes)
        assert not h.digest_changes(original_before, h.tree_digest(e2e.root))
        assert "PermissionError" not in "\n".join(server.lines), server.log_tail()
        assert (site.data / "ui-config.json").is_file()
    finally:
        if tree.exists():
            h.make_writable(tree)
        shutil.rmtree(base, ignore_errors=True)
