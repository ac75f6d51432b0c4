#!/usr/bin/env python3
"""Extension compatibility corpus: real extensions, installed as users install them, in three arms.

It is a command, not a test. For every extension of the list file (``extensions_corpus.txt`` next
to this file; ``take`` rows) whose checkout is in ``$SD_COMPAT_CORPUS/<name>``, it copies the
checkout into ``<data>/extensions/<name>`` and runs the webui once per arm:

* ``upstream``: upstream's own ``launch.py`` in a writable copy of the tree, cwd = that copy, the
  data dir outside any dot directory. Before ``start()`` it runs upstream's own
  ``run_extensions_installers`` (``prepare_environment`` would also clone ``repositories/``, which
  is offline here), so ``install.py`` pip-installs from PyPI into the row's **layer**: a venv
  whose ``.pth`` adds the upstream environment (``SD_WEBUI_TEST_VENV``) behind it, so nothing is
  installed into that environment (pip refuses to uninstall outside its prefix).
* ``pinned``: the launcher (``SD_WEBUI_LAUNCHER``, Python 3.11) with the tree read-only, the data
  dir under ``~/.local/share``, and the same layer as ``--python-env`` (the packages the upstream
  arm installed, as ``extraPythonPackages`` would give them). With ``SD_COMPAT_UID`` (root and
  ``setpriv`` needed) it runs as that uid, with a uid-readable copy of the layer on
  ``/usr/bin/python3.11``, so the kernel refuses every write outside the data, cache and temp
  dirs; otherwise as root, and the tree checksum before and after is the evidence.
* ``flake``: the launcher built on the flake's Python set (``SD_COMPAT_FLAKE_LAUNCHER``,
  ``SD_COMPAT_FLAKE_ROOT`` the patched tree, ``SD_COMPAT_FLAKE_VENV``), with a layer where the
  packages the upstream arm installed are pip-installed by name, constrained to the set's own
  versions.

Each arm also runs once without any extension (row ``_baseline``), for the ``/openapi.json`` diff.
Per run it records: tracebacks / "Error loading script" blocks; what ``install.py`` asked for
(upstream: pip's "Installing" lines; ours: the launcher's one message); writes outside the data,
cache and temp dirs (tree checksum, and for the upstream arm the changes in its tree copy); every
``<script src>``, ``<link href>`` and ``file=`` URL of ``GET /`` and its status; every API route
the extension adds (``/openapi.json`` minus the baseline's) and its status (GET, or POST ``{}``).

Results are cached in ``$SD_COMPAT_WORK/results/<name>/<arm>.json`` (keyed by the checkout's
revision; ``--rerun`` ignores the cache), so the command is resumable: add rows to the list file
and run it again. ``--render`` only rewrites the table from the cache.

    SD_COMPAT_CORPUS=/work/upstream/corpus SD_WEBUI_TEST_ROOT=... SD_WEBUI_TEST_VENV=... \\
    SD_WEBUI_LAUNCHER=... SD_WEBUI_SHIM_DIR=.../python \\
    SD_COMPAT_FLAKE_ROOT=... SD_COMPAT_FLAKE_VENV=... SD_COMPAT_FLAKE_LAUNCHER=... \\
        python3 tests/compat/extensions_compat.py [--only NAME ...] [--arms upstream,pinned,flake]
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import e2e_harness as h  # noqa: E402

HERE = Path(__file__).resolve().parent
LIST_FILE = HERE / "extensions_corpus.txt"
DOC = REPO / "docs" / "extensions-compatibility.md"
ARMS = ("upstream", "pinned", "flake")
UPSTREAM_READY = re.compile(r"Startup time: ")
BASELINE = "_baseline"
ROWS = 20  # the table: the first 20 extensions, by stars, that load under upstream's launch.py
UPSTREAM_FLAGS = ["--skip-torch-cuda-test", "--no-half", "--use-cpu", "all", "--api", "--no-download-sd-model"]
UPSTREAM_BOOT = (
    "import launch; launch.launch_utils.run_extensions_installers(launch.args.ui_settings_file); launch.main()"
)


def env_path(name: str, default: str | None = None) -> Path | None:
    value = os.environ.get(name) or default
    return Path(value) if value else None


class Ctx:
    def __init__(self, args: argparse.Namespace) -> None:
        self.corpus = env_path("SD_COMPAT_CORPUS")
        self.root = env_path("SD_WEBUI_TEST_ROOT")
        self.venv = env_path("SD_WEBUI_TEST_VENV")
        self.launcher = env_path("SD_WEBUI_LAUNCHER") or h.default_launcher()
        self.shim = env_path("SD_WEBUI_SHIM_DIR", str(REPO / "python"))
        self.flake_root = env_path("SD_COMPAT_FLAKE_ROOT")
        self.flake_venv = env_path("SD_COMPAT_FLAKE_VENV")
        self.flake_launcher = env_path("SD_COMPAT_FLAKE_LAUNCHER")
        self.flake_shim = env_path("SD_COMPAT_FLAKE_SHIM_DIR", str(self.shim))
        self.work = env_path("SD_COMPAT_WORK", str(REPO / "target" / "compat"))
        self.uid = int(os.environ["SD_COMPAT_UID"]) if os.environ.get("SD_COMPAT_UID") else None
        self.args = args
        missing = [
            n
            for n, v in (
                ("SD_COMPAT_CORPUS", self.corpus),
                ("SD_WEBUI_TEST_ROOT", self.root),
                ("SD_WEBUI_TEST_VENV", self.venv),
                ("SD_WEBUI_LAUNCHER", self.launcher),
            )
            if v is None
        ]
        if missing and not args.render:
            sys.exit(f"set {', '.join(missing)}")
        self.pyver = "python3.11"

    def site(self, venv: Path, pyver: str | None = None) -> Path:
        return venv / "lib" / (pyver or self.pyver) / "site-packages"


# --------------------------------------------------------------------------- list file and cache


def read_list() -> list[dict]:
    rows = []
    for line in LIST_FILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 4)
        rows.append(
            {
                "name": parts[0],
                "repo": parts[1],
                "stars": int(parts[2]),
                "status": parts[3],
                "reason": parts[4] if len(parts) > 4 else "",
            }
        )
    return rows


def result_path(ctx: Ctx, name: str, arm: str) -> Path:
    return ctx.work / "results" / name / f"{arm}.json"


def revision(ctx: Ctx, name: str) -> str:
    if name == BASELINE:
        return "-"
    rev = ctx.corpus / f"{name}.rev" if ctx.corpus else None
    return rev.read_text().strip() if rev and rev.is_file() else "?"


def cached(ctx: Ctx, name: str, arm: str) -> dict | None:
    path = result_path(ctx, name, arm)
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if ctx.corpus and result.get("rev") != revision(ctx, name):
        return None
    return result


# --------------------------------------------------------------------------- environments


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], text=True, capture_output=True, **kw)


def make_layer(base_python: Path, base_site: Path, layer: Path, pyver: str) -> Path:
    """A venv over an environment: its .pth adds the environment's site-packages (and runs its .pth)."""
    if not (layer / "pyvenv.cfg").is_file():
        run([base_python, "-m", "venv", "--without-pip", layer]).check_returncode()
        site = layer / "lib" / pyver / "site-packages"
        (site / "_compat_base.pth").write_text(f"import site; site.addsitedir({str(base_site)!r})\n")
    return layer


