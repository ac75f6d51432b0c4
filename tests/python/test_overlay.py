"""The opt-in Python overlay: pip --prefix into <data>/python-overlay, pinned to the environment.

Runs real pip, offline (PIP_NO_INDEX, a wheel made here), so nothing is fetched.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import subprocess
import sys
import zipfile

import pytest
from webui_shim import overlay


def _wheel(directory, name: str, version: str, requires: list[str] = ()) -> None:
    """A minimal pure-Python wheel: one module, its dist-info, a correct RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{name.replace('-', '_')}.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    with zipfile.ZipFile(directory / f"{dist}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
        wheel.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")


@pytest.fixture
def offline_index(tmp_path, monkeypatch):
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not installed in this interpreter")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    packaging_version = importlib.metadata.version("packaging")
    _wheel(wheels, "sdnix-overlay-probe", "1.0", [f"packaging=={packaging_version}"])
    _wheel(wheels, "sdnix-needs-other-packaging", "1.0", ["packaging==0.0.1"])
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return tmp_path / "data" / "python-overlay"


def test_installs_into_the_overlay_without_copying_what_the_environment_has(offline_index, monkeypatch):
    target = offline_index
    overlay.install(str(target), ["sdnix-overlay-probe"], "Extension 'x'")
    site = overlay.site_packages(str(target))
    installed = sorted(p.name for p in (target / site.split(str(target) + "/", 1)[1]).iterdir())
    # The probe only: its dependency (packaging) is the environment's, not copied.
    assert "sdnix_overlay_probe.py" in installed
    assert not any(name.startswith("packaging") for name in installed), installed
    constraints = (target / overlay.CONSTRAINTS).read_text()
    assert f"packaging=={importlib.metadata.version('packaging')}" in constraints

    monkeypatch.setattr(sys, "path", list(sys.path))
    overlay.activate(str(target))
    assert sys.path[-1] == site  # after everything the environment provides
    import sdnix_overlay_probe

    assert sdnix_overlay_probe.VERSION == "1.0"


def test_a_request_that_would_replace_an_environment_package_fails_and_says_why(offline_index):
    with pytest.raises(overlay.OverlayInstallFailed) as error:
        overlay.install(str(offline_index), ["sdnix-needs-other-packaging"], "Extension 'y'")
    message = str(error.value)
    assert message.startswith("Extension 'y': pip could not install sdnix-needs-other-packaging")
    assert "constraints.txt" in message
    assert not (offline_index / "lib").exists() or not any((offline_index / "lib").rglob("packaging"))
