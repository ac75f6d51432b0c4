"""Run a function right after a given module has been imported.

Upstream binds many values at import time (``from modules.paths_internal import
config_states_dir``), so a patch must land after the module executes but before anything
imports from it. A meta-path finder that wraps the real loader gives exactly that point,
without importing upstream modules early or in a different order.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType

_pending: dict[str, list[Callable[[ModuleType], None]]] = {}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader, name: str) -> None:
        self._wrapped = wrapped
        self._name = name

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        for patch in _pending.pop(self._name, []):
            patch(module)

    def __getattr__(self, item):
        # Keeps get_source/get_filename/is_package working for tracebacks and pkgutil.
        return getattr(self._wrapped, item)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader, fullname)
                return spec
        return None


_finder = _PatchingFinder()


def after_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Call ``patch(module)`` once ``name`` has been imported (at once if it already is)."""
    if name in sys.modules:
        patch(sys.modules[name])
        return
    _pending.setdefault(name, []).append(patch)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