def base_interpreter(venv: Path) -> Path:
    cfg = dict(line.split("=", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if "=" in line)
    cfg = {k.strip(): v.strip() for k, v in cfg.items()}
    return Path(cfg.get("executable") or Path(cfg["home"]) / "python3")


def layer_packages(layer: Path, pyver: str) -> list[str]:
    site = layer / "lib" / pyver / "site-packages"
    names = []
    for dist in sorted(site.glob("*.dist-info")):
        meta = dist / "METADATA"
        if meta.is_file():
            for line in meta.read_text(errors="replace").splitlines():
                if line.startswith("Name:"):
                    names.append(line.split(":", 1)[1].strip())
                elif line.startswith("Version:"):
                    names[-1] += "==" + line.split(":", 1)[1].strip()
                    break
    return names


def uid_layer(ctx: Ctx, layer: Path, target: Path) -> Path:
    """The layer, readable by an unprivileged uid: /usr/bin/python3.11 and a copy of its site-packages."""
    if target.exists():
        shutil.rmtree(target)
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python3").symlink_to("/usr/bin/python3.11")
    shutil.copytree(ctx.site(layer), ctx.site(target), symlinks=True)
    (target / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return target


# --------------------------------------------------------------------------- one run


class PageRefs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and "stylesheet" in (attrs.get("rel") or ""):
            self.urls.append(attrs["href"])


EXC_RE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
FILE_RE = re.compile(r"""["'(]((?:\./)?file=[^"')\s]+)""")


def page_urls(base: str, body: str) -> list[str]:
    parser = PageRefs()
    parser.feed(body)
    urls = parser.urls + FILE_RE.findall(body)
    out = []
    for url in urls:
        full = urllib.parse.urljoin(base + "/", url.replace("&amp;", "&"))
        if full.startswith(base) and full not in out:
            out.append(full)
    return out


def tracebacks(lines: list[str]) -> list[str]:
    """Each traceback / error report: its first line and its last non-indented line."""
    found = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if (
            "Traceback (most recent call last)" in line
            or "Error loading script" in line
            or line.startswith("*** Error")
        ):
            start = i
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t", "***")) or "Traceback" in lines[j]):
                j += 1
            end = j + 1 if j < len(lines) and EXC_RE.match(lines[j]) else j
            tail = [
                ln for ln in lines[i + 1 : end] if ln.strip("* ") and not ln.strip("* ").startswith(("File ", "^", "~"))
            ]
            last = tail[-1] if tail else ""
            head = lines[start].strip()
            found.append(f"{head} … {last.strip()}"[:400])
            i = j + 1
        else:
            i += 1
    return found


def install_lines(lines: list[str], name: str) -> list[str]:
    keys = ("Installing ", "Couldn't install", "extraPythonPackages", "install.py", "python-overlay")
    return [ln.strip()[:400] for ln in lines if any(k in ln for k in keys)][:12]


def api_routes(base: str) -> dict[str, list[str]]:
    reply = h.http("GET", base + "/openapi.json", timeout=60)
    if reply.status != 200:
        return {}
    return {path: sorted(methods) for path, methods in reply.json().get("paths", {}).items()}


def probe_route(base: str, path: str, methods: list[str]) -> int:
    if "{" in path:
        return -1  # path parameters: not probed
    try:
        if "get" in methods:
            return h.http("GET", base + path, timeout=60).status
        if "post" in methods:
            return h.http("POST", base + path, json_body={}, timeout=60).status
    except OSError:
        return -2
    return -1


def writes_outside(home: Path, allowed: list[Path]) -> list[str]:
    out = []
    for path in sorted(home.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        if any(path == a or a in path.parents for a in allowed):
            continue
        out.append(str(path.relative_to(home)))
    return out[:20]


def one_run(ctx: Ctx, name: str, arm: str, baseline_routes: dict | None) -> dict:
    run_dir = ctx.work / "runs" / name / arm
    if run_dir.exists():
        h.make_writable(run_dir) if run_dir.is_dir() else None
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    home = run_dir / "home"
    tmp = run_dir / "tmp"
    hf = run_dir / "hf"
    for d in (home, tmp, hf):
        d.mkdir()
    model = ctx.work / "model" / "tiny.safetensors"
    port = h.free_port()
    result: dict = {"name": name, "arm": arm, "rev": revision(ctx, name), "when": time.strftime("%Y-%m-%d %H:%M")}
    layer = ctx.work / "envs" / name
    layer = make_layer(base_interpreter(ctx.venv), ctx.site(ctx.venv), layer, ctx.pyver)
    prefix: list[str] = []
    if arm == "upstream":
        tree = run_dir / "tree"
        h.copy_tree(ctx.root, tree)
        data = run_dir / "sd-data"  # not under a dot directory
        cache = None
        watched = tree
        env = h.offline_env(home, tmpdir=tmp, hf_home=hf)
        argv = [layer / "bin" / "python3", "-c", UPSTREAM_BOOT, "--skip-prepare-environment", *UPSTREAM_FLAGS]
        argv += ["--ckpt", model]
        argv += ["--skip-version-check", "--port", port, "--data-dir", data]
        cwd, ready = tree, UPSTREAM_READY
    else:
        data = home / ".local" / "share" / "stable-diffusion-webui"
        cache = home / ".cache" / "stable-diffusion-webui"
        if arm == "pinned":
            root, launcher, shim, venv = ctx.root, ctx.launcher, ctx.shim, layer
            if ctx.uid is not None:
                venv = uid_layer(ctx, layer, ctx.work / "envs-uid" / name)
                prefix = ["setpriv", f"--reuid={ctx.uid}", f"--regid={ctx.uid}", "--clear-groups", "--"]
        else:
            root, launcher, shim = ctx.flake_root, ctx.flake_launcher, ctx.flake_shim
            venv = flake_layer(ctx, name, layer)
        watched = root
        env = h.offline_env(home, tmpdir=tmp, hf_home=hf, extra={"SD_WEBUI_SHIM_DIR": str(shim)})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        argv = [
            *prefix,
            launcher,
            "--webui-root",
            root,
            "--python-env",
            venv,
            "--data-dir",
            data,
            "--cache-dir",
            cache,
            "--port",
            port,
            *UPSTREAM_FLAGS,
            "--skip-version-check",
            "--ckpt",
            model,
        ]
        cwd, ready = run_dir, h.READY_RE
    if name != BASELINE:
        shutil.copytree(ctx.corpus / name, data / "extensions" / name, symlinks=True)
    else:
        data.mkdir(parents=True)
    if prefix:
        run(["chown", "-R", f"{ctx.uid}:{ctx.uid}", run_dir]).check_returncode()
    site_before = sorted(p.name for p in ctx.site(layer).iterdir())
    before = h.tree_digest(watched) if arm != "upstream" else h.tree_digest(watched)
    log = ctx.work / "logs" / f"{name}.{arm}.log"
    server = h.Server([str(a) for a in argv], env=env, cwd=cwd, log_path=log, ready_re=ready)
    mark = None
    started = time.monotonic()
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            server.wait_ready(400)
            result["ready"] = True
            result["startup_s"] = round(time.monotonic() - started, 1)
        except AssertionError as error:
            result["ready"] = False
            result["fatal"] = str(error).splitlines()[0][:300]
        if result["ready"]:
            try:
                server.wait_for_line(r"Model loaded in|Failed to load checkpoint", 120)
            except AssertionError:
                pass
            mark = len(server.lines)  # what follows is our probing: its tracebacks are not load errors
            page = h.http("GET", base + "/", timeout=120)
            result["page_status"] = page.status
            statuses = {}
            for url in page_urls(base, page.body.decode("utf-8", "replace")):
                try:
                    statuses[url[len(base) :]] = h.http("GET", url, timeout=60).status
                except OSError as error:
                    statuses[url[len(base) :]] = str(error)
            result["urls"] = statuses
            # Files the extension wrote under the webui's root while loading under upstream, fetched
            # the way its JavaScript does: `file=<path relative to the root>`.
            if arm == "upstream":
                written = [
                    c[len("added ") : -len(" (file)")]
                    for c in h.digest_changes(before, h.tree_digest(watched), 400)
                    if c.startswith("added ") and c.endswith("(file)") and "__pycache__" not in c
                ]
                relative = [w for w in written if not w.startswith(("config_states/", "outputs/", "log/"))][:20]
            else:
                relative = (cached(ctx, name, "upstream") or {}).get("relative_files", [])
            result["relative_files"] = relative
            result["relative_status"] = {r: h.http("GET", f"{base}/file={r}", timeout=60).status for r in relative}
            routes = api_routes(base)
            result["routes_all"] = routes
            if baseline_routes is not None:
                added = {p: m for p, m in routes.items() if p not in baseline_routes}
                result["routes"] = {p: probe_route(base, p, m) for p, m in sorted(added.items())}
    finally:
        rc = server.stop() if server.running() else server.returncode
        server.kill()
    result["exit"] = rc
    lines = server.lines
    if mark is None:
        mark = len(lines)
    result["tracebacks"] = tracebacks(lines[:mark])
    result["probe_errors"] = len(tracebacks(lines[mark:]))
    result["install"] = install_lines(lines, name)
    result["tree_changes"] = [
        c for c in h.digest_changes(before, h.tree_digest(watched), 400) if "__pycache__" not in c
    ][:25]
    site_after = sorted(p.name for p in ctx.site(layer).iterdir())
    result["layer_added"] = sorted(set(site_after) - set(site_before))[:40]
    allowed = [data, tmp, hf] + ([cache] if cache else [])
    result["home_writes"] = writes_outside(home, allowed) if arm != "upstream" else []
    result["uid"] = ctx.uid if prefix else 0
    h.make_writable(run_dir)
    if not ctx.args.keep:
        shutil.rmtree(run_dir / "tree", ignore_errors=True)
    return result


def message_check(ctx: Ctx, name: str) -> dict:
    """The launcher's one message for what install.py asks, on the environment without the row's packages.

    `extensions check NAME` runs install.py as the launcher does at start. The environment is a
    fresh, empty layer over the upstream environment: an install.py that starts pip itself (not
    through launch.run_pip) installs there, and that shows here as packages added to the layer.
    """
    work = ctx.work / "runs" / name / "message"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    shutil.copytree(ctx.corpus / name, data / "extensions" / name, symlinks=True)
    bare = ctx.work / "envs-bare" / name
    shutil.rmtree(bare, ignore_errors=True)
    make_layer(base_interpreter(ctx.venv), ctx.site(ctx.venv), bare, ctx.pyver)
    before = {p.name for p in ctx.site(bare).iterdir()}
    env = h.offline_env(work, tmpdir=work, hf_home=work / "hf", extra={"SD_WEBUI_SHIM_DIR": str(ctx.shim)})
    argv = [ctx.launcher, "extensions", "check", name, "--webui-root", ctx.root, "--python-env", bare]
    argv += ["--data-dir", data, "--cache-dir", work / "cache"]
    try:
        out = run(argv, env=env, timeout=900)
        text, rc = ANSI.sub("", out.stdout + out.stderr), out.returncode
    except subprocess.TimeoutExpired:
        text, rc = "timeout", -1
    added = sorted({p.name for p in ctx.site(bare).iterdir()} - before)
    return {"rc": rc, "output": text[-3000:], "pip_ran_into_env": [a for a in added if a.endswith(".dist-info")]}


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def flake_layer(ctx: Ctx, name: str, upstream_layer: Path) -> Path:
    """A layer over the flake's set holding, by name, what the upstream arm pip-installed."""
    pyver = next(p.name for p in (ctx.flake_venv / "lib").iterdir() if p.name.startswith("python3"))
    layer = make_layer(
        base_interpreter(ctx.flake_venv), ctx.site(ctx.flake_venv, pyver), ctx.work / "envs-flake" / name, pyver
    )
    wanted = layer_packages(upstream_layer, ctx.pyver)
    marker = layer / "installed.json"
    if wanted and not marker.is_file():
        # By name, without dependencies (the upstream arm's layer already lists them all), and only
        # what the set lacks: pip never replaces one of the set's own packages, and never backtracks.
        have = run([ctx.flake_venv / "bin" / "python3", "-m", "pip", "list", "--format=freeze"]).stdout
        present = {line.split("==")[0].lower().replace("_", "-") for line in have.splitlines()}
        lacking = [n for n in wanted if n.split("==")[0].lower().replace("_", "-") not in present]
        pip = [layer / "bin" / "python3", "-m", "pip", "install", "--no-deps", "--prefer-binary"]
        failed = []
        try:
            if run([*pip, *lacking], timeout=600).returncode:
                # One by one: the upstream arm's version, else the newest with a wheel for this Python.
                for req in lacking:
                    if run([*pip, req], timeout=300).returncode:
                        failed.append(req)
                        run([*pip, req.split("==")[0]], timeout=300)
        except subprocess.TimeoutExpired:
            failed.append("timeout")
        marker.write_text(json.dumps({"wanted": wanted, "lacking": lacking, "not_at_upstream_version": failed}))
    return layer


# --------------------------------------------------------------------------- table


def short_error(block: str) -> str:
    head, _, last = block.partition(" … ")
    last = last.lstrip("* ").strip()
    if "Error running install.py" in head:
        return "install.py fails: " + last
    match = re.search(r"Error loading script: (\S+)", head)
    if match:
        return f"script {match.group(1)}: {last}"
    match = re.search(r"Error executing callback (\w+) for \S*/extensions/[^/]+/(\S+)", head)
    if match:
        return f"{match.group(1)} of {match.group(2)}: {last}"
    return last or head


def verdict(result: dict | None, baseline: dict | None) -> tuple[str, str, str, str]:
    """(loads, files, writes, api) cells."""
    if result is None:
        return ("–", "–", "–", "–")
    if not result.get("ready"):
        why = short_error(result["tracebacks"][-1]) if result.get("tracebacks") else result.get("fatal", "")
        return ("no: does not start: " + why[:200], "–", "–", "–")
    base_tb = set(baseline.get("tracebacks", [])) if baseline else set()
    own = [t for t in result.get("tracebacks", []) if t not in base_tb]
    loads = "yes" if not own else "no: " + "; ".join(short_error(t) for t in own)[:300]
    bad = {u: s for u, s in result.get("urls", {}).items() if s != 200}
    files = (
        f"{len(result.get('urls', {}))}/200"
        if not bad
        else "no: " + ", ".join(f"{u} {s}" for u, s in bad.items())[:300]
    )
    changes = result.get("tree_changes", [])
    home = result.get("home_writes", [])
    if result["arm"] == "upstream":
        writes = f"{len(changes)} in its tree copy" if changes else "none"
    else:
        # ~/.cache/<tool> (numba, onnxruntime, ...) is the user's cache dir: third-party caches, not the tree.
        user_cache = sorted({"/".join(p.split("/")[:2]) for p in home if p.startswith(".cache/")})
        other = [p for p in home if not p.startswith(".cache/")]
        writes = "none" if not changes and not other else "YES: " + ", ".join(changes + other)[:300]
        if writes == "none" and user_cache:
            writes = "none (user cache: " + ", ".join(f"~/{c}" for c in user_cache) + ")"
    routes = result.get("routes") or {}
    api = ", ".join(f"{p} {s}" for p, s in routes.items())[:300] if routes else "none added"
    return loads, files, writes, api


def cell(result: dict | None, baseline: dict | None, message: dict | None = None) -> str:
    """One arm's cell, short: loads / files / writes / API."""
    if result is None:
        return "not run"
    loads, _files, writes, _api = verdict(result, baseline)
    if not result.get("ready"):
        return "**" + loads.replace("no: ", "") + "**"
    parts = ["loads" if loads == "yes" else "**" + loads.replace("no: ", "error**: ")[:260]]
    urls = result.get("urls", {})
    bad = {u: s for u, s in urls.items() if s != 200}
    parts.append(
        f"files {len(urls) - len(bad)}/{len(urls)}"
        + (": " + ", ".join(f"`{u}` {s}" for u, s in bad.items()) if bad else "")
    )
    if result["arm"] == "upstream":
        base = set((baseline or {}).get("tree_changes", []))
        own = [c for c in result.get("tree_changes", []) if c not in base]
        parts.append("tree copy: " + ", ".join(own)[:200] if own else "no other writes")
    else:
        parts.append(
            writes.replace("none", "no writes", 1) if writes.startswith("none") else "**writes: " + writes[5:] + "**"
        )
    if result["arm"] == "upstream":
        asked = [ln for ln in result.get("install", []) if ln.startswith("Installing")]
        added = [a for a in result.get("layer_added", []) if a.endswith(".dist-info")]
        if asked or added:
            parts.append(f"install: {len(asked)} pip requests, {len(added)} dists into the layer")
    elif result["arm"] == "pinned" and message:
        said = next((ln.split(None, 1)[1] for ln in message["output"].splitlines() if "requirements " in ln), "?")
        parts.append(f"launcher on the bare env: `{said[:160]}`")
        if message.get("pip_ran_into_env"):
            parts.append(f"**install.py started pip itself: {len(message['pip_ran_into_env'])} dists into the env**")
    rel = result.get("relative_status") or {}
    if rel:
        ok = [r for r, status in rel.items() if status == 200]
        parts.append(
            f"relative `file=` {len(ok)}/{len(rel)}"
            + ("" if len(ok) == len(rel) else ": " + ", ".join(f"`{r}` {s}" for r, s in rel.items() if s != 200))
        )
    routes = result.get("routes") or {}
    if routes:
        codes: dict[str, int] = {}
        for status in routes.values():
            key = {-1: "not probed", -2: "dropped"}.get(status, str(status))
            codes[key] = codes.get(key, 0) + 1
        parts.append(f"API {len(routes)}: " + " ".join(f"{k}×{v}" for k, v in sorted(codes.items())))
    return " · ".join(parts).replace("|", "\\|").replace("\n", " ")


def render(ctx: Ctx) -> str:
    rows = read_list()
    base = {arm: cached(ctx, BASELINE, arm) for arm in ARMS}
    out = [
        "# Extensions compatibility",
        "",
        "Generated by `tests/compat/extensions_compat.py` (how: at the end of this page).",
        "Rows: the most-starred extensions of upstream's index that load under upstream's own `launch.py`",
        "on a CPU, offline. Columns: **upstream** (`launch.py`, writable tree copy, its `install.py`",
        "pip-installing into the row's layer), **pinned** (the launcher, Python 3.11, tree read-only,",
        "unprivileged uid, data dir under `~/.local/share`, the same packages), **flake** (the launcher",
        "on the flake's Python set: 3.13, pydantic 2, ...; the same distributions at the upstream arm's",
        "versions where the set lacks them). Each cell: loads (no traceback or error report at start",
        "that the arm's no-extension run lacks) · files (script, style and `file=` URLs of `GET /`",
        "answering 200, through the proxy for ours) · writes outside the data, cache and temp dirs",
        "(upstream: what changed in its tree copy beyond a run without extensions) · API: the routes",
        "the extension adds, by status (GET, or POST `{}`; 422 = there and validating; dropped = the",
        "connection was closed by an exception in the route, which the proxy answers as 502).",
        "",
        "| # | extension (stars, commit) | upstream | pinned | flake | where the columns differ |",
        "|---|---|---|---|---|---|",
    ]
    n = 0
    summary = {arm: [0, 0, 0, 0] for arm in ARMS}
    passed_over = []
    beyond: list[str] = []
    taken: set[str] = set()
    for row in rows:
        if row["status"] != "take":
            passed_over.append((row, f"{row['status']}: {row['reason']}"))
            continue
        results = {
            arm: cached(ctx, row["name"], arm) if ctx.corpus else _any_cached(ctx, row["name"], arm) for arm in ARMS
        }
        up = results["upstream"]
        if up is None:
            continue
        if verdict(up, base["upstream"])[0] != "yes":
            why = verdict(up, base["upstream"])[0].replace("no: ", "")
            passed_over.append((row, "ran: upstream's launch.py fails here: " + why[:300]))
            continue
        if n == ROWS:
            beyond.append(row["name"])
            continue
        n += 1
        taken.add(row["name"])
        for arm, result in results.items():
            if result is None:
                continue
            v = verdict(result, base[arm])
            summary[arm][0] += 1
            summary[arm][1] += v[0] == "yes"
            summary[arm][2] += not v[1].startswith("no")
            summary[arm][3] += v[2].startswith("none") or arm == "upstream"
        rev = revision(ctx, row["name"]) if ctx.corpus else ""
        link = f"[{row['name']}](https://github.com/{row['repo']})"
        msg_path = ctx.work / "results" / row["name"] / "message.json"
        message = json.loads(msg_path.read_text()) if msg_path.is_file() else None
        cells = " | ".join(cell(results[arm], base[arm], message) for arm in ARMS)
        out.append(f"| {n} | {link} ({row['stars']}, {rev[:8]}) | {cells} | {row['reason'] or 'same'} |")
    out += ["", "Summary (rows run · load · serve every file · no write outside data, cache, temp):", ""]
    for arm in ARMS:
        s = summary[arm]
        extra = " (upstream writes into its tree copy by design)" if arm == "upstream" else ""
        out.append(f"- {arm}: {s[0]} · {s[1]} · {s[2]} · {s[3]}{extra}")
    if beyond:
        out += ["", f"Also run, beyond the first {ROWS} (cached, not in the table): {', '.join(beyond)}."]
    out += requirements_on_nix(ctx, [row for row in rows if row["name"] in taken])
    out += ["", "## Passed over (not rows)", "", "| extension (stars) | why |", "|---|---|"]
    for row, why in passed_over:
        link = f"[{row['name']}](https://github.com/{row['repo']})"
        out.append(f"| {link} ({row['stars']}) | {why.replace('|', '/')} |")
    return "\n".join(out) + "\n"


NIXPKGS_ATTRS = Path(__file__).with_name("nixpkgs_python_attrs.json")


def missing_requirements(message: dict | None) -> list[str]:
    """What `extensions check` reported missing on the bare environment."""
    for line in (message or {}).get("output", "").splitlines():
        _, found, rest = line.partition("requirements  missing: ")
        if found:
            return [r.strip() for r in rest.split(", ") if r.strip()]
    return []


def requirements_on_nix(ctx: Ctx, rows: list[dict]) -> list[str]:
    """Per row whose install.py asks for packages: the extraPythonPackages line, and whether the
    pinned nixpkgs has each one (tests/compat/nixpkgs_python_attrs.json, read from nixpkgs)."""
    known = json.loads(NIXPKGS_ATTRS.read_text()) if NIXPKGS_ATTRS.is_file() else {"packages": {}}
    packages = known.get("packages", {})
    pin = known.get("nixpkgs", {})
    out = [
        "",
        "## What `install.py` asks for, on Nix",
        "",
        "What `stable-diffusion-webui extensions check NAME` reports missing on an environment without",
        "the row's packages, the line that adds them, and whether nixpkgs has each one",
        f"(`tests/compat/nixpkgs_python_attrs.json`: attribute names and versions read in {pin.get('read_repo', '?')}"
        f" `{str(pin.get('read_rev', '?'))[:12]}`, a nixpkgs snapshot after the {pin.get('branch', '?')} branch-off;",
        "the pin itself could not be read here, so versions may differ there; ✗ = the version does not meet the",
        "request). A package nixpkgs lacks needs a derivation of its own (`nix/python-packages.nix` shows how);",
        "until then the extension loads without it, as in the pinned column.",
        "",
        "| extension | missing on a bare environment | `extraPythonPackages` | in nixpkgs |",
        "|---|---|---|---|",
    ]
    for row in rows:
        msg_path = ctx.work / "results" / row["name"] / "message.json"
        message = json.loads(msg_path.read_text()) if msg_path.is_file() else None
        missing = missing_requirements(message)
        if not missing:
            continue
        attrs, found = [], []
        for requirement in missing:
            name = re.split(r"[\s<>=!~;\[@]", requirement, maxsplit=1)[0]
            entry = packages.get(re.sub(r"[-_.]+", "-", name).lower())
            if entry is None:
                found.append(f"{name}: not checked")
            elif entry.get("attr"):
                attrs.append(f"ps.{entry['attr']}")
                mark = " ✗" if entry.get("satisfies") is False else ""
                found.append(f"{name}: {entry['attr']} {entry.get('version') or '?'}{mark}")
            else:
                found.append(f"**{name}: missing**")
        line = f"`ps: [ {' '.join(attrs)} ]`" if attrs else "none in nixpkgs"
        out.append(f"| {row['name']} | {', '.join(missing)} | {line} | {'; '.join(found)} |".replace("\n", " "))
    return out


def _any_cached(ctx: Ctx, name: str, arm: str) -> dict | None:
    path = result_path(ctx, name, arm)
    return json.loads(path.read_text()) if path.is_file() else None


def write_doc(ctx: Ctx) -> None:
    table = render(ctx)
    text = DOC.read_text() if DOC.is_file() else ""
    marker = "<!-- end of generated table -->"
    tail = text.split(marker, 1)[1] if marker in text else "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(table + "\n" + marker + tail)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="only these rows (names from the list file)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of upstream,pinned,flake")
    parser.add_argument("--rerun", action="store_true", help="ignore cached results")
    parser.add_argument("--render", action="store_true", help="only rewrite the table from the cache")
    parser.add_argument("--keep", action="store_true", help="keep the upstream arm's tree copies")
    args = parser.parse_args(argv)
    ctx = Ctx(args)
    if args.render:
        write_doc(ctx)
        return 0
    arms = [a for a in args.arms.split(",") if a]
    if "flake" in arms and not (ctx.flake_root and ctx.flake_venv and ctx.flake_launcher):
        sys.exit("the flake arm needs SD_COMPAT_FLAKE_ROOT, SD_COMPAT_FLAKE_VENV and SD_COMPAT_FLAKE_LAUNCHER")
    model_dir = ctx.work / "model"
    if not (model_dir / "tiny.safetensors").is_file():
        model_dir.mkdir(parents=True, exist_ok=True)
        run([ctx.venv / "bin" / "python3", REPO / "tests/support/tiny_model.py", model_dir]).check_returncode()
        model_dir.chmod(0o755)
    names = [BASELINE] + [r["name"] for r in read_list() if r["status"] == "take"]
    if args.only:
        names = [BASELINE] + [n for n in names[1:] if n in args.only]
    for name in names:
        if name != BASELINE and not (ctx.corpus / name).is_dir():
            print(f"{name}: no checkout in {ctx.corpus}, skipped", flush=True)
            continue
        for arm in arms:
            up = cached(ctx, name, "upstream")
            if (
                name != BASELINE
                and arm != "upstream"
                and up
                and verdict(up, cached(ctx, BASELINE, "upstream"))[0] != "yes"
            ):
                print(f"{name}: does not load under upstream's launch.py (cached): not a row", flush=True)
                break
            if not args.rerun and cached(ctx, name, arm) is not None:
                continue
            base = cached(ctx, BASELINE, arm)
            t0 = time.monotonic()
            print(f"{name} [{arm}] ...", flush=True)
            result = one_run(ctx, name, arm, (base or {}).get("routes_all") if name != BASELINE else None)
            result["wall_s"] = round(time.monotonic() - t0, 1)
            path = result_path(ctx, name, arm)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1))
            v = verdict(result, base)
            print(f"  {result['wall_s']} s; loads {v[0]}; files {v[1]}; writes {v[2]}; api {v[3]}", flush=True)
            if arm == "upstream" and name != BASELINE and v[0] != "yes":
                print(f"  {name}: does not load under upstream's launch.py: not a row (mark it skip)", flush=True)
                break
        up = cached(ctx, name, "upstream")
        message = ctx.work / "results" / name / "message.json"
        if name != BASELINE and up and verdict(up, None)[0] == "yes" and (args.rerun or not message.is_file()):
            print(f"{name} [launcher message] ...", flush=True)
            message.write_text(json.dumps({"rev": revision(ctx, name), **message_check(ctx, name)}, indent=1))
        write_doc(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
