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
            last = lines[j] if j < len(lines) else lines[j - 1]
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
            page = h.http("GET", base + "/", timeout=120)
            result["page_status"] = page.status
            statuses = {}
            for url in page_urls(base, page.body.decode("utf-8", "replace")):
                try:
                    statuses[url[len(base) :]] = h.http("GET", url, timeout=60).status
                except OSError as error:
                    statuses[url[len(base) :]] = str(error)
            result["urls"] = statuses
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
    result["tracebacks"] = tracebacks(lines)
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


def flake_layer(ctx: Ctx, name: str, upstream_layer: Path) -> Path:
    """A layer over the flake's set holding, by name, what the upstream arm pip-installed."""
    pyver = next(p.name for p in (ctx.flake_venv / "lib").iterdir() if p.name.startswith("python3"))
    layer = make_layer(
        base_interpreter(ctx.flake_venv), ctx.site(ctx.flake_venv, pyver), ctx.work / "envs-flake" / name, pyver
    )
    wanted = layer_packages(upstream_layer, ctx.pyver)
    marker = layer / "installed.json"
    if wanted and not marker.is_file():
        freeze = run([ctx.flake_venv / "bin" / "python3", "-m", "pip", "freeze"]).stdout
        constraints = layer / "constraints.txt"
        constraints.write_text(freeze)
        pip = run(
            [layer / "bin" / "python3", "-m", "pip", "install", "--prefer-binary", "-c", constraints, *wanted],
            timeout=900,
        )
        marker.write_text(
            json.dumps({"wanted": wanted, "rc": pip.returncode, "tail": (pip.stdout + pip.stderr)[-2000:]})
        )
    return layer


# --------------------------------------------------------------------------- table


def verdict(result: dict | None, baseline: dict | None) -> tuple[str, str, str, str]:
    """(loads, files, writes, api) cells."""
    if result is None:
        return ("–", "–", "–", "–")
    if not result.get("ready"):
        return ("no: " + result.get("fatal", "did not start")[:120], "–", "–", "–")
    base_tb = set(baseline.get("tracebacks", [])) if baseline else set()
    own = [t for t in result.get("tracebacks", []) if t not in base_tb]
    loads = "yes" if not own else "no: " + "; ".join(own)[:300]
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
        writes = "none" if not changes and not home else "YES: " + ", ".join(changes + home)[:300]
    routes = result.get("routes") or {}
    api = ", ".join(f"{p} {s}" for p, s in routes.items())[:300] if routes else "none added"
    return loads, files, writes, api


def render(ctx: Ctx) -> str:
    rows = read_list()
    base = {arm: cached(ctx, BASELINE, arm) for arm in ARMS}
    out = [
        "# Extensions compatibility",
        "",
        "Generated by `tests/compat/extensions_compat.py` (see the end of this page for how it was made).",
        "Rows: the most-starred extensions of upstream's index that load under upstream's own `launch.py`",
        "on a CPU, offline. Columns: **upstream** (`launch.py`, writable tree copy, its `install.py`",
        "pip-installing into the row's layer), **pinned** (the launcher, Python 3.11, tree read-only,",
        "data dir under `~/.local/share`, the same packages), **flake** (the launcher on the flake's",
        "Python set, 3.13 / pydantic 2, the same packages by name). Each cell: loads / files (every",
        "script, style and `file=` URL of `GET /`, through the proxy for ours) / writes outside the",
        "data, cache and temp dirs / API routes the extension adds with their status (GET, or POST `{}`;",
        "422 = the route answers and validates).",
        "",
        "| # | extension (stars, rev) | upstream | pinned | flake | where they differ |",
        "|---|---|---|---|---|---|",
    ]
    n = 0
    summary = {arm: [0, 0, 0, 0] for arm in ARMS}
    for row in rows:
        if row["status"] != "take":
            continue
        n += 1
        cells = []
        verdicts = {}
        for arm in ARMS:
            result = cached(ctx, row["name"], arm) if ctx.corpus else _any_cached(ctx, row["name"], arm)
            v = verdict(result, base[arm])
            verdicts[arm] = v
            if result is not None:
                summary[arm][0] += 1
                summary[arm][1] += v[0] == "yes"
                summary[arm][2] += not v[1].startswith("no")
                summary[arm][3] += v[2] in ("none",) or arm == "upstream"
            cells.append(
                "<br>".join(f"{k}: {c}" for k, c in zip(("loads", "files", "writes", "api"), v, strict=True)).replace(
                    "|", "\\|"
                )
            )
        rev = revision(ctx, row["name"]) if ctx.corpus else ""
        note = row["reason"].replace("|", "\\|")
        out.append(
            f"| {n} | [{row['name']}](https://github.com/{row['repo']}) ({row['stars']}, {rev[:8]}) | "
            + " | ".join(cells)
            + f" | {note} |"
        )
    out += ["", "Summary (rows run / loads / serves every file / no write outside data, cache, temp):", ""]
    for arm in ARMS:
        s = summary[arm]
        extra = " (writes: its tree copy is its data, as upstream)" if arm == "upstream" else ""
        out.append(f"- {arm}: {s[0]} run, {s[1]} load, {s[2]} serve every file, {s[3]} no writes{extra}")
    out += ["", "## Passed over (not rows)", "", "| extension (stars) | why |", "|---|---|"]
    for row in rows:
        if row["status"] != "take":
            link = f"[{row['name']}](https://github.com/{row['repo']})"
            out.append(f"| {link} ({row['stars']}) | {row['status']}: {row['reason']} |")
    return "\n".join(out) + "\n"


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
        write_doc(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
