"""The opt-in Python overlay (``--python-overlay``): where extension installs go when the
user accepts impurity.

Off by default: then a missing package is one message saying how to add it to the Nix
environment. On, ``<data>/python-overlay`` is a pip ``--prefix`` that extension installers
may install into. It can never replace what the environment provides:

- pip runs with a constraints file pinning every distribution the environment has to its
  installed version, so a request that needs another torch/numpy/gradio fails instead;
- ``--prefix`` (unlike ``--target``) sees the environment's packages as installed, so they
  are not copied into the overlay;
- the overlay's site-packages is appended to ``sys.path`` last, without running its ``.pth``
  files, so even a file that got there by hand cannot shadow a module the environment has.
"""

from __future__ import annotations

import os
import subprocess
import sys

from . import pip_guard, requirements

CONSTRAINTS = "constraints.txt"


class OverlayInstallFailed(RuntimeError):
    """pip could not install into the overlay (its output is in the message)."""


def site_packages(overlay: str) -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(overlay, "lib", version, "site-packages")


def activate(overlay: str) -> None:
    """Make the overlay's packages importable, after everything else."""
    path = site_packages(overlay)
    if path not in sys.path:
        sys.path.append(path)


def environment_pins(overlay: str) -> list[str]:
    """``name==version`` for every distribution outside the overlay."""
    import importlib.metadata

    inside = os.path.join(os.path.realpath(site_packages(overlay)), "")
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        location = os.path.realpath(str(dist.locate_file("")))
        if name and not os.path.join(location, "").startswith(inside):
            pins.setdefault(requirements.canonicalize_name(name), f"{name}=={dist.version}")
    return sorted(pins.values())


def install(overlay: str, packages: list[str], what: str) -> None:
    """pip install ``packages`` into the overlay, constrained to the environment's versions."""
    os.makedirs(overlay, exist_ok=True)
    constraints = os.path.join(overlay, CONSTRAINTS)
    with open(constraints + ".tmp", "w", encoding="utf8") as file:
        file.write("# Written by the launcher: the environment's packages, which the overlay must not replace.\n")
        file.write("\n".join(environment_pins(overlay)) + "\n")
    os.replace(constraints + ".tmp", constraints)
    command = [sys.executable, "-m", "pip", "install", "--prefix", overlay, "-c", constraints, *packages]
    print(f"{what}: installing {', '.join(packages)} into the Python overlay {overlay}")
    with pip_guard.allowed():  # the one pip run the user opted into
        result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise OverlayInstallFailed(
            f"{what}: pip could not install {', '.join(packages)} into the Python overlay {overlay} "
            f"(the environment's own packages are pinned by {constraints}):\n{output}"
        )
