# Packages, apps and the overlay: one builder (mkWebui), three torch variants.
#
#   packages.default  x86_64-linux: cuda; aarch64-darwin: mps; aarch64-linux: cpu
#   packages.cpu      nixpkgs' source-built torch without CUDA (cached on cache.nixos.org)
#   packages.cuda     x86_64-linux: nixpkgs' torch-bin, PyTorch's CUDA wheel (no CUDA compiling)
#   packages.mps      aarch64-darwin: nixpkgs' torch-bin, PyTorch's macOS arm64 wheel (MPS)
# (nixosModules / homeManagerModules: flake.nix, nix/module.nix, nix/home-manager.nix)
#
# CUDA architectures: the torch-bin wheel is built by PyTorch for its own list of architectures
# and cannot be narrowed or widened. To build for chosen ones, override cudaCapabilities:
#   packages.x86_64-linux.cuda.override { cudaCapabilities = [ "8.6" "8.9" ]; }
# which switches to nixpkgs' source torch with config.cudaSupport and those capabilities.
# That is a long compile unless cache.nixos-cuda.org has the build (it caches nixpkgs' default
# capability list only).
{ inputs, ... }:
let
  mkWebui =
    {
      pkgs,
      variant ? "cpu",
      cudaCapabilities ? null,
      extraPythonPackages ? (_: [ ]),
      # Anything else is package.nix's (e.g. `extensions`), so that `.override { ... }` on a
      # package reaches it: the NixOS module overrides only what the user set.
      ...
    }@args:
    let
      fromSource = cudaCapabilities != null;
      # Only torch and torchvision come from a nixpkgs evaluated with cudaSupport and the chosen
      # capabilities. Everything else (the interpreter, opencv, the sources, the launcher) comes
      # from `pkgs` as given, with the caller's config and overlays: cudaSupport on the whole
      # set would turn opencv and others into hours-long CUDA source builds.
      sourceTorch =
        let
          # The caller's nixpkgs (its revision, its overlays), only reconfigured: torch built
          # on another nixpkgs would be for another python313 than the rest of the set, which
          # buildPythonPackage refuses ("Python version mismatch").
          cudaPkgs = import pkgs.path {
            inherit (pkgs.stdenv.hostPlatform) system;
            inherit (pkgs) overlays;
            config = pkgs.config // {
              allowUnfree = true;
              cudaSupport = true;
              inherit cudaCapabilities;
            };
          };
        in
        {
          inherit (cudaPkgs.python313Packages) torch torchvision;
        };
      torchVariant =
        if fromSource then
          "source"
        else if variant == "cpu" then
          "cpu"
        else
          "bin";
      webuiPython = import ./python-packages.nix {
        inherit (pkgs) lib fetchurl;
        inherit torchVariant;
        sourceTorch = if fromSource then sourceTorch else null;
        cudaPackagesFor = major: pkgs."cudaPackages_${major}" or null;
      };
      # Named, not python3: the default python3 moves between releases; torch-bin has wheels for
      # 3.10 to 3.14 and nixpkgs 26.05's default is 3.13.
      python = pkgs.python313.override {
        packageOverrides = webuiPython.overlay;
        self = python;
      };
      sources = pkgs.callPackage ./sources.nix { webuiSrc = inputs.webui; };
    in
    assert pkgs.lib.assertMsg (
      cudaCapabilities == null || variant == "cuda"
    ) "stable-diffusion-webui: cudaCapabilities only applies to the cuda variant, not \"${variant}\"";
    pkgs.callPackage ./package.nix (
      {
        inherit
          python
          webuiPython
          sources
          extraPythonPackages
          variant
          ;
      }
      // builtins.removeAttrs args [
        "pkgs"
        "variant"
        "cudaCapabilities"
        "extraPythonPackages"
      ]
    );

  # The variants a system has, and the one `default` is.
  variantsFor =
    system:
    {
      x86_64-linux = {
        default = "cuda";
        all = [
          "cpu"
          "cuda"
        ];
      };
      aarch64-linux = {
        default = "cpu";
        all = [ "cpu" ];
      };
      aarch64-darwin = {
        default = "mps";
        all = [
          "cpu"
          "mps"
        ];
      };
    }
    .${system} or {
      default = null;
      all = [ ];
    };
in
{
  flake.lib = { inherit mkWebui; };

  # The attribute names come from `prev`: nixpkgs applies overlays as a fixed point
  # (pkgs/top-level/stage.nix: lib.fix over lib.extends), so names computed from `final` would
  # depend on this overlay's own result (infinite recursion on any lookup). A system without a
  # variant gets no attributes rather than an error.
  flake.overlays.default =
    final: prev:
    let
      variants = variantsFor prev.stdenv.hostPlatform.system;
      make =
        variant:
        final.lib.makeOverridable mkWebui {
          pkgs = final;
          inherit variant;
        };
    in
    prev.lib.optionalAttrs (variants.default != null) {
      stable-diffusion-webui = make variants.default;
    }
    // builtins.listToAttrs (
      map (v: {
        name = "stable-diffusion-webui-${v}";
        value = make v;
      }) variants.all
    );

  perSystem =
    {
      system,
      pkgs,
      lib,
      self',
      ...
    }:
    let
      variants = variantsFor system;
      make = variant: lib.makeOverridable mkWebui { inherit pkgs variant; };
    in
    {
      # torch-bin (unfreeRedistributable) and the CUDA libraries it links (NVIDIA's EULA) are
      # unfree; cudaSupport stays off (see mkWebui).
      _module.args.pkgs = import inputs.nixpkgs {
        inherit system;
        config.allowUnfree = true;
      };

      packages = {
        default = self'.packages.${variants.default};
      }
      // lib.genAttrs variants.all make;

      apps.default = {
        type = "app";
        program = lib.getExe self'.packages.default;
        meta.description = self'.packages.default.meta.description;
      };
    };
}
