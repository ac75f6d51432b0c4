"""Shared pieces of the end-to-end tests and of benches/e2e_vs_upstream.py.

Nothing here imports the webui or torch: the tests drive the launcher binary (and, for the
benchmark, upstream's own launch.py) as separate processes and talk to them over HTTP on
127.0.0.1 only.

Environment variables (all optional except the first two; without them the e2e tests skip):

* ``SD_WEBUI_TEST_ROOT``: an upstream AUTOMATIC1111 stable-diffusion-webui tree with ``repositories/``.
  It is never written to; the tests prove that with checksums.
* ``SD_WEBUI_TEST_VENV``: a Python environment (virtualenv root) with upstream's requirements installed.
* ``SD_WEBUI_LAUNCHER``: the launcher binary; default ``<repo>/target/release/stable-diffusion-webui``,
  then ``<repo>/target/debug/stable-diffusion-webui``.
* ``SD_WEBUI_TEST_TIMEOUT_SCALE``: multiply every timeout (default 1; raise it on slow or busy machines).
* ``SD_WEBUI_TEST_ARTIFACTS``: where logs and screenshots go (default ``<repo>/target/e2e-artifacts``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL_PY = REPO / "tests" / "support" / "tiny_model.py"
LAUNCHER_NAME = "stable-diffusion-webui"

READY_RE = re.compile(r"webui ready at (\S+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Environment variables that would change what the launcher or upstream does behind the test's back.
_DROP_ENV_PREFIXES = ("SD_WEBUI_",)
_KEEP_ENV = {"SD_WEBUI_SHIM_DIR"}
_DROP_ENV = {
    "COMMANDLINE_ARGS",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "TORCH_HOME",
    "GRADIO_TEMP_DIR",
    "MPLCONFIGDIR",
    "NUMBA_CACHE_DIR",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
}


def timeout_scale() -> float:
    try:
        return max(0.1, float(os.environ.get("SD_WEBUI_TEST_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


def seconds(base: float) -> float:
    return base * timeout_scale()


# Generous because startup is 6-45 s on a busy 2-core machine (import torch alone can take 20 s there).
STARTUP_TIMEOUT = 600.0
REQUEST_TIMEOUT = 300.0  # the first txt2img waits for the background model load
STOP_TIMEOUT = 60.0  # the launcher forces an exit itself after 15 s


def artifacts_dir() -> Path:
    path = Path(os.environ.get("SD_WEBUI_TEST_ARTIFACTS") or REPO / "target" / "e2e-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class E2EConfig:
    root: Path  # upstream tree
    venv: Path  # Python environment with upstream's requirements
    launcher: Path  # the launcher binary

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python3"


def default_launcher() -> Path | None:
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / LAUNCHER_NAME
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_config() -> E2EConfig | str:
    """The e2e configuration, or why the e2e tests must be skipped."""
    root_value = os.environ.get("SD_WEBUI_TEST_ROOT")
    if not root_value:
        return (
            "SD_WEBUI_TEST_ROOT is not set: point it at an upstream stable-diffusion-webui tree "
            "(with repositories/) to run the end-to-end tests"
        )
    root = Path(root_value).resolve()
    for needed in ("launch.py", "webui.py", "modules", "repositories/stable-diffusion-stability-ai/ldm"):
        if not (root / needed).exists():
            return f"SD_WEBUI_TEST_ROOT={root_value} is not an upstream webui tree: {needed} is missing"
    venv_value = os.environ.get("SD_WEBUI_TEST_VENV")
    if not venv_value:
        return (
            "SD_WEBUI_TEST_VENV is not set: point it at a virtualenv with upstream's requirements "
            "(torch, gradio 3.41, ...) to run the end-to-end tests"
        )
    venv = Path(venv_value).absolute()
    if not (venv / "bin" / "python3").exists():
        return f"SD_WEBUI_TEST_VENV={venv_value} has no bin/python3"
    launcher_value = os.environ.get("SD_WEBUI_LAUNCHER")
    launcher = Path(launcher_value).absolute() if launcher_value else default_launcher()
    if launcher is None:
        return (
            f"no launcher binary: build it (cargo build --release) or set SD_WEBUI_LAUNCHER (looked in {REPO}/target)"
        )
    if not (launcher.is_file() and os.access(launcher, os.X_OK)):
        return f"SD_WEBUI_LAUNCHER={launcher} is not an executable file"
    return E2EConfig(root=root, venv=venv, launcher=launcher)


def import_tiny_model():
    if "tiny_model" in sys.modules:
        return sys.modules["tiny_model"]
    spec = importlib.util.spec_from_file_location("tiny_model", TINY_MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_model"] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- filesystem


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry below root: directories, symlinks (target), files (permission bits + sha256)."""
    digest: dict[str, str] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                digest[rel] = f"link:{os.readlink(path)}"
            elif stat.S_ISDIR(st.st_mode):
                digest[rel] = f"dir:{stat.S_IMODE(st.st_mode):o}"
            else:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                digest[rel] = f"file:{stat.S_IMODE(st.st_mode):o}:{st.st_size}:{h.hexdigest()}"
    return digest


