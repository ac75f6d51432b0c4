"""Run one extension's ``install.py`` with the launcher's ``launch`` module patches.

Upstream runs ``python install.py`` in a subprocess; there ``import launch`` would get the
unpatched ``run_pip`` and call pip. ``python -m webui_shim.installer EXT_DIR`` installs the
same patches first, so a satisfied requirement is a no-op and a missing one is one message.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import patches, requirements
from .config import LaunchConfig


def main(argv: list[str]) -> int:
    extension_dir = argv[1]
    script = os.path.join(extension_dir, "install.py")
    patches.install_launch_utils(LaunchConfig.from_env())
    sys.argv = [script]
    sys.path.insert(0, extension_dir)
    try:
        runpy.run_path(script, run_name="__main__")
    except requirements.PipBlocked as blocked:
        print(str(blocked), file=sys.stderr)
        return patches.EXIT_MISSING_PACKAGES
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
