"""Talk to the Rust launcher that embeds us (module ``_webui_launcher``).

Outside the launcher (extension installer subprocesses, unit tests) the module does not
exist; every call is then a no-op so the same code runs in both places.
"""

from __future__ import annotations

import _thread
import os

try:
    import _webui_launcher as _launcher  # provided by the launcher binary (PyO3 inittab)
except ImportError:  # pragma: no cover - only outside the launcher
    _launcher = None


def embedded() -> bool:
    return _launcher is not None


def backend_ready(file_roots: list[str], root_view: str | None = None) -> None:
    """The webui finished its app-started point: the launcher may forward requests now.
    gradio's working directory goes along: it resolves relative ``/file=`` paths against it;
    the root view is where the proxy looks for them next (root_view.py)."""
    if _launcher is not None:
        _launcher.backend_ready(file_roots, os.getcwd(), root_view)


def backend_stopping() -> None:
    """gradio is about to close (UI reload or stop): stop forwarding until ready again."""
    if _launcher is not None:
        _launcher.backend_stopping()


def request_restart() -> None:
    """Stop the webui cleanly; the launcher then starts it again (re-exec, same PID)."""
    if _launcher is not None:
        _launcher.request_restart()
    _thread.interrupt_main()


def stop_requested() -> None:
    """A stop is under way (Ctrl-C): the launcher starts its grace-period watchdog."""
    if _launcher is not None:
        _launcher.stop_requested()


def request_stop() -> None:
    """Stop the webui cleanly; the launcher exits 0 afterwards."""
    if _launcher is not None:
        _launcher.request_stop()
    _thread.interrupt_main()
