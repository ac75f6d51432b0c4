"""The shim's replacement of upstream's load_file_from_url (webui_shim/downloads.py)."""

import types

import pytest
from webui_shim import downloads


class FakeLauncher:
    def __init__(self):
        self.calls = []

    def download(self, url, model_dir, **kwargs):
        self.calls.append((url, model_dir, kwargs))
        return f"{model_dir}/{kwargs['file_name']}"


def test_existing_file_is_returned_and_a_missing_one_goes_to_the_launcher(tmp_path, monkeypatch):
    launcher = FakeLauncher()
    monkeypatch.setattr(downloads, "_launcher", launcher)
    load = downloads._make_load_file_from_url("/data")
    (tmp_path / "present.pth").write_bytes(b"x")
    url = "https://example.invalid/a/present.pth?download=1"
    assert load(url, model_dir=str(tmp_path)) == str(tmp_path / "present.pth")
    assert launcher.calls == [], "upstream's contract: an existing file is used as it is"

    path = load("https://example.invalid/a/RealESRGAN_x4plus.pth", model_dir=str(tmp_path), hash_prefix="4fa0")
    assert path == f"{tmp_path}/RealESRGAN_x4plus.pth"
    assert launcher.calls == [
        (
            "https://example.invalid/a/RealESRGAN_x4plus.pth",
            str(tmp_path),
            {"file_name": "RealESRGAN_x4plus.pth", "hash_prefix": "4fa0", "re_download": False, "data_dir": "/data"},
        )
    ]
    load(url, model_dir=str(tmp_path), file_name="present.pth", re_download=True)
    assert launcher.calls[-1][2]["re_download"] is True, "re_download asks again even when present"


def test_facexlib_downloads_into_the_webui_dir_go_through_the_launcher(monkeypatch):
    calls = []
    module = types.ModuleType("facexlib.detection")
    module.load_file_from_url = lambda url, **kw: calls.append(("facexlib", url, kw)) or "hub"
    ours = lambda url, **kw: calls.append(("ours", url, kw)) or "ours"  # noqa: E731
    downloads._patch_facexlib(module, ours)
    assert module.load_file_from_url("u", model_dir="facexlib/weights", save_dir="/d/GFPGAN") == "ours"
    assert calls[-1] == ("ours", "u", {"model_dir": "/d/GFPGAN", "progress": True, "file_name": None})
    assert module.load_file_from_url("u", model_dir="facexlib/weights") == "hub"
    assert calls[-1][0] == "facexlib"


def test_preview_decoder_downloads_go_through_the_launcher(tmp_path, monkeypatch):
    launcher = FakeLauncher()
    monkeypatch.setattr(downloads, "_launcher", launcher)
    download_model = downloads._make_download_model(downloads._make_load_file_from_url("/data"))
    module = types.ModuleType("modules.sd_vae_taesd")
    module.download_model = lambda path, url: pytest.fail("upstream's torch.hub download ran")
    downloads._replace_download_model(module, download_model)

    target = tmp_path / "VAE-taesd" / "taesd_decoder.pth"
    url = "https://github.com/madebyollin/taesd/raw/main/taesd_decoder.pth"
    assert module.download_model(str(target), url) is None
    assert launcher.calls == [
        (
            url,
            str(target.parent),
            {"file_name": "taesd_decoder.pth", "hash_prefix": None, "re_download": False, "data_dir": "/data"},
        )
    ]
    target.parent.mkdir()
    target.write_bytes(b"x")
    module.download_model(str(target), url)
    assert len(launcher.calls) == 1, "an existing file is used as it is"
