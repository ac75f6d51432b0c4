"""The launch configuration the Rust launcher hands to the shim (one JSON document)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

# The environment variable that carries the configuration into subprocesses
# (extension installers), which cannot receive it through the embedding API.
CONFIG_ENV = "SD_WEBUI_SHIM_CONFIG"
# Set in an extension installer's process (installer.py): whose install.py is running.
EXTENSION_NAME_ENV = "SD_WEBUI_EXTENSION_NAME"


@dataclass
class PythonEnv:
    """A virtualenv or Nix python environment whose site-packages the webui uses."""

    prefix: str
    isolated: bool  # a venv without include-system-site-packages


@dataclass
class LaunchConfig:
    mode: str
    webui_root: str
    data_dir: str
    cache_dir: str
    launch_cwd: str
    executable: str
    shim_dir: str
    argv: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    python_env: PythonEnv | None = None
    pycache_prefix: str | None = None
    public_non_local: bool = False
    webui_rev: str | None = None
    # {source, locked: {key: value}, declared: {key: value}, origins: {key: layer}} (locks.py)
    settings: dict | None = None
    # Read-only directory of managed extensions (extensions.py), None when there is none.
    managed_extensions_dir: str | None = None
    # The opt-in overlay environment for extension installs (overlay.py), None when off.
    python_overlay: str | None = None
    # The root view extensions see as script_path (root_view.py), None outside `run`.
    root_view: str | None = None
    # Writable views of the managed extensions, loaded instead of managed_extensions_dir
    # (src/views/managed_extensions.rs), None outside `run`.
    managed_extensions_view: str | None = None

    @classmethod
    def from_json(cls, text: str) -> LaunchConfig:
        data = json.loads(text)
        env = data.pop("python_env", None)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(python_env=PythonEnv(**env) if env else None, **known)

    @classmethod
    def from_env(cls) -> LaunchConfig:
        return cls.from_json(os.environ[CONFIG_ENV])

    def to_json(self) -> str:
        data = dict(self.__dict__)
        data["python_env"] = self.python_env.__dict__ if self.python_env else None
        return json.dumps(data)
