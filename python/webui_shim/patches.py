"""Monkeypatches of upstream, each applied right after its module is imported.

Every patch names the upstream function or value it replaces and why. They are the whole
difference between upstream's ``launch.py`` and us; nothing here edits a file on disk.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from types import ModuleType

from . import control, downloads, extensions, hash_seeding, locks, overlay, pip_guard, requirements, root_view
from .config import EXTENSION_NAME_ENV, LaunchConfig
from .hooks import after_import, patches

# install.py exits with this status when it asked for missing packages (message already printed).
EXIT_MISSING_PACKAGES = 3


class EnvironmentIncomplete(RuntimeError):
    """prepare_environment() found packages missing from the environment."""


def install(config: LaunchConfig) -> None:
    """Patches for the webui process itself."""
    install_launch_utils(config)
    after_import("modules.paths_internal", lambda m: _redirect_writes(m, config))
    # options.py, cache.py and shared_gradio_themes.py use their `script_path` global only
    # to move a corrupt file / cache themes into `<script_path>/tmp`: point them at the data dir.
    for name in SCRIPT_PATH_USERS:
        after_import(name, lambda m: _script_path_to_data_dir(m, config))
    after_import("modules.restart", _patch_restart)
    after_import("modules.initialize_util", _patch_sigint)
    after_import("modules.shared_cmd_options", lambda m: _patch_non_local(m, config))
    after_import("modules.script_callbacks", lambda m: _patch_readiness(m, config))
    after_import("modules.shared_state", _patch_server_commands)
    after_import("modules.ui_gradio_extensions", _patch_root_stylesheet)
    locks.install(config)
    extensions.install(config)
    downloads.install(config)
    hash_seeding.install(config)
    root_view.install(config)


def install_launch_utils(config: LaunchConfig) -> None:
    """Patches of modules/launch_utils.py, and the guard against pip started directly; also
    used in extension installer subprocesses."""
    after_import("modules.launch_utils", lambda m: _patch_launch_utils(m, config))
    pip_guard.install(lambda pip_args: _check_pip(pip_args, None, config, started_directly=True))


SCRIPT_PATH_USERS = ("modules.options", "modules.cache", "modules.shared_gradio_themes")


@patches(SCRIPT_PATH_USERS, "script_path")
def _script_path_to_data_dir(module: ModuleType, config: LaunchConfig) -> None:
    module.script_path = config.data_dir


@patches("modules.paths_internal", "config_states_dir")
def _redirect_writes(paths_internal: ModuleType, config: LaunchConfig) -> None:
    # paths_internal.config_states_dir is `<script_path>/config_states`, created at UI start
    # (config_states.list_config_states): a read-only tree cannot start. Keep it with the data.
    paths_internal.config_states_dir = os.path.join(config.data_dir, "config_states")


# Essential: without these the webui would pip-install into the environment and clone
# repositories at start, which the launcher promises never to do.
@patches(
    "modules.launch_utils",
    "run",
    "run_pip",
    "git_clone",
    "run_extension_installer",
    "commit_hash",
    "prepare_environment",
    "default_command_live",
    essential=True,
)
def _patch_launch_utils(launch_utils: ModuleType, config: LaunchConfig) -> None:
    original_run = launch_utils.run

    def run_pip(command, desc=None, live=None):
        """Replaces launch_utils.run_pip: never runs pip; a satisfied request is a no-op."""
        if launch_utils.args.skip_install:
            return ""
        return _check_pip(shlex.split(command) if isinstance(command, str) else list(command), desc, config)

    def run(command, desc=None, errdesc=None, custom_env=None, live=launch_utils.default_command_live):
        """Replaces launch_utils.run for pip command lines only; anything else runs as before."""
        pip_args = requirements.pip_args_from_shell(command) if isinstance(command, str) else None
        if pip_args is not None:
            return _check_pip(pip_args, desc, config)
        return original_run(command, desc=desc, errdesc=errdesc, custom_env=custom_env, live=live)

    def git_clone(url, dir, name, commithash=None):
        """Replaces launch_utils.git_clone: repositories come with the tree, never cloned at run time."""
        if os.path.exists(dir):
            return
        raise RuntimeError(
            f"{name} is missing at {dir} and the launcher does not clone repositories at run time "
            f"(it would fetch {url}). Provide it in the webui tree (the Nix package does), or create it yourself."
        )

    def run_extension_installer(extension_dir):
        """Replaces launch_utils.run_extension_installer: runs install.py with our launch_utils patches."""
        _run_installer(extension_dir, config, launch_utils)

    def commit_hash():
        """Replaces launch_utils.commit_hash: a tree without .git reports its pinned revision
        (or upstream's "<none>") instead of spawning git to fail with "not a git repository"."""
        if not os.path.exists(os.path.join(launch_utils.script_path, ".git")):
            return config.webui_rev or "<none>"
        return original_commit_hash()

    original_commit_hash = launch_utils.commit_hash
    launch_utils.run_pip = run_pip
    launch_utils.run = run
    launch_utils.git_clone = git_clone
    launch_utils.run_extension_installer = run_extension_installer
    launch_utils.commit_hash = commit_hash
    launch_utils.prepare_environment = lambda: prepare_environment(launch_utils)


def _check_pip(args: list[str], desc, config: LaunchConfig, started_directly: bool = False) -> str:
    """A pip request: a no-op when satisfied; missing packages go to the opt-in overlay, or are
    collected for one message (extension installers), or stop the caller with that message."""
    check = requirements.check_pip_request(args)
    what = os.environ.get(EXTENSION_NAME_ENV)
    what = f"Extension '{what}'" if what else (f"Installing {desc}" if desc else "The webui")
    if started_directly:
        what += " (pip started directly, not through launch.run_pip)"
    if check.unsupported:
        raise requirements.PipBlocked(f"{what} asked to run `{check.unsupported}`; the launcher never runs pip.")
    if check.mismatched:
        print(f"{what}: installed versions differ from the request (kept): {', '.join(check.mismatched)}")
    if check.missing and config.python_overlay and requirements.may_install():
        overlay.install(config.python_overlay, check.missing, what)
    elif check.missing and not requirements.note_missing(check.missing):
        raise requirements.PipBlocked(requirements.missing_message(what, check.missing))
    return ""


def _run_installer(extension_dir: str, config: LaunchConfig, launch_utils: ModuleType) -> None:
    if not os.path.isfile(os.path.join(extension_dir, "install.py")):
        return
    from . import installer

    argv, env = installer.command(config, extension_dir)
    result = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if result.stdout.strip():
        print(result.stdout.strip())
    if result.returncode == EXIT_MISSING_PACKAGES:
        print(result.stderr.strip(), file=sys.stderr)
    elif result.returncode != 0:
        from modules import errors

        errors.report(f"Error running install.py for extension {extension_dir}.\n{result.stderr}")


def prepare_environment(launch_utils: ModuleType) -> None:
    """Replaces launch_utils.prepare_environment: verifies, never installs or clones."""
    args = launch_utils.args
    print(f"Python {sys.version}")
    print(f"Version: {launch_utils.git_tag()}")
    print(f"Commit hash: {launch_utils.commit_hash()}")
    if args.reinstall_torch or args.reinstall_xformers:
        print("--reinstall-torch/--reinstall-xformers ignored: the Python environment is managed outside the webui.")
    missing, mismatched = verify_packages(launch_utils.script_path)
    if args.xformers and not launch_utils.is_installed("xformers"):
        print("--xformers given but xformers is not installed; continuing without it.")
    if mismatched:
        print(
            "Package versions differ from upstream's requirements_versions.txt (usually fine): " + ", ".join(mismatched)
        )
    if missing:
        raise EnvironmentIncomplete(requirements.missing_message("The webui", missing))
    if not args.skip_install:
        launch_utils.run_extensions_installers(settings_file=args.ui_settings_file)
    if args.update_check:
        launch_utils.version_check(launch_utils.commit_hash())
    if args.update_all_extensions:
        launch_utils.git_pull_recursive(launch_utils.extensions_dir)
    if "--exit" in sys.argv:
        print("Exiting because of --exit argument")
        sys.exit(0)


def verify_packages(script_path: str) -> tuple[list[str], list[str]]:
    """Missing and mismatched packages of upstream's requirements, plus what upstream's
    prepare_environment() installs on its own (torch, torchvision, clip, open_clip)."""
    import importlib.util

    from packaging.version import InvalidVersion, Version

    reqs = os.environ.get("REQS_FILE", "requirements_versions.txt")
    if not os.path.isfile(reqs):
        reqs = os.path.join(script_path, reqs)
    wanted = ["torch", "torchvision", "open-clip-torch"]
    if os.path.isfile(reqs):
        with open(reqs, encoding="utf8") as file:
            wanted += [line.split("#", 1)[0].strip() for line in file if line.split("#", 1)[0].strip()]
    installed = requirements.installed_versions()
    # `clip` is a module name (openai's CLIP ships under several distribution names).
    missing = [] if importlib.util.find_spec("clip") else ["clip"]
    mismatched = []
    for spec in dict.fromkeys(wanted):
        name, _, version = (part.strip() for part in spec.partition("=="))
        have = installed.get(requirements.canonicalize_name(name))
        if have is None:
            missing.append(spec)
            continue
        try:
            differs = bool(version) and Version(Version(have).public) != Version(version)
        except InvalidVersion:
            differs = have != version
        if differs:
            mismatched.append(f"{name} {have} (upstream pins {version})")
    return missing, mismatched


@patches("modules.restart", "is_restartable", "restart_program", "stop_program")
def _patch_restart(restart: ModuleType) -> None:
    # restart_program() writes <script_path>/tmp/restart and os._exit(0)s for webui.sh's loop;
    # stop_program() os._exit(0)s. The launcher is that loop now: ask it, and stop cleanly.
    restart.is_restartable = lambda: True
    restart.restart_program = control.request_restart
    restart.stop_program = control.request_stop


@patches("modules.initialize_util", "configure_sigint_handler")
def _patch_sigint(initialize_util: ModuleType) -> None:
    # configure_sigint_handler() installs a SIGINT handler that os._exit(0)s. The launcher's
    # handler (see signals.py) raises KeyboardInterrupt instead, which webui() turns into a clean stop.
    initialize_util.configure_sigint_handler = lambda: None


# Essential: without it, a launcher listening beyond loopback would leave upstream's protections
# for exposed servers (extension installs from the UI) off.
@patches("modules.shared_cmd_options", "cmd_opts", essential=True)
def _patch_non_local(shared_cmd_options: ModuleType, config: LaunchConfig) -> None:
    # gradio always binds loopback behind the launcher (--server-name 127.0.0.1), which makes
    # upstream think it is exposed. What counts is where the launcher listens publicly.
    opts = shared_cmd_options.cmd_opts
    opts.webui_is_non_local = config.public_non_local or bool(opts.share or opts.ngrok)
    opts.disable_extension_access = opts.webui_is_non_local and not opts.enable_insecure_extension_access


# Essential: without it the proxy never learns that gradio is up and answers 503 forever.
@patches("modules.script_callbacks", "app_started_callback", essential=True)
def _patch_readiness(script_callbacks: ModuleType, config: LaunchConfig) -> None:
    # app_started_callback() is upstream's "ready" point: requests that reach gradio before
    # it crash upstream ("Cannot add middleware after an application has started").
    original = script_callbacks.app_started_callback

    def app_started_callback(demo, app):
        original(demo, app)
        if demo is None:
            # --nowebui: upstream calls this before uvicorn listens; wait for the socket.
            from modules.shared_cmd_options import cmd_opts

            threading.Thread(target=_ready_when_listening, args=(cmd_opts.port or 7861, config), daemon=True).start()
        else:
            control.backend_ready(file_roots(config), config.root_view)

    script_callbacks.app_started_callback = app_started_callback


def _ready_when_listening(port: int, config: LaunchConfig) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
            continue
        control.backend_ready(file_roots(config), config.root_view)
        return


def file_roots(config: LaunchConfig) -> list[str]:
    """Directories whose files the launcher may serve for /file= (what the webui writes to)."""
    from modules import paths_internal, shared

    # script_path is the root view once extension scripts load (root_view.py): the tree stays a
    # root in its own right, for the absolute links upstream makes to its files.
    roots = [paths_internal.data_path, paths_internal.extensions_dir, paths_internal.script_path, config.webui_root]
    roots += extensions.managed_directories()
    opts = shared.opts
    for key in opts.data_labels:
        if key.startswith("outdir_") or key == "temp_dir":
            value = opts.data.get(key, opts.data_labels[key].default)
            if isinstance(value, str) and value.strip():
                roots.append(os.path.abspath(value))
    return list(dict.fromkeys(roots))


@patches("modules.shared_state", "State.wait_for_server_command")
def _patch_server_commands(shared_state: ModuleType) -> None:
    # State.wait_for_server_command() is where webui() learns of "stop"/"restart" (Reload UI);
    # gradio closes right after, so stop forwarding first.
    original = shared_state.State.wait_for_server_command

    def wait_for_server_command(self, timeout=None):
        command = original(self, timeout)
        if command in ("stop", "restart"):
            control.backend_stopping()
        return command

    shared_state.State.wait_for_server_command = wait_for_server_command


@patches("modules.ui_gradio_extensions", "css_html")
def _patch_root_stylesheet(ui_gradio_extensions: ModuleType) -> None:
    # css_html() links the tree's style.css by path. Upstream runs from its tree, so that is
    # `file=style.css` and the stylesheet's relative `@import url('webui-assets/...')` lands on
    # the /webui-assets mount. We run in the data dir: the link is `file=<tree>/style.css` and
    # the import would 404 (missing font). Inline that one stylesheet instead, so its relative
    # URLs resolve against the page, as upstream's do.
    original = ui_gradio_extensions.css_html

    def css_html():
        html = original()
        from modules.paths_internal import script_path

        path = os.path.join(script_path, "style.css")
        link = re.compile(r'<link rel="stylesheet" property="stylesheet" href="file=' + re.escape(path) + r'\?[^"]*">')
        match = link.search(html)
        if match is None:
            return html
        with open(path, encoding="utf8") as file:
            css = file.read()
        return html[: match.start()] + f"<style>{css}</style>" + html[match.end() :]

    ui_gradio_extensions.css_html = css_html
