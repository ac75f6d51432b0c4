"""Tiny random-weights Stable Diffusion 1.x checkpoint for offline tests.

What it is: a generator for a complete SD1-architecture model (UNet, VAE, CLIP text encoder) with a few MB of random
fp32 weights. It writes three things into one output directory:

* ``<name>.safetensors``: every tensor the architecture needs, with the CLIP text encoder's weights included under
  ``cond_stage_model.transformer.text_model.*``.
* ``<name>.yaml``: an ldm ``LatentDiffusion`` config. It has the same basename as the checkpoint, so the webui uses it
  instead of guessing a config from the keys.
* ``<name>-clip/``: a CLIP text-encoder ``config.json`` and a byte-level tokenizer (no weights). The yaml's
  ``cond_stage_config.params.version`` points at it by absolute path.

Why: the real checkpoints are gigabytes, and the webui normally downloads ``openai/clip-vit-large-patch14`` to build
its text encoder. With this model the webui works fully offline on a CPU: it loads the model in about a second and
samples a small image in a fraction of one. Tests can then run the whole launcher and server stack (txt2img,
img2img, prompt weighting, determinism) without network access, a GPU or large downloads. The images are noise,
but they are deterministic for a given seed.

Design notes:

* Only numpy and safetensors are needed (no torch). The yaml is written as text.
* One hyperparameter dict (``HPARAMS``) drives the key/shape table, the yaml and the CLIP config.
* The key table follows ldm's ``UNetModel`` (``legacy: False``, conv ``proj_in``/``proj_out``), ``AutoencoderKL`` and
  transformers' ``CLIPTextModel`` (4.30, which still saves ``position_ids``).
* The VAE has 4 ``ch_mult`` levels because the webui assumes latents are H/8 x W/8. Every GroupNorm has 32 groups, so
  every UNet/VAE channel count is a multiple of 32.
* The tokenizer vocabulary is the 256 GPT-2 byte characters, the same with ``</w>``, and the two CLIP specials
  (514 ids, no merges). Any text tokenizes, one token per byte, and that includes emoji. ``,</w>`` exists for the
  webui's comma chunking, and ``(``/``)``/``[``/``]`` entries exist for its emphasis handling.
* Weights are N(0, 1)/sqrt(fan_in), embeddings N(0, 0.02), norm weights 1 and biases 0. The exception is the CLIP
  ``final_layer_norm.bias``: 0.1 + N(0, 0.02). With a zero bias, the mean of the text embedding can be exactly 0, and
  the webui's "Original" emphasis (which divides by that mean) then turns it into NaN.
* The output is byte-deterministic for a given seed.

Usage: ``python tests/support/tiny_model.py OUT_DIR [--seed 1234] [--name tiny]``, or ``generate(out_dir)`` from
Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save

HPARAMS: dict = {
    "latent_channels": 4,
    "unet": {
        "image_size": 32,
        "model_channels": 32,
        "channel_mult": [1, 2],
        "num_res_blocks": 1,
        "attention_resolutions": [2],
        "num_head_channels": 16,
        "transformer_depth": 1,
    },
    "vae": {
        "ch": 32,
        "ch_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
    },
    "clip": {
        "vocab_size": 514,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
    },
}

GROUP_NORM_GROUPS = 32
WEBUI_CHUNK_TOKENS = 77  # the webui's 75 prompt tokens + bos + eos
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def byte_chars() -> list[str]:
    """The 256 byte-level characters, ordered as in GPT-2/CLIP vocabularies.

    Printable latin-1 bytes map to themselves and come first, in byte order. The remaining bytes (control, space,
    ...) map to code points 256 and up, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    printable_set = set(printable)
    others = [b for b in range(256) if b not in printable_set]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def vocabulary() -> dict[str, int]:
    """Token -> id: the byte chars (0-255), the same with ``</w>`` (256-511), then bos (512) and eos (513)."""
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def validate(hparams: dict) -> None:
    """Raise ValueError when the hyperparameters would not load or run in the webui."""
    unet, vae, clip = hparams["unet"], hparams["vae"], hparams["clip"]
    problems = []
    for mult in unet["channel_mult"]:
        ch = unet["model_channels"] * mult
        if ch % GROUP_NORM_GROUPS:
            problems.append(f"UNet channels {ch} are not a multiple of {GROUP_NORM_GROUPS} (GroupNorm)")
        if ch % unet["num_head_channels"]:
            problems.append(f"UNet channels {ch} are not a multiple of num_head_channels {unet['num_head_channels']}")
    for mult in vae["ch_mult"]:
        if (vae["ch"] * mult) % GROUP_NORM_GROUPS:
            problems.append(f"VAE channels {vae['ch'] * mult} are not a multiple of {GROUP_NORM_GROUPS} (GroupNorm)")
    if len(vae["ch_mult"]) != 4:
        problems.append("the VAE needs 4 ch_mult levels: the webui assumes latents are 8x smaller than images")
    if clip["hidden_size"] % clip["num_attention_heads"]:
        problems.append("CLIP hidden_size is not a multiple of num_attention_heads")
    if clip["max_position_embeddings"] < WEBUI_CHUNK_TOKENS:
        problems.append(f"CLIP max_position_embeddings must be >= {WEBUI_CHUNK_TOKENS} (webui prompt chunks)")
    if clip["vocab_size"] != len(vocabulary()):
        problems.append(f"CLIP vocab_size must be {len(vocabulary())}, the size of the byte-level vocabulary")
    if problems:
        raise ValueError("; ".join(problems))


