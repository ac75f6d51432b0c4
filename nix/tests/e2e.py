"""End-to-end CPU generation through the launcher, for checks.e2e-cpu (runs in the Nix sandbox).

Usage: python e2e.py LAUNCHER TINY_MODEL_SCRIPT WORK_DIR [MANAGED_EXTENSIONS_DIR]

1. writes the tiny random-weights SD1 model (tests/support/tiny_model.py) into the data dir,
2. starts the launcher on a free loopback port with --api, offline, on CPU,
3. waits until the proxy forwards to a ready webui, runs txt2img (3 steps, 64x64), then txt2img
   and img2img with every None-default request field an explicit null ("script_name": null,
   "mask": null, ...: pydantic 1 accepted those, api_routes.py),
4. checks the PNG in the answer, the file saved under the data dir's outputs/, and that the
   proxy serves that file at /file=<path> although the data dir sits under a dot directory
   (gradio alone answers 403 there),
5. with the package's managed extensions directory: every extension of its manifest is listed
   by /sdapi/v1/extensions, enabled, and the log shows no script, callback or install.py error,
6. every parameterless /sdapi/v1 GET route answers 200 with JSON (api_routes.py: where
   pydantic 2 differences show),
7. stops the launcher with SIGTERM and expects it to exit cleanly.
Only the standard library is used.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from api_routes import check_explicit_nulls, check_get_routes  # nix/tests/api_routes.py, next to this file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None, timeout: float = 600) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# What upstream prints when an extension fails to load (modules/scripts.py, script_callbacks.py,
# launch_utils.py's installer runner).
LOAD_ERRORS = ("Error loading script", "Error executing callback", "Error running install.py")


def check_managed_extensions(base: str, managed: Path, log: Path, data: Path) -> None:
    names = sorted(json.loads((managed / "manifest.json").read_text())["extensions"])
    status, body = request(f"{base}/sdapi/v1/extensions", timeout=120)
    assert status == 200, f"/sdapi/v1/extensions answered {status}"
    listed = {e["name"]: e for e in json.loads(body)}
    for name in names:
        assert name in listed, f"managed extension {name} not listed: {sorted(listed)}"
        assert listed[name]["enabled"], f"managed extension {name} is not enabled"
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if any(e in line for e in LOAD_ERRORS)]
    assert not errors, "extension load errors:\n" + "\n".join(errors)
    # Each is loaded from its writable view in the data dir (src/views/managed_extensions.rs);
    # regional prompter creates its presets file beside its scripts at load, which must land
    # there, not fail against the read-only store.
    for name in names:
        view = data / "managed-extensions" / name
        assert view.is_dir() and not view.is_symlink(), f"no writable view {view}"
    presets = data / "managed-extensions" / "sd-webui-regional-prompter" / "regional_prompter_presets.json"
    if "sd-webui-regional-prompter" in names:
        assert presets.is_file() and not presets.is_symlink(), f"regional prompter wrote no {presets}"
        assert not (managed / "sd-webui-regional-prompter" / presets.name).exists()
        print("regional prompter's presets written into its view:", presets, flush=True)
    print("managed extensions loaded:", ", ".join(names), flush=True)


def main(launcher: str, tiny_model: str, work: str, managed: str | None = None) -> int:
    work_dir = Path(work)
    data = work_dir / ".local" / "share" / "stable-diffusion-webui"  # a dot directory on purpose
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    subprocess.run([sys.executable, tiny_model, str(models)], check=True)
    ckpt = models / "tiny.safetensors"
    assert ckpt.is_file(), f"{tiny_model} wrote no {ckpt}"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        HOME=str(work_dir),
        XDG_DATA_HOME=str(work_dir / ".local" / "share"),
        XDG_CACHE_HOME=str(work_dir / ".cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if managed:
        # The package bakes its managed directory in; saying it again also works outside Nix.
        env["SD_WEBUI_MANAGED_EXTENSIONS"] = managed
    args = [
        launcher,
        "--data-dir", str(data),
        "--port", str(port),
        "--api",
        "--use-cpu", "all",
        "--no-half",
        "--precision", "full",
        "--skip-torch-cuda-test",
        "--no-download-sd-model",
        "--ckpt", str(ckpt),
    ]  # fmt: skip
    print("starting:", " ".join(args), flush=True)
    log = work_dir / "launcher.log"
    log_file = log.open("w")
    proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"launcher exited early with {proc.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit("webui not ready after 600 s")
            try:
                status, _ = request(f"{base}/sdapi/v1/sd-models", timeout=10)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        print("ready", flush=True)

        status, body = request(
            f"{base}/sdapi/v1/txt2img",
            {
                "prompt": "a cat",
                "steps": 3,
                "width": 64,
                "height": 64,
                "seed": 1,
                "sampler_name": "Euler a",
                "save_images": True,
            },
        )
        assert status == 200, f"txt2img answered {status}: {body[:500]!r}"
        image = base64.b64decode(json.loads(body)["images"][0])
        assert png_size(image) == (64, 64), f"unexpected image size {png_size(image)}"
        for sent in check_explicit_nulls(base, json.loads(body)["images"][0]):
            print("200 with explicit nulls:", sent, flush=True)

        saved = sorted((data / "outputs").rglob("*.png"))
        assert saved, f"no image saved under {data / 'outputs'}"
        print("saved:", saved[-1], flush=True)

        path = urllib.parse.quote(str(saved[-1]))
        status, served = request(f"{base}/file={path}", timeout=60)
        assert status == 200, f"/file= of the saved image answered {status}"
        assert served == saved[-1].read_bytes(), "/file= served other bytes than the saved image"
        print("served through the proxy from under a dot directory", flush=True)
        if managed:
            check_managed_extensions(base, Path(managed), log, data)
        print(f"{len(check_get_routes(base))} API GET routes answered 200", flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise SystemExit("launcher did not stop within 60 s of SIGTERM") from None
        log_file.close()
        sys.stdout.write(log.read_text(errors="replace"))
    assert proc.returncode == 0, f"launcher exited with {proc.returncode} after SIGTERM"
    print("e2e: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
