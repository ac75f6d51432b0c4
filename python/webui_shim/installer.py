"""Run one extension's ``install.py`` with the launcher's ``launch`` module patches.

Upstream runs ``python install.py`` in a subprocess; there ``import launch`` would get the
unpatched ``run_pip`` and call pip. ``python -m webui_shim.installer [--check] [--report FILE]
EXT_DIR`` installs the same patches first, so a satisfied requirement is a no-op, and every
missing one, over the whole script, ends in one message (exit status 3). ``--report FILE`` also
writes what was found as JSON (``{"missing": [...], "error": ...}``); ``--check`` installs nothing,
not even into the opt-in overlay (``extensions list/check``).

This module owns the installer's process: the caller gives only the launch configuration
(``SD_WEBUI_SHIM_CONFIG``) and the shim on ``PYTHONPATH`` (:func:`command`, and the same two in
``src/commands/extensions.rs``); everything install.py expects of upstream's environment is set
here (:func:`prepare_process`).
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import traceback

from . import environment, overlay, patches, requirements
from .config import CONFIG_ENV, EXTENSION_NAME_ENV, LaunchConfig


def command(config: LaunchConfig, extension_dir: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the installer for ``extension_dir`` (in the webui)."""
    env = dict(os.environ)
    env[CONFIG_ENV] = config.to_json()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (config.shim_dir, env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "webui_shim.installer", extension_dir], env


def prepare_process(config: LaunchConfig, name: str) -> None:
    """What install.py expects of upstream's installer process, and what the patches need."""
    os.environ.update(config.environment)
    os.environ[EXTENSION_NAME_ENV] = name
    # Upstream passes the data dir only through sys.argv; installers read it via COMMANDLINE_ARGS.
    os.environ["COMMANDLINE_ARGS"] = f"--data-dir {subprocess.list2cmdline([config.data_dir])}"
    # `import launch` / `from modules import ...` from the tree, here and in install.py's children.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (config.shim_dir, config.webui_root, os.environ.get("PYTHONPATH", "")) if p
    )
    sys.path[:0] = [config.webui_root]
    # `import launch` compiles upstream's modules: their bytecode goes where the webui's goes.
    environment.redirect_bytecode_of(config)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="webui_shim.installer")
    parser.add_argument("--check", action="store_true", help="install nothing, not even into the overlay")
    parser.add_argument("--report", metavar="FILE")
    parser.add_argument("extension_dir")
    args = parser.parse_args(argv[1:])
    extension_dir = args.extension_dir
    name = os.path.basename(os.path.normpath(extension_dir))
    script = os.path.join(extension_dir, "install.py")
    config = LaunchConfig.from_env()
    prepare_process(config, name)
    if config.python_overlay:
        overlay.activate(config.python_overlay)
    patches.install_launch_utils(config)
    requirements.collect_missing(install=not args.check)
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
    if args.report:
        with open(args.report, "w", encoding="utf8") as file:
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
