"""A real browser drives the UI through the launcher: type a prompt, click Generate, see the image.

Uses an installed Chromium (SD_WEBUI_TEST_CHROMIUM, default: chromium / chromium-browser on PATH), driven by
Playwright's Python package with executable_path: no browser download. Headless, fresh profile, only
127.0.0.1. Gated like the other e2e tests, and skipped without playwright or a Chromium.

The data dir lies under a dot directory, as for a real user (~/.local/share/stable-diffusion-webui). The
generated image's URL is /file=<data dir>/outputs/..., which gradio alone refuses (403) for paths with a
dot component; the launcher's proxy serves it. Every request the page makes must succeed, the
stylesheet's font @import included.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import e2e_harness as h
import pytest
from conftest import Site, start_launcher

PROMPT = "a tiny lighthouse at dawn"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Preset through upstream's own ui-config.json, so that the UI's defaults make a tiny, quick image.
UI_DEFAULTS = {
    "txt2img/Width/value": 64,
    "txt2img/Height/value": 64,
    "customscript/sampler.py/txt2img/Sampling steps/value": 3,
    "customscript/sampler.py/txt2img/Sampling method/value": "Euler a",
    "customscript/seed.py/txt2img/Seed/value": 1234,
}
CHECKED_RESOURCES = {"document", "script", "stylesheet", "image", "font", "fetch", "xhr", "media"}


def _is_gallery_output(url: str, data: Path) -> bool:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return path.startswith("/file=") and path[len("/file=") :].startswith(str(data / "outputs") + "/")


@pytest.fixture(scope="module")
def session(e2e, tmp_path_factory, artifacts):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    chromium = h.chromium()
    site = Site.create(tmp_path_factory.mktemp("browser"))
    site.add_tiny_model()
    site.data.mkdir(parents=True, exist_ok=True)
    (site.data / "ui-config.json").write_text(json.dumps(UI_DEFAULTS, indent=4))
    server, url = start_launcher(
        e2e,
        site,
        webui_args=["--api", "--no-download-sd-model"],
        log_name="browser-launcher.log",
        artifacts=artifacts,
    )
    responses: list[tuple[str, int, str]] = []  # (url, status, resource type)
    failures: list[tuple[str, str, str]] = []  # (url, error text, resource type)
    console_errors: list[str] = []
    external: list[str] = []  # requests to anywhere but the launcher (aborted)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=site.tmp)
    screenshot = artifacts / "browser-txt2img.png"
    try:
        with sync_api.sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url))

                def only_the_launcher(route):
                    # Only 127.0.0.1: the page's outside requests (gradio's index.html loads iframeResizer
                    # from cdnjs) are recorded and aborted, not counted as failures of the launcher.
                    if route.request.url.startswith(origin + "/"):
                        route.continue_()
                    else:
                        external.append(route.request.url)
                        route.abort()

                context.route("**/*", only_the_launcher)
                page = context.new_page()
                page.on("response", lambda r: responses.append((r.url, r.status, r.request.resource_type)))
                page.on("requestfailed", lambda r: failures.append((r.url, r.failure or "", r.resource_type)))
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                try:
                    page.goto(url, wait_until="load", timeout=h.seconds(120) * 1000)
                    prompt = page.locator("#txt2img_prompt textarea")
                    prompt.wait_for(state="visible", timeout=h.seconds(180) * 1000)
                    prompt.click()
                    prompt.type(PROMPT)
                    page.locator("#txt2img_generate").click()
                    gallery_image = page.locator("#txt2img_gallery img").first
                    gallery_image.wait_for(state="attached", timeout=h.seconds(120) * 1000)
                except sync_api.Error as error:
                    page.screenshot(path=str(artifacts / "browser-failure.png"), full_page=True)
                    bad = sorted({f"{status} {kind} {u}" for u, status, kind in responses if status >= 400})
                    raise AssertionError(
                        f"the UI did not generate an image ({error.message.splitlines()[0]}); screenshot "
                        f"{artifacts / 'browser-failure.png'}; failed responses:\n" + "\n".join(bad[:40])
                    ) from error
                src = gallery_image.get_attribute("src")
                # Wait until the browser has finished with that image, loaded or failed.
                deadline = time.monotonic() + h.seconds(60)
                while not gallery_image.evaluate("img => img.complete") and time.monotonic() < deadline:
                    time.sleep(0.2)
                natural = gallery_image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
                page.wait_for_timeout(1000)  # late requests (progress polling, previews) settle
                page.screenshot(path=str(screenshot), full_page=True)
                prompt_value = prompt.input_value()
            finally:
                context.close()
    finally:
        rc = server.stop() if server.running() else server.returncode
        server.kill()
    yield SimpleNamespace(
        site=site,
        url=url,
        src=src,
        natural=natural,
        prompt_value=prompt_value,
        responses=responses,
        failures=failures,
        console_errors=console_errors,
        external=external,
        screenshot=screenshot,
        stop_rc=rc,
    )


def _failed(session) -> list[tuple[str, str]]:
    """(description, url) of every checked request to the launcher that failed or got a status >= 400."""
    ours = session.url.rstrip("/") + "/"
    bad = [
        (f"{status} {kind}", url)
        for url, status, kind in session.responses
        if status >= 400 and kind in CHECKED_RESOURCES
    ]
    bad += [
        (f"failed ({error}) {kind}", url)
        for url, error, kind in session.failures
        if kind in CHECKED_RESOURCES and url.startswith(ours) and not any(u == url for u, _, _ in session.responses)
    ]
    return bad


def _lines(failed: list[tuple[str, str]]) -> str:
    return "\n".join(f"{what} {url}" for what, url in failed)


def test_generate_from_the_ui_puts_the_image_in_the_gallery(session):
    assert session.prompt_value == PROMPT
    assert session.src, "the gallery has no image"
    absolute = urllib.parse.urljoin(session.url, session.src)
    assert _is_gallery_output(absolute, session.site.data), f"gallery image is not a saved output: {session.src}"
    saved = Path(urllib.parse.unquote(urllib.parse.urlsplit(absolute).path)[len("/file=") :])
    assert saved.is_file(), saved
    assert h.png_size(saved.read_bytes()) == (64, 64), "the UI did not generate with the preset 64x64"
    assert PROMPT in saved.read_bytes().decode("latin-1"), "the saved image's infotext lacks the typed prompt"
    assert session.screenshot.is_file() and session.screenshot.stat().st_size > 10_000
    assert session.stop_rc == 0


def test_no_request_failed(session):
    """Scripts, styles, fonts, images (the gallery's too), API calls: all answered below 400."""
    bad = _failed(session)
    assert not bad, "failed requests:\n" + _lines(bad)
    assert any(kind == "script" and status == 200 for _, status, kind in session.responses)
    assert any(kind == "stylesheet" and status == 200 for _, status, kind in session.responses)


def test_gallery_image_loads(session):
    statuses = [status for url, status, _ in session.responses if _is_gallery_output(url, session.site.data)]
    assert statuses and all(s == 200 for s in statuses), f"gallery image responses: {statuses}"
    assert session.natural == [64, 64], f"the browser could not show the image (natural size {session.natural})"
