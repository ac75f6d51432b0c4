"""Benchmark: a checkpoint's first load with upstream's hash cache seeded vs computed (issue #20).

    SD_WEBUI_TEST_ROOT=/path/to/webui SD_WEBUI_TEST_VENV=/path/to/venv \\
        python3 benches/hash_seeding.py [--gib 2] [--runs 2] [--work DIR]

One checkpoint of at least 2 GiB: the tiny test model plus an unused padding tensor (upstream
loads state dicts with ``strict=False``; the extra key is ignored). Two users of the launcher:

- **seeded**: the file came through ``models ensure`` (a loopback URL and its sha256), so the
  launcher verified it while it streamed and seeds upstream's cache at start;
- **computed**: the same file (a hard link) placed by hand: upstream hashes it at its first load,
  exactly as under its own ``launch.py`` (the launcher is otherwise at parity with it, see
  ``benches/e2e_vs_upstream.py``).

Each run starts from an empty upstream cache (``<data>/cache`` removed) and loads the checkpoint
at start. Measured: upstream's own "Model loaded in Xs (calculate hash: Ys, ...)" line, so the
time is from the load request to the loaded model. Two cache states: **cold** (page cache
dropped before each start: ``/proc/sys/vm/drop_caches``, root only; skipped, saying so, where
that is refused) and **warm** (the file just read). Printed: medians per arm and state, the
ratio seeded/computed, and the CPU seconds of hashing removed (the "calculate hash" part).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import e2e_harness as h  # noqa: E402

LOADED = re.compile(r"Model loaded in ([0-9.]+)s \((.*)\)\.")

PAD_SCRIPT = r"""
import sys
from safetensors.torch import load_file, save_file
import torch
tensors = load_file(sys.argv[1])
tensors["launcher_benchmark_padding"] = torch.zeros(int(sys.argv[3]), dtype=torch.uint8)
save_file(tensors, sys.argv[2])
"""


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def make_checkpoint(config: h.E2EConfig, work: Path, gib: float) -> Path:
    tiny_dir = work / "tiny"
    subprocess.run([str(config.python), str(REPO / "tests/support/tiny_model.py"), str(tiny_dir)], check=True)
    big = work / "big.safetensors"
    padding = int(gib * (1 << 30))
    subprocess.run(
        [str(config.python), "-c", PAD_SCRIPT, str(tiny_dir / "tiny.safetensors"), str(big), str(padding)], check=True
    )
    shutil.copy2(tiny_dir / "tiny.yaml", work / "big.yaml")
    return big


def ensure_through_launcher(config: h.E2EConfig, big: Path, sha256: str, data: Path, home: Path) -> None:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(big.parent), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{big.name}"
        declared = home.parent / "models.json"
        declared.write_text(json.dumps([{"url": url, "sha256": sha256, "folder": "Stable-diffusion"}]))
        env = h.offline_env(home, tmpdir=home.parent, hf_home=home.parent / "hf")
        env["NO_PROXY"] = "127.0.0.1"
        subprocess.run(
            [str(config.launcher), "models", "ensure", "--from", str(declared), "--data-dir", str(data)],
            env=env,
            check=True,
            capture_output=True,
        )
    finally:
        server.shutdown()


def load_once(config: h.E2EConfig, home: Path, data: Path, cold: bool) -> tuple[float, float]:
    """Start, wait for the checkpoint, stop: (upstream's load seconds, its 'calculate hash' part)."""
    shutil.rmtree(data / "cache", ignore_errors=True)  # upstream's diskcache: hashes start empty
    if cold:
        drop_caches()
    port = h.free_port()
    env = h.offline_env(home, tmpdir=home.parent, hf_home=home.parent / "hf")
    argv = h.launcher_argv(
        config,
        data_dir=data,
        cache_dir=home / ".cache" / "sd",
        port=port,
        webui_args=["--skip-version-check", "--ckpt", "big.safetensors"],
    )
    server = h.Server(argv, env=env, cwd=home.parent, log_path=h.artifacts_dir() / "hash-seeding-bench.log").start()
    try:
        server.wait_ready()
        line = server.wait_for_line("Model loaded in", 900)
    finally:
        server.stop()
    match = LOADED.search(line)
    if match is None:
        raise SystemExit(f"unexpected line: {line}")
    parts = dict(re.findall(r"([a-z ]+): ([0-9.]+)s", match.group(2)))
    return float(match.group(1)), float(parts.get("calculate hash", 0.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the padding tensor in GiB")
    parser.add_argument("--runs", type=int, default=2, help="runs per arm and cache state")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    config = h.find_config()
    if isinstance(config, str):
        raise SystemExit(config)
    work = args.work or Path(tempfile.mkdtemp(prefix="hash-seeding-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    big = make_checkpoint(config, work, args.gib)
    started = time.process_time()
    sha256 = hashlib.sha256(big.read_bytes()).hexdigest()
    print(f"checkpoint: {big} ({big.stat().st_size / (1 << 30):.2f} GiB), sha256 {sha256[:16]}...")
    print(f"sha256 of it in this process (warm): {time.process_time() - started:.2f} CPU s")

    users = {}
    for arm in ("seeded", "computed"):
        home = work / arm / "home"
        data = home / ".local" / "share" / "stable-diffusion-webui"
        (data / "models" / "Stable-diffusion").mkdir(parents=True, exist_ok=True)
        users[arm] = (home, data)
    ensure_through_launcher(config, big, sha256, users["seeded"][1], users["seeded"][0])
    seeded_file = users["seeded"][1] / "models" / "Stable-diffusion" / big.name
    for arm, (_, data) in users.items():
        target = data / "models" / "Stable-diffusion"
        shutil.copy2(work / "big.yaml", target / "big.yaml")
        if arm == "computed" and not (target / big.name).exists():
            os.link(seeded_file, target / big.name)  # the same bytes, placed by hand (no record)

    states = ["warm"]
    if drop_caches():
        states.insert(0, "cold")
    else:
        print("cold: not measured (dropping the page cache was refused here; run as root on a VM)")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for state in states:
        for _ in range(args.runs):
            for arm, (home, data) in users.items():
                results.setdefault((arm, state), []).append(load_once(config, home, data, state == "cold"))
    print(f"\n{'state':<6} {'arm':<9} {'load s (median)':>16} {'of which hashing s':>19}")
    for state in states:
        for arm in users:
            runs = results[(arm, state)]
            print(
                f"{state:<6} {arm:<9} {statistics.median(r[0] for r in runs):>16.2f} "
                f"{statistics.median(r[1] for r in runs):>19.2f}"
            )
        seeded = statistics.median(r[0] for r in results[("seeded", state)])
        computed = statistics.median(r[0] for r in results[("computed", state)])
        print(f"{state}: seeded / computed = {seeded / computed:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
