"""SIGINT handling for the embedded webui.

The launcher initialises CPython without its signal handlers, so the first thing on the
main thread is a handler that turns Ctrl-C into KeyboardInterrupt (which upstream's webui()
loop catches as "stop") and lets the launcher know. A second Ctrl-C forces the exit.
"""

from __future__ import annotations

import os
import signal
import sys

from . import control

_interrupts = 0


def _on_sigint(signum, frame):
    global _interrupts
    _interrupts += 1
    if _interrupts > 1:
        print("Second interrupt: exiting now.", file=sys.stderr)
        os._exit(1)
    control.stop_requested()
    raise KeyboardInterrupt


def install() -> None:
    signal.signal(signal.SIGINT, _on_sigint)