def digest_changes(before: dict[str, str], after: dict[str, str], limit: int = 40) -> list[str]:
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            changes.append(f"removed {key}")
        elif key not in before:
            changes.append(f"added {key} ({after[key].split(':')[0]})")
        elif before[key] != after[key]:
            changes.append(f"changed {key}: {before[key]} -> {after[key]}")
    if len(changes) > limit:
        changes = changes[:limit] + [f"... and {len(changes) - limit} more"]
    return changes


def make_read_only(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        for name in dirnames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
    root.chmod(root.stat().st_mode & ~0o222)


def make_writable(root: Path) -> None:
    """So that the copy can be removed again."""
    root.chmod(root.stat().st_mode | 0o200)
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG (starts with {data[:16]!r})"
    assert data[12:16] == b"IHDR", "PNG without IHDR first"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- network


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_refuses(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
        except OSError:  # refused, timed out, unreachable
            return True
    return False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", "replace")


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, *, json_body=None, timeout: float = REQUEST_TIMEOUT) -> Response:
    """One request to 127.0.0.1 (never through a proxy); HTTP errors are returned, not raised."""
    data = None
    headers = {}
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _NO_PROXY.open(request, timeout=seconds(timeout)) as response:
            return Response(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, dict(error.headers), error.read())


# --------------------------------------------------------------------------- processes


def offline_env(home: Path, *, tmpdir: Path, hf_home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test environment: offline, private HOME/TMPDIR/HF_HOME, nothing launcher-specific inherited."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _DROP_ENV and (k in _KEEP_ENV or not k.startswith(_DROP_ENV_PREFIXES))
    }
    env.update(
        HOME=str(home),
        TMPDIR=str(tmpdir),
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        NO_PROXY="localhost,127.0.0.1,::1",
        no_proxy="localhost,127.0.0.1,::1",
        GRADIO_ANALYTICS_ENABLED="False",
    )
    if extra:
        env.update(extra)
    return env


class Server:
    """A webui process (the launcher, or upstream's launch.py) in its own process group.

    Its stdout and stderr are merged, kept in memory and copied to ``log_path``. ``ready_re`` is the
    log line that means "requests may arrive now": no HTTP request is made before it (upstream crashes
    when a request reaches it before its app-started point).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        ready_re: re.Pattern = READY_RE,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.env = env
        self.cwd = Path(cwd)
        self.log_path = Path(log_path)
        self.ready_re = ready_re
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_match: re.Match | None = None
        self.ready_at: float | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.returncode: int | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        self._log.write(f"$ {' '.join(self.argv)}\n(cwd {self.cwd})\n")
        self._log.flush()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: leftovers can be found (and killed) by its id
        )
        self._reader = threading.Thread(target=self._read, name=f"log-{self.proc.pid}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = ANSI_RE.sub("", raw.decode("utf-8", "replace")).rstrip("\r\n")
            self.lines.append(line)
            self._log.write(line + "\n")
            self._log.flush()
            if not self.ready.is_set():
                match = self.ready_re.search(line)
                if match:
                    self.ready_match = match
                    self.ready_at = time.monotonic()
                    self.ready.set()
        self._log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> re.Match:
        deadline = time.monotonic() + seconds(timeout)
        while not self.ready.wait(0.2):
            if not self.running():
                if self._reader is not None:
                    self._reader.join(5)
                raise AssertionError(
                    f"{self.argv[0]} exited with {self.proc.returncode} before it was ready; log "
                    f"({self.log_path}):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not ready after {seconds(timeout):.0f} s; log ({self.log_path}):\n{self.log_tail()}"
                )
        return self.ready_match

    def wait_for_line(self, pattern: str, timeout: float) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + seconds(timeout)
        seen = 0
        while True:
            lines = self.lines
            for line in lines[seen:]:
                if regex.search(line):
                    return line
            seen = len(lines)
            if not self.running() or time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r}; log ({self.log_path}):\n{self.log_tail()}")
            time.sleep(0.1)

    def process_tree(self):
        """psutil processes of this server and its descendants (empty without psutil)."""
        try:
            import psutil
        except ImportError:
            return []
        try:
            parent = psutil.Process(self.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def listening_ports(self) -> set[int]:
        ports = set()
        for process in self.process_tree():
            try:
                connections = (
                    process.net_connections(kind="inet")
                    if hasattr(process, "net_connections")
                    else process.connections(kind="inet")
                )
            except Exception:  # noqa: BLE001 - a process that just ended has none
                continue
            ports.update(c.laddr.port for c in connections if c.status == "LISTEN")
        return ports

    def rss_bytes(self) -> int:
        """Resident memory of the process and its descendants."""
        total = 0
        for process in self.process_tree():
            try:
                total += process.memory_info().rss
            except Exception:  # noqa: BLE001
                pass
        if total == 0 and self.running():
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total = int(line.split()[1]) * 1024
        return total

    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Send sig to the server (not to its group, as a terminal's Ctrl-C would reach only ours) and wait."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(seconds(timeout))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"did not exit within {seconds(timeout):.0f} s of signal {sig}; killed. Log:\n{self.log_tail()}"
                ) from None
        if self._reader is not None:
            self._reader.join(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def group_alive(self) -> bool:
        """Whether any process is left in the server's process group."""
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill(self) -> None:
        """Last resort for the fixture's teardown: SIGKILL this server's own process group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(5)


def launcher_argv(
    config: E2EConfig,
    *,
    data_dir: Path,
    cache_dir: Path,
    port: int,
    webui_args: Sequence[str] = (),
    root: Path | None = None,
    venv: Path | None = None,
    prefix: Sequence[str] = (),
) -> list[str]:
    return [
        *prefix,
        str(config.launcher),
        "--webui-root",
        str(root or config.root),
        "--python-env",
        str(venv or config.venv),
        "--data-dir",
        str(data_dir),
        "--cache-dir",
        str(cache_dir),
        "--port",
        str(port),
        *webui_args,
    ]


def chromium() -> str:
    """The Chromium the browser tests drive (Playwright's package only, never its downloads)."""
    import pytest

    configured = os.environ.get("SD_WEBUI_TEST_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium: install one (Debian: apt-get install chromium) or set SD_WEBUI_TEST_CHROMIUM")


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)


# --------------------------------------------------------------------------- API payloads

TXT2IMG = {
    "prompt": "a tiny cat, (watercolor:1.2)",
    "negative_prompt": "blurry",
    "seed": 1234,
    "steps": 3,
    "width": 64,
    "height": 64,
    "cfg_scale": 7,
    "sampler_name": "Euler a",
    "batch_size": 1,
    "n_iter": 1,
    "save_images": True,
    "send_images": True,
}
