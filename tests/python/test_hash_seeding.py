"""webui_shim.hash_seeding without upstream: which manifest records may seed upstream's cache."""

import json
import os

from webui_shim import hash_seeding

SHA = "ab" * 32


def manifest(models, files):
    (models / ".downloads.json").write_text(json.dumps({"version": 1, "files": files}))


def place(models, relative, data=b"weights"):
    path = models / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stat = path.stat()
    return {"source": "x", "sha256": SHA, "expected": SHA, "size": stat.st_size, "modified_ns": stat.st_mtime_ns}


def test_only_verified_unchanged_records_are_offered(tmp_path, capsys):
    models = tmp_path
    files = {
        "Stable-diffusion/ok.safetensors": place(models, "Stable-diffusion/ok.safetensors"),
        "Stable-diffusion/unverified.safetensors": {
            **place(models, "Stable-diffusion/unverified.safetensors"),
            "expected": None,
        },
        "Stable-diffusion/mismatch.safetensors": {
            **place(models, "Stable-diffusion/mismatch.safetensors"),
            "expected": "cd" * 32,
        },
        "Stable-diffusion/touched.safetensors": place(models, "Stable-diffusion/touched.safetensors"),
        "Stable-diffusion/resized.safetensors": place(models, "Stable-diffusion/resized.safetensors"),
        "Stable-diffusion/gone.safetensors": place(models, "Stable-diffusion/gone.safetensors"),
    }
    touched = models / "Stable-diffusion/touched.safetensors"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    resized = models / "Stable-diffusion/resized.safetensors"
    mtime = resized.stat().st_mtime_ns
    resized.write_bytes(b"other weights")
    os.utime(resized, ns=(mtime, mtime))
    (models / "Stable-diffusion/gone.safetensors").unlink()
    manifest(models, files)
    offered = list(hash_seeding.verified_unchanged(str(models)))
    assert offered == [("Stable-diffusion/ok.safetensors", str(models / "Stable-diffusion/ok.safetensors"), SHA)]


def test_no_manifest_offers_nothing_and_a_corrupt_one_says_so(tmp_path, capsys):
    assert list(hash_seeding.verified_unchanged(str(tmp_path))) == []
    (tmp_path / ".downloads.json").write_text("{not json")
    assert list(hash_seeding.verified_unchanged(str(tmp_path))) == []
    assert "not seeding upstream's hash cache" in capsys.readouterr().out


def test_titles_are_upstreams_checkpoint_names(tmp_path):
    model_path = str(tmp_path / "models" / "Stable-diffusion")
    path = os.path.join(model_path, "sub", "x.safetensors")
    assert hash_seeding.checkpoint_title(path, model_path, None) == "checkpoint/sub/x.safetensors"
    ckpt_dir = str(tmp_path / "models" / "Stable-diffusion" / "sub")
    assert hash_seeding.checkpoint_title(path, model_path, ckpt_dir) == "checkpoint/x.safetensors"
    # Upstream would call it by its base name, which another file can share: not seeded.
    assert hash_seeding.checkpoint_title("/elsewhere/y.ckpt", model_path, None) is None
