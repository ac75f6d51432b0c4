"""Upstream's first-use model downloads, through the launcher's verified downloader.

Upstream fetches upscalers, face restorers, SD3's text encoders (and, with no checkpoint,
SD 1.5) the first time a feature needs them, with ``modules.util.load_file_from_url``:
``requests`` into ``<file>.tmp``, no resume or retry, and a sha256 check only when the caller
passes ``hash_prefix`` (most do not). Here that function calls the launcher
(``_webui_launcher.download``), which looks the URL up in the model catalog, so a catalogued
file is checked while it streams; it resumes an interrupted download, retries, and renames the
file into place only once the hash matches. The contract stays upstream's: same path, an
existing file is used as it is, the path is returned.

TAESD and VAE-approx (the live preview decoders) fetch their weights with
``torch.hub.download_url_to_file`` inside each module's ``download_model(model_path, model_url)``;
those go through the same downloader (resume, retry, atomic rename).

Outside the launcher (extension installer subprocesses, unit tests) nothing is patched.
"""

from __future__ import annotations

import os
from types import ModuleType
from urllib.parse import urlparse

from . import control, hash_seeding
from .config import LaunchConfig
from .hooks import after_import, patches

try:
    import _webui_launcher as _launcher  # provided by the launcher binary (PyO3 inittab)
except ImportError:  # pragma: no cover - only outside the launcher
    _launcher = None


def install(config: LaunchConfig) -> None:
    if not control.embedded() or _launcher is None:
        return
    load_file_from_url = _make_load_file_from_url(config.data_dir)
    # modules/util.py defines load_file_from_url; modules/modelloader.py re-exports it
    # (`from modules.util import load_file_from_url`), and that name is what upscalers, face
    # restorers, sd3_cond, LDSR/ScuNET/SwinIR and extensions call. Patch both, so the order in
    # which they are first imported does not matter.
    for name in ("modules.util", "modules.modelloader"):
        after_import(name, lambda m: _replace_load_file_from_url(m, load_file_from_url))
    # facexlib (GFPGAN's and CodeFormer's face detector and parser) has its own
    # load_file_from_url; upstream's face_restoration_utils.patch_facexlib() wraps it to save
    # into the face restorer's model dir. Ours goes underneath that wrapper.
    for name in ("facexlib.detection", "facexlib.parsing"):
        after_import(name, lambda m: _patch_facexlib(m, load_file_from_url))
    # modules/sd_vae_taesd.py and modules/sd_vae_approx.py: download_model(model_path, model_url)
    # calls torch.hub.download_url_to_file (no resume, no catalog check). Same contract here.
    download_model = _make_download_model(load_file_from_url)
    for name in ("modules.sd_vae_taesd", "modules.sd_vae_approx"):
        after_import(name, lambda m: _replace_download_model(m, download_model))


@patches(("modules.util", "modules.modelloader"), "load_file_from_url")
def _replace_load_file_from_url(module: ModuleType, replacement) -> None:
    module.load_file_from_url = replacement


@patches(("modules.sd_vae_taesd", "modules.sd_vae_approx"), "download_model")
def _replace_download_model(module: ModuleType, replacement) -> None:
    module.download_model = replacement


def _make_load_file_from_url(data_dir: str):
    def load_file_from_url(
        url: str,
        *,
        model_dir: str,
        progress: bool = True,
        file_name: str | None = None,
        hash_prefix: str | None = None,
        re_download: bool = False,
    ) -> str:
        """Replaces modules.util.load_file_from_url (and modelloader's re-export): the same
        contract, but resumable and checked against the catalog's sha256 by the launcher."""
        if not file_name:
            file_name = os.path.basename(urlparse(url).path)
        cached_file = os.path.abspath(os.path.join(model_dir, file_name))
        if os.path.exists(cached_file) and not re_download:
            return cached_file
        print(f'\nDownloading: "{url}" to {cached_file}', flush=True)
        path = os.fspath(
            _launcher.download(
                url,
                model_dir,
                file_name=file_name,
                hash_prefix=hash_prefix,
                re_download=re_download,
                data_dir=data_dir,
            )
        )
        # A verified checkpoint placed now is not hashed again by upstream either.
        if data_dir:
            hash_seeding.seed(os.path.join(data_dir, "models"))
        return path

    return load_file_from_url


def _make_download_model(load_file_from_url):
    def download_model(model_path: str, model_url: str) -> None:
        """Replaces download_model in modules.sd_vae_taesd and modules.sd_vae_approx: fetches
        ``model_url`` to ``model_path`` unless it exists, through the launcher's downloader."""
        load_file_from_url(
            model_url, model_dir=os.path.dirname(model_path) or ".", file_name=os.path.basename(model_path)
        )

    return download_model


@patches(("facexlib.detection", "facexlib.parsing"), "load_file_from_url")
def _patch_facexlib(module: ModuleType, load_file_from_url) -> None:
    original = module.load_file_from_url

    def facexlib_load_file_from_url(url, model_dir=None, progress=True, file_name=None, save_dir=None):
        """Replaces facexlib.{detection,parsing}.load_file_from_url when the webui says where
        to save (it always does, through patch_facexlib); otherwise facexlib's own (torch hub dir)."""
        if save_dir is None:
            return original(url, model_dir=model_dir, progress=progress, file_name=file_name, save_dir=save_dir)
        return load_file_from_url(url, model_dir=save_dir, progress=progress, file_name=file_name)

    module.load_file_from_url = facexlib_load_file_from_url
