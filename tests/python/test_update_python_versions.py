"""nix/update_python_versions.py: what checks.python-versions and `nix run .#update-python-versions` run.

The pin's versions reach the script as JSON that Nix computes (nix/python-versions-check.nix,
`actual`). These tests give it such JSON, and, where nix-instantiate is installed, the JSON Nix
really computes from stand-in package sets, as the check's build would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "nix"
SCRIPT = NIX / "update_python_versions.py"
MANIFEST = NIX / "python-versions.json"
PIN = "5e2305d577ca00acbba631b05cb1094d172b29f3"

sys.path.insert(0, str(NIX))
import update_python_versions as upv  # noqa: E402


def _actual(manifest: dict, **changed: str) -> dict:
    packages = {
        name: {"version": e["version"], **({"nixpkgsVersion": e["nixpkgsVersion"]} if "nixpkgsVersion" in e else {})}
        for name, e in manifest["packages"].items()
    }
    for name, version in changed.items():
        packages[name]["version"] = version
    return {"rev": PIN, "python": manifest["python"]["version"], "packages": packages}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_updated_takes_the_pins_versions_and_keeps_the_rest() -> None:
    manifest = json.loads(MANIFEST.read_text())
    new, problems = upv.updated(manifest, _actual(manifest, numpy="2.4.4"))
    assert problems == []
    assert new["packages"]["numpy"]["version"] == "2.4.4"
    # Said of a version read elsewhere; gone once the pin's own version is written.
    assert "notAtBranchOff" not in new["packages"]["numpy"]
    assert new["packages"]["numpy"]["read"] == {"repo": "NixOS/nixpkgs", "commit": PIN, "verified": True}
    # The maintainer's fields stay.
    for field in ("role", "pypi", "file"):
        assert new["packages"]["numpy"][field] == manifest["packages"]["numpy"][field]
    assert new["nixpkgs"]["rev"] == PIN


def test_a_package_the_pin_lacks_is_reported_not_guessed() -> None:
    manifest = json.loads(MANIFEST.read_text())
    actual = _actual(manifest)
    actual["packages"]["kornia"]["version"] = None
    new, problems = upv.updated(manifest, actual)
    assert problems == ["kornia: the pin has no python313Packages.kornia"]
    assert new["packages"]["kornia"]["version"] == manifest["packages"]["kornia"]["version"]


def test_check_prints_the_diff_and_the_command(tmp_path: Path) -> None:
    manifest = json.loads(MANIFEST.read_text())
    actual = tmp_path / "actual.json"
    actual.write_text(json.dumps(_actual(manifest, scipy="1.17.1")))
    result = _run("--check", str(MANIFEST), str(actual))
    assert result.returncode == 1, result.stdout + result.stderr
    assert '-      "version": "1.18.0"' in result.stdout
    assert '+      "version": "1.17.1"' in result.stdout
    assert "nix run .#update-python-versions" in result.stdout


def test_write_rewrites_the_file_and_then_matches(tmp_path: Path) -> None:
    copy = tmp_path / "python-versions.json"
    shutil.copy(MANIFEST, copy)
    manifest = json.loads(copy.read_text())
    actual = tmp_path / "actual.json"
    actual.write_text(json.dumps(_actual(manifest, pillow="12.2.0")))
    assert _run("--write", str(copy), str(actual)).returncode == 0
    assert json.loads(copy.read_text())["packages"]["pillow"]["version"] == "12.2.0"
    assert not list(tmp_path.glob(".python-versions.json.*")), "a temporary file was left behind"
    again = _run("--check", str(copy), str(actual))
    assert again.returncode == 0, again.stdout


def test_outside_a_checkout_it_says_where_to_run(tmp_path: Path) -> None:
    result = _run("--write", str(tmp_path / "nix/python-versions.json"), str(tmp_path / "x.json"))
    assert result.returncode == 2
    assert "root of a stable-diffusion-nix checkout" in result.stderr


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix-instantiate is not installed")
def test_the_check_pipeline_with_versions_nix_computes(tmp_path: Path) -> None:
    """python-versions-check.nix's `actual` from stand-in package sets, then the script, as the check runs them."""
    manifest = json.loads(MANIFEST.read_text())
    # Every manifest package at its manifest version, except numpy; fastapi's nixpkgs one differs too.
    pkgs = {n: {"version": e["version"]} for n, e in manifest["packages"].items()}
    pkgs["numpy"]["version"] = "2.4.4"
    base = {n: {"version": e.get("nixpkgsVersion", e["version"])} for n, e in manifest["packages"].items()}
    base["fastapi"]["version"] = "0.135.0"
    expr = (
        f"(import {NIX}/python-versions-check.nix {{"
        f" python = {{ version = \"3.13.9\"; pkgs = builtins.fromJSON ''{json.dumps(pkgs)}''; }};"
        f" basePython = {{ pkgs = builtins.fromJSON ''{json.dumps(base)}''; }}; }}).actual"
    )
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    actual = json.loads(out.stdout) | {"rev": PIN}
    (tmp_path / "actual.json").write_text(json.dumps(actual))
    result = _run("--check", str(MANIFEST), str(tmp_path / "actual.json"))
    assert result.returncode == 1
    assert '+      "version": "2.4.4"' in result.stdout
    assert '+      "nixpkgsVersion": "0.135.0"' in result.stdout
    assert '+    "version": "3.13.9"' in result.stdout
