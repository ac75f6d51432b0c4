"""Adjust the webui's command line before upstream parses it.

The webui runs with the data dir as its working directory (upstream writes ``interrogate/``,
``textual_inversion/`` and more relative to it), so relative paths the user typed must be made
absolute against the directory the launcher was started from first. Upstream parses
``sys.argv`` at import time, so this happens before ``import launch``.
"""

from __future__ import annotations

import os

# Every upstream option whose value is a path (modules/cmd_args.py and the built-in
# extensions' preload.py). tests/python/test_upstream_args.py checks this list against
# upstream's parser so it cannot silently go stale.
PATH_OPTIONS = frozenset(
    {
        "--data-dir",
        "--models-dir",
        "--config",
        "--ckpt",
        "--ckpt-dir",
        "--vae-dir",
        "--vae-path",
        "--gfpgan-dir",
        "--gfpgan-model",
        "--embeddings-dir",
        "--textual-inversion-templates-dir",
        "--hypernetwork-dir",
        "--localizations-dir",
        "--codeformer-models-path",
        "--gfpgan-models-path",
        "--esrgan-models-path",
        "--bsrgan-models-path",
        "--realesrgan-models-path",
        "--dat-models-path",
        "--clip-models-path",
        "--ui-config-file",
        "--ui-settings-file",
        "--gradio-auth-path",
        "--gradio-allowed-path",
        "--styles-file",
        "--tls-keyfile",
        "--tls-certfile",
        "--lora-dir",
        "--lyco-dir-backcompat",
        "--ldsr-models-path",
        "--scunet-models-path",
        "--swinir-models-path",
    }
)

# What upstream needs to run without CUDA, as its own scripts set it (webui-macos-env.sh for
# MPS); each is added only when the user did not give that option.
ACCELERATOR_DEFAULTS = {
    "cpu": [["--skip-torch-cuda-test"], ["--no-half"], ["--use-cpu", "all"]],
    "mps": [["--skip-torch-cuda-test"], ["--upcast-sampling"], ["--no-half-vae"], ["--use-cpu", "interrogate"]],
    "cuda": [],
}


def absolutize_paths(argv: list[str], base: str) -> list[str]:
    """Make the values of path options absolute against ``base``."""
    result: list[str] = []
    expect_path = False
    for arg in argv:
        if expect_path:
            result.append(os.path.join(base, os.path.expanduser(arg)))
            expect_path = False
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in PATH_OPTIONS:
            option, value = arg.split("=", 1)
            result.append(f"{option}={os.path.join(base, os.path.expanduser(value))}")
        else:
            result.append(arg)
            expect_path = arg in PATH_OPTIONS
    return result


def has_option(argv: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def accelerator() -> str:
    """ "cuda", "mps" or "cpu": what torch can use here."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def with_accelerator_defaults(argv: list[str], device: str) -> list[str]:
    added = [part for flag in ACCELERATOR_DEFAULTS.get(device, []) if not has_option(argv, flag[0]) for part in flag]
    return argv + added
