"""webui_shim.locks without upstream: validation of declared keys and the Options patches."""

from types import ModuleType, SimpleNamespace

import pytest
from webui_shim import locks
from webui_shim.environment import LauncherError


def _shared_options(**defaults) -> ModuleType:
    module = ModuleType("modules.shared_options")
    module.options_templates = {
        k: SimpleNamespace(default=v, comment_after="", component_args=None) for k, v in defaults.items()
    }
    return module


def test_unknown_and_mistyped_keys_are_warnings_with_a_did_you_mean(capsys):
    module = _shared_options(samples_format="png", jpeg_quality=80)
    settings = {
        "declared": {"samples_fromat": "jpg", "jpeg_quality": "high"},
        "origins": {"samples_fromat": "preset mine", "jpeg_quality": "defaults"},
        "locked": {},
    }
    locks.check_declared(module, settings)
    err = capsys.readouterr().err
    assert "unknown key 'samples_fromat' (did you mean 'samples_format'?)" in err
    assert "preset mine" in err
    assert "'jpeg_quality' = 'high' is a str; upstream expects int" in err


def test_an_unknown_locked_key_stops_the_start():
    module = _shared_options(samples_format="png")
    settings = {"declared": {"samples_fromat": "jpg"}, "locked": {"samples_fromat": "jpg"}, "source": "the module"}
    with pytest.raises(LauncherError, match="samples_fromat.*did you mean 'samples_format'.*the module"):
        locks.check_declared(module, settings)


def test_locked_keys_are_refused_through_set_and_marked_in_the_ui(capsys):
    class Options:
        def __init__(self):
            self.data = {}

        def __setattr__(self, key, value):
            if key == "data":
                return object.__setattr__(self, key, value)
            self.data[key] = value

        def set(self, key, value):
            try:
                setattr(self, key, value)
            except RuntimeError:
                return False
            return True

        def load(self, filename):
            self.data = {"samples_format": "png"}

    module = ModuleType("modules.options")
    module.Options = Options
    locks._patch_options(module, {"samples_format": "jpg"}, "the module")
    opts = Options()
    assert opts.set("samples_format", "png") is False
    assert opts.set("samples_format", "jpg") is True
    assert opts.set("other", 1) is True
    assert "setting 'samples_format' is locked by the module" in capsys.readouterr().err
    opts.load("config.json")
    assert opts.data["samples_format"] == "jpg"

    shared_options = _shared_options(samples_format="png")
    locks._mark_in_ui(shared_options, {"samples_format": "jpg"}, "the module")
    info = shared_options.options_templates["samples_format"]
    assert "locked by the module" in info.comment_after
    assert info.component_args == {"interactive": False}


def _ui_loadsave(tmp_path) -> ModuleType:
    """The part of upstream's modules/ui_loadsave.py (1937682a) the patch relies on: ui_apply reads
    the file, applies iter_changes, writes with write_to_file; ui_view lists iter_changes."""
    import json

    class UiLoadsave:
        def __init__(self, filename, paths):
            self.filename = filename
            self.paths = paths

        def read_from_file(self):
            with open(self.filename, encoding="utf8") as file:
                return json.load(file)

        def write_to_file(self, current_ui_settings):
            with open(self.filename, "w", encoding="utf8") as file:
                json.dump(current_ui_settings, file)

        def iter_changes(self, current_ui_settings, values):
            for path, new_value in zip(self.paths, values, strict=True):
                old_value = current_ui_settings.get(path)
                if new_value != old_value:
                    yield path, old_value, new_value

        def ui_view(self, *values):
            return "".join(f"<tr><td>{p}</td></tr>" for p, _, _ in self.iter_changes(self.read_from_file(), values))

        def ui_apply(self, *values):
            current = self.read_from_file()
            num_changed = 0
            for path, _, new_value in self.iter_changes(current.copy(), values):
                num_changed += 1
                current[path] = new_value
            if num_changed == 0:
                return "No changes."
            self.write_to_file(current)
            return f"Wrote {num_changed} changes."

    module = ModuleType("modules.ui_loadsave")
    module.UiLoadsave = UiLoadsave
    return module


def test_locked_ui_defaults_survive_the_defaults_tab(tmp_path, capsys):
    import json

    config = tmp_path / "ui-config.json"
    config.write_text(json.dumps({"txt2img/Width/value": 640, "txt2img/Height/value": 512}))
    module = _ui_loadsave(tmp_path)
    locks._patch_ui_loadsave(module, {"txt2img/Width/value": 640}, "the module")
    loadsave = module.UiLoadsave(str(config), ["txt2img/Width/value", "txt2img/Height/value"])

    view = loadsave.ui_view(768, 768)
    assert "txt2img/Height/value" in view and "<td>txt2img/Width/value</td>" not in view
    assert "Not changed: setting &#x27;txt2img/Width/value&#x27; is locked by the module" in view

    answer = loadsave.ui_apply(768, 768)
    assert answer.startswith("Wrote 1 changes.")
    assert "locked by the module" in answer
    assert json.loads(config.read_text()) == {"txt2img/Width/value": 640, "txt2img/Height/value": 768}
    assert "Refused: setting 'txt2img/Width/value' is locked by the module" in capsys.readouterr().err

    # Only the locked entry changed: nothing to write, and still said.
    assert loadsave.ui_apply(1024, 768).startswith("No changes.")
    # The locked value itself is no refusal; any other write keeps the lock.
    assert loadsave.ui_apply(640, 768) == "No changes."
    loadsave.write_to_file({"txt2img/Width/value": 1, "other": 2})
    assert json.loads(config.read_text()) == {"txt2img/Width/value": 640, "other": 2}
