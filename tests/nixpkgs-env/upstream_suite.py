"""Upstream's own test suite (the tree's test/) against a running webui, as upstream's CI runs it.

Upstream's .github/workflows/run_tests.yaml starts ``launch.py --skip-prepare-environment
--skip-torch-cuda-test --test-server --do-not-download-clip --no-half --disable-opt-split-attention
--use-cpu all --api-server-stop``, then runs ``python -m pytest -vv --verify-base-url test``
(pytest-base-url) and stops the server with ``POST /sdapi/v1/server-stop``. This does the same,
offline, with the tiny model (``--ckpt``), a private HOME and the data dir under a dot directory:

  upstream_suite.py --tests TREE/test --work DIR --ckpt MODEL [--report FILE] \\
      (--launcher BIN --root TREE --venv VENV | --launch-py TREE --venv VENV)

``--launcher``: the launcher serves the read-only ``--root`` (reached at its public address).
``--launch-py``: upstream's own launch.py in a temporary copy of that tree (upstream writes into its
tree), the reference. pytest runs with ``VENV/bin/python`` from a copy of ``--tests`` (the suite
writes test_outputs/), with PYTHONPATH = the served tree: test_torch_utils imports ``modules``, the
face-restorer tests ``import webui`` in the pytest process itself, given the server's data dir
(COMMANDLINE_ARGS=--data-dir ...; upstream's CI shares its tree) so that nothing is written into the
tree, which is checked (checksums) for ``--launcher``. That venv needs pytest and pytest-base-url
(upstream's requirements-test.txt).

  upstream_suite.py --table LABEL=REPORT ...     per-test outcomes of several reports side by side

Exit status: 0 when every test passed but those that need a download (OFFLINE: the face
restorers' weights; they fail on upstream's launch.py offline too) and the served tree is unchanged,
2 when the server did not start.
Only the standard library (and tests/e2e/e2e_harness.py).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import e2e_harness as h  # noqa: E402

# run_tests.yaml's server flags (launch.py's --skip-prepare-environment is added for --launch-py only),
# plus the tiny model and no download: the run is offline.
CI_FLAGS = [
    "--skip-torch-cuda-test",
    "--test-server",
    "--do-not-download-clip",
    "--no-half",
    "--disable-opt-split-attention",
    "--use-cpu",
    "all",
    "--api-server-stop",
    "--no-download-sd-model",
]
UPSTREAM_READY = re.compile(r"Startup time: ")
# Tests that cannot pass offline, on upstream's launch.py either: the face restorers download their
# weights at test time (into the tree's models/), and without them return the image unchanged.
OFFLINE = {
    "test_face_restorers::test_face_restorers[gfpgan]": "needs GFPGANv1.4.pth, downloaded at test time",
    "test_face_restorers::test_face_restorers[codeformer]": "needs codeformer-v0.1.0.pth, downloaded at test time",
}


def junit_outcomes(path: Path) -> dict[str, dict]:
    """pytest's junit XML as {test id: {"outcome": passed|failed|error|skipped, "message": ...}}."""
    tests = {}
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{module}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (node.get("message") or node.text or "").strip()
                break
        tests[name] = {"outcome": outcome, "message": message[:500]}
    return tests


