# legacyPackages.<system>.models: the model catalog as fixed-output store paths, with `dir` and
# `declared` helpers (see nix/models.nix). legacyPackages, not packages: it holds functions, and
# `nix flake check` need not build 20 GB of models.
_: {
  perSystem =
    { pkgs, ... }:
    {
      legacyPackages.models = (import ./models.nix { inherit (pkgs) fetchurl linkFarm; }).attrs;
    };
}
