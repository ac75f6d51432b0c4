"""Locked settings inside the webui: declared by the launcher's settings file, refused from
the Settings tab, quicksettings and ``POST /sdapi/v1/options``, and marked in the UI; locked
``ui-config.json`` entries are kept by the Defaults tab's Apply.

The launcher already wrote the locked values into config.json before the webui started; these
patches keep them there. Unlocked settings (the checkpoint dropdown among them) work as before.
Declared keys are checked against upstream's options when ``modules.shared_options`` is
imported: an unknown or mistyped key is a warning with a did-you-mean, an unknown locked key
stops the start.
"""

from __future__ import annotations

import difflib
import html
import sys
from types import ModuleType

from .config import LaunchConfig
from .environment import LauncherError
from .hooks import after_import, patches


class LockedSetting(RuntimeError):
    """Raised by Options.__setattr__ for a locked key; upstream's Options.set turns a
    RuntimeError into "not changed" (False), like its own restricted options."""


def install(config: LaunchConfig) -> None:
    settings = config.settings
    if not settings:
        return
    locked: dict = settings.get("locked") or {}
    source: str = settings.get("source") or "the launcher"
    after_import("modules.shared_options", lambda m: check_declared(m, settings))
    ui_locked: dict = settings.get("ui_locked") or {}
    if ui_locked:
        after_import("modules.ui_loadsave", lambda m: _patch_ui_loadsave(m, ui_locked, source))
    if not locked:
        return
    after_import("modules.options", lambda m: _patch_options(m, locked, source))
    after_import("modules.shared_options", lambda m: _mark_in_ui(m, locked, source))
    after_import("modules.api.api", lambda m: _patch_api(m, locked, source))


def message(key: str, source: str) -> str:
    return f"setting '{key}' is locked by {source}"


# Essential: the settings file declared these locks; a webui that ignores them silently is not
# what was asked for.
@patches("modules.options", "Options.__setattr__", "Options.load", essential=True)
def _patch_options(options: ModuleType, locked: dict, source: str) -> None:
    # Replaces Options.__setattr__ for locked keys only: every setter (Options.set from the
    # Settings tab, quicksettings and the API; direct `opts.key = value`) goes through it.
    original_setattr = options.Options.__setattr__

    def __setattr__(self, key, value):
        if key in locked and value != locked[key]:
            print(f"Refused: {message(key, source)}", file=sys.stderr)
            raise LockedSetting(message(key, source))
        return original_setattr(self, key, value)

    options.Options.__setattr__ = __setattr__

    # Replaces Options.load: a config.json edited while the webui runs (or reloaded by an
    # extension) still gets the locked values.
    original_load = options.Options.load

    def load(self, filename):
        original_load(self, filename)
        self.data.update(locked)

    options.Options.load = load


@patches("modules.shared_options", "options_templates")
def _mark_in_ui(shared_options: ModuleType, locked: dict, source: str) -> None:
    # The Settings tab: a locked setting says who manages it and cannot be edited
    # (component_args gain interactive=False; OptionInfo.comment_after is shown next to the label).
    for key in locked:
        info = shared_options.options_templates.get(key)
        if info is None:
            continue
        info.comment_after += f" <span class='info'>(locked by {source})</span>"
        args = info.component_args
        if callable(args):
            info.component_args = lambda args=args: {**(args() or {}), "interactive": False}
        elif args is None or isinstance(args, dict):
            info.component_args = {**(args or {}), "interactive": False}


@patches("modules.api.api", "Api.set_config")
def _patch_api(api: ModuleType, locked: dict, source: str) -> None:
    # Replaces Api.set_config (POST /sdapi/v1/options), before Api() binds it as a route:
    # upstream would silently skip a refused key and answer 200; say which key and who locks it.
    from fastapi import HTTPException

    original = api.Api.set_config

    def set_config(self, req: dict):
        refused = [k for k, v in req.items() if k in locked and v != locked[k]]
        if refused:
            raise HTTPException(status_code=403, detail="; ".join(message(k, source) for k in refused))
        return original(self, req)

    set_config.__annotations__ = original.__annotations__
    api.Api.set_config = set_config


