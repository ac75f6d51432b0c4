"""End to end: managed and user extensions with the real upstream webui.

Gated like the other e2e tests (e2e_harness.find_config), plus SD_WEBUI_TEST_JA_JP: a checkout
of the ja_JP localization extension at the revision repositories/sources.json pins (the test
applies the project's patches to a copy, as the Nix package does).

Shows: the ja_JP localization, enabled as a managed extension and selected by a declared setting
(`localization = "ja_JP"` in the settings file), puts its Japanese strings into the served page;
it is listed by /sdapi/v1/extensions with its pinned source and revision. The fixture user
extensions (tests/fixtures/extensions), in a data dir under a dot directory, load: preload.py's
option reaches their script, their JS and CSS are served through the proxy, and the one whose
install.py asks for an absent package gets the launcher's message while pip is never run.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.parse
from pathlib import Path

import e2e_harness as h
import pytest

REPO = Path(__file__).resolve().parents[2]
JA_JP = "stable-diffusion-webui-localization-ja_JP"
GREETING = "こんにちは"


def _sources() -> dict:
    return json.loads((REPO / "repositories" / "sources.json").read_text(encoding="utf8"))


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    config = h.find_config()
    if isinstance(config, str):
        pytest.skip(config)
    source = os.environ.get("SD_WEBUI_TEST_JA_JP")
    if not source or not (Path(source) / "localizations" / "ja_JP.json").is_file():
        pytest.skip("SD_WEBUI_TEST_JA_JP is not set to a checkout of the ja_JP localization extension")
    base = tmp_path_factory.mktemp("extensions-e2e")

    # The managed directory, as nix/package.nix builds it: patched copies and manifest.json.
    pin = _sources()["extensions"][JA_JP]
    managed = base / "managed"
    shutil.copytree(source, managed / JA_JP, ignore=shutil.ignore_patterns(".git"))
    for patch in pin.get("patches", []):
        subprocess.run(["git", "apply", str(REPO / patch)], cwd=managed / JA_JP, check=True)
    url = f"https://github.com/{pin['owner']}/{pin['repo']}"
    manifest = {"version": 1, "extensions": {JA_JP: {"url": url, "rev": pin["rev"], "date": pin["date"]}}}
    (managed / "manifest.json").write_text(json.dumps(manifest), encoding="utf8")
    h.make_read_only(managed)

    home = base / "home"
    data = home / ".local" / "share" / "stable-diffusion-webui"
    shutil.copytree(REPO / "tests" / "fixtures" / "extensions", data / "extensions")
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    subprocess.run([str(config.python), str(REPO / "tests/support/tiny_model.py"), str(models)], check=True)
    settings = base / "settings.json"
    settings.write_text(
        json.dumps({"version": 1, "source": "the e2e test", "config": {"defaults": {"localization": "ja_JP"}}}),
        encoding="utf8",
    )
    # pip, if anything ran it: `pip` on PATH and `python -m pip` both record and fail.
    spawned = base / "spawned.log"
    fake = base / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "py" / "pip").mkdir(parents=True)
    (fake / "bin" / "pip").write_text(f"#!/bin/sh\necho \"pip $*\" >> '{spawned}'\nexit 1\n")
    (fake / "bin" / "pip").chmod(0o755)
    (fake / "py" / "pip" / "__init__.py").write_text("")
    (fake / "py" / "pip" / "__main__.py").write_text(
        f"import sys\nopen({str(spawned)!r}, 'a').write('python -m pip ' + ' '.join(sys.argv[1:]))\nsys.exit(1)\n"
    )

    port = h.free_port()
    env = h.offline_env(
        home,
        tmpdir=base,
        hf_home=base / "hf",
        extra={
            "PATH": f"{fake / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(fake / "py"),
            "SD_WEBUI_SHIM_DIR": str(REPO / "python"),
        },
    )
    argv = [
        str(config.launcher),
        "--webui-root", str(config.root),
        "--python-env", str(config.venv),
        "--managed-extensions", str(managed),
        "--settings-file", str(settings),
        "--port", str(port),
        "--api",
        "--no-download-sd-model",
        "--skip-version-check",
        "--ckpt", str(models / "tiny.safetensors"),
        "--full-featured-greeting", GREETING,
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "webui ready at" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    state = {"proc": proc, "lines": lines, "base": f"http://127.0.0.1:{port}", "data": data, "managed": managed}
    state["spawned"] = spawned
    if not ready.wait(h.seconds(300)):
        proc.kill()
        pytest.fail("the webui did not become ready:\n" + "".join(lines[-200:]))
    yield state
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, "".join(lines[-200:])


def _page(webui) -> str:
    reply = h.http("GET", webui["base"] + "/")
    assert reply.status == 200
    return reply.body.decode("utf8")


def test_ja_jp_managed_and_selected_by_a_declared_setting_localizes_the_page(webui):
    page = _page(webui)
    match = re.search(r"window\.localization = (\{.*?\})</script>", page, re.S)
    assert match, "no localization in the page"
    served = json.loads(match.group(1))
    expected = json.loads((webui["managed"] / JA_JP / "localizations" / "ja_JP.json").read_text(encoding="utf8"))
    assert served["Generate"] == expected["Generate"]
    assert any(ord(ch) > 0x3000 for ch in served["Generate"]), served["Generate"]  # kana / kanji
    assert len(served) == len(expected)

    reply = h.http("GET", webui["base"] + "/sdapi/v1/extensions")
    assert reply.status == 200, reply.body[:500]
    listed = {e["name"]: e for e in json.loads(reply.body)}
    pin = _sources()["extensions"][JA_JP]
    assert listed[JA_JP]["remote"] == f"https://github.com/{pin['owner']}/{pin['repo']}"
    assert listed[JA_JP]["commit_hash"] == pin["rev"]
    assert listed[JA_JP]["enabled"] is True


def test_user_extensions_load_and_their_assets_pass_the_proxy(webui):
    reply = h.http("GET", webui["base"] + "/full-featured/ping")
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.body)["greeting"] == GREETING  # preload.py's option reached the script

    page = _page(webui)
    # Upstream links files below its working directory (the data dir) relatively
    # (util.truncate_path), others absolutely: both must come through the proxy.
    links = [html.unescape(u) for u in re.findall(r'(?:src|href)="file=([^"?]+)', page)]
    files = {u: (webui["data"] / u if not u.startswith("/") else Path(u)) for u in links}
    wanted = {u: f for u, f in files.items() if "/full-featured/" in str(f) or f"/{JA_JP}/" in str(f)}
    assert any(str(f).endswith("full_featured.js") for f in wanted.values()), links
    assert any(str(f).endswith("style.css") and "/.local/" in str(f) for f in wanted.values()), links
    assert any(str(f).endswith("bilingual_localization.js") for f in wanted.values()), links
    for link, path in wanted.items():
        reply = h.http("GET", webui["base"] + "/file=" + urllib.parse.quote(link))
        assert reply.status == 200, (link, reply.status)
        assert reply.body == path.read_bytes()

    output = "".join(webui["lines"])
    assert output.count("Extension 'needs-packages' needs Python packages that are not installed") == 1, output
    assert "extraPythonPackages = ps: [ ps.definitely-absent-package ];" in output
    assert "Error loading script" not in output, output
    assert not webui["spawned"].exists(), webui["spawned"].read_text()
