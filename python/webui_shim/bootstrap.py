"""Entry point the launcher calls on the process's main thread: ``main(config_json)``.

Does what upstream's ``webui.sh`` + ``launch.py`` do, minus installing anything: prepare the
interpreter, the command line and the working directory, patch upstream, then run
upstream's own ``launch.main()`` so every launch flag keeps its meaning.
"""

from __future__ import annotations

import json
import os
import sys

from . import arguments, environment, patches, signals
from .config import LaunchConfig
from .environment import LauncherError
from .settings import settings_keys  # noqa: F401 - entry point the launcher calls


def main(config_json: str) -> int:
    config = LaunchConfig.from_json(config_json)
    line_buffered_output()
    signals.install()
    try:
        environment.apply(config)
        return run_webui(config)
    except LauncherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (patches.EnvironmentIncomplete, patches.requirements.PipBlocked) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def line_buffered_output() -> None:
    """Upstream reports progress with plain print() ("Model loaded in ..."). To a pipe
    (journald, `docker logs`, a supervisor) CPython writes stdout in 8 KiB blocks, so those
    lines would arrive minutes late or only at exit; the launcher's own log lines do not wait."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def run_webui(config: LaunchConfig) -> int:
    argv = arguments.absolutize_paths(config.argv, config.launch_cwd)
    if config.mode == "run":
        argv = arguments.with_accelerator_defaults(argv, arguments.accelerator())
    sys.path.insert(0, config.webui_root)
    os.chdir(config.data_dir)
    patches.install(config)
    sys.argv = [os.path.join(config.webui_root, "launch.py"), *argv]
    try:
        if config.mode == "webui_help":
            from modules import cmd_args

            cmd_args.parser.print_help()
            return 0
        import launch  # upstream's launch.py, importing the patched launch_utils

        launch.main()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("Interrupted: webui stopped.", file=sys.stderr)
    return 0


def doctor_report(config_json: str) -> str:
    """Facts for `stable-diffusion-webui doctor`, gathered inside the real environment (JSON)."""
    config = LaunchConfig.from_json(config_json)
    try:
        environment.apply(config)
    except LauncherError as error:
        return json.dumps({"error": str(error)})
    report: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "site_packages": [p for p in sys.path if p.endswith("site-packages")],
    }
    try:
        import torch

        report["torch"] = torch.__version__
        report["accelerator"] = arguments.accelerator()
        report["cuda_version"] = torch.version.cuda
    except Exception as error:  # noqa: BLE001 - any import failure is the finding
        report["torch_error"] = f"{type(error).__name__}: {error}"
    try:
        missing, mismatched = patches.verify_packages(config.webui_root)
        report["missing"] = missing
        report["mismatched"] = mismatched
    except ImportError as error:
        report["missing"] = [f"packaging ({error})"]
        report["mismatched"] = []
    return json.dumps(report)
