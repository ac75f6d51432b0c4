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
