"""End to end: declared settings, presets and locks with the real upstream webui.

Gated like the other e2e tests (e2e_harness.find_config: SD_WEBUI_TEST_ROOT, SD_WEBUI_TEST_VENV,
and SD_WEBUI_LAUNCHER or the built binary in target/). Self-contained: it
generates two tiny random checkpoints (tests/support/tiny_model.py) and runs fully offline.

Shows: a locked key is refused by POST /sdapi/v1/options with a message naming the key and
its manager, and is still locked after a restart; a preset's value is visible in
GET /sdapi/v1/options; the checkpoint quicksetting (sd_model_checkpoint) can still be switched;
a locked ui-config.json default is on the page and the Defaults tab's Apply keeps it (while
writing an unlocked one); a checkpoint switched while the startup load runs is kept (on a tree
with patches/webui/0008, as the flake and tests/nixpkgs-env build it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import e2e_harness as h
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL_PY = REPO / "tests" / "support" / "tiny_model.py"
SOURCE = "the e2e test's settings file"
START_TIMEOUT = float(os.environ.get("SD_WEBUI_TEST_START_TIMEOUT", "300"))


def _config() -> h.E2EConfig:
    """The same gate as the other e2e tests (e2e_harness.find_config): skip with its reason."""
    config = h.find_config()
    if isinstance(config, str):
        pytest.skip(config)
    return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = _config()
    root, venv, launcher = config.root, config.venv, config.launcher
    base = tmp_path_factory.mktemp("settings-e2e")
    data = base / "data"
    models = data / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    for name in ("tiny_a", "tiny_b"):
        subprocess.run(
            [str(venv / "bin" / "python"), str(TINY_MODEL_PY), str(models), "--name", name],
            check=True,
            capture_output=True,
        )
    (data / "presets").mkdir()
    (data / "presets" / "e2e.json").write_text(
        json.dumps({"description": "e2e preset", "config": {"jpeg_quality": 77}}), encoding="utf8"
    )
    (data / "config.json").write_text(json.dumps({"my_own_key": "kept"}), encoding="utf8")
    settings = base / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "version": 1,
                "source": SOURCE,
                "presets": ["private"],
                "config": {"locked": {"samples_format": "jpg"}, "defaults": {"show_progress_every_n_steps": 5}},
                "ui_config": {"locked": {"txt2img/Width/value": 640}},
            }
        ),
        encoding="utf8",
    )
    (base / "hf").mkdir()
    (base / "home").mkdir()
    return {
        "root": root,
        "venv": venv,
        "launcher": launcher,
        "base": base,
        "data": data,
        "ckpt": models / "tiny_a.safetensors",
        "settings": settings,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webui:
    def __init__(self, setup: dict) -> None:
        self.port = _free_port()
        env = {
            "HOME": str(setup["base"] / "home"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HF_HOME": str(setup["base"] / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "SD_WEBUI_SHIM_DIR": str(REPO / "python"),
        }
        argv = [
            str(setup["launcher"]),
            "--webui-root",
            str(setup["root"]),
            "--python-env",
            str(setup["venv"]),
            "--data-dir",
            str(setup["data"]),
            "--cache-dir",
            str(setup["base"] / "cache"),
            "--port",
            str(self.port),
            "--settings-file",
            str(setup["settings"]),
            "--preset",
            "e2e",
            "--api",
            "--no-download-sd-model",
            "--skip-version-check",
            "--ckpt",
            str(setup["ckpt"]),
        ]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(START_TIMEOUT):
            self.stop()
            pytest.fail("the webui did not become ready:\n" + self.output())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "webui ready at" in line:
                self.ready.set()

    def output(self) -> str:
        return "".join(self.lines[-200:])

    def request(self, method: str, path: str, body=None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        url = f"http://127.0.0.1:{self.port}{path}"
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as reply:
                return reply.status, json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text

    def wait_for_loaded_checkpoint(self, name: str, timeout: float = 120) -> None:
        """Until upstream's load_model has finished ("Model loaded in", its last line) and the
        options name `name` with its short hash. The title alone is not enough: upstream writes
        it when it starts loading the weights, and a switch made before the load ends races it
        (reload_model_weights does not take the load's lock)."""
        deadline = time.monotonic() + timeout
        current = None
        while time.monotonic() < deadline:
            if any("Model loaded in" in line for line in list(self.lines)):
                current = self.request("GET", "/sdapi/v1/options")[1].get("sd_model_checkpoint")
                if current and current.startswith(name) and "[" in current:
                    return
            time.sleep(0.2)
        pytest.fail(f"checkpoint {name} not loaded after {timeout} s (options say {current!r}):\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def test_locks_presets_and_the_checkpoint_quicksetting(setup):
    webui = Webui(setup)
    try:
        status, options = webui.request("GET", "/sdapi/v1/options")
        assert status == 200, options
        assert options["samples_format"] == "jpg"  # locked
        assert options["jpeg_quality"] == 77  # the user's --preset e2e
        assert options["enable_pnginfo"] is False  # the file's preset "private"
        assert options["show_progress_every_n_steps"] == 5  # the file's defaults
        # (unmanaged keys are checked on disk: the API's OptionsModel drops unknown keys)

        status, reply = webui.request("POST", "/sdapi/v1/options", {"samples_format": "png"})
        assert status == 403, reply
        assert f"setting 'samples_format' is locked by {SOURCE}" in json.dumps(reply), reply
        assert webui.request("GET", "/sdapi/v1/options")[1]["samples_format"] == "jpg"

        # An unlocked key still changes, and so does the checkpoint quicksetting.
        status, reply = webui.request("POST", "/sdapi/v1/options", {"jpeg_quality": 90})
        assert status == 200, reply
        # upstream loads the first checkpoint on a thread of its own after the server is up, and
        # that load writes its title into the options when it ends: switch only after it.
        webui.wait_for_loaded_checkpoint("tiny_a")
        status, models = webui.request("GET", "/sdapi/v1/sd-models")
        assert status == 200, models
        other = next(m["title"] for m in models if m["model_name"] == "tiny_b")
        status, reply = webui.request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": other})
        assert status == 200, reply
        options = webui.request("GET", "/sdapi/v1/options")[1]
        # The title gains the model's short hash once it is loaded.
        assert options["sd_model_checkpoint"].startswith(other), options["sd_model_checkpoint"]
        assert "tiny_b" in options["sd_model_checkpoint"]
        assert options["jpeg_quality"] == 90
    finally:
        assert webui.stop() == 0, webui.output()

    on_disk = json.loads((setup["data"] / "config.json").read_text(encoding="utf8"))
    assert on_disk["samples_format"] == "jpg"
    assert on_disk["jpeg_quality"] == 90
    assert on_disk["my_own_key"] == "kept"  # unmanaged keys survive the merge and upstream's save

    webui = Webui(setup)
    try:
        options = webui.request("GET", "/sdapi/v1/options")[1]
        assert options["samples_format"] == "jpg"
        assert options["jpeg_quality"] == 90, "the user's edit beats the preset after a restart"
        status, reply = webui.request("POST", "/sdapi/v1/options", {"samples_format": "webp"})
        assert status == 403, reply
        assert "locked by" in json.dumps(reply)

        # The Settings tab: the locked setting is read-only and says who manages it.
        status, config = webui.request("GET", "/config")
        assert status == 200
        component = next(
            c for c in config["components"] if c.get("props", {}).get("elem_id") == "setting_samples_format"
        )
        assert component["props"].get("interactive") is False, component
        checkpoint = next(
            c for c in config["components"] if c.get("props", {}).get("elem_id") == "setting_sd_model_checkpoint"
        )
        assert checkpoint["props"].get("interactive") is not False, checkpoint
    finally:
        assert webui.stop() == 0, webui.output()


def _component(config: dict, elem_id: str) -> dict:
    return next(c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)


def test_the_defaults_tab_keeps_a_locked_ui_default(setup):
    webui = Webui(setup)
    try:
        status, config = webui.request("GET", "/config")
        assert status == 200
        width, height = _component(config, "txt2img_width"), _component(config, "txt2img_height")
        assert width["props"]["value"] == 640  # the locked default, on the page

        # The Defaults tab's Apply button, called as the page calls it: every UI default as input.
        apply_id = _component(config, "ui_defaults_apply")["id"]
        fn_index, dependency = next((i, d) for i, d in enumerate(config["dependencies"]) if apply_id in d["targets"])
        by_id = {c["id"]: c for c in config["components"]}
        data = [by_id[i].get("props", {}).get("value") for i in dependency["inputs"]]
        data[dependency["inputs"].index(width["id"])] = 768
        data[dependency["inputs"].index(height["id"])] = 448
        status, reply = webui.request("POST", "/run/predict", {"fn_index": fn_index, "data": data})
        assert status == 200, reply
        answer = reply["data"][0]
        assert "Wrote" in answer, answer
        assert f"setting 'txt2img/Width/value' is locked by {SOURCE}" in answer.replace("&#x27;", "'"), answer
    finally:
        assert webui.stop() == 0, webui.output()

    ui_config = json.loads((setup["data"] / "ui-config.json").read_text(encoding="utf8"))
    assert ui_config["txt2img/Width/value"] == 640
    assert ui_config["txt2img/Height/value"] == 448


def test_an_unknown_locked_key_stops_the_start(setup, tmp_path):
    settings = tmp_path / "bad-settings.json"
    settings.write_text(
        json.dumps(
            {
                "version": 1,
                "source": SOURCE,
                "config": {"locked": {"samples_fromat": "jpg"}, "defaults": {"jpeg_qualty": 70}},
            }
        ),
        encoding="utf8",
    )
    env = {
        "HOME": str(setup["base"] / "home"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HF_HOME": str(setup["base"] / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "SD_WEBUI_SHIM_DIR": str(REPO / "python"),
    }
    argv = [
        str(setup["launcher"]),
        "--webui-root",
        str(setup["root"]),
        "--python-env",
        str(setup["venv"]),
        "--data-dir",
        str(tmp_path / "data"),
        "--cache-dir",
        str(setup["base"] / "cache"),
        "--port",
        str(_free_port()),
        "--settings-file",
        str(settings),
        "--no-download-sd-model",
        "--skip-version-check",
    ]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace", timeout=START_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "unknown key 'jpeg_qualty' (did you mean 'jpeg_quality'?)" in output
    assert "Locked settings unknown to the webui: 'samples_fromat' (did you mean 'samples_format'?)" in output
    assert SOURCE in output


# A user extension that holds upstream's first checkpoint read until the test opens a gate (a
# file), so that a checkpoint switch lands while the startup load is still running.
HOLD_FIRST_LOAD = """
import threading
import time
from pathlib import Path

from modules import sd_models

_original = sd_models.get_checkpoint_state_dict
_first = threading.Event()
GATE = Path(__file__).resolve().parent.parent / "gate"


def get_checkpoint_state_dict(checkpoint_info, timer):
    if not _first.is_set():
        _first.set()
        print("e2e: first checkpoint read held", flush=True)
        deadline = time.monotonic() + 120
        while not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return _original(checkpoint_info, timer)


sd_models.get_checkpoint_state_dict = get_checkpoint_state_dict
"""


def test_a_checkpoint_chosen_during_the_first_load_is_kept(setup):
    """patches/webui/0008: a switch made while upstream's startup load runs waits for that load
    instead of loading beside it (the load that ended last used to win: the switch was lost)."""
    source = (setup["root"] / "modules" / "sd_models.py").read_text(encoding="utf8")
    if "sd_model = model_data.get_sd_model()" not in source:
        pytest.skip("the tree lacks patches/webui/0008 (pristine upstream has this race)")
    extension = setup["data"] / "extensions" / "e2e-hold-first-load"
    (extension / "scripts").mkdir(parents=True)
    (extension / "scripts" / "hold_first_load.py").write_text(HOLD_FIRST_LOAD, encoding="utf8")
    try:
        webui = Webui(setup)
        try:
            deadline = time.monotonic() + 60
            while not any("e2e: first checkpoint read held" in line for line in list(webui.lines)):
                assert time.monotonic() < deadline, "the first load never started:\n" + webui.output()
                time.sleep(0.1)
            status, models = webui.request("GET", "/sdapi/v1/sd-models")
            assert status == 200, models
            other = next(m["title"] for m in models if m["model_name"] == "tiny_b")
            reply: list = []
            switch = threading.Thread(
                target=lambda: reply.append(webui.request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": other}))
            )
            switch.start()
            time.sleep(3)  # the switch reaches reload_model_weights while the first load is held
            (extension / "gate").touch()
            switch.join(120)
            assert reply and reply[0][0] == 200, reply
            webui.wait_for_loaded_checkpoint("tiny_")
            time.sleep(1)  # an unpatched startup load would now be writing its title over the switch
            current = webui.request("GET", "/sdapi/v1/options")[1]["sd_model_checkpoint"]
            assert current.startswith(other), f"the switch to {other} was lost: {current}\n{webui.output()}"
        finally:
            assert webui.stop() == 0, webui.output()
    finally:
        shutil.rmtree(extension)  # the test's own (with the __pycache__ upstream wrote in it)
