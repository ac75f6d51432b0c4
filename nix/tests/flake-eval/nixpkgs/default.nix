# `import inputs.nixpkgs { system; config; overlays; }` in nix/tests/flake-eval: the stub nixpkgs
# over the real lib. The flake calls this with nixpkgs' own arguments only, so the lib's path and
# the torch-bin shape come from .ci/flake-eval.sh through the environment.
args:
let
  lib = import (builtins.getEnv "SD_FLAKE_EVAL_NIXPKGS_LIB" + "/lib");
in
import ../stub-nixpkgs.nix {
  inherit lib;
  torchBinShape = builtins.getEnv "SD_FLAKE_EVAL_TORCH_BIN";
  nixosOptions = ../nixos-options.nix;
} args
