"""Fixtures for the end-to-end tests (launcher + real upstream webui + tiny model, CPU, offline).

Gated on SD_WEBUI_TEST_ROOT and SD_WEBUI_TEST_VENV (see e2e_harness.py); without them every test here
skips with a message. Run with the upstream environment's Python, e.g.

    SD_WEBUI_TEST_ROOT=/path/to/webui SD_WEBUI_TEST_VENV=/path/to/venv \
        /path/to/venv/bin/python -m pytest tests/e2e -v
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e_harness as h  # noqa: E402


@pytest.fixture(scope="session")
def e2e() -> h.E2EConfig:
    config = h.find_config()
    if isinstance(config, str):
        pytest.skip(config)
    return config


@dataclass
class Site:
    """A fresh user: HOME with the data dir under a dot directory, plus private cache/tmp/HF dirs."""

    base: Path
    home: Path
    data: Path
    cache: Path
    tmp: Path
    hf_home: Path

    @classmethod
    def create(cls, base: Path) -> Site:
        home = base / "home"
        site = cls(
            base=base,
            home=home,
            data=home / ".local" / "share" / "stable-diffusion-webui",
            cache=home / ".cache" / "stable-diffusion-webui",
            tmp=base / "tmp",
            hf_home=base / "hf-empty",
        )
        for path in (site.home, site.tmp, site.hf_home):
            path.mkdir(parents=True, exist_ok=True)
        return site

    def env(self, **extra: str) -> dict[str, str]:
        return h.offline_env(self.home, tmpdir=self.tmp, hf_home=self.hf_home, extra=extra)

    def add_tiny_model(self) -> dict[str, Path]:
        """The tiny SD1 model, in the data dir's models/Stable-diffusion (where upstream looks)."""
        return h.import_tiny_model().generate(self.data / "models" / "Stable-diffusion")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return h.artifacts_dir()


def start_launcher(
    e2e: h.E2EConfig,
    site: Site,
    *,
    webui_args,
    log_name: str,
    artifacts: Path,
    env: dict[str, str] | None = None,
    **argv_extra,
) -> tuple[h.Server, str]:
    """Start the launcher for site; return it and its public URL once it printed `webui ready at`."""
    port = h.free_port()
    server = h.Server(
        h.launcher_argv(e2e, data_dir=site.data, cache_dir=site.cache, port=port, webui_args=webui_args, **argv_extra),
        env=env or site.env(),
        cwd=site.base,
        log_path=artifacts / log_name,
    ).start()
    try:
        url = server.wait_ready().group(1)
    except BaseException:
        server.kill()
        raise
    assert url.startswith("http://127.0.0.1:"), f"launcher announced {url}"
    if not url.endswith("/"):
        url += "/"
    server.port = port
    return server, url
