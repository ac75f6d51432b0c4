#!/usr/bin/env python3
"""Benchmark: the launcher against upstream's own launch.py, same machine, same run, same environment.

Measures, for each side, with the tiny random-weights SD1 model (tests/support/tiny_model.py) on the CPU:

* startup: seconds from process start to the first HTTP 200 on /sdapi/v1/options (median of --starts runs);
* txt2img: seconds per 64x64, 3-step image through /sdapi/v1/txt2img (median of --images per run, all runs pooled);
* resident memory (the process and its children) at the first 200, and after the txt2img series.

Upstream baseline: ``python launch.py --skip-prepare-environment --skip-torch-cuda-test --no-half --use-cpu all
--api --port P --data-dir D --ckpt <tiny> --no-download-sd-model`` with cwd = a copy of the tree in a temporary
dir (upstream writes into its tree; the copy is deleted afterwards). Ours: the launcher with the same upstream
flags (``--port``/``--data-dir`` are launcher flags with upstream's meaning), running the tree as given.

Readiness: no request is sent before the server says it is ready (upstream crashes when a request beats its
app-started point): upstream's ``Startup time:`` line, the launcher's ``webui ready at`` line; then
/sdapi/v1/options is polled every 50 ms until it answers 200.

Fairness: both get the same environment (HOME, TMPDIR, an empty HF_HOME, HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE,
PYTHONDONTWRITEBYTECODE as inherited). Each side first runs once untimed, so that bytecode (when written at all),
matplotlib's font cache and the page cache are warm for both; the timed runs then alternate sides. Every run
gets a fresh data dir (both compute the model hash once per run); the launcher keeps one cache dir.

Usage (with the upstream environment's Python):

    SD_WEBUI_TEST_ROOT=/path/to/webui SD_WEBUI_TEST_VENV=/path/to/venv \\
        /path/to/venv/bin/python benches/e2e_vs_upstream.py [--starts 3] [--images 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import e2e_harness as h  # noqa: E402

UPSTREAM_READY = re.compile(r"Startup time: ")
PAYLOAD = {**h.TXT2IMG, "save_images": False}


def upstream_flags(ckpt: Path) -> list[str]:
    return [
        "--skip-prepare-environment",
        "--skip-torch-cuda-test",
        "--no-half",
        "--use-cpu",
        "all",
        "--api",
        "--ckpt",
        str(ckpt),
        "--no-download-sd-model",
    ]


def first_200(url: str, deadline: float) -> float:
    while time.monotonic() < deadline:
        try:
            if h.http("GET", url + "sdapi/v1/options", timeout=10).status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}sdapi/v1/options never answered 200")


def one_run(side: str, index: int, ctx: argparse.Namespace, images: int) -> dict:
    port = h.free_port()
    data = ctx.base / "data" / f"{side}-{index}"
    flags = upstream_flags(ctx.model["checkpoint"])
    log = ctx.logs / f"bench-{side}-{index}.log"
    if side == "upstream":
        argv = [str(ctx.config.python), "launch.py", *flags, "--port", str(port), "--data-dir", str(data)]
        server = h.Server(argv, env=ctx.env, cwd=ctx.tree_copy, log_path=log, ready_re=UPSTREAM_READY)
    else:
        argv = h.launcher_argv(ctx.config, data_dir=data, cache_dir=ctx.cache, port=port, webui_args=flags)
        server = h.Server(argv, env=ctx.env, cwd=ctx.base, log_path=log)
    url = f"http://127.0.0.1:{port}/"
    server.start()
    try:
        server.wait_ready(h.STARTUP_TIMEOUT)
        ready = first_200(url, time.monotonic() + h.seconds(120))
        startup = ready - server.started_at
        rss_ready = server.rss_bytes()
        times = []
        for i in range(images + 1):  # the first request waits for the model load: untimed
            t0 = time.perf_counter()
            response = h.http("POST", url + "sdapi/v1/txt2img", json_body=PAYLOAD)
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                raise RuntimeError(f"{side}: txt2img -> {response.status}: {response.text(1000)}")
            if i:
                times.append(elapsed)
        rss_after = server.rss_bytes()
    finally:
        rc = server.stop() if server.running() else server.returncode
        server.kill()
    return {
        "side": side,
        "run": index,
        "startup_s": startup,
        "txt2img_s": times,
        "rss_ready_bytes": rss_ready,
        "rss_after_bytes": rss_after,
        "exit_status": rc,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="timed startups per side (default 3)")
    parser.add_argument("--images", type=int, default=5, help="timed txt2img requests per run (default 5)")
    parser.add_argument("--json", type=Path, help="also write all samples to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (logs, data dirs)")
    parser.add_argument(
        "--write-bytecode",
        action="store_true",
        help="unset PYTHONDONTWRITEBYTECODE for both sides (upstream then writes __pycache__ into its tree copy "
        "and wherever the environment lacks it; the launcher into its cache dir)",
    )
    args = parser.parse_args(argv)
    if args.starts < 1 or args.images < 1:
        parser.error("--starts and --images must be at least 1")

    config = h.find_config()
    if isinstance(config, str):
        print(f"cannot run: {config}", file=sys.stderr)
        return 2

    base = Path(tempfile.mkdtemp(prefix="sdw-bench-"))
    ctx = argparse.Namespace(config=config, base=base, logs=h.artifacts_dir())
    try:
        home = base / "home"
        for d in (home, base / "tmp", base / "hf-empty"):
            d.mkdir(parents=True)
        ctx.env = h.offline_env(home, tmpdir=base / "tmp", hf_home=base / "hf-empty")
        if args.write_bytecode:
            ctx.env.pop("PYTHONDONTWRITEBYTECODE", None)
        ctx.cache = home / ".cache" / "stable-diffusion-webui"
        ctx.model = h.import_tiny_model().generate(base / "model")
        ctx.tree_copy = base / "upstream-tree"
        h.copy_tree(config.root, ctx.tree_copy)
        tree_before = h.tree_digest(config.root)

        print(f"launcher  {config.launcher}", flush=True)
        print(f"upstream  {config.root} (launch.py runs in a copy: {ctx.tree_copy})", flush=True)
        print(f"python    {config.python}", flush=True)
        print(f"PYTHONDONTWRITEBYTECODE={ctx.env.get('PYTHONDONTWRITEBYTECODE', '<unset>')} (both sides)", flush=True)
        print(f"load average before: {os.getloadavg()}", flush=True)

        results = []
        for side in ("upstream", "launcher"):
            print(f"warm-up run ({side}, untimed) ...", flush=True)
            results.append({**one_run(side, 0, ctx, 1), "warmup": True})
        pycache_upstream = sum(1 for _ in ctx.tree_copy.rglob("__pycache__"))
        pycache_ours = (ctx.cache / "pycache").is_dir()
        print(
            f"bytecode after warm-up: upstream tree copy has {pycache_upstream} __pycache__ dirs; "
            f"launcher cache {'has' if pycache_ours else 'has no'} pycache/",
            flush=True,
        )
        for index in range(1, args.starts + 1):
            for side in ("launcher", "upstream") if index % 2 else ("upstream", "launcher"):
                print(f"timed run {index}/{args.starts} ({side}) ...", flush=True)
                result = one_run(side, index, ctx, args.images)
                results.append(result)
                print(
                    f"  startup {result['startup_s']:.2f} s, txt2img median {median(result['txt2img_s']):.3f} s, "
                    f"RSS {result['rss_ready_bytes'] / 2**20:.0f} / {result['rss_after_bytes'] / 2**20:.0f} MiB, "
                    f"exit {result['exit_status']}",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()}", flush=True)
        changes = h.digest_changes(tree_before, h.tree_digest(config.root))
        if changes:
            print("WARNING: the upstream tree changed:\n" + "\n".join(changes), flush=True)

        timed = [r for r in results if not r.get("warmup")]

        def pick(side, key):
            return [r[key] for r in timed if r["side"] == side]

        rows = []
        for label, key, scale, fmt in [
            ("startup to first 200 (s), median", "startup_s", 1, "{:.2f}"),
            ("txt2img 64x64 s/image, median", "txt2img_s", 1, "{:.3f}"),
            ("RSS at first 200 (MiB), median", "rss_ready_bytes", 2**20, "{:.0f}"),
            ("RSS after txt2img (MiB), median", "rss_after_bytes", 2**20, "{:.0f}"),
        ]:
            values = {}
            for side in ("launcher", "upstream"):
                samples = pick(side, key)
                if key == "txt2img_s":
                    samples = [t for run in samples for t in run]
                values[side] = median([s / scale for s in samples])
            rows.append(
                (
                    label,
                    fmt.format(values["launcher"]),
                    fmt.format(values["upstream"]),
                    f"{values['launcher'] / values['upstream']:.2f}",
                )
            )
        width = max(len(r[0]) for r in rows)
        print()
        print(f"{'metric':<{width}}  {'launcher':>9}  {'upstream':>9}  ratio (launcher/upstream)")
        for label, ours, theirs, ratio in rows:
            print(f"{label:<{width}}  {ours:>9}  {theirs:>9}  {ratio}")
        print(f"(startups per side: {args.starts}; timed images per side: {args.starts * args.images})")
        for side in ("launcher", "upstream"):
            print(f"{side} startups: " + ", ".join(f"{s:.2f}" for s in pick(side, "startup_s")))
        if args.json:
            args.json.write_text(json.dumps({"results": results, "table": rows}, indent=2))
        return 0
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
