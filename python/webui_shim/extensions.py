"""Managed extensions: a read-only directory loaded next to upstream's built-in and user ones.

Upstream knows two extension directories, ``extensions-builtin`` in its tree and
``<data>/extensions``, and has no flag for a third. The Nix package puts the extensions a
user declares (pinned sources, Python dependencies in the environment) in their own
read-only directory, so they can never be confused with, updated over, or deleted like the
user's own. These patches make upstream list, preload and load them.

The same-name rule: a managed extension wins over a user extension of the same name (what is
declared is what runs). The user's copy is not loaded, nor its ``install.py`` run; it stays on
disk untouched, and the first scan says so once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from types import ModuleType

from .config import LaunchConfig
from .hooks import after_import, patches

MANIFEST = "manifest.json"


@dataclass
class Managed:
    """The managed extensions directory: ``<dir>/<name>/`` per extension, and a manifest the
    Nix package writes (``{"extensions": {name: {"url", "rev", "date", "pythonPackages"}}}``)."""

    directory: str
    # The read-only directory the names and the manifest come from (the store); `directory`
    # is where the webui loads them from: the same, or their writable views.
    source: str = ""
    names: list[str] = field(default_factory=list)
    info: dict[str, dict] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, source: str, views: str | None = None) -> Managed:
        source = os.path.abspath(source)
        names = sorted(
            name
            for name in os.listdir(source)
            if not name.startswith(".") and os.path.isdir(os.path.join(source, name))
        )
        info: dict[str, dict] = {}
        manifest = os.path.join(source, MANIFEST)
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf8") as file:
                info = json.load(file).get("extensions", {})
        return cls(os.path.abspath(views) if views else source, source, names, info)

    def canonical(self) -> dict[str, str]:
        """canonical name (upstream's: the directory name, lower-cased) -> managed name."""
        return {name.lower().strip(): name for name in self.names}

    def shadowed(self, user_names: list[str]) -> list[str]:
        """User extension directories hidden by a managed one of the same name."""
        canonical = self.canonical()
        return [name for name in user_names if name.lower().strip() in canonical]

    def report_shadowed(self, user_dir: str, shadowed: list[str]) -> None:
        for name in shadowed:
            if name in self.reported:
                continue
            self.reported.add(name)
            managed = self.canonical()[name.lower().strip()]
            print(
                f"Extension '{name}' is both managed ({os.path.join(self.directory, managed)}) and installed "
                f"in {os.path.join(user_dir, name)}: the managed one is loaded; yours is left on disk, unused. "
                "To use yours, remove it from the declared extensions (Nix configuration)."
            )


_managed: Managed | None = None


def managed_directories() -> list[str]:
    """Where managed extensions are loaded from and their read-only source (file roots for the
    proxy: a view's links resolve into the source)."""
    return list(dict.fromkeys([_managed.directory, _managed.source])) if _managed else []


def install(config: LaunchConfig) -> None:
    global _managed
    if not config.managed_extensions_dir:
        return
    managed = _managed = Managed.read(config.managed_extensions_dir, config.managed_extensions_view)
    after_import("modules.launch_utils", lambda m: _patch_launch_list(m, managed))
    after_import("modules.script_loading", lambda m: _patch_preload(m, managed))
    after_import("modules.extensions", lambda m: _patch_extensions(m, managed))


@patches("modules.launch_utils", "list_extensions", "args")
def _patch_launch_list(launch_utils: ModuleType, managed: Managed) -> None:
    # launch_utils.list_extensions(settings_file) lists <data>/extensions for preload.py and
    # install.py. A user extension hidden by a managed one must run neither.
    original = launch_utils.list_extensions

    def list_extensions(settings_file):
        """Replaces launch_utils.list_extensions: without user extensions a managed one shadows."""
        names = original(settings_file)
        hidden = set(managed.shadowed(names))
        return [name for name in names if name not in hidden]

    launch_utils.list_extensions = list_extensions


def _enabled_managed(launch_utils: ModuleType, managed: Managed) -> list[str]:
    """Managed extensions to preload, by the rules upstream's launch_utils.list_extensions
    applies to user extensions (settings read straight from the file: opts do not exist yet)."""
    args = launch_utils.args
    try:
        with open(args.ui_settings_file, encoding="utf8") as file:
            settings = json.load(file)
    except (OSError, TypeError, ValueError):
        settings = {}
    if settings.get("disable_all_extensions", "none") != "none":
        return []
    if args.disable_extra_extensions or args.disable_all_extensions:
        return []
    disabled = set(settings.get("disabled_extensions", []))
    return [name for name in managed.names if name not in disabled]


@patches("modules.script_loading", "preload_extensions")
def _patch_preload(script_loading: ModuleType, managed: Managed) -> None:
    # shared_cmd_options preloads <data>/extensions then extensions-builtin (each preload.py
    # may add command-line options). Managed ones are preloaded before the user's.
    original = script_loading.preload_extensions

    def preload_extensions(extensions_dir, parser, extension_list=None):
        """Replaces script_loading.preload_extensions: the user directory's call also preloads
        the managed directory, first."""
        from modules import launch_utils, paths_internal

        if os.path.abspath(extensions_dir) == os.path.abspath(paths_internal.extensions_dir):
            original(managed.directory, parser, extension_list=_enabled_managed(launch_utils, managed))
        return original(extensions_dir, parser, extension_list=extension_list)

    script_loading.preload_extensions = preload_extensions


@patches(
    "modules.extensions",
    "list_extensions",
    "Extension.read_info_from_repo",
    "Extension.check_updates",
    "Extension.fetch_and_reset_hard",
    "ExtensionMetadata",
    "extensions",
    "extension_paths",
    "loaded_extensions",
    "extensions_dir",
    "extensions_builtin_dir",
)
def _patch_extensions(extensions: ModuleType, managed: Managed) -> None:
    managed_class = _managed_extension_class(extensions.Extension, managed)

    def list_extensions():
        """Replaces modules.extensions.list_extensions: upstream's scan, over three directories
        (built-in, managed, user) instead of two. Messages and checks are upstream's."""
        from modules import errors, shared

        extensions.extensions.clear()
        extensions.extension_paths.clear()
        extensions.loaded_extensions.clear()

        if shared.cmd_opts.disable_all_extensions:
            print('*** "--disable-all-extensions" arg was used, will not load any extensions ***')
        elif shared.opts.disable_all_extensions == "all":
            print('*** "Disable all extensions" option was set, will not load any extensions ***')
        elif shared.cmd_opts.disable_extra_extensions:
            print('*** "--disable-extra-extensions" arg was used, will only load built-in extensions ***')
        elif shared.opts.disable_all_extensions == "extra":
            print('*** "Disable all extensions" option was set, will only load built-in extensions ***')

        user_dir = extensions.extensions_dir
        user_names = sorted(os.listdir(user_dir)) if os.path.isdir(user_dir) else []
        hidden = managed.shadowed([n for n in user_names if os.path.isdir(os.path.join(user_dir, n))])
        managed.report_shadowed(user_dir, hidden)

        scans = [
            (extensions.extensions_builtin_dir, extensions.Extension, True),
            (managed.directory, managed_class, False),
            (user_dir, extensions.Extension, False),
        ]
        for dirname, kind, is_builtin in scans:
            if not os.path.isdir(dirname):
                continue
            for extension_dirname in sorted(os.listdir(dirname)):
                path = os.path.join(dirname, extension_dirname)
                if not os.path.isdir(path) or (dirname == user_dir and extension_dirname in hidden):
                    continue
                if kind is managed_class and extension_dirname not in managed.names:
                    continue
                metadata = extensions.ExtensionMetadata(path, extension_dirname)
                already = extensions.loaded_extensions.get(metadata.canonical_name)
                if already is not None:
                    errors.report(
                        f'Duplicate canonical name "{extension_dirname}" found in extensions "{extension_dirname}" '
                        f'and "{already.name}". Former will be discarded.',
                        exc_info=False,
                    )
                    continue
                extension = kind(
                    name=extension_dirname,
                    path=path,
                    enabled=extension_dirname not in shared.opts.disabled_extensions,
                    is_builtin=is_builtin,
                    metadata=metadata,
                )
                extensions.extensions.append(extension)
                extensions.extension_paths[extension.path] = extension
                extensions.loaded_extensions[extension_dirname] = extension

        for extension in extensions.extensions:
            extension.metadata.requires = extension.metadata.get_script_requirements("Requires", "Extension")
        for extension in extensions.extensions:
            if not extension.enabled:
                continue
            for req in extension.metadata.requires:
                required = extensions.loaded_extensions.get(req)
                if required is None:
                    errors.report(
                        f'Extension "{extension.name}" requires "{req}" which is not installed.', exc_info=False
                    )
                elif not required.enabled:
                    errors.report(
                        f'Extension "{extension.name}" requires "{required.name}" which is disabled.', exc_info=False
                    )

    extensions.list_extensions = list_extensions
    extensions.ManagedExtension = managed_class


def _managed_extension_class(base: type, managed: Managed) -> type:
    class ManagedExtension(base):
        """An extension from the managed directory: its version is the pin, not a git checkout,
        and the UI can neither update nor reset it (the store is read-only anyway)."""

        is_managed = True

        def read_info_from_repo(self):
            # Replaces Extension.read_info_from_repo (GitPython on <path>/.git): the pin is
            # in the manifest; a store path has no .git.
            if self.have_info_from_repo:
                return
            info = managed.info.get(self.name, {})
            self.remote = info.get("url")
            self.commit_hash = info.get("rev") or ""
            # Upstream's API model requires a commit date; without a pinned one, the directory's.
            self.commit_date = info.get("date") or int(os.path.getmtime(self.path))
            self.version = self.commit_hash[:8]
            self.branch = "managed"
            self.status = "managed"
            self.have_info_from_repo = True

        def check_updates(self):
            # Replaces Extension.check_updates (git fetch --dry-run).
            self.can_update = False
            self.status = "managed"

        def fetch_and_reset_hard(self, commit=None):
            # Replaces Extension.fetch_and_reset_hard (git fetch + reset --hard).
            raise RuntimeError(
                f"Extension '{self.name}' is managed: it cannot be updated from the UI. Change its pin in "
                "your Nix configuration instead."
            )

    return ManagedExtension
