"""Unit tests for tests/support/tiny_model.py (numpy + safetensors only; no torch, no upstream webui).

The generator's own key table is checked against facts that do not come from it: counts measured on upstream's ldm
classes (see test_tiny_model_upstream.py for the live check) and shapes worked out by hand from the architecture.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

TINY_MODEL_PY = Path(__file__).resolve().parents[1] / "support" / "tiny_model.py"


def _import_tiny_model():
    if "tiny_model" in sys.modules:
        return sys.modules["tiny_model"]
    spec = importlib.util.spec_from_file_location("tiny_model", TINY_MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_model"] = module
    spec.loader.exec_module(module)
    return module


tm = _import_tiny_model()

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer.text_model."

# Measured by instantiating upstream's LatentDiffusion from the same yaml (420 parameters + CLIP position_ids).
UPSTREAM_COUNTS = {
    UNET: (208, 985_444),
    VAE: (176, 367_527),
    "cond_stage_model.": (37, 36_141),
}
UPSTREAM_TOTAL_TENSORS = 421
UPSTREAM_TOTAL_PARAMS = 1_389_112

# Worked out by hand from ldm's UNetModel/AutoencoderKL and transformers' CLIPTextModel for the default sizes:
# UNet model_channels 32, channel_mult [1, 2], 1 res block, attention at ds 2, context 32;
# VAE ch 32, ch_mult [1, 1, 1, 1], z 4; CLIP hidden 32, mlp 64, 2 layers, 514 tokens, 77 positions.
HAND_SHAPES = {
    # UNet: time embedding 32 -> 128 -> 128
    UNET + "time_embed.0.weight": (128, 32),
    UNET + "time_embed.2.weight": (128, 128),
    UNET + "input_blocks.0.0.weight": (32, 4, 3, 3),
    UNET + "input_blocks.1.0.emb_layers.1.weight": (32, 128),
    UNET + "input_blocks.2.0.op.weight": (32, 32, 3, 3),  # Downsample
    UNET + "input_blocks.3.0.in_layers.2.weight": (64, 32, 3, 3),
    UNET + "input_blocks.3.0.skip_connection.weight": (64, 32, 1, 1),
    UNET + "input_blocks.3.1.proj_in.weight": (64, 64, 1, 1),
    UNET + "input_blocks.3.1.transformer_blocks.0.attn1.to_k.weight": (64, 64),
    UNET + "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight": (64, 32),  # from the CLIP context
    UNET + "input_blocks.3.1.transformer_blocks.0.ff.net.0.proj.weight": (512, 64),  # GEGLU 2 * 4 * 64
    UNET + "input_blocks.3.1.transformer_blocks.0.ff.net.2.weight": (64, 256),
    UNET + "middle_block.1.norm.weight": (64,),
    UNET + "middle_block.2.out_layers.3.weight": (64, 64, 3, 3),
    # output blocks concatenate the skips 64, 32, 32, 32 (popped from the input side)
    UNET + "output_blocks.0.0.in_layers.2.weight": (64, 128, 3, 3),
    UNET + "output_blocks.1.0.in_layers.2.weight": (64, 96, 3, 3),
    UNET + "output_blocks.1.2.conv.weight": (64, 64, 3, 3),  # Upsample after the attention
    UNET + "output_blocks.2.0.skip_connection.weight": (32, 96, 1, 1),
    UNET + "output_blocks.3.0.in_layers.2.weight": (32, 64, 3, 3),
    UNET + "out.2.weight": (4, 32, 3, 3),
    # VAE
    VAE + "encoder.conv_in.weight": (32, 3, 3, 3),
    VAE + "encoder.down.2.downsample.conv.weight": (32, 32, 3, 3),
    VAE + "encoder.mid.attn_1.q.weight": (32, 32, 1, 1),
    VAE + "encoder.conv_out.weight": (8, 32, 3, 3),  # double_z
    VAE + "quant_conv.weight": (8, 8, 1, 1),
    VAE + "post_quant_conv.weight": (4, 4, 1, 1),
    VAE + "decoder.conv_in.weight": (32, 4, 3, 3),
    VAE + "decoder.up.0.block.1.conv2.weight": (32, 32, 3, 3),
    VAE + "decoder.up.3.upsample.conv.weight": (32, 32, 3, 3),
    VAE + "decoder.conv_out.weight": (3, 32, 3, 3),
    # CLIP
    CLIP + "embeddings.token_embedding.weight": (514, 32),
    CLIP + "embeddings.position_embedding.weight": (77, 32),
    CLIP + "embeddings.position_ids": (1, 77),
    CLIP + "encoder.layers.1.self_attn.q_proj.weight": (32, 32),
    CLIP + "encoder.layers.1.mlp.fc1.weight": (64, 32),
    CLIP + "encoder.layers.1.mlp.fc2.weight": (32, 64),
    CLIP + "final_layer_norm.bias": (32,),
}

MUST_BE_ABSENT = [
    UNET + "input_blocks.1.1.norm.weight",  # no attention at ds 1
    UNET + "input_blocks.1.0.skip_connection.weight",  # 32 -> 32
    UNET + "input_blocks.4.0.op.weight",  # no Downsample after the last level
    UNET + "output_blocks.3.1.conv.weight",  # no Upsample at level 0
    VAE + "encoder.down.3.downsample.conv.weight",
    VAE + "decoder.up.0.upsample.conv.weight",
    VAE + "encoder.down.0.block.0.nin_shortcut.weight",
    VAE + "encoder.down.0.block.0.temb_proj.weight",  # the VAE has no timestep embedding
    CLIP + "encoder.layers.2.mlp.fc1.weight",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    paths = tm.generate(tmp_path_factory.mktemp("tiny"))
    return paths, load_file(str(paths["checkpoint"]))


def test_generate_returns_absolute_paths(model):
    paths, _ = model
    assert set(paths) == {"checkpoint", "yaml", "clip_dir"}
    assert all(p.is_absolute() for p in paths.values())
    assert paths["checkpoint"].name == "tiny.safetensors"
    assert paths["yaml"] == paths["checkpoint"].with_suffix(".yaml")  # upstream looks for <ckpt basename>.yaml
    assert paths["clip_dir"].name == "tiny-clip"
    assert paths["clip_dir"].is_dir()


def test_file_holds_exactly_the_expected_tensors(model):
    _, tensors = model
    expected = tm.expected_tensors(tm.HPARAMS)
    assert sorted(tensors) == sorted(expected)
    wrong = {k: (tensors[k].shape, shape) for k, shape in expected.items() if tensors[k].shape != shape}
    assert wrong == {}
    dtypes = {k: v.dtype for k, v in tensors.items() if v.dtype != np.float32}
    assert dtypes == {CLIP + "embeddings.position_ids": np.dtype(np.int64)}


def test_counts_match_upstream_measurement(model):
    paths, tensors = model
    assert len(tensors) == UPSTREAM_TOTAL_TENSORS
    assert sum(v.size for v in tensors.values()) == UPSTREAM_TOTAL_PARAMS
    for prefix, (count, params) in UPSTREAM_COUNTS.items():
        part = [v for k, v in tensors.items() if k.startswith(prefix)]
        assert (len(part), sum(v.size for v in part)) == (count, params), prefix
    assert sum(v.nbytes for v in tensors.values()) == (UPSTREAM_TOTAL_PARAMS - 77) * 4 + 77 * 8
    assert 5_000_000 < paths["checkpoint"].stat().st_size < 6_000_000


@pytest.mark.parametrize("key", sorted(HAND_SHAPES))
def test_hand_computed_shape(model, key):
    _, tensors = model
    assert tensors[key].shape == HAND_SHAPES[key]


@pytest.mark.parametrize("key", MUST_BE_ABSENT)
def test_key_absent(model, key):
    _, tensors = model
    assert key not in tensors


def test_metadata_marks_pytorch_format(model):
    paths, _ = model
    with safe_open(str(paths["checkpoint"]), framework="np") as f:
        assert f.metadata() == {"format": "pt"}


def test_values(model):
    _, tensors = model
    for key, value in tensors.items():
        assert np.isfinite(value).all(), key
    np.testing.assert_array_equal(tensors[CLIP + "embeddings.position_ids"], np.arange(77)[None])
    for key in (UNET + "out.0.weight", VAE + "encoder.norm_out.weight", CLIP + "encoder.layers.0.layer_norm1.weight"):
        np.testing.assert_array_equal(tensors[key], 1.0)
    # A zero final LayerNorm bias can make the webui's emphasis rescaling divide 0 by 0 (NaN conditioning).
    assert tensors[CLIP + "final_layer_norm.bias"].mean() > 0.05
    weight = tensors[UNET + "output_blocks.0.0.in_layers.2.weight"]  # fan_in 128 * 3 * 3
    assert weight.std() == pytest.approx(1 / math.sqrt(128 * 9), rel=0.05)
    assert tensors[CLIP + "embeddings.token_embedding.weight"].std() == pytest.approx(0.02, rel=0.05)
    assert tensors[UNET + "out.2.weight"].any()  # random, not zero-initialised like in training


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = tm.generate(tmp_path / "a", seed=1234)
    b = tm.generate(tmp_path / "b", seed=1234)
    c = tm.generate(tmp_path / "c", seed=1235)
    assert _sha256(a["checkpoint"]) == _sha256(b["checkpoint"])
    assert _sha256(a["checkpoint"]) != _sha256(c["checkpoint"])
    for name in ("config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (a["clip_dir"] / name).read_bytes() == (b["clip_dir"] / name).read_bytes(), name
    yaml_a = a["yaml"].read_text().replace(str(a["clip_dir"]), "CLIP")
    yaml_b = b["yaml"].read_text().replace(str(b["clip_dir"]), "CLIP")
    assert yaml_a == yaml_b


def test_yaml_text(model):
    paths, _ = model
    text = paths["yaml"].read_text(encoding="utf-8")
    assert "\t" not in text
    assert f'version: "{paths["clip_dir"]}"\n' in text
    assert "target: ldm.models.diffusion.ddpm.LatentDiffusion" in text
    assert "target: ldm.modules.encoders.modules.FrozenCLIPEmbedder" in text
    assert "ch_mult: [1, 1, 1, 1]" in text  # 4 levels: latents are 8x smaller, as the webui assumes
    assert "context_dim: 32" in text  # = CLIP hidden_size
    assert "legacy: False" in text
    assert "scheduler_config" not in text


def test_yaml_parses_when_pyyaml_is_available(model):
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (the generator itself does not need it)")
    paths, _ = model
    params = yaml.safe_load(paths["yaml"].read_text(encoding="utf-8"))["model"]["params"]
    assert params["cond_stage_config"]["params"]["version"] == str(paths["clip_dir"])
    assert len(params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]) == 4
    assert params["unet_config"]["params"]["context_dim"] == tm.HPARAMS["clip"]["hidden_size"]
    assert params["unet_config"]["params"]["channel_mult"] == [1, 2]


def test_tokenizer_files(model):
    paths, _ = model
    clip_dir = paths["clip_dir"]
    assert sorted(p.name for p in clip_dir.iterdir()) == [
        "config.json",
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    vocab = json.loads((clip_dir / "vocab.json").read_text(encoding="utf-8"))
    config = json.loads((clip_dir / "config.json").read_text(encoding="utf-8"))
    tok_config = json.loads((clip_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    special = json.loads((clip_dir / "special_tokens_map.json").read_text(encoding="utf-8"))

    assert len(vocab) == 514 == config["vocab_size"]
    assert sorted(vocab.values()) == list(range(514))
    assert vocab["<|startoftext|>"] == 512 == config["bos_token_id"]
    assert vocab["<|endoftext|>"] == 513 == config["eos_token_id"] == config["pad_token_id"]
    assert vocab["!"] == 0  # CLIP/GPT-2 byte order: printable bytes first
    assert vocab[",</w>"] == 267  # the webui's comma chunking looks this token up
    for ch in "()[]":
        assert ch in vocab and ch + "</w>" in vocab  # the webui derives emphasis multipliers from these
    assert (clip_dir / "merges.txt").read_text(encoding="utf-8").strip() == "#version: 0.2"

    assert config["model_type"] == "clip_text_model"
    assert config["architectures"] == ["CLIPTextModel"]
    assert config["max_position_embeddings"] >= tok_config["model_max_length"] == 77
    assert config["hidden_size"] == 32 and config["num_hidden_layers"] == 2
    assert tok_config["bos_token"] == special["bos_token"] == "<|startoftext|>"
    assert tok_config["eos_token"] == special["eos_token"] == special["pad_token"] == special["unk_token"]


@pytest.mark.parametrize("prompt", ["a cat, dog", "(a:1.2), [b]", "cat BREAK dog", "日本 é 🙂", "\t\n\x00"])
def test_every_byte_has_a_token(model, prompt):
    """With no merges, the tokenizer emits one byte-level char per byte, the last one of a word with </w>."""
    paths, _ = model
    vocab = json.loads((paths["clip_dir"] / "vocab.json").read_text(encoding="utf-8"))
    chars = tm.byte_chars()
    for byte in prompt.encode("utf-8"):
        assert chars[byte] in vocab and chars[byte] + "</w>" in vocab


def test_transformers_tokenizer_when_available(model):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    paths, _ = model
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(paths["clip_dir"]))
    assert tokenizer.bos_token_id == 512 and tokenizer.eos_token_id == 513
    assert tokenizer.get_vocab()[",</w>"] == 267
    ids = tokenizer("(a:1.2), [b] BREAK 日本 🙂", add_special_tokens=False)["input_ids"]
    assert 267 in ids and all(0 <= i < 512 for i in ids)
    assert tokenizer("a cat")["input_ids"] == [512, *tokenizer("a cat", add_special_tokens=False)["input_ids"], 513]


def test_hyperparameters_drive_the_table():
    hp = copy.deepcopy(tm.HPARAMS)
    hp["clip"]["num_hidden_layers"] = 3
    hp["unet"]["model_channels"] = 64
    table = tm.expected_tensors(hp)
    assert len(table) == UPSTREAM_TOTAL_TENSORS + 16  # one more CLIP layer: 4 projections, 2 norms, 2 linears
    assert table[UNET + "input_blocks.0.0.weight"] == (64, 4, 3, 3)
    assert tm.HPARAMS["clip"]["num_hidden_layers"] == 2  # not mutated


def test_custom_hparams_reach_every_output(tmp_path):
    hp = copy.deepcopy(tm.HPARAMS)
    hp["clip"]["hidden_size"] = 64
    hp["clip"]["num_attention_heads"] = 4
    paths = tm.generate(tmp_path, seed=1, name="wide", hparams=hp)
    tensors = load_file(str(paths["checkpoint"]))
    assert tensors[CLIP + "embeddings.token_embedding.weight"].shape == (514, 64)
    assert tensors[UNET + "input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"].shape == (64, 64)
    assert json.loads((paths["clip_dir"] / "config.json").read_text())["hidden_size"] == 64
    assert "context_dim: 64" in paths["yaml"].read_text()


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("vae", "ch_mult", [1, 2]),  # only 4x downsampling
        ("vae", "ch", 48),  # not a multiple of 32 GroupNorm groups
        ("unet", "model_channels", 40),
        ("clip", "max_position_embeddings", 64),
        ("clip", "vocab_size", 49408),
    ],
)
def test_validate_rejects(section, key, value):
    hp = copy.deepcopy(tm.HPARAMS)
    hp[section][key] = value
    with pytest.raises(ValueError):
        tm.validate(hp)


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_generate_rejects_bad_names(tmp_path, name):
    with pytest.raises(ValueError):
        tm.generate(tmp_path, name=name)


def test_cli(tmp_path):
    out = tmp_path / "cli out"
    proc = subprocess.run(
        [sys.executable, str(TINY_MODEL_PY), str(out), "--seed", "7", "--name", "other"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = json.loads(proc.stdout)
    assert Path(summary["checkpoint"]) == (out / "other.safetensors").resolve()
    assert Path(summary["yaml"]).is_file() and Path(summary["clip_dir"]).is_dir()
    api = tm.generate(tmp_path / "api", seed=7, name="other")
    assert summary["sha256"] == _sha256(api["checkpoint"])
    assert summary["bytes"] == api["checkpoint"].stat().st_size
