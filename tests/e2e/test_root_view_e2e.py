"""End to end: an extension that writes under the webui's root and links its files relatively.

Gated like the other e2e tests (e2e_harness.find_config), plus SD_WEBUI_TEST_TAGCOMPLETE: a
checkout of DominikDoom/a1111-sd-webui-tagcomplete (any recent commit; the project never carries
its code). It is installed the way users install it: a copy in ``<data>/extensions``, with the
data dir under ``~/.local/share``.

At import it writes ``<script_path>/tmp/tagAutocompletePath.txt``, and its JavaScript reads
that file as ``file=tmp/tagAutocompletePath.txt``, relative to the working directory. Under
upstream's launch.py the root, the data dir and the working directory are one folder. Here the
tree is read-only and elsewhere; the root view (src/root_view.rs, python/webui_shim/root_view.py)
is what makes both work. Shows: the extension loads with no error, the file its JavaScript asks
for is served through the proxy, and the tags path it points at too; the tree is unchanged. With
Playwright and Chromium, a real browser loads the page and the extension's own JavaScript gets
200 for that request.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import e2e_harness as h
import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "a1111-sd-webui-tagcomplete"
STATIC_FILE = "tmp/tagAutocompletePath.txt"


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    config = h.find_config()
    if isinstance(config, str):
        pytest.skip(config)
    source = os.environ.get("SD_WEBUI_TEST_TAGCOMPLETE")
    if not source or not (Path(source) / "scripts" / "tag_autocomplete_helper.py").is_file():
        pytest.skip(f"SD_WEBUI_TEST_TAGCOMPLETE is not set to a checkout of {NAME}")
    base = tmp_path_factory.mktemp("root-view-e2e")
    home = base / "home"
    data = home / ".local" / "share" / "stable-diffusion-webui"
    cache = home / ".cache" / "stable-diffusion-webui"
    shutil.copytree(source, data / "extensions" / NAME, ignore=shutil.ignore_patterns(".git"))
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    subprocess.run([str(config.python), str(REPO / "tests/support/tiny_model.py"), str(models)], check=True)

    tree_before = h.tree_digest(config.root)
    port = h.free_port()
    env = h.offline_env(home, tmpdir=base, hf_home=base / "hf", extra={"SD_WEBUI_SHIM_DIR": str(REPO / "python")})
    # Bytecode written as by default: what loads through the root view must not put it in the tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = h.launcher_argv(
        config,
        data_dir=data,
        cache_dir=cache,
        port=port,
        webui_args=[
            "--api",
            "--no-download-sd-model",
            "--skip-version-check",
            "--ckpt",
            str(models / "tiny.safetensors"),
        ],
    )
    server = h.Server(argv, env=env, cwd=base, log_path=h.artifacts_dir() / "root-view-e2e.log").start()
    try:
        server.wait_ready()
        # The checkpoint loads in the background after "ready"; stop only after it, as a user
        # would (a stop during that load is another matter than this test's).
        server.wait_for_line("Model loaded in", 300)
        yield {"server": server, "base": f"http://127.0.0.1:{port}", "data": data, "cache": cache}
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    changes = h.digest_changes(tree_before, h.tree_digest(config.root))
    assert not changes, f"the tree was written to: {changes}"


def test_the_extension_loads_without_an_error(webui):
    log = "\n".join(webui["server"].lines)
    assert "Traceback" not in log, webui["server"].log_tail(120)
    assert "Error loading script" not in log, webui["server"].log_tail(120)


def test_the_file_it_writes_under_the_root_is_served_as_its_javascript_asks(webui):
    reply = h.http("GET", f"{webui['base']}/file={STATIC_FILE}")
    assert reply.status == 200, reply.body[:300]
    tags = Path(reply.body.decode("utf8").strip())
    # Its tags folder, inside the user's copy of the extension.
    assert tags == webui["data"] / "extensions" / NAME / "tags", tags
    # Written to the data dir's tmp/ (the root view links it there), not to the tree.
    assert (webui["data"] / STATIC_FILE).is_file()
    # What the JavaScript loads next: a tag list by that absolute path.
    csv = next(p for p in sorted(tags.glob("*.csv")))
    reply = h.http("GET", f"{webui['base']}/file={csv}")
    assert reply.status == 200
    assert reply.body == csv.read_bytes()


def test_its_own_javascript_gets_the_file_in_a_browser(webui):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    chromium = h.chromium()
    statuses: dict[str, int] = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("response", lambda r: statuses.setdefault(r.url.split("?")[0], r.status))
        page.route("**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort())
        page.goto(webui["base"] + "/", wait_until="load", timeout=h.seconds(120) * 1000)
        page.wait_for_function(
            "() => typeof tagBasePath !== 'undefined' && tagBasePath !== ''", timeout=h.seconds(60) * 1000
        )
        browser.close()
    asked = [url for url in statuses if url.endswith(STATIC_FILE)]
    assert asked, f"the extension's JavaScript never asked for {STATIC_FILE}: {sorted(statuses)[:40]}"
    assert all(statuses[url] == 200 for url in asked), {url: statuses[url] for url in asked}
