"""Extensions that start pip themselves get the same check as ``launch.run_pip``.

``launch.run_pip`` and ``launch.run`` are patched (patches.py), but some extensions call pip
directly: adetailer's ``install.py`` (``subprocess.run([sys.executable, "-m", "pip",
"install", ...])``), sd-dynamic-prompts' ``version_tools.install_requirements``
(``subprocess.check_call``), scripts that pip-install at load. Unguarded, pip installs into
the Python environment (a venv) or fails half-way (the read-only Nix store).

``subprocess.Popen`` is the one door of ``run``/``call``/``check_call``/``check_output``; a shell
command line (``shell=True``, ``os.system``) is split into its commands with ``shlex``: pip as the
whole line is handled like an argv, pip inside a longer line (``cd x && pip install y``) is
checked and the line refused, and words that only mention pip (``echo "pip install"``) run as
asked. A ``pip install`` (global options such as ``-q`` before it included) becomes
``check(pip_args)``: satisfied, or missing and collected for the installer's
one message, the process started instead is a no-op that exits 0; otherwise ``check`` raises
(:class:`requirements.PipBlocked`) with the message. ``pip uninstall`` is refused the same way.
Read-only pip commands (``show``, ``list``, ``freeze``, ``--version``) run as asked.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable

from . import requirements

# pip subcommands that would change the environment.
_WRITING = {"install", "uninstall"}
# Shell operators that separate commands in a command line.
_SEPARATORS = {"&&", "||", ";", "|", "&"}
# Python options that take a value (`python -W ignore -m pip ...`).
_PYTHON_OPTIONS_WITH_VALUE = {"-W", "-X", "--check-hash-based-pycs"}

_state = threading.local()
_check: Callable[[list[str]], None] | None = None
_original_popen = subprocess.Popen
_original_system = os.system


def _is_pip_program(program: str) -> bool:
    name = os.path.basename(program)
    return name in ("pip", "pip3") or (name.startswith("pip3.") and name[5:].isdigit())


def _argv_pip_arguments(argv: list[str]) -> list[str] | None:
    """The arguments after ``pip`` when the command ``argv`` runs pip, else None."""
    if not argv:
        return None
    if _is_pip_program(argv[0]):
        return argv[1:]
    index = 1
    while index < len(argv) - 1:
        if argv[index] == "-m":
            return argv[index + 2 :] if argv[index + 1] == "pip" else None
        if not argv[index].startswith("-") or argv[index] == "-c":
            return None  # a script or `-c`: not `python [options] -m pip`
        index += 2 if argv[index] in _PYTHON_OPTIONS_WITH_VALUE else 1
    return None


def subcommand(pip_args: list[str]) -> str | None:
    """pip's subcommand (``install``), past global options such as ``-q`` or ``--log FILE``."""
    index = 0
    while index < len(pip_args):
        arg = pip_args[index]
        if not arg.startswith("-"):
            return arg
        index += 2 if arg in requirements.OPTIONS_WITH_VALUE else 1
    return None


def shell_segments(command: str) -> list[list[str]] | None:
    """A shell command line as its commands' argv (leading ``VAR=value`` dropped), or None when
    it does not parse as plain words."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            segments.append([])
        elif segments[-1] or not ("=" in token and token.split("=", 1)[0].isidentifier()):
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _command_line(args) -> str:
    return os.fsdecode(args[0] if isinstance(args, (list, tuple)) and args else args)


def pip_arguments(args, shell: bool = False) -> list[str] | None:
    """The arguments after ``pip`` when ``args`` (as given to Popen) is one command that starts
    pip, else None. A shell command line counts only when pip is its whole command."""
    if shell:
        segments = shell_segments(_command_line(args)) or []
        return _argv_pip_arguments(segments[0]) if len(segments) == 1 else None
    if isinstance(args, (str, bytes, os.PathLike)):
        return _argv_pip_arguments([os.fsdecode(args)])
    return _argv_pip_arguments([os.fsdecode(a) for a in args])


def _writing(pip_args: list[str] | None) -> list[str] | None:
    """``pip_args`` from the subcommand on, when that subcommand changes the environment."""
    command = subcommand(pip_args) if pip_args is not None else None
    return pip_args[pip_args.index(command) :] if command in _WRITING else None


def _intercepted(args, shell: bool) -> bool:
    """Checks a pip command that would write; True when it must not run."""
    if getattr(_state, "allowed", False) or _check is None:
        return False
    request = _writing(pip_arguments(args, shell))
    if request is not None:
        _check(request)
        return True
    if shell:
        _refuse_pip_in_a_chain(_command_line(args))
    return False


def _refuse_pip_in_a_chain(command: str) -> None:
    """``cd x && pip install y``: pip inside a longer command line. Its request gets the same
    check (missing packages: the launcher's message); the line is refused either way, since
    the rest of it cannot run without the pip part."""
    for segment in shell_segments(command) or []:
        request = _writing(_argv_pip_arguments(segment))
        if request is not None:
            _check(request)
            raise requirements.PipBlocked(
                f"`{command}` runs pip inside a longer shell command; the launcher never runs pip, and "
                "does not run the rest of that line without it. The packages it asks for are present."
            )


class GuardedPopen(_original_popen):
    """Replaces subprocess.Popen: a pip command that would write is checked, never run."""

    # Positions of Popen's `executable` and `shell` among the arguments after `args`.
    _EXECUTABLE, _SHELL = 1, 7

    def __init__(self, args, *rest, **kwargs):
        shell = rest[self._SHELL] if len(rest) > self._SHELL else kwargs.get("shell", False)
        if _intercepted(args, bool(shell)):
            # A no-op process that exits 0 stands in for pip.
            args = [sys.executable, "-c", ""]
            replaced = {self._EXECUTABLE: None, self._SHELL: False}
            rest = tuple(replaced.get(i, value) for i, value in enumerate(rest))
            if len(rest) <= self._EXECUTABLE:
                kwargs["executable"] = None
            if len(rest) <= self._SHELL:
                kwargs["shell"] = False
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
        self._outer = getattr(_state, "allowed", False)
        _state.allowed = True

    def __exit__(self, *exc):
        _state.allowed = self._outer
