"""``settings_keys(config_json)``: upstream's settings keys with type, default and label, read
from the webui tree itself (``modules.shared_options``) so the list never goes stale."""

from __future__ import annotations

import contextlib
import json
import os
import sys

from . import environment, patches
from .config import LaunchConfig


def settings_keys(config_json: str) -> str:
    config = LaunchConfig.from_json(config_json)
    environment.apply(config)
    sys.path.insert(0, config.webui_root)
    os.chdir(config.data_dir)
    patches.install(config)
    sys.argv = [os.path.join(config.webui_root, "launch.py"), *config.argv]
    # Upstream prints while importing; the launcher's stdout is for the JSON only.
    with contextlib.redirect_stdout(sys.stderr):
        from modules import shared_options  # upstream's option table (imports torch); no UI

    keys = {}
    for key, info in shared_options.options_templates.items():
        if getattr(info, "do_not_save", False):
            continue
        section = getattr(info, "section", None) or (None, None)
        keys[key] = {
            "type": type(info.default).__name__ if info.default is not None else "any",
            "default": info.default,
            "label": info.label,
            "section": section[1] if len(section) > 1 else None,
        }
    return json.dumps(keys, default=repr, ensure_ascii=False)