# ---------------------------------------------------------------------------------------------------------------------
# Key table: (name, shape, init) in module construction order
# ---------------------------------------------------------------------------------------------------------------------


class _Table:
    """Collects (key, shape, init) rows; helpers mirror torch modules' parameter names and shapes."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[int, ...], str]] = []

    def add(self, key: str, shape: tuple[int, ...], init: str) -> None:
        self.rows.append((key, tuple(int(d) for d in shape), init))

    def linear(self, key: str, n_in: int, n_out: int, bias: bool = True) -> None:
        self.add(f"{key}.weight", (n_out, n_in), "fan_in")
        if bias:
            self.add(f"{key}.bias", (n_out,), "zeros")

    def conv(self, key: str, n_in: int, n_out: int, kernel: int) -> None:
        self.add(f"{key}.weight", (n_out, n_in, kernel, kernel), "fan_in")
        self.add(f"{key}.bias", (n_out,), "zeros")

    def norm(self, key: str, channels: int, bias_init: str = "zeros") -> None:
        self.add(f"{key}.weight", (channels,), "ones")
        self.add(f"{key}.bias", (channels,), bias_init)

    def embedding(self, key: str, num: int, dim: int) -> None:
        self.add(f"{key}.weight", (num, dim), "embedding")


def _unet_resblock(t: _Table, key: str, ch_in: int, ch_out: int, emb_dim: int) -> None:
    t.norm(f"{key}.in_layers.0", ch_in)
    t.conv(f"{key}.in_layers.2", ch_in, ch_out, 3)
    t.linear(f"{key}.emb_layers.1", emb_dim, ch_out)
    t.norm(f"{key}.out_layers.0", ch_out)
    t.conv(f"{key}.out_layers.3", ch_out, ch_out, 3)
    if ch_in != ch_out:
        t.conv(f"{key}.skip_connection", ch_in, ch_out, 1)


def _cross_attention(t: _Table, key: str, inner: int, kv_dim: int) -> None:
    t.linear(f"{key}.to_q", inner, inner, bias=False)
    t.linear(f"{key}.to_k", kv_dim, inner, bias=False)
    t.linear(f"{key}.to_v", kv_dim, inner, bias=False)
    t.linear(f"{key}.to_out.0", inner, inner)


def _unet_transformer(t: _Table, key: str, ch: int, context_dim: int, depth: int) -> None:
    # legacy=False with num_head_channels: heads * dim_head == ch, so inner_dim == ch.
    inner = ch
    t.norm(f"{key}.norm", ch)
    t.conv(f"{key}.proj_in", ch, inner, 1)
    for d in range(depth):
        block = f"{key}.transformer_blocks.{d}"
        _cross_attention(t, f"{block}.attn1", inner, inner)  # self-attention
        t.linear(f"{block}.ff.net.0.proj", inner, inner * 4 * 2)  # GEGLU: value and gate
        t.linear(f"{block}.ff.net.2", inner * 4, inner)
        _cross_attention(t, f"{block}.attn2", inner, context_dim)
        for n in (1, 2, 3):
            t.norm(f"{block}.norm{n}", inner)
    t.conv(f"{key}.proj_out", inner, ch, 1)


def _unet(t: _Table, hp: dict) -> None:
    u = hp["unet"]
    p = UNET_PREFIX
    mc = u["model_channels"]
    emb_dim = mc * 4
    context_dim = hp["clip"]["hidden_size"]
    depth = u["transformer_depth"]
    attn_res = set(u["attention_resolutions"])
    t.linear(f"{p}time_embed.0", mc, emb_dim)
    t.linear(f"{p}time_embed.2", emb_dim, emb_dim)

    t.conv(f"{p}input_blocks.0.0", hp["latent_channels"], mc, 3)
    skip_chans = [mc]
    ch, ds, idx = mc, 1, 1
    for level, mult in enumerate(u["channel_mult"]):
        for _ in range(u["num_res_blocks"]):
            _unet_resblock(t, f"{p}input_blocks.{idx}.0", ch, mc * mult, emb_dim)
            ch = mc * mult
            if ds in attn_res:
                _unet_transformer(t, f"{p}input_blocks.{idx}.1", ch, context_dim, depth)
            skip_chans.append(ch)
            idx += 1
        if level != len(u["channel_mult"]) - 1:
            t.conv(f"{p}input_blocks.{idx}.0.op", ch, ch, 3)
            skip_chans.append(ch)
            ds *= 2
            idx += 1

    _unet_resblock(t, f"{p}middle_block.0", ch, ch, emb_dim)
    _unet_transformer(t, f"{p}middle_block.1", ch, context_dim, depth)
    _unet_resblock(t, f"{p}middle_block.2", ch, ch, emb_dim)

    idx = 0
    for level, mult in reversed(list(enumerate(u["channel_mult"]))):
        for i in range(u["num_res_blocks"] + 1):
            key = f"{p}output_blocks.{idx}"
            _unet_resblock(t, f"{key}.0", ch + skip_chans.pop(), mc * mult, emb_dim)
            ch = mc * mult
            sub = 1
            if ds in attn_res:
                _unet_transformer(t, f"{key}.1", ch, context_dim, depth)
                sub = 2
            if level and i == u["num_res_blocks"]:
                t.conv(f"{key}.{sub}.conv", ch, ch, 3)
                ds //= 2
            idx += 1

    t.norm(f"{p}out.0", ch)
    t.conv(f"{p}out.2", mc, hp["latent_channels"], 3)


def _vae_resblock(t: _Table, key: str, ch_in: int, ch_out: int) -> None:
    t.norm(f"{key}.norm1", ch_in)
    t.conv(f"{key}.conv1", ch_in, ch_out, 3)
    t.norm(f"{key}.norm2", ch_out)
    t.conv(f"{key}.conv2", ch_out, ch_out, 3)
    if ch_in != ch_out:
        t.conv(f"{key}.nin_shortcut", ch_in, ch_out, 1)


def _vae_attn(t: _Table, key: str, ch: int) -> None:
    t.norm(f"{key}.norm", ch)
    for name in ("q", "k", "v", "proj_out"):
        t.conv(f"{key}.{name}", ch, ch, 1)


def _vae_mid(t: _Table, key: str, ch: int) -> None:
    _vae_resblock(t, f"{key}.block_1", ch, ch)
    _vae_attn(t, f"{key}.attn_1", ch)
    _vae_resblock(t, f"{key}.block_2", ch, ch)


def _vae(t: _Table, hp: dict) -> None:
    v = hp["vae"]
    z = hp["latent_channels"]
    levels = len(v["ch_mult"])
    attn_res = set(v["attn_resolutions"])

    enc = f"{VAE_PREFIX}encoder"
    t.conv(f"{enc}.conv_in", v["in_channels"], v["ch"], 3)
    res = v["resolution"]
    block_in = v["ch"]
    for level, mult in enumerate(v["ch_mult"]):
        block_out = v["ch"] * mult
        for b in range(v["num_res_blocks"]):
            _vae_resblock(t, f"{enc}.down.{level}.block.{b}", block_in, block_out)
            block_in = block_out
            if res in attn_res:
                _vae_attn(t, f"{enc}.down.{level}.attn.{b}", block_in)
        if level != levels - 1:
            t.conv(f"{enc}.down.{level}.downsample.conv", block_in, block_in, 3)
            res //= 2
    _vae_mid(t, f"{enc}.mid", block_in)
    t.norm(f"{enc}.norm_out", block_in)
    t.conv(f"{enc}.conv_out", block_in, 2 * z, 3)  # double_z

    dec = f"{VAE_PREFIX}decoder"
    block_in = v["ch"] * v["ch_mult"][-1]
    res = v["resolution"] // 2 ** (levels - 1)
    t.conv(f"{dec}.conv_in", z, block_in, 3)
    _vae_mid(t, f"{dec}.mid", block_in)
    for level in reversed(range(levels)):
        block_out = v["ch"] * v["ch_mult"][level]
        for b in range(v["num_res_blocks"] + 1):
            _vae_resblock(t, f"{dec}.up.{level}.block.{b}", block_in, block_out)
            block_in = block_out
            if res in attn_res:
                _vae_attn(t, f"{dec}.up.{level}.attn.{b}", block_in)
        if level != 0:
            t.conv(f"{dec}.up.{level}.upsample.conv", block_in, block_in, 3)
            res *= 2
    t.norm(f"{dec}.norm_out", block_in)
    t.conv(f"{dec}.conv_out", block_in, v["out_ch"], 3)

    # embed_dim == z_channels == latent_channels
    t.conv(f"{VAE_PREFIX}quant_conv", 2 * z, 2 * z, 1)
    t.conv(f"{VAE_PREFIX}post_quant_conv", z, z, 1)


def _clip(t: _Table, hp: dict) -> None:
    c = hp["clip"]
    p = CLIP_PREFIX
    h = c["hidden_size"]
    t.embedding(f"{p}embeddings.token_embedding", c["vocab_size"], h)
    t.embedding(f"{p}embeddings.position_embedding", c["max_position_embeddings"], h)
    t.add(f"{p}embeddings.position_ids", (1, c["max_position_embeddings"]), "position_ids")
    for i in range(c["num_hidden_layers"]):
        layer = f"{p}encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            t.linear(f"{layer}.self_attn.{proj}", h, h)
        t.norm(f"{layer}.layer_norm1", h)
        t.linear(f"{layer}.mlp.fc1", h, c["intermediate_size"])
        t.linear(f"{layer}.mlp.fc2", c["intermediate_size"], h)
        t.norm(f"{layer}.layer_norm2", h)
    t.norm(f"{p}final_layer_norm", h, bias_init="final_ln_bias")


def tensor_table(hparams: dict | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    """All (key, shape, init) rows, in construction order: UNet, VAE, CLIP."""
    hp = HPARAMS if hparams is None else hparams
    t = _Table()
    _unet(t, hp)
    _vae(t, hp)
    _clip(t, hp)
    keys = [row[0] for row in t.rows]
    if len(keys) != len(set(keys)):
        raise AssertionError("duplicate keys in the tensor table")
    return t.rows


def expected_tensors(hparams: dict | None = None) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor the checkpoint holds for these hyperparameters (default: HPARAMS)."""
    return {key: shape for key, shape, _ in tensor_table(hparams)}


