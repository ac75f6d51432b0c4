"""Extensions see the root view as the webui's root (the launcher builds it: src/root_view.rs).

Under upstream's launch.py the tree, the data dir and the working directory are one writable
folder, and extensions rely on it (``<script_path>/tmp/...`` written at import and linked as
``file=tmp/...``, ``<script_path>/models/...`` read). Here the tree is read-only and apart from
the data. The root view is the tree overlaid by the data dir, in the cache dir: a write under it
lands in the data dir (a name the data dir has) or in the view itself (a new name), never in the
tree; the proxy looks there for relative ``file=`` paths the working directory does not have.

Replaces ``script_path`` in ``modules.paths_internal``, ``modules.paths`` and ``modules.shared``
when ``modules.scripts.load_scripts`` first runs: after the modules imported so far bound the
tree's path, and before any extension script is imported. What reads ``script_path`` later
(upstream's script listing, its stylesheet lookup) reads the same files through the view's
links; their bytecode goes to the cache (environment.redirect_bytecode). An extension's
``preload.py`` (earlier) and ``install.py`` (a subprocess) still see the tree.
"""

from __future__ import annotations

from types import ModuleType

from .config import LaunchConfig
from .hooks import after_import, patches

# The modules whose ``script_path`` extensions read (``from modules import paths``,
# ``shared.script_path``, ``paths_internal``).
SCRIPT_PATH_MODULES = ("modules.paths_internal", "modules.paths", "modules.shared")


def install(config: LaunchConfig) -> None:
    if config.root_view:
        after_import("modules.scripts", lambda m: _wrap_load_scripts(m, config.root_view))


@patches("modules.scripts", "load_scripts")
def _wrap_load_scripts(scripts: ModuleType, view: str) -> None:
    # Replaces modules.scripts.load_scripts (called as an attribute by initialize.py and on
    # every UI reload): the root view first, then upstream's loading of every script.
    original = scripts.load_scripts

    def load_scripts():
        point_script_path_at(view)
        return original()

    scripts.load_scripts = load_scripts


def point_script_path_at(view: str) -> None:
    import importlib

    for name in SCRIPT_PATH_MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, "script_path"):
            raise RuntimeError(f"{name}.script_path is gone: the root view cannot replace it")
        module.script_path = view
