"""Extensions that start pip themselves get the same check as ``launch.run_pip``.

``launch.run_pip`` and ``launch.run`` are patched (patches.py), but some extensions call pip
directly: adetailer's ``install.py`` (``subprocess.run([sys.executable, "-m", "pip",
"install", ...])``), sd-dynamic-prompts' ``version_tools.install_requirements``
(``subprocess.check_call``), scripts that pip-install at load. Unguarded, pip installs into
the Python environment (a venv) or fails half-way (the read-only Nix store).

``subprocess.Popen`` is the one door of ``run``/``call``/``check_call``/``check_output``; a shell
command line (``shell=True``, ``os.system``) is matched as ``launch.run`` matches it. A ``pip
install`` becomes ``check(pip_args)``: satisfied, or missing and collected for the installer's
one message, the process started instead is a no-op that exits 0; otherwise ``check`` raises
(:class:`requirements.PipBlocked`) with the message. ``pip uninstall`` is refused the same way.
Read-only pip commands (``show``, ``list``, ``freeze``, ``--version``) run as asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

from . import requirements

# pip subcommands that would change the environment.
_WRITING = {"install", "uninstall"}

_state = threading.local()
_check: Callable[[list[str]], None] | None = None
_original_popen = subprocess.Popen
_original_system = os.system


def pip_arguments(args, shell: bool = False) -> list[str] | None:
    """The arguments after ``pip`` when ``args`` (as given to Popen) starts pip, else None."""
    if isinstance(args, (str, bytes)):
        command = os.fsdecode(args)
        if shell:
            return requirements.pip_args_from_shell(command)
        args = [command]
    argv = [os.fsdecode(a) for a in args]
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program in ("pip", "pip3") or (program.startswith("pip3.") and program[5:].isdigit()):
        return argv[1:]
    for index in range(1, len(argv) - 1):
        if argv[index] == "-m" and argv[index + 1] == "pip":
            return argv[index + 2 :]
        if not argv[index].startswith("-"):
            return None  # a script or `-c`: not `python [options] -m pip`
    return None


def _intercepted(args, shell: bool) -> bool:
    """Checks a pip command that would write; True when it must not run."""
    if getattr(_state, "allowed", False) or _check is None:
        return False
    pip_args = pip_arguments(args, shell)
    if not pip_args or pip_args[0] not in _WRITING:
        return False
    _check(pip_args)
    return True


class GuardedPopen(_original_popen):
    """Replaces subprocess.Popen: a pip command that would write is checked, never run."""

    def __init__(self, args, *rest, **kwargs):
        if _intercepted(args, bool(kwargs.get("shell", False))):
            args, kwargs["shell"], kwargs["executable"] = [sys.executable, "-c", ""], False, None
        super().__init__(args, *rest, **kwargs)


def _guarded_system(command) -> int:
    """Replaces os.system for pip command lines, as GuardedPopen."""
    if _intercepted(command, shell=True):
        return 0
    return _original_system(command)


def install(check: Callable[[list[str]], None]) -> None:
    """Guards subprocess.Popen and os.system in this process; ``check(pip_args)`` decides."""
    global _check
    _check = check
    subprocess.Popen = GuardedPopen
    os.system = _guarded_system


class allowed:
    """The launcher's own pip run (the opt-in overlay) passes the guard in this thread."""

    def __enter__(self):
        _state.allowed = True

    def __exit__(self, *exc):
        _state.allowed = False