# Essential, as _patch_options: write_to_file is what keeps locked UI defaults.
@patches(
    "modules.ui_loadsave",
    "UiLoadsave.iter_changes",
    "UiLoadsave.write_to_file",
    "UiLoadsave.ui_view",
    "UiLoadsave.ui_apply",
    essential=True,
)
def _patch_ui_loadsave(ui_loadsave: ModuleType, ui_locked: dict, source: str) -> None:
    # The Defaults tab (UiLoadsave.ui_view / ui_apply) writes every changed UI default into
    # ui-config.json; the launcher put the locked values there before the start.
    loadsave = ui_loadsave.UiLoadsave

    # Replaces UiLoadsave.iter_changes, which both "View changes" and "Apply" use: a locked entry
    # is never a change, so Apply never writes it; the refusals are remembered for the message.
    original_iter_changes = loadsave.iter_changes

    def iter_changes(self, current_ui_settings, values):
        refused = []
        for path, old_value, new_value in original_iter_changes(self, current_ui_settings, values):
            if path in ui_locked and new_value != ui_locked[path]:
                refused.append(path)
                continue
            yield path, old_value, new_value
        self._sd_nix_refused = refused

    loadsave.iter_changes = iter_changes

    # Replaces UiLoadsave.write_to_file (Apply, dump_defaults at the first start): whatever is
    # written, locked entries keep the declared values.
    original_write = loadsave.write_to_file

    def write_to_file(self, current_ui_settings):
        return original_write(self, {**current_ui_settings, **ui_locked})

    loadsave.write_to_file = write_to_file

    # Wraps ui_view and ui_apply: their answer (HTML shown under the buttons) says which
    # locked defaults were left alone and who locks them.
    def with_refusals(original):
        def method(self, *values):
            self._sd_nix_refused = []
            answer = original(self, *values)
            refused = self._sd_nix_refused
            if not refused:
                return answer
            print(f"Refused: {'; '.join(message(path, source) for path in refused)}", file=sys.stderr)
            note = "".join(f"<p>Not changed: {html.escape(message(path, source))}.</p>" for path in refused)
            return f"{answer}{note}"

        return method

    loadsave.ui_view = with_refusals(loadsave.ui_view)
    loadsave.ui_apply = with_refusals(loadsave.ui_apply)


@patches("modules.shared_options", "options_templates")
def check_declared(shared_options: ModuleType, settings: dict) -> None:
    """Warn about unknown or mistyped declared keys; an unknown locked key is an error."""
    templates = shared_options.options_templates
    origins = settings.get("origins") or {}
    locked = settings.get("locked") or {}
    unknown_locked = []
    for key, value in (settings.get("declared") or {}).items():
        where = origins.get(key, "declared")
        info = templates.get(key)
        if info is None:
            hint = did_you_mean(key, templates)
            if key in locked:
                unknown_locked.append(f"'{key}'{hint}")
            else:
                print(f"Warning: settings ({where}): unknown key '{key}'{hint}; written anyway", file=sys.stderr)
            continue
        if not same_type(info.default, value):
            print(
                f"Warning: settings ({where}): '{key}' = {value!r} is a {type(value).__name__}; "
                f"upstream expects {type(info.default).__name__} (default {info.default!r})",
                file=sys.stderr,
            )
    if unknown_locked:
        raise LauncherError(
            f"Locked settings unknown to the webui: {', '.join(unknown_locked)} "
            f"(locked by {settings.get('source')}). Fix the settings file; see `stable-diffusion-webui settings keys`."
        )


def did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def same_type(default, value) -> bool:
    """upstream's Options.same_type: None matches anything, int and float are one type."""
    if default is None or value is None:
        return True
    typemap = {int: float}
    return typemap.get(type(default), type(default)) == typemap.get(type(value), type(value))
