"""Make the embedded interpreter behave like the environment's own ``python``.

Embedded, CPython knows nothing of a virtualenv or a Nix python environment, and reports
the launcher binary as ``sys.executable``; upstream spawns ``sys.executable`` for
extension installers and sysinfo, which would re-run the launcher.
"""

from __future__ import annotations

import multiprocessing
import os
import site
import sys

from .config import LaunchConfig, PythonEnv


class LauncherError(Exception):
    """An error the launcher shows as-is (no traceback): it says what to do."""


def _site_packages(prefix: str) -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = os.path.join(prefix, "lib", version, "site-packages")
    if os.path.isdir(path):
        return path
    lib = os.path.join(prefix, "lib")
    others = sorted(d for d in os.listdir(lib) if d.startswith("python")) if os.path.isdir(lib) else []
    if others:
        raise LauncherError(
            f"The Python environment {prefix} was made for {', '.join(others)}, but the launcher embeds "
            f"{version}. Recreate it with that interpreter ({sys.executable} -m venv ...) or use a launcher "
            "built against its Python."
        )
    raise LauncherError(f"{prefix} is not a Python environment: {path} does not exist.")


def activate_python_env(env: PythonEnv) -> None:
    """Put the environment's site-packages first, as its own interpreter would."""
    packages = _site_packages(env.prefix)
    base_sites = set(site.getsitepackages()) | {site.getusersitepackages()}
    if env.isolated:
        sys.path[:] = [p for p in sys.path if p not in base_sites]
        sys.prefix = sys.exec_prefix = env.prefix
    first_base = next((i for i, p in enumerate(sys.path) if p in base_sites), len(sys.path))
    before = list(sys.path)
    site.addsitedir(packages)  # appends, and runs the environment's .pth files
    added = [p for p in sys.path if p not in before]
    rest = [p for p in sys.path if p not in added]
    sys.path[:] = rest[:first_base] + added + rest[first_base:]


def apply(config: LaunchConfig) -> None:
    os.environ.update(config.environment)
    if config.python_env is not None:
        activate_python_env(config.python_env)
    sys.executable = config.executable
    sys._base_executable = config.executable
    multiprocessing.set_executable(config.executable)
    if config.python_overlay:
        from . import overlay

        overlay.activate(config.python_overlay)
    redirect_bytecode_of(config)


def redirect_bytecode_of(config: LaunchConfig) -> None:
    """The trees whose bytecode goes to the cache (none when the tree ships its own): the webui
    process and every extension installer process (installer.py) call this."""
    if config.pycache_prefix:
        trees = [config.webui_root]
        if config.managed_extensions_dir:
            trees.append(config.managed_extensions_dir)
        # Managed extensions load from their views in the data dir: no __pycache__ there.
        if config.managed_extensions_view:
            trees.append(config.managed_extensions_view)
        # Upstream's scripts/ are listed through the root view once extensions load
        # (root_view.py): their bytecode must not go through its links into the tree either.
        if config.root_view:
            trees.append(config.root_view)
        redirect_bytecode(trees, config.pycache_prefix)


def redirect_bytecode(trees: list[str], prefix: str) -> None:
    """Bytecode of modules under ``trees`` goes below ``prefix``, never into them.

    ``sys.pycache_prefix`` would do that for every module, which makes Python ignore the
    environment's own ``__pycache__`` and recompile torch, gradio and the rest at every start
    (2-4x slower here, with PYTHONDONTWRITEBYTECODE set). So only the path the import system
    asks for is changed (the same layout as pycache_prefix), and only for the trees.
    Replaces importlib's ``cache_from_source`` as used by ``SourceFileLoader``.
    """
    import _frozen_importlib_external as bootstrap

    roots = tuple(
        {os.path.join(resolve(tree), "") for tree in trees for resolve in (os.path.abspath, os.path.realpath)}
    )
    original = bootstrap.cache_from_source

    def cache_from_source(path, debug_override=None, *, optimization=None):
        cached = original(path, debug_override, optimization=optimization)
        if not os.fspath(path).startswith(roots):
            return cached
        pycache_dir, name = os.path.split(cached)
        source_dir = os.path.dirname(pycache_dir)
        return os.path.join(prefix, source_dir.lstrip(os.sep), name)

    bootstrap.cache_from_source = cache_from_source
