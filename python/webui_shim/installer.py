"""Run one extension's ``install.py`` with the launcher's ``launch`` module patches.

Upstream runs ``python install.py`` in a subprocess; there ``import launch`` would get the
unpatched ``run_pip`` and call pip. ``python -m webui_shim.installer EXT_DIR`` installs the
same patches first, so a satisfied requirement is a no-op, and every missing one, over the
whole script, ends in one message (exit status 3). ``--report FILE`` also writes what was
found as JSON (``{"missing": [...], "error": ...}``) for ``extensions list/check``.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback

from . import overlay, patches, requirements
from .config import LaunchConfig


def main(argv: list[str]) -> int:
    args = argv[1:]
    report = None
    if len(args) >= 2 and args[0] == "--report":
        report, args = args[1], args[2:]
    extension_dir = args[0]
    name = os.environ.get("SD_WEBUI_EXTENSION_NAME") or os.path.basename(os.path.normpath(extension_dir))
    script = os.path.join(extension_dir, "install.py")
    config = LaunchConfig.from_env()
    if config.python_overlay:
        overlay.activate(config.python_overlay)
    patches.install_launch_utils(config)
    requirements.collect_missing()
    sys.argv = [script]
    sys.path.insert(0, extension_dir)
    error = None
    try:
        runpy.run_path(script, run_name="__main__")
    except (requirements.PipBlocked, overlay.OverlayInstallFailed) as blocked:
        error = str(blocked)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            error = f"install.py exited with status {exit_.code}"
    except Exception:  # noqa: BLE001 - an extension's failure is reported, never fatal
        error = traceback.format_exc().rstrip()
    missing = requirements.collected_missing() or []
    if report:
        with open(report, "w", encoding="utf8") as file:
            json.dump({"missing": missing, "error": error}, file)
    if missing:
        print(requirements.missing_message(f"Extension '{name}'", missing), file=sys.stderr)
        return patches.EXIT_MISSING_PACKAGES
    if error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