def run(args: argparse.Namespace) -> int:
    work = Path(args.work).resolve()
    if work.exists():
        h.make_writable(work)
        shutil.rmtree(work)
    home = work / "home"
    data = home / ".local" / "share" / "stable-diffusion-webui"  # a dot directory on purpose
    for d in (data, work / "tmp", work / "hf-empty"):
        d.mkdir(parents=True)
    env = h.offline_env(home, tmpdir=work / "tmp", hf_home=work / "hf-empty", extra={"PYTHONUNBUFFERED": "1"})
    venv = Path(args.venv).absolute()
    port = h.free_port()
    flags = [*CI_FLAGS, "--ckpt", str(Path(args.ckpt).resolve())]
    if args.launcher:
        tree = Path(args.root).resolve()
        argv = [
            str(Path(args.launcher).absolute()),
            "--webui-root", str(tree),
            "--python-env", str(venv),
            "--data-dir", str(data),
            "--cache-dir", str(home / ".cache" / "stable-diffusion-webui"),
            "--port", str(port),
            *flags,
        ]  # fmt: skip
        server = h.Server(argv, env=env, cwd=work, log_path=work / "server.log")
    else:
        tree = work / "upstream-tree"
        h.copy_tree(Path(args.launch_py).resolve(), tree)
        argv = [venv / "bin" / "python", "launch.py", "--skip-prepare-environment", *flags]
        argv += ["--port", str(port), "--data-dir", str(data)]
        server = h.Server(argv, env=env, cwd=tree, log_path=work / "server.log", ready_re=UPSTREAM_READY)
    suite = work / "suite"
    shutil.copytree(Path(args.tests).resolve(), suite / "test", ignore=shutil.ignore_patterns("__pycache__"))
    base = f"http://127.0.0.1:{port}"
    report = {"server": [str(a) for a in argv], "tree": str(tree), "venv": str(venv), "base_url": base}
    report.update(tests={}, stop="not stopped through the API")
    print("server:", " ".join(report["server"]), flush=True)
    before = h.tree_digest(tree) if args.launcher else None
    server.start()
    try:
        try:
            server.wait_ready(args.ready_timeout)
        except AssertionError as error:
            print(f"upstream-suite: the server did not start: {error}", file=sys.stderr)
            return 2
        junit = work / "junit.xml"
        pytest = [
            str(venv / "bin" / "python"),
            "-m", "pytest", "-vv", "-rA", "-p", "no:cacheprovider",
            "--base-url", base, "--verify-base-url", f"--junitxml={junit}",
            "test",
        ]  # fmt: skip
        # `import webui` in pytest (the face-restorer tests) would take the tree as its data dir and
        # write there (cache/, models/GFPGAN, ...): the server's data dir, as upstream's CI shares its tree.
        pytest_env = {
            **env,
            "PYTHONPATH": str(tree),
            "COMMANDLINE_ARGS": f"--data-dir {shlex.quote(str(data))}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        print("pytest:", " ".join(pytest), f"(cwd {suite}, PYTHONPATH={tree})", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(pytest, cwd=suite, env=pytest_env, timeout=args.timeout).returncode
        report.update(pytest=pytest, pytest_rc=rc, seconds=round(time.monotonic() - t0, 1))
        if junit.is_file():
            report["tests"] = junit_outcomes(junit)
        # As run_tests.yaml's "Kill test server" step: the route that --api-server-stop adds.
        stop = h.http("POST", f"{base}/sdapi/v1/server-stop", timeout=30)
        try:
            server.proc.wait(h.seconds(60))
            report["stop"] = f"POST /sdapi/v1/server-stop: {stop.status}; exit {server.proc.returncode}"
        except subprocess.TimeoutExpired:
            code = server.stop()
            report["stop"] = f"POST /sdapi/v1/server-stop: {stop.status}, still running after 60 s; SIGINT: exit {code}"
    finally:
        if server.running():
            server.stop()
        server.kill()
        if not args.launcher:
            h.make_writable(tree)
            shutil.rmtree(tree, ignore_errors=True)
    counts = {}
    for result in report["tests"].values():
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
    report["counts"] = counts
    failed = [n for n, r in report["tests"].items() if r["outcome"] in ("failed", "error")]
    for name in failed:
        print(f"  {name}: {OFFLINE.get(name, 'FAILED')}: {report['tests'][name]['message'].splitlines()[0][:200]}")
    unexpected = [n for n in failed if n not in OFFLINE]
    report["tree_changes"] = h.digest_changes(before, h.tree_digest(tree)) if before is not None else []
    for change in report["tree_changes"]:
        print(f"upstream-suite: the served tree changed: {change}", flush=True)
    print(f"upstream-suite: {counts}; {len(unexpected)} failed that can pass offline; {report['stop']}", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    return 1 if unexpected or report["tree_changes"] or not report["tests"] or rc not in (0, 1) else 0


def table(specs: list[str]) -> int:
    """Markdown table: one row per test, one column per LABEL=REPORT."""
    reports = {}
    for spec in specs:
        label, _, path = spec.rpartition("=")
        reports[label or path] = json.loads(Path(path).read_text())
    names = sorted({name for r in reports.values() for name in r.get("tests", {})})
    print("| test | " + " | ".join(reports) + " |")
    print("|---|" + "---|" * len(reports))
    for name in names:
        cells = [r.get("tests", {}).get(name, {}).get("outcome", "-") for r in reports.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    totals = []
    for r in reports.values():
        totals.append(", ".join(f"{n} {k}" for k, n in sorted(r.get("counts", {}).items())) or "no result")
    print("| **total** | " + " | ".join(totals) + " |")
    for label, r in reports.items():
        for name, result in r.get("tests", {}).items():
            if result["outcome"] in ("failed", "error"):
                reason = OFFLINE.get(name) or result["message"].splitlines()[0][:300]
                print(f"- {label}: {name}: {reason}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", nargs="+", metavar="LABEL=REPORT", help="print the reports side by side and exit")
    ap.add_argument("--tests", help="upstream's test/ directory (only read: pytest runs in a copy)")
    ap.add_argument("--work", help="a scratch directory (emptied first)")
    ap.add_argument("--ckpt", help="the model (tests/support/tiny_model.py's tiny.safetensors)")
    ap.add_argument("--venv", help="the Python environment of the server and of pytest")
    ap.add_argument("--launcher", help="the launcher binary (with --root)")
    ap.add_argument("--root", help="the tree the launcher serves")
    ap.add_argument("--launch-py", metavar="TREE", help="run upstream's launch.py in a copy of TREE instead")
    ap.add_argument("--report", help="write the per-test outcomes here (JSON)")
    ap.add_argument("--ready-timeout", type=float, default=h.STARTUP_TIMEOUT)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the whole pytest run")
    args = ap.parse_args()
    if args.table:
        return table(args.table)
    if not (args.tests and args.work and args.ckpt and args.venv):
        ap.error("--tests, --work, --ckpt and --venv are required")
    if bool(args.launcher) == bool(args.launch_py) or bool(args.launcher) != bool(args.root):
        ap.error("either --launcher BIN --root TREE or --launch-py TREE")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
