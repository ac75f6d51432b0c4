"""nix/python-versions.json, the version manifest of the flake's Python environment.

The manifest is what tests/nixpkgs-env/build-env.sh installs from PyPI. These tests check that it
parses, that every entry says where its version comes from, and that it names exactly the packages
nix/python-packages.nix puts in the environment (its `requirements`, the wheels its overlay builds
and what those wheels depend on), read here from the Nix file's text. When nix-instantiate is
installed, nix/python-versions-check.nix (the same comparison in Nix, run by .ci/nix-check.sh and
`nix flake check`) is run on the real files and on a broken copy.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "nix"
MANIFEST = NIX / "python-versions.json"
PACKAGES_NIX = NIX / "python-packages.nix"
HEX40 = re.compile(r"[0-9a-f]{40}")


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", "", text)


def _nix_requirements() -> set[str]:
    """The attribute names in python-packages.nix's `requirements = ps: with ps; [ ... ];`."""
    text = PACKAGES_NIX.read_text()
    match = re.search(r"\brequirements\s*=\s*ps:\s*with ps;\s*\[(.*?)\];", text, re.S)
    assert match, "no `requirements = ps: with ps; [ ... ];` in nix/python-packages.nix"
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_'-]*", _strip_comments(match.group(1))))


def _nix_wheels() -> dict[str, dict]:
    """The overlay's `name = mkWheel { pname; version; dependencies = with self; [ ... ]; }` blocks."""
    text = _strip_comments(PACKAGES_NIX.read_text())
    wheels = {}
    for m in re.finditer(r"mkWheel\s*\{", text):
        start = m.end()
        depth, i = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        body = text[start : i - 1]
        pname = re.search(r'pname\s*=\s*"([^"]+)"', body).group(1)
        version = re.search(r'version\s*=\s*"([^"]+)"', body).group(1)
        deps: set[str] = set()
        for d in re.finditer(r"with self;\s*\[(.*?)\]", body, re.S):
            deps |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_'-]*", d.group(1)))
        deps |= set(re.findall(r"\[\s*(audioop-lts)\s*\]", body))
        wheels[pname] = {"version": version, "dependencies": deps}
    return wheels


def test_manifest_parses_and_every_entry_says_where_it_comes_from(manifest: dict) -> None:
    assert manifest["version"] == 1
    assert HEX40.fullmatch(manifest["nixpkgs"]["rev"])
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert manifest["nixpkgs"]["rev"] == lock["nodes"]["nixpkgs"]["locked"]["rev"], "the manifest describes another pin"
    py = manifest["python"]
    assert re.fullmatch(r"python3\d+", py["attr"])
    assert py["version"].startswith(f"3.{py['attr'][7:]}."), (py["attr"], py["version"])
    assert manifest["packages"], "no packages"
    for name, p in manifest["packages"].items():
        assert re.fullmatch(r"\d[\w.+-]*|unstable-\d{4}-\d\d-\d\d", p["version"]), (name, p["version"])
        assert p["source"] in {"nixpkgs", "override"}, name
        assert p["role"] in {"requirement", "dependency", "transitive", "variant"}, name
        assert p["pypi"], name
        if p["source"] == "nixpkgs":
            assert p["file"].startswith("pkgs/") and p["file"].endswith(".nix"), name
            assert p["read"]["repo"].endswith("/nixpkgs") and HEX40.fullmatch(p["read"]["commit"]), name
            assert isinstance(p["read"]["verified"], bool), name
        else:
            assert p["file"] == "nix/python-packages.nix", name
        if "pypiVersion" in p and p["pypiVersion"] != p["version"]:
            assert p.get("substitution"), f"{name}: PyPI version differs but no substitution reason"


def test_manifest_lists_every_package_the_environment_names(manifest: dict) -> None:
    packages = manifest["packages"]
    requirements = _nix_requirements()
    assert len(requirements) > 30, requirements
    missing = sorted(requirements - packages.keys())
    assert not missing, f"in python-packages.nix's requirements, not in the manifest: {missing}"
    stale = sorted(n for n, p in packages.items() if p["role"] == "requirement" and n not in requirements)
    assert not stale, f"role 'requirement' in the manifest, not in python-packages.nix: {stale}"


def test_overlay_wheels_match_the_manifest(manifest: dict) -> None:
    packages = manifest["packages"]
    wheels = _nix_wheels()
    assert {"gradio", "gradio-client", "tomesd", "spandrel-extra-arches"} <= wheels.keys(), wheels.keys()
    for name, wheel in wheels.items():
        conditional = name in {"fastapi", "starlette"}  # only when nixpkgs' starlette is >= 1.0
        if conditional and name not in packages:
            continue
        p = packages[name]
        if conditional and p["source"] == "nixpkgs":
            assert p["version"] != wheel["version"] or "nixpkgsVersion" not in p
            continue
        assert p["source"] == "override", f"{name}: built by the overlay, manifest says {p['source']}"
        assert p["version"] == wheel["version"], f"{name}: overlay {wheel['version']}, manifest {p['version']}"
        missing = sorted(wheel["dependencies"] - packages.keys())
        assert not missing, f"dependencies of the overlay's {name} not in the manifest: {missing}"
    for name, p in packages.items():
        if p["source"] == "override":
            assert name in wheels, f"{name}: 'override' in the manifest, not built by the overlay"


def test_starlette_switch_is_consistent(manifest: dict) -> None:
    """The overlay pins fastapi/starlette only when nixpkgs' starlette is >= 1.0."""
    starlette = manifest["packages"]["starlette"]
    nixpkgs_version = starlette.get("nixpkgsVersion", starlette["version"])
    too_new = int(nixpkgs_version.split(".")[0]) >= 1
    for name in ("starlette", "fastapi"):
        assert (manifest["packages"][name]["source"] == "override") == too_new, name


def test_interpreter_is_the_one_packages_nix_uses(manifest: dict) -> None:
    text = (NIX / "packages.nix").read_text()
    assert f"pkgs.{manifest['python']['attr']}.override" in text


def test_pypi_names_are_unique(manifest: dict) -> None:
    names = [p["pypi"].lower().replace("_", "-") for p in manifest["packages"].values() if p["role"] != "variant"]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, dupes


def _nix_problems(nix_dir: Path) -> list[str]:
    out = subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            str(nix_dir / "python-versions-check.nix"),
            "-A",
            "problems",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix-instantiate is not installed")
def test_nix_check_passes_and_catches_drift(tmp_path: Path) -> None:
    assert _nix_problems(NIX) == []
    for f in ("python-versions-check.nix", "python-packages.nix", "packages.nix"):
        shutil.copy(NIX / f, tmp_path / f)
    broken = json.loads(MANIFEST.read_text())
    del broken["packages"]["kornia"]
    broken["packages"]["gradio"]["version"] = "3.40.0"
    (tmp_path / "python-versions.json").write_text(json.dumps(broken))
    problems = _nix_problems(tmp_path)
    assert any("kornia" in p for p in problems), problems
    assert any(p.startswith("gradio:") for p in problems), problems
