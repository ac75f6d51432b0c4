"""Load the tiny model through upstream's ldm classes with strict key checking, then run it.

Gated: runs only when SD_WEBUI_TEST_ROOT points at an AUTOMATIC1111 stable-diffusion-webui tree (with
repositories/stable-diffusion-stability-ai) and torch, transformers, omegaconf and pytorch_lightning import. Nothing
is downloaded. The CLIP text model is built from the generated config dir (the dir holds no weights; they are in the
checkpoint), as the webui does when the checkpoint includes CLIP.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TINY_MODEL_PY = Path(__file__).resolve().parents[1] / "support" / "tiny_model.py"

# Buffers that LatentDiffusion computes from the yaml's schedule (timesteps, linear_start/end) in register_schedule().
# Checkpoints may carry them, and the tiny one does not. These are the only keys allowed to differ.
SCHEDULE_BUFFERS = {
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
}


def _webui_root() -> Path:
    value = os.environ.get("SD_WEBUI_TEST_ROOT")
    if not value:
        pytest.skip("SD_WEBUI_TEST_ROOT is not set (point it at an upstream stable-diffusion-webui tree)")
    root = Path(value).resolve()
    if not (root / "repositories" / "stable-diffusion-stability-ai" / "ldm").is_dir():
        pytest.skip(f"SD_WEBUI_TEST_ROOT={value} has no repositories/stable-diffusion-stability-ai/ldm")
    return root


def _import_tiny_model():
    if "tiny_model" in sys.modules:
        return sys.modules["tiny_model"]
    spec = importlib.util.spec_from_file_location("tiny_model", TINY_MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_model"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def upstream():
    root = _webui_root()
    for name in ("torch", "transformers", "omegaconf", "pytorch_lightning"):
        pytest.importorskip(name, reason=f"{name} is not importable (needs the upstream webui's Python environment)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # everything must come from the generated files
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(sys, "dont_write_bytecode", True)  # write no __pycache__ into the (possibly read-only) webui tree
        mp.syspath_prepend(str(root))
        mp.syspath_prepend(str(root / "repositories" / "stable-diffusion-stability-ai"))
        # ldm imports pytorch_lightning.utilities.distributed (gone from newer releases); the webui aliases it.
        from modules.initialize_util import fix_pytorch_lightning

        fix_pytorch_lightning()
        import ldm.modules.encoders.modules
        import ldm.util
        import omegaconf
        import torch
        import transformers
        from safetensors.torch import load_file

        yield SimpleNamespace(
            root=root,
            torch=torch,
            transformers=transformers,
            omegaconf=omegaconf,
            ldm_util=ldm.util,
            ldm_encoders=ldm.modules.encoders.modules,
            load_file=load_file,
            monkeypatch=mp,
        )


@pytest.fixture(scope="module")
def loaded(upstream, tmp_path_factory):
    tm = _import_tiny_model()
    paths = tm.generate(tmp_path_factory.mktemp("tiny-upstream"))
    transformers = upstream.transformers

    built_from = []

    def from_pretrained(version, *args, **kwargs):
        # The dir has config + tokenizer only; build an empty CLIPTextModel that the checkpoint then fills.
        built_from.append(version)
        return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(version))

    upstream.monkeypatch.setattr(
        upstream.ldm_encoders, "CLIPTextModel", SimpleNamespace(from_pretrained=from_pretrained)
    )
    config = upstream.omegaconf.OmegaConf.load(str(paths["yaml"]))
    model = upstream.ldm_util.instantiate_from_config(config.model)
    model.eval()
    assert built_from == [str(paths["clip_dir"])]
    state_dict = upstream.load_file(str(paths["checkpoint"]))
    return SimpleNamespace(paths=paths, model=model, state_dict=state_dict, tm=tm)


def _with_schedule(model, file_sd: dict) -> dict:
    """The file's tensors plus the schedule buffers LatentDiffusion computed from the yaml."""
    model_sd = model.state_dict()
    full = dict(file_sd)
    full.update({k: model_sd[k] for k in SCHEDULE_BUFFERS})
    return full


def test_upstream_model_is_a_latent_diffusion(loaded):
    model = loaded.model
    assert type(model).__name__ == "LatentDiffusion"
    assert type(model.cond_stage_model).__name__ == "FrozenCLIPEmbedder"
    assert type(model.first_stage_model).__name__ == "AutoencoderKL"


def test_strict_load(loaded, upstream):
    torch = upstream.torch
    model, file_sd = loaded.model, loaded.state_dict
    model_sd = model.state_dict()

    missing = set(model_sd) - set(file_sd)
    unexpected = set(file_sd) - set(model_sd)
    assert unexpected == set()
    assert missing == SCHEDULE_BUFFERS
    mismatched = {
        k: (tuple(v.shape), tuple(model_sd[k].shape)) for k, v in file_sd.items() if v.shape != model_sd[k].shape
    }
    assert mismatched == {}
    assert set(file_sd) == set(loaded.tm.expected_tensors())

    # Keep the schedule LatentDiffusion computed from the yaml; everything else must come from the file.
    result = model.load_state_dict(_with_schedule(model, file_sd), strict=True)
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []

    after = model.state_dict()
    for key, value in file_sd.items():
        assert after[key].dtype == value.dtype, key
        assert torch.equal(after[key], value), key
    assert after["betas"][0].item() == pytest.approx(0.00085)  # linear_start from the yaml


def test_text_encoder_and_forward_pass(loaded, upstream):
    torch = upstream.torch
    model = loaded.model
    model.load_state_dict(_with_schedule(model, loaded.state_dict), strict=True)

    tokenizer = model.cond_stage_model.tokenizer
    assert tokenizer.get_vocab()[",</w>"] == 267
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (512, 513)

    model.cond_stage_model.device = "cpu"  # FrozenCLIPEmbedder defaults to "cuda" for its token tensors
    with torch.no_grad():
        cond = model.get_learned_conditioning(["a cat, (dog:1.2) [b] 日本 🙂", ""])
        assert tuple(cond.shape) == (2, 77, 32)
        assert torch.isfinite(cond).all()
        assert cond.mean(dim=(1, 2)).abs().min() > 0.01  # the webui's emphasis divides by this mean

        generator = torch.Generator().manual_seed(0)
        latent = torch.randn(1, 4, 8, 8, generator=generator)
        eps = model.apply_model(latent, torch.tensor([500]), cond[:1])
        assert tuple(eps.shape) == (1, 4, 8, 8) and torch.isfinite(eps).all()

        image = model.decode_first_stage(latent)
        assert tuple(image.shape) == (1, 3, 64, 64) and torch.isfinite(image).all()  # 8x, as the webui assumes
        posterior = model.encode_first_stage(torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1)
        assert tuple(model.get_first_stage_encoding(posterior).shape) == (1, 4, 8, 8)
