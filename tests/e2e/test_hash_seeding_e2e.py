"""End to end: upstream's hash cache seeded from the launcher's verified download (issue #20).

Two users, the same checkpoint bytes (the tiny model). One got it the launcher's way: ``models
ensure`` from a URL with its sha256 (here a loopback HTTP server), so the file was hashed while
it streamed and recorded as verified. The other placed the same file by hand. Both start the
webui through the launcher against the real upstream tree and load it. Shows:

- seeded: upstream never prints "Calculating sha256 for"; the launcher says which entry it wrote;
- by hand: upstream computes the hash itself, as before;
- both: ``/sdapi/v1/sd-models`` ``sha256`` and title, the checkpoint's short hash, and the
  ``Model hash`` of a txt2img infotext are identical, and equal to the file's sha256;
- a seeded file modified afterwards is hashed by upstream again (its mtime no longer matches).

Gated like the other e2e tests (e2e_harness.find_config).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import e2e_harness as h
import pytest

REPO = Path(__file__).resolve().parents[2]
CALCULATING = "Calculating sha256 for"


@pytest.fixture(scope="module")
def e2e_config():
    config = h.find_config()
    if isinstance(config, str):
        pytest.skip(config)
    return config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, e2e_config) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    subprocess.run([str(e2e_config.python), str(REPO / "tests/support/tiny_model.py"), str(out)], check=True)
    return out / "tiny.safetensors"


def serve(directory: Path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def user(base: Path) -> dict[str, Path]:
    home = base / "home"
    return {
        "base": base,
        "home": home,
        "data": home / ".local" / "share" / "stable-diffusion-webui",
        "cache": home / ".cache" / "stable-diffusion-webui",
    }


def run_webui(config, who: dict[str, Path], log_name: str) -> dict:
    """Start, wait for the checkpoint, ask what upstream reports, generate once, stop."""
    port = h.free_port()
    env = h.offline_env(
        who["home"], tmpdir=who["base"], hf_home=who["base"] / "hf", extra={"SD_WEBUI_SHIM_DIR": str(REPO / "python")}
    )
    argv = h.launcher_argv(
        config,
        data_dir=who["data"],
        cache_dir=who["cache"],
        port=port,
        webui_args=["--api", "--skip-version-check", "--ckpt", "tiny.safetensors"],
    )
    server = h.Server(argv, env=env, cwd=who["base"], log_path=h.artifacts_dir() / log_name).start()
    try:
        server.wait_ready()
        server.wait_for_line("Model loaded in", 300)
        base = f"http://127.0.0.1:{port}"
        models = h.http("GET", f"{base}/sdapi/v1/sd-models").json()
        reply = h.http(
            "POST",
            f"{base}/sdapi/v1/txt2img",
            json_body={"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "seed": 1},
        )
        assert reply.status == 200, reply.text()
        infotext = json.loads(reply.json()["info"])["infotexts"][0]
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    return {"models": models, "infotext": infotext, "log": "\n".join(server.lines)}


def model_hash(infotext: str) -> str:
    return next(part.split(": ", 1)[1] for part in infotext.split(", ") if part.startswith("Model hash: "))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, e2e_config, tiny):
    sha256 = hashlib.sha256(tiny.read_bytes()).hexdigest()
    seeded = user(tmp_path_factory.mktemp("seeded"))
    # The launcher's way: a declared, pinned download, hashed while it streams.
    server = serve(tiny.parent)
    try:
        declared = seeded["base"] / "models.json"
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny.safetensors"
        entry = {"url": url, "sha256": sha256, "folder": "Stable-diffusion", "name": "tiny.safetensors"}
        declared.write_text(json.dumps([entry]))
        env = h.offline_env(seeded["home"], tmpdir=seeded["base"], hf_home=seeded["base"] / "hf")
        env["NO_PROXY"] = "127.0.0.1"
        ensure = subprocess.run(
            [str(e2e_config.launcher), "models", "ensure", "--from", str(declared), "--data-dir", str(seeded["data"])],
            env=env,
            capture_output=True,
            text=True,
        )
        assert ensure.returncode == 0, ensure.stderr
    finally:
        server.shutdown()
    # Its config (tiny_model.py writes one beside the weights), placed as a user would.
    shutil.copy2(tiny.with_suffix(".yaml"), seeded["data"] / "models" / "Stable-diffusion")
    by_hand = user(tmp_path_factory.mktemp("by-hand"))
    (by_hand["data"] / "models" / "Stable-diffusion").mkdir(parents=True)
    for file in (tiny, tiny.with_suffix(".yaml")):
        shutil.copy2(file, by_hand["data"] / "models" / "Stable-diffusion" / file.name)
    return {
        "sha256": sha256,
        "seeded_user": seeded,
        "seeded": run_webui(e2e_config, seeded, "hash-seeding-seeded.log"),
        "by_hand": run_webui(e2e_config, by_hand, "hash-seeding-by-hand.log"),
    }


def test_a_verified_download_is_not_hashed_again_by_upstream(runs):
    log = runs["seeded"]["log"]
    assert CALCULATING not in log, log[-3000:]
    assert "Hash of checkpoint/tiny.safetensors from the launcher's verified download" in log, log[-3000:]


def test_a_file_placed_by_hand_is_hashed_by_upstream_as_before(runs):
    assert CALCULATING in runs["by_hand"]["log"], runs["by_hand"]["log"][-3000:]
    assert "from the launcher's verified download" not in runs["by_hand"]["log"]


def test_upstream_shows_the_same_values_with_and_without_seeding(runs):
    sha256 = runs["sha256"]
    seeded, by_hand = runs["seeded"], runs["by_hand"]
    for run in (seeded, by_hand):
        (model,) = [m for m in run["models"] if m["model_name"] == "tiny"]
        assert model["sha256"] == sha256, model
        assert model["title"] == f"tiny.safetensors [{sha256[:10]}]", model
        assert model_hash(run["infotext"]) == sha256[:10], run["infotext"]
    # Everything upstream reports but the files' paths (each user has their own data dir).
    strip = lambda models: [{k: v for k, v in m.items() if k not in ("filename", "config")} for m in models]  # noqa: E731
    assert strip(seeded["models"]) == strip(by_hand["models"])
    assert model_hash(seeded["infotext"]) == model_hash(by_hand["infotext"])


def test_a_seeded_file_changed_afterwards_is_hashed_again(runs, e2e_config):
    who = runs["seeded_user"]
    path = who["data"] / "models" / "Stable-diffusion" / "tiny.safetensors"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    run = run_webui(e2e_config, who, "hash-seeding-changed.log")
    assert CALCULATING in run["log"], run["log"][-3000:]
    assert "from the launcher's verified download" not in run["log"]
    (model,) = [m for m in run["models"] if m["model_name"] == "tiny"]
    assert model["sha256"] == runs["sha256"]
