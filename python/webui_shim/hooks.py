"""Run a function right after a given module has been imported, and declare what it patches.

Upstream binds many values at import time (``from modules.paths_internal import
config_states_dir``), so a patch must land after the module executes but before anything
imports from it. A meta-path finder that wraps the real loader gives exactly that point,
without importing upstream modules early or in a different order.

Every patch of upstream declares its targets with :func:`patches`, which records them in
:data:`TARGETS` when the shim is imported. So a rename upstream cannot make a patch silently do
nothing: at run time a missing target is one warning naming it (the patch is skipped) or, for
an essential patch, an error that stops the start; and ``tests/python/test_patch_targets.py``
checks every declared target against the pinned upstream tree.
"""

from __future__ import annotations

import functools
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


# (module, attribute) -> essential, for every upstream name a shim patch replaces or relies on.
# `attribute` may be dotted (`Options.__setattr__`: a class attribute).
TARGETS: dict[tuple[str, str], bool] = {}


class PatchTargetMissing(RuntimeError):
    """An essential patch cannot be applied: upstream no longer has what it replaces."""


def patches(modules: str | tuple[str, ...], *attributes: str, essential: bool = False):
    """Declares that the decorated ``patch(module, ...)`` replaces (or relies on) ``attributes``
    of each of ``modules``, and makes it check them before it runs.

    A missing one is reported once, naming ``module.attribute``: a warning on stderr, the patch
    skipped and upstream's behaviour kept; or, when ``essential`` (running without the patch
    would break what the launcher guarantees), :class:`PatchTargetMissing`.
    """
    names = (modules,) if isinstance(modules, str) else modules

    def declare(patch: Callable):
        for name in names:
            for attribute in attributes:
                TARGETS[(name, attribute)] = TARGETS.get((name, attribute), False) or essential

        @functools.wraps(patch)
        def checked(module: ModuleType, *args, **kwargs):
            missing = [a for a in attributes if not has_target(module, a)]
            if not missing:
                return patch(module, *args, **kwargs)
            targets = ", ".join(f"{module.__name__}.{a}" for a in missing)
            if essential:
                raise PatchTargetMissing(
                    f"The launcher cannot apply its patch {patch.__qualname__} (essential): upstream has no "
                    f"{targets}. This webui tree is not the one the launcher was made for."
                )
            print(
                f"warning: the launcher's patch {patch.__qualname__} was skipped: upstream has no {targets} "
                "(renamed or removed?); upstream's own behaviour stays in place.",
                file=sys.stderr,
                flush=True,
            )
            return None

        return checked

    return declare


def has_target(module: ModuleType, attribute: str) -> bool:
    """Whether ``module`` has ``attribute`` (dotted: ``Class.method``)."""
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            return False
        value = getattr(value, part)
    return True
