{
  description = "AUTOMATIC1111's Stable Diffusion web UI, run read-only from the Nix store by a Rust launcher";

  # torch-bin needs no compiling. This cache only matters for a source CUDA build
  # (packages.cuda.override { cudaCapabilities = [ ... ]; }) with nixpkgs' default capabilities,
  # and for the CUDA libraries, which cache.nixos.org does not carry. See nix/README.md.
  nixConfig = {
    extra-substituters = [ "https://cache.nixos-cuda.org" ];
    extra-trusted-public-keys = [
      "cache.nixos-cuda.org:74DUi4Ye579gUqzH4ziL9IyiJBlDpMRn9MBN8oNan9M="
    ];
  };

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    flake-parts = {
      url = "github:hercules-ci/flake-parts";
      inputs.nixpkgs-lib.follows = "nixpkgs";
    };
    treefmt-nix = {
      url = "github:numtide/treefmt-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # The revision must be the one repositories/sources.json pins (checks.pins compares them).
    webui = {
      url = "github:AUTOMATIC1111/stable-diffusion-webui/dev";
      flake = false;
    };
  };

  outputs =
    inputs:
    inputs.flake-parts.lib.mkFlake { inherit inputs; } {
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
      imports = [
        ./nix/packages.nix
        ./nix/docker.nix
        ./nix/devshell.nix
        ./nix/checks.nix
        ./nix/formatter.nix
        ./nix/models-outputs.nix
        ./nix/python-versions.nix
      ];
      flake =
        let
          homeModule = import ./nix/home-manager.nix { inherit (inputs) self; };
        in
        {
          nixosModules.default = import ./nix/module.nix { inherit (inputs) self; };
          # home-manager's documented flake output is `homeModules`; `homeManagerModules`, the
          # older name, stays as an alias so existing configurations keep working.
          homeModules.default = homeModule;
          homeManagerModules.default = homeModule;
        };
    };
}
