"""Every upstream name the shim patches exists in the pinned upstream tree.

The targets are not listed here: each patch declares them (``webui_shim.hooks.patches``), and
importing the shim fills ``hooks.TARGETS``. The tree is read with ``ast``, never imported (no
torch needed). Set ``SD_WEBUI_TEST_ROOT`` to an upstream webui tree (the pinned revision);
without it the tree test is skipped, saying so.
"""

from __future__ import annotations

import ast
import os
import sys
import types
from pathlib import Path

import pytest
from webui_shim import hooks, patches  # noqa: F401  (importing patches declares every target)

# Patched modules that are not upstream's (facexlib is a package of the environment).
NOT_IN_TREE = ("facexlib.",)


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names a module (or class) body binds, with what binds them; into if/try/with blocks."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = node
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                names.update(_top_level(getattr(node, block, [])))
            for handler in getattr(node, "handlers", []):
                names.update(_top_level(handler.body))
    return names


def missing_targets(root: Path) -> tuple[list[str], list[str]]:
    """(missing, not checked): the declared targets the tree lacks, and those outside it."""
    missing, unchecked = [], []
    trees: dict[str, ast.Module | None] = {}
    for module, attribute in sorted(hooks.TARGETS):
        if module.startswith(NOT_IN_TREE):
            unchecked.append(f"{module}.{attribute}")
            continue
        if module not in trees:
            path = _module_file(root, module)
            trees[module] = ast.parse(path.read_text(encoding="utf8"), str(path)) if path else None
        tree = trees[module]
        if tree is None:
            missing.append(f"{module}.{attribute} (no module {module} in the tree)")
            continue
        body = tree.body
        for depth, part in enumerate(attribute.split(".")):
            node = _top_level(body).get(part)
            if node is None:
                missing.append(f"{module}.{attribute}")
                break
            if depth < attribute.count("."):
                if not isinstance(node, ast.ClassDef):
                    missing.append(f"{module}.{attribute} ({part} is not a class here)")
                    break
                body = node.body
    return missing, unchecked


def test_the_shim_declares_its_patch_targets():
    """The registry is filled from the code (a patch without a declaration is not checked)."""
    assert ("modules.util", "load_file_from_url") in hooks.TARGETS
    assert hooks.TARGETS[("modules.launch_utils", "prepare_environment")] is True
    assert len(hooks.TARGETS) >= 30


def test_every_patch_target_exists_in_the_upstream_tree():
    root = os.environ.get("SD_WEBUI_TEST_ROOT")
    if not root:
        pytest.skip("SD_WEBUI_TEST_ROOT (the pinned upstream webui tree) is not set")
    missing, unchecked = missing_targets(Path(root))
    assert not missing, (
        f"the shim patches names the upstream tree at {root} does not have (renamed upstream? "
        "update the patch and its @patches declaration): " + ", ".join(missing)
    )
    assert all(name.startswith(NOT_IN_TREE) for name in unchecked)


def test_a_missing_target_is_one_warning_naming_it_and_the_patch_is_skipped(capsys):
    @hooks.patches("shim_probe_targets", "present", "renamed")
    def patch(module, value):
        module.present = value

    module = types.ModuleType("shim_probe_targets")
    module.present = 1
    patch(module, 2)
    assert module.present == 1, "a patch with a missing target does not run half-way"
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "upstream has no shim_probe_targets.renamed" in err
    assert "shim_probe_targets.present" not in err

    module.renamed = None
    patch(module, 2)
    assert module.present == 2
    assert capsys.readouterr().err == ""


def test_an_essential_patch_with_a_missing_target_stops_the_start():
    @hooks.patches("shim_probe_essential", "Cls.method", essential=True)
    def patch(module):
        raise AssertionError("must not run")

    module = types.ModuleType("shim_probe_essential")
    module.Cls = type("Cls", (), {})
    with pytest.raises(hooks.PatchTargetMissing, match=r"upstream has no shim_probe_essential\.Cls\.method"):
        patch(module)


def test_patches_applied_through_the_import_hook_warn_about_a_renamed_upstream_function(tmp_path, monkeypatch, capsys):
    """The real path: the shim's patches installed, then a `modules.restart` without
    `restart_program` imported (as if upstream had renamed it)."""
    package = tmp_path / "modules"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "restart.py").write_text(
        "def is_restartable():\n    return False\n\ndef restart_program_renamed():\n    pass\n\n"
        "def stop_program():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("modules", "modules.restart"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    hooks.after_import("modules.restart", patches._patch_restart)
    import modules.restart as restart

    assert restart.is_restartable() is False, "skipped as a whole, not applied half-way"
    assert "upstream has no modules.restart.restart_program" in capsys.readouterr().err
    for name in ("modules", "modules.restart"):
        sys.modules.pop(name, None)