# ---------------------------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------------------------


def make_tensors(seed: int = 1234, hparams: dict | None = None) -> dict[str, np.ndarray]:
    """Deterministic random tensors for every row of the table (fp32; position_ids int64)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape, init in tensor_table(hparams):
        if init == "fan_in":
            fan_in = math.prod(shape[1:])
            value = rng.standard_normal(shape, dtype=np.float32) / np.float32(math.sqrt(fan_in))
        elif init == "embedding":
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        elif init == "final_ln_bias":
            value = np.float32(0.1) + rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        elif init == "ones":
            value = np.ones(shape, dtype=np.float32)
        elif init == "zeros":
            value = np.zeros(shape, dtype=np.float32)
        elif init == "position_ids":
            value = np.arange(shape[1], dtype=np.int64).reshape(shape)
        else:
            raise AssertionError(f"unknown init {init!r}")
        out[key] = np.ascontiguousarray(value)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Text files
# ---------------------------------------------------------------------------------------------------------------------


def _yaml_list(values: list) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def yaml_text(clip_dir: Path | str, hparams: dict | None = None) -> str:
    """The ldm LatentDiffusion config (upstream's v1-inference.yaml layout with tiny sizes)."""
    hp = HPARAMS if hparams is None else hparams
    u, v, c = hp["unet"], hp["vae"], hp["clip"]
    z = hp["latent_channels"]
    # A JSON string is a valid YAML double-quoted scalar, whatever characters the path holds.
    version = json.dumps(str(clip_dir))
    return f"""\
model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: {u["image_size"] * 2}
    channels: {z}
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: 0.18215
    use_ema: False
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: {u["image_size"]}
        in_channels: {z}
        out_channels: {z}
        model_channels: {u["model_channels"]}
        attention_resolutions: {_yaml_list(u["attention_resolutions"])}
        num_res_blocks: {u["num_res_blocks"]}
        channel_mult: {_yaml_list(u["channel_mult"])}
        num_head_channels: {u["num_head_channels"]}
        use_spatial_transformer: True
        transformer_depth: {u["transformer_depth"]}
        context_dim: {c["hidden_size"]}
        use_checkpoint: False
        legacy: False
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: {z}
        monitor: val/rec_loss
        ddconfig:
          double_z: true
          z_channels: {z}
          resolution: {v["resolution"]}
          in_channels: {v["in_channels"]}
          out_ch: {v["out_ch"]}
          ch: {v["ch"]}
          ch_mult: {_yaml_list(v["ch_mult"])}
          num_res_blocks: {v["num_res_blocks"]}
          attn_resolutions: {_yaml_list(v["attn_resolutions"])}
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        version: {version}
"""


def clip_files(hparams: dict | None = None) -> dict[str, str]:
    """File name -> text for the CLIP config + tokenizer directory (no weights)."""
    c = (HPARAMS if hparams is None else hparams)["clip"]
    vocab = vocabulary()
    config = {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": c["vocab_size"],
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "max_position_embeddings": c["max_position_embeddings"],
        "projection_dim": c["hidden_size"],
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "bos_token_id": vocab[BOS_TOKEN],
        "eos_token_id": vocab[EOS_TOKEN],
        "pad_token_id": vocab[EOS_TOKEN],
        "torch_dtype": "float32",
    }
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": WEBUI_CHUNK_TOKENS,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
    }

    def dump(obj: dict, sort: bool = True) -> str:
        return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort) + "\n"

    return {
        "config.json": dump(config),
        "vocab.json": dump(vocab, sort=False),
        "merges.txt": "#version: 0.2\n",
        "tokenizer_config.json": dump(tokenizer_config),
        "special_tokens_map.json": dump(special),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------------------


def generate(out_dir: Path | str, seed: int = 1234, name: str = "tiny", hparams: dict | None = None) -> dict[str, Path]:
    """Write ``<name>.safetensors``, ``<name>.yaml`` and ``<name>-clip/`` into out_dir; return their paths.

    Returns ``{"checkpoint": ..., "yaml": ..., "clip_dir": ...}`` (absolute paths).
    """
    hp = HPARAMS if hparams is None else hparams
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"name must be a plain file name, got {name!r}")
    validate(hp)
    out = Path(out_dir).resolve()
    clip_dir = out / f"{name}-clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    for filename, text in clip_files(hp).items():
        (clip_dir / filename).write_text(text, encoding="utf-8", newline="\n")
    yaml_path = out / f"{name}.yaml"
    yaml_path.write_text(yaml_text(clip_dir, hp), encoding="utf-8", newline="\n")
    checkpoint = out / f"{name}.safetensors"
    # save() + write_bytes(): the file mode follows the umask (some safetensors releases' save_file() writes 0600).
    checkpoint.write_bytes(save(make_tensors(seed, hp), metadata={"format": "pt"}))
    return {"checkpoint": checkpoint, "yaml": yaml_path, "clip_dir": clip_dir}


def sha256_file(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write into (created if missing)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default: 1234)")
    parser.add_argument("--name", default="tiny", help="basename of the checkpoint and yaml (default: tiny)")
    args = parser.parse_args(argv)
    try:
        paths = generate(args.out_dir, seed=args.seed, name=args.name)
    except ValueError as err:
        parser.error(str(err))
    summary = {key: str(path) for key, path in paths.items()}
    summary["sha256"] = sha256_file(paths["checkpoint"])
    summary["bytes"] = paths["checkpoint"].stat().st_size
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
