"""Decide whether a pip request is already satisfied, without ever running pip.

Upstream and its extensions call ``launch.run_pip("install foo==1.2 bar")`` (or
``launch.run('"python" -m pip install ...')``). In a Nix environment pip must never run:
the site-packages are read-only and owned by the build. So a request is parsed, each
requirement is checked against the installed distributions, and the caller gets either
"nothing to do" or one message naming every missing package and how to add it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
from dataclasses import dataclass, field

# pip install options that take a value; their value is not a requirement.
OPTIONS_WITH_VALUE = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-c",
    "--constraint",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--src",
    "--upgrade-strategy",
    "--progress-bar",
    "--global-option",
    "--config-settings",
    "-C",
    "--trusted-host",
    "--cache-dir",
    "--log",
    "--proxy",
    "--retries",
    "--timeout",
    "--exists-action",
    "--cert",
    "--client-cert",
    "--report",
    "--python",
    "--only-binary",
    "--no-binary",
}
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9_.\-]+)")
_PIP_IN_SHELL = re.compile(r"(?:^|[\s\"'/])(?:-m\s+pip|pip3?(?:\.exe)?)\s+(?P<args>.*)$")


class PipBlocked(RuntimeError):
    """Raised instead of running pip when requested packages are missing."""


# In an extension installer (installer.py), missing packages are collected across the whole
# install.py and reported once at the end, instead of stopping at the first request.
_collected: list[str] | None = None
# False for `extensions check` (installer.py --check): report, install nothing (not even into
# the opt-in overlay).
_may_install = True


def collect_missing(install: bool = True) -> None:
    global _collected, _may_install
    _collected = []
    _may_install = install


def may_install() -> bool:
    """Whether a missing package may go to the opt-in overlay in this process."""
    return _may_install


def collected_missing() -> list[str] | None:
    """The missing requirements collected so far (None when not collecting)."""
    return None if _collected is None else list(dict.fromkeys(_collected))


def note_missing(missing: list[str]) -> bool:
    """Record ``missing`` when collecting; False when the caller must report it itself."""
    if _collected is None:
        return False
    _collected.extend(missing)
    return True


@dataclass
class Check:
    """Outcome of checking one pip request against the installed distributions."""

    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unsupported: str | None = None

    @property
    def satisfied(self) -> bool:
        return not self.missing and self.unsupported is None


def canonicalize_name(name: str) -> str:
    """PEP 503 normalisation (as packaging.utils.canonicalize_name, without importing it
    before the webui's environment is on sys.path)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    """Canonical distribution name → version, for everything on ``sys.path``."""
    versions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            versions.setdefault(canonicalize_name(name), dist.version)
    return versions


def pip_args_from_shell(command: str) -> list[str] | None:
    """The pip arguments of a shell command line, or None when it does not run pip."""
    match = _PIP_IN_SHELL.search(command)
    if match is None:
        return None
    try:
        return shlex.split(match.group("args"))
    except ValueError:
        return match.group("args").split()


def _requirement(spec: str):
    """A parsed ``packaging`` Requirement, or the raw text when it names no package we can check."""
    from packaging.requirements import InvalidRequirement, Requirement

    egg = _EGG.search(spec)
    if egg:
        return Requirement(egg.group(1))
    try:
        return Requirement(spec)
    except InvalidRequirement:
        return spec


def _read_requirements_file(path: str, base: str) -> list[str]:
    full = path if os.path.isabs(path) else os.path.join(base, path)
    lines = []
    with open(full, encoding="utf8") as file:
        for raw in file:
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(("-r ", "--requirement ")):
                lines += _read_requirements_file(line.split(None, 1)[1], os.path.dirname(full))
            elif not line.startswith("-"):
                lines.append(line)
    return lines


def check_pip_request(args: list[str], cwd: str | None = None) -> Check:
    """Check ``pip <args>`` without running it."""
    result = Check()
    if not args or args[0] != "install":
        result.unsupported = f"pip {' '.join(args)}"
        return result
    specs: list[str] = []
    iterator = iter(args[1:])
    for arg in iterator:
        if arg in ("-r", "--requirement"):
            specs += _read_requirements_file(next(iterator, ""), cwd or os.getcwd())
        elif arg.startswith("--requirement="):
            specs += _read_requirements_file(arg.split("=", 1)[1], cwd or os.getcwd())
        elif arg in ("-e", "--editable"):
            specs.append(next(iterator, ""))
        elif arg in OPTIONS_WITH_VALUE:
            next(iterator, None)
        elif arg.startswith("-"):
            continue
        else:
            specs.append(arg)
    installed = installed_versions()
    for spec in specs:
        requirement = _requirement(spec)
        if isinstance(requirement, str):
            result.missing.append(requirement)
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = installed.get(canonicalize_name(requirement.name))
        if version is None:
            result.missing.append(str(requirement))
        elif requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            result.mismatched.append(f"{requirement} (installed: {version})")
    return result


def nix_attribute(requirement: str) -> str:
    """Best guess of the nixpkgs python attribute for a requirement, for the hint."""
    name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
    return canonicalize_name(name) if name else requirement


def missing_message(what: str, missing: list[str]) -> str:
    """The one message a user sees when packages are missing (shared by every caller)."""
    attrs = " ".join(f"ps.{nix_attribute(m)}" for m in missing)
    plain = " ".join(shlex.quote(m) for m in missing)
    return (
        f"{what} needs Python packages that are not installed: {', '.join(missing)}.\n"
        "The launcher never runs pip. Add them to the environment instead:\n"
        f"  Nix (flake / NixOS module): extraPythonPackages = ps: [ {attrs} ];\n"
        f"  a virtualenv given with --python-env: <venv>/bin/pip install {plain}"
    )
