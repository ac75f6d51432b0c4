"""Upstream's hash cache, seeded from what the launcher already verified.

Upstream hashes a whole checkpoint on its first load (``modules/hashes.py`` ``sha256``:
"Calculating sha256 for ...", tens of seconds for an SDXL file) and keeps the result in its
diskcache, ``cache("hashes")``: title -> ``{"mtime", "sha256"}``; ``sha256_from_cache`` trusts an
entry while ``os.path.getmtime`` of the file equals the stored mtime. Every file ``models
pull``/``ensure`` or a first-use download placed was hashed while it streamed and recorded in
``<data>/models/.downloads.json`` with its size and mtime (``src/models/installed.rs``); a
Nix-store model carries its fixed-output hash. This module writes upstream's own entries, through
upstream's own cache API, for exactly those records that are

- verified: the recorded hash matched an independently known one (catalog, ``--sha256``, the
  Hub's or Civitai's record); an unverified download seeds nothing. A Nix-store model's record
  carries the sha256 its declaration gives (``nix/models.nix``: the fixed-output hash Nix
  checked), which is trusted as ``models list`` trusts it;
- unchanged: the file's size and mtime (ns) are still what was recorded, so upstream would
  compute the same hash. A file changed since, or placed by hand, is left to upstream.

Seeded kinds: checkpoints (``checkpoint/<name>``, the whole-file sha256, ``<name>`` as
``sd_models.CheckpointInfo`` derives it). Not seeded: LoRA (upstream uses ``hashes-addnet``, the
sha256 after the safetensors header, which the downloader does not compute yet); VAE (one title,
``vae``, shared by every VAE: an entry is only right for the file that wrote it); upscalers
(upstream never hashes them); embeddings (not under ``models/``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from .config import LaunchConfig
from .hooks import after_import, patches

MANIFEST = ".downloads.json"
CHECKPOINT_FOLDER = "Stable-diffusion"


def verified_unchanged(models_dir: str) -> Iterator[tuple[str, str, str]]:
    """``(relative, path, sha256)`` of each record that is verified and whose file is unchanged."""
    try:
        with open(os.path.join(models_dir, MANIFEST), encoding="utf8") as file:
            records = json.load(file).get("files", {})
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        print(f"warning: not seeding upstream's hash cache: {MANIFEST} unreadable ({error})", flush=True)
        return
    for relative, record in records.items():
        sha256 = str(record.get("sha256", "")).lower()
        expected = str(record.get("expected") or "").lower()
        if not sha256 or expected != sha256:
            continue
        path = os.path.join(models_dir, relative)
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if stat.st_size != record.get("size") or stat.st_mtime_ns != record.get("modified_ns"):
            continue
        yield relative, path, sha256


def checkpoint_title(path: str, model_path: str, ckpt_dir: str | None) -> str | None:
    """``checkpoint/<name>``, ``<name>`` as ``modules.sd_models.CheckpointInfo.__init__`` makes it;
    None where upstream would name the file by its base name alone (outside ``--ckpt-dir`` and
    its models path, e.g. after ``--models-dir``): two files can share that title, so it is
    not seeded."""
    abspath = os.path.abspath(path)
    abs_ckpt_dir = os.path.abspath(ckpt_dir) if ckpt_dir is not None else None
    if abs_ckpt_dir and abspath.startswith(abs_ckpt_dir):
        name = abspath.replace(abs_ckpt_dir, "")
    elif abspath.startswith(model_path):
        name = abspath.replace(model_path, "")
    else:
        return None
    if name.startswith("\\") or name.startswith("/"):
        name = name[1:]
    return f"checkpoint/{name}"


def seed(models_dir: str) -> list[str]:
    """Write the entries upstream would compute; returns the titles written. Does nothing
    before upstream's ``modules.sd_models`` is imported (its names decide the titles)."""
    sd_models = sys.modules.get("modules.sd_models")
    if sd_models is None:
        return []
    from modules import hashes, shared

    return _seed_into(hashes, models_dir, sd_models.model_path, shared.cmd_opts.ckpt_dir) or []


@patches("modules.hashes", "cache")
def _seed_into(hashes: ModuleType, models_dir: str, model_path: str, ckpt_dir: str | None) -> list[str]:
    cache = hashes.cache("hashes")
    written = []
    for relative, path, sha256 in verified_unchanged(models_dir):
        if relative.split("/", 1)[0] != CHECKPOINT_FOLDER:
            continue
        title = checkpoint_title(path, model_path, ckpt_dir)
        if title is None:
            continue
        # Exactly what hashes.sha256 stores, so sha256_from_cache's mtime comparison holds.
        entry = {"mtime": os.path.getmtime(path), "sha256": sha256}
        if cache.get(title) != entry:
            cache[title] = entry
            written.append(title)
    return written


def install(config: LaunchConfig) -> None:
    after_import("modules.sd_models", lambda m: _seed_at_start(m, config))


@patches("modules.sd_models", "model_path", "CheckpointInfo")
def _seed_at_start(sd_models: ModuleType, config: LaunchConfig) -> None:
    # Right after sd_models is imported: before list_models() builds the CheckpointInfo
    # objects, which read the cache.
    for title in seed(os.path.join(config.data_dir, "models")):
        print(f"Hash of {title} from the launcher's verified download (not recomputed)", flush=True)
