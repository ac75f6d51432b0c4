"""End-to-end run of the launcher on the nixpkgs-equivalent environment (tests/nixpkgs-env/run-e2e.sh).

Usage: python e2e.py --launcher BIN --root TREE --venv VENV --ckpt MODEL --work DIR [--report FILE]

Starts the launcher on a free loopback port, offline, with the data directory under a dot directory
(as a real ~/.local/share would be), waits for its "webui ready at" line, then runs each step and
records pass/fail (a failing step does not stop the others):

  openapi       /openapi.json builds (FastAPI's schema generation, where pydantic 2 differences show)
                and is a consistent OpenAPI 3 document: every $ref resolves, the sdapi routes are there
  docs          /docs answers 200 with the Swagger page
  options       /sdapi/v1/options: 200, an object with the core settings
  sd-models     /sdapi/v1/sd-models: 200, lists the tiny model
  samplers      /sdapi/v1/samplers: 200, a list of {name, aliases, options: {str: str}}
  api-gets      every parameterless GET route under /sdapi/v1 in the schema answers 200 with JSON;
                /sdapi/v1/extensions lists a git-cloned user extension with upstream's fields
                (GitPython's int commit date as a string, as pydantic 1 gave it)
  txt2img       64x64, 3 steps: a 64x64 PNG; the image saved under the data dir
  img2img       the txt2img image, denoise 0.5: a 64x64 PNG
  api-nulls     txt2img and img2img with every None-default field an explicit null ("script_name":
                null, "mask": null, ...): 200 and an image (pydantic 1 took a null there, clients send it)
  extras        extra-single-image, Lanczos x2: a 128x128 PNG
  file-proxy    /file=<the saved image> (under the dot directory) through the launcher's proxy: same bytes
  ui-page       / and /config (gradio's page and its component config): 200
  ui-queue      a gradio queue round trip over the /queue/join websocket (the UI's own protocol)
  ui-browser    headless Chromium renders / ; the screenshot shows the txt2img tab (needs chromium)
  stop          SIGTERM: the launcher exits 0

The report (JSON) has each step's result and detail and the launcher's log.
Only the standard library, plus `websockets` from the venv under test when present.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nix" / "tests"))
from api_routes import check_explicit_nulls, check_get_routes  # noqa: E402 - checks.e2e-cpu runs them too

RESULTS: list[dict] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None, timeout: float = 300) -> tuple[int, bytes, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {data[:16]!r}"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def step(name: str):
    def wrap(fn):
        def run(*args, **kwargs):
            t0 = time.monotonic()
            try:
                detail = fn(*args, **kwargs) or ""
                ok = True
            except Exception as e:  # noqa: BLE001 - every failure is reported, then the next step runs
                detail = f"{type(e).__name__}: {e}"
                if not isinstance(e, AssertionError):
                    detail += "\n" + traceback.format_exc(limit=3)
                ok = False
            RESULTS.append({"step": name, "ok": ok, "seconds": round(time.monotonic() - t0, 2), "detail": detail})
            print(f"{'PASS' if ok else 'FAIL'} {name}: {detail.splitlines()[0] if detail else ''}", flush=True)
            return ok

        return run

    return wrap


def make_git_extension(extensions: Path) -> dict:
    """A user extension as `git clone` leaves it (a repository with an origin remote), which
    upstream reads with GitPython; returns what /sdapi/v1/extensions must say of it."""
    name = "e2e-git-extension"
    repo = extensions / name
    shutil.rmtree(repo, ignore_errors=True)  # this script's own, from an earlier run in the same --work
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("An empty extension for tests/nixpkgs-env/e2e.py.\n")
    remote = "https://example.invalid/e2e/e2e-git-extension.git"
    date = "1700000000 +0000"
    git_env = dict(os.environ, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    for command in (
        ["init", "-q"],
        ["add", "README.md"],
        ["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", "commit", "-q", "-m", "init"],
        ["remote", "add", "origin", remote],
    ):
        subprocess.run(["git", "-C", str(repo), *command], check=True, env=git_env)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    return {"name": name, "remote": remote, "commit_hash": head.stdout.strip(), "commit_date": "1700000000"}


def check_refs(doc: dict) -> int:
    """Every local $ref in the OpenAPI document points at something; returns how many there are."""
    count = 0

    def resolve(ref: str):
        assert ref.startswith("#/"), f"non-local $ref {ref}"
        node = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]

    def walk(node):
        nonlocal count
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    resolve(v)
                    count += 1
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return count


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--launcher", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--report")
    ap.add_argument("--ready-timeout", type=float, default=900)
    args = ap.parse_args()

    work = Path(args.work).resolve()
    home = work / "home"
    data = home / ".local" / "share" / "stable-diffusion-webui"  # a dot directory on purpose
    hf = work / "hf-empty"
    for d in (data, hf, work / "gradio-tmp"):
        d.mkdir(parents=True, exist_ok=True)
    git_extension = make_git_extension(data / "extensions")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(work / "cache"),
        HF_HOME=str(hf),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        args.launcher,
        "--webui-root", args.root,
        "--python-env", args.venv,
        "--data-dir", str(data),
        "--port", str(port),
        "--api",
        "--ckpt", args.ckpt,
        "--no-download-sd-model",
        "--skip-torch-cuda-test",
        "--use-cpu", "all",
        "--no-half",
        "--precision", "full",
    ]  # fmt: skip
    print("starting:", " ".join(cmd), flush=True)
    log_lines: list[str] = []
    ready = threading.Event()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def pump():
        for line in proc.stdout:
            log_lines.append(line.rstrip("\n"))
            sys.stdout.write("  | " + line)
            if "webui ready at" in line:
                ready.set()

    threading.Thread(target=pump, daemon=True).start()

    @step("start")
    def start():
        deadline = time.monotonic() + args.ready_timeout
        while not ready.wait(1):
            assert proc.poll() is None, f"launcher exited with {proc.returncode} before it was ready"
            assert time.monotonic() < deadline, f"no 'webui ready at' within {args.ready_timeout:.0f} s"
        # The model loads in a background thread: wait until the API lists it.
        while True:
            status, body, _ = request(f"{base}/sdapi/v1/sd-models", timeout=30)
            if status == 200 and json.loads(body):
                return f"ready on port {port}"
            assert time.monotonic() < deadline, f"sd-models still {status} {body[:200]!r}"
            time.sleep(1)

    if not start():
        return finish(proc, args.report, log_lines)

    @step("openapi")
    def openapi():
        status, body, _ = request(f"{base}/openapi.json")
        assert status == 200, f"/openapi.json answered {status}: {body[:800]!r}"
        doc = json.loads(body)
        assert str(doc.get("openapi", "")).startswith("3."), doc.get("openapi")
        assert doc["info"]["title"], doc["info"]
        for path in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/sdapi/v1/options", "/sdapi/v1/sd-models"):
            assert path in doc["paths"], f"{path} missing from the schema"
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                assert "responses" in op, f"{method.upper()} {path} has no responses"
        refs = check_refs(doc)
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("StableDiffusionProcessingTxt2Img", "StableDiffusionProcessingImg2Img", "Options", "Flags"):
            assert name in schemas, f"schema {name} missing"
        return f"OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, {len(schemas)} schemas, {refs} $refs all resolve"

    @step("docs")
    def docs():
        status, body, _ = request(f"{base}/docs")
        assert status == 200, f"/docs answered {status}"
        assert b"swagger" in body.lower(), body[:300]
        return "Swagger UI page"

    @step("options")
    def options():
        status, body, _ = request(f"{base}/sdapi/v1/options")
        assert status == 200, f"{status}: {body[:800]!r}"
        opts = json.loads(body)
        assert isinstance(opts, dict) and "sd_model_checkpoint" in opts and "samples_format" in opts, list(opts)[:20]
        return f"{len(opts)} options, sd_model_checkpoint={opts['sd_model_checkpoint']!r}"

    @step("sd-models")
    def sd_models():
        status, body, _ = request(f"{base}/sdapi/v1/sd-models")
        assert status == 200, f"{status}: {body[:800]!r}"
        models = json.loads(body)
        assert any(m["model_name"].startswith(Path(args.ckpt).stem) for m in models), models
        for m in models:
            assert {"title", "model_name", "filename"} <= m.keys(), m
        return ", ".join(m["title"] for m in models)

    @step("samplers")
    def samplers():
        status, body, _ = request(f"{base}/sdapi/v1/samplers")
        assert status == 200, f"{status}: {body[:800]!r}"
        items = json.loads(body)
        assert items and all(
            isinstance(s["name"], str)
            and isinstance(s["aliases"], list)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in s["options"].items())
            for s in items
        ), items[:3]
        assert any(s["name"] == "Euler a" for s in items)
        return f"{len(items)} samplers"

    @step("api-gets")
    def api_gets():
        routes = check_get_routes(base)
        listed = {e["name"]: e for e in routes["/sdapi/v1/extensions"]}
        mine = listed.get(git_extension["name"])
        assert mine is not None, f"{git_extension['name']} not in {sorted(listed)}"
        for key in ("remote", "commit_hash", "commit_date"):
            assert mine[key] == git_extension[key], f"{key}: {mine[key]!r} != {git_extension[key]!r}"
        return f"{len(routes)} routes 200; extensions lists {mine['name']} (commit_date {mine['commit_date']!r})"

    state: dict = {}

    @step("txt2img")
    def txt2img():
        payload = {
            "prompt": "a cat, (dog:1.2)",
            "negative_prompt": "blurry",
            "steps": 3,
            "width": 64,
            "height": 64,
            "seed": 1,
            "sampler_name": "Euler a",
            "save_images": True,
        }
        status, body, _ = request(f"{base}/sdapi/v1/txt2img", payload)
        assert status == 200, f"{status}: {body[:1500]!r}"
        answer = json.loads(body)
        image = base64.b64decode(answer["images"][0])
        assert png_size(image) == (64, 64), png_size(image)
        info = json.loads(answer["info"])
        assert info["seed"] == 1, info
        state["image"] = answer["images"][0]
        saved = sorted((data / "outputs").rglob("*.png"), key=lambda p: p.stat().st_mtime)
        assert saved, f"nothing saved under {data / 'outputs'}"
        state["saved"] = saved[-1]
        return f"64x64 PNG, saved {saved[-1].relative_to(data)}"

    @step("img2img")
    def img2img():
        assert "image" in state, "no txt2img image"
        payload = {
            "init_images": [state["image"]],
            "prompt": "a cat",
            "denoising_strength": 0.5,
            "steps": 3,
            "width": 64,
            "height": 64,
            "seed": 2,
            "sampler_name": "Euler a",
        }
        status, body, _ = request(f"{base}/sdapi/v1/img2img", payload)
        assert status == 200, f"{status}: {body[:1500]!r}"
        image = base64.b64decode(json.loads(body)["images"][0])
        assert png_size(image) == (64, 64), png_size(image)
        return "64x64 PNG"

    @step("api-nulls")
    def api_nulls():
        assert "image" in state, "no txt2img image"
        return "200 with nulls: " + "; ".join(check_explicit_nulls(base, state["image"]))

    @step("extras")
    def extras():
        assert "image" in state, "no txt2img image"
        payload = {"image": state["image"], "upscaling_resize": 2, "upscaler_1": "Lanczos"}
        status, body, _ = request(f"{base}/sdapi/v1/extra-single-image", payload)
        assert status == 200, f"{status}: {body[:1500]!r}"
        image = base64.b64decode(json.loads(body)["image"])
        assert png_size(image) == (128, 128), png_size(image)
        return "Lanczos x2: 128x128 PNG"

    @step("file-proxy")
    def file_proxy():
        assert "saved" in state, "no saved image"
        path = urllib.parse.quote(str(state["saved"]))
        status, body, _ = request(f"{base}/file={path}", timeout=60)
        assert status == 200, f"/file= of {state['saved']} answered {status}: {body[:300]!r}"
        assert body == state["saved"].read_bytes(), "other bytes than the saved file"
        return "served from under the dot directory"

    @step("ui-page")
    def ui_page():
        status, body, _ = request(f"{base}/", timeout=60)
        assert status == 200, f"/ answered {status}: {body[:500]!r}"
        assert b"<html" in body.lower() or b"<!doctype" in body.lower(), body[:200]
        status, cfg, _ = request(f"{base}/config", timeout=60)
        assert status == 200, f"/config answered {status}: {cfg[:500]!r}"
        config = json.loads(cfg)
        assert config.get("version", "").startswith("3.41"), config.get("version")
        comps = config["components"]
        assert any(c.get("props", {}).get("elem_id") == "txt2img_prompt" for c in comps), "no txt2img prompt box"
        state["fn_count"] = len(config["dependencies"])
        return f"gradio {config['version']}, {len(comps)} components, {len(config['dependencies'])} events"

    @step("ui-queue")
    def ui_queue():
        """One queued event over the websocket, the way the browser runs every button."""
        status, cfg, _ = request(f"{base}/config", timeout=60)
        config = json.loads(cfg)
        # the simplest queued event that takes no inputs: pick one by its api_name if present
        deps = config["dependencies"]
        fn_index = next(
            (i for i, d in enumerate(deps) if d.get("queue") is not False and not d["inputs"] and d.get("backend_fn")),
            None,
        )
        assert fn_index is not None, "no input-less queued event found"
        import asyncio

        try:
            import websockets  # from the venv under test when run with it; skipped otherwise
        except ImportError:
            return "skipped: websockets not importable by the driver"

        async def go():
            async with websockets.connect(f"ws://127.0.0.1:{port}/queue/join", open_timeout=30) as ws:
                session = "e2e" + str(os.getpid())
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    if msg["msg"] == "send_hash":
                        await ws.send(json.dumps({"fn_index": fn_index, "session_hash": session}))
                    elif msg["msg"] == "send_data":
                        await ws.send(
                            json.dumps({"data": [], "fn_index": fn_index, "session_hash": session, "event_data": None})
                        )
                    elif msg["msg"] == "process_completed":
                        return msg

        msg = asyncio.run(go())
        assert msg.get("success"), msg
        return f"fn_index {fn_index} ({deps[fn_index].get('api_name') or 'unnamed'}) completed over /queue/join"

    @step("ui-browser")
    def ui_browser():
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            return "skipped: no chromium"
        shot = work / "ui.png"
        profile = work / "chromium-profile"
        result = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "--virtual-time-budget=20000",
                f"--screenshot={shot}",
                f"{base}/",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert shot.is_file(), f"no screenshot: {result.stderr[-800:]}"
        state["screenshot"] = str(shot)
        # And the DOM: the page's JavaScript built the UI (the txt2img prompt box exists).
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{base}/",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        ).stdout
        assert "txt2img_prompt" in dom, f"the rendered DOM has no txt2img prompt box ({len(dom)} bytes)"
        return f"rendered; screenshot {shot}"

    for fn in (
        openapi,
        docs,
        options,
        sd_models,
        samplers,
        api_gets,
        txt2img,
        img2img,
        api_nulls,
        extras,
        file_proxy,
        ui_page,
        ui_queue,
    ):
        fn()
    ui_browser()
    return finish(proc, args.report, log_lines)


def finish(proc: subprocess.Popen, report: str | None, log_lines: list[str]) -> int:
    @step("stop")
    def stop():
        if proc.poll() is not None:
            raise AssertionError(f"launcher had already exited with {proc.returncode}")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("no exit within 90 s of SIGTERM") from None
        assert rc == 0, f"exit status {rc}"
        return "exit 0"

    stop()
    passed = sum(r["ok"] for r in RESULTS)
    failed = len(RESULTS) - passed
    print(f"\n{'step':<12} result  seconds  detail")
    for r in RESULTS:
        first = r["detail"].splitlines()[0] if r["detail"] else ""
        print(f"{r['step']:<12} {'PASS' if r['ok'] else 'FAIL':<7} {r['seconds']:>7}  {first[:150]}")
    print(f"\ne2e: {passed} passed, {failed} failed")
    if report:
        Path(report).write_text(json.dumps({"steps": RESULTS, "log": log_lines}, indent=1))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
