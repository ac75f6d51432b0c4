"""The shipped JSON Schemas (settings/schema/, generated from the Rust types) against real files:
the built-in presets, the settings file as documented, and what an editor should flag."""

import json
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (in tests/requirements-gradio.lock) is not installed")

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "settings" / "schema"


def validator(name: str):
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("preset", sorted((REPO / "settings" / "presets").glob("*.json")), ids=lambda p: p.stem)
def test_built_in_presets_validate_and_name_their_schema(preset):
    document = json.loads(preset.read_text())
    assert not list(validator("preset.schema.json").iter_errors(document))
    assert (preset.parent / document["$schema"]).resolve() == SCHEMAS / "preset.schema.json"


def test_the_documented_settings_file_validates():
    document = {
        "$schema": "settings-file.schema.json",
        "version": 1,
        "source": "NixOS option services.stable-diffusion-webui.settings",
        "presets": ["private", "sdxl"],
        "config": {"defaults": {"samples_format": "webp"}, "locked": {"enable_pnginfo": False}},
        "ui_config": {"defaults": {"txt2img/Sampling steps/value": 30}, "locked": {}},
    }
    assert not list(validator("settings-file.schema.json").iter_errors(document))


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({"version": 2}, "2 is greater than the maximum of 1"),
        ({"presets": []}, "'version' is a required property"),
        ({"version": 1, "confg": {}}, "Additional properties are not allowed ('confg' was unexpected)"),
        ({"version": 1, "config": {"default": {}}}, "Additional properties are not allowed ('default' was unexpected)"),
        ({"version": 1, "presets": "sdxl"}, "'sdxl' is not of type 'array'"),
    ],
)
def test_mistakes_the_launcher_refuses_are_flagged_by_the_schema(document, why):
    messages = [e.message for e in validator("settings-file.schema.json").iter_errors(document)]
    assert why in messages, messages
