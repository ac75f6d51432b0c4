# The flake evaluated as `nix flake check` / `nix run` would, without nixpkgs: the real
# flake-parts and treefmt-nix (flake.lock's revisions) and the real nixpkgs `lib`, over the stub
# `pkgs` of ./stub-nixpkgs.nix. Run by .ci/flake-eval.sh, which passes the paths:
#
#   flakeParts, treefmtNix   checkouts of hercules-ci/flake-parts and numtide/treefmt-nix at the
#                            revisions flake.lock pins
#   nixpkgsLib               a checkout of nix-community/nixpkgs.lib (its `lib/`)
#   src                      the flake's source as a flake sees it (builtins.fetchGit of the
#                            checkout: git-tracked files only), so a file the build needs but git
#                            does not carry is missing here as it is in `nix build`
#
# Outputs:
#   targets      every package, check, app, dev shell, formatter, model, and the overlay's
#                packages, on all three systems, as derivations; instantiating them forces every
#                derivation argument down to the stub packages
#   properties   the findings of issue #16 as facts about the evaluated flake: name -> bool
{
  flakeParts,
  treefmtNix,
  nixpkgsLib,
  src,
  torchBinShape ? "cu130",
}:
let
  realLib = import (nixpkgsLib + "/lib");
  lock = realLib.importJSON (src + "/flake.lock");
  locked = name: lock.nodes.${name}.locked;
  systems = [
    "x86_64-linux"
    "aarch64-linux"
    "aarch64-darwin"
  ];

  stubNixpkgs = import ./stub-nixpkgs.nix {
    lib = realLib;
    inherit torchBinShape nixosOptions;
  };
  nixosOptions = ./nixos-options.nix;

  # nixpkgs' flake.nix adds nixosSystem to its lib (nixos/lib/eval-config.nix). Here: the real
  # lib.evalModules over the NixOS options our modules use (./nixos-options.nix), with the stub pkgs.
  nixosSystem =
    {
      system,
      modules,
      specialArgs ? { },
      ...
    }:
    realLib.evalModules {
      inherit specialArgs;
      modules = [
        nixosOptions
        { _module.args.pkgs = stubNixpkgs { inherit system; }; }
      ]
      ++ modules;
    };
  lib = realLib.extend (_: _: { inherit nixosSystem; });

  # What Nix's call-flake.nix does with a locked input: its outputs, called with its own inputs
  # and itself, plus the source info.
  callFlake =
    path: info: inputs:
    let
      flake = import (path + "/flake.nix");
      outputs = flake.outputs (inputs // { self = result; });
      result =
        outputs
        // info
        // {
          outPath = path;
          inherit inputs outputs;
          _type = "flake";
        };
    in
    result;

  nixpkgs = {
    # `import inputs.nixpkgs { ... }` reads this directory's default.nix, which takes the same
    # stub (the lib path and shape come through the environment, see .ci/flake-eval.sh).
    outPath = ./nixpkgs;
    inherit lib;
    inherit (locked "nixpkgs") rev narHash lastModified;
    legacyPackages = realLib.genAttrs systems (system: stubNixpkgs { inherit system; });
  };
  flake-parts = callFlake flakeParts (locked "flake-parts") { nixpkgs-lib = nixpkgs; };
  treefmt-nix = callFlake treefmtNix (locked "treefmt-nix") { inherit nixpkgs; };
  webui = {
    # Not read: sources.nix only copies it into the tree derivation.
    outPath = "/nix/store/00000000000000000000000000000000-source";
    inherit (locked "webui") rev narHash lastModified;
  };

  self = callFlake src { } {
    inherit
      nixpkgs
      flake-parts
      treefmt-nix
      webui
      ;
  };

  # --- what is forced ----------------------------------------------------------------------

  # A program path (apps) as a derivation, so instantiating forces the program's derivation.
  appDrv =
    system: name: app:
    derivation {
      name = "app-${name}";
      inherit system;
      builder = "/bin/sh";
      inherit (app) program;
      __stubCall = "flake app";
      __stubCached = "0";
    };

  # As nix/README.md says a user must: a nixpkgs that allows unfree packages (torch-bin, CUDA).
  overlaid =
    system:
    realLib.fix (
      realLib.foldl' (realLib.flip realLib.extends)
        (
          _:
          stubNixpkgs {
            inherit system;
            config.allowUnfree = true;
          }
        )
        [
          self.overlays.default
        ]
    );
  overlaidWithout = realLib.fix (
    realLib.foldl' (realLib.flip realLib.extends) (_: stubNixpkgs { system = linux; }) [
      self.overlays.default
    ]
  );
  overlayAttrs =
    system: realLib.filterAttrs (n: _: realLib.hasPrefix "stable-diffusion-webui" n) (overlaid system);

  perSystem = system: {
    packages = self.packages.${system};
    checks = self.checks.${system};
    apps = realLib.mapAttrs (appDrv system) self.apps.${system};
    devShells = self.devShells.${system};
    formatter = {
      formatter = self.formatter.${system};
    };
    models = realLib.filterAttrs (_: realLib.isDerivation) self.legacyPackages.${system}.models;
    overlay = overlayAttrs system;
  };

  targets = realLib.genAttrs systems perSystem;

  # --- the findings, as properties of the evaluated flake ------------------------------------

  tries = e: (builtins.tryEval (builtins.deepSeq e e)).success;
  linux = "x86_64-linux";
  cuda = self.packages.${linux}.cuda;
  dockerTag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
  # Docker's reference grammar for a repository path component (lowercase, separators . _ __ -).
  dockerName = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*";
  entriesWithPatches =
    let
      s = realLib.importJSON (src + "/repositories/sources.json");
      all = {
        webui = s.webui;
      }
      // s.repositories
      // (s.extensions or { });
    in
    builtins.attrNames (realLib.filterAttrs (_: e: (e.patches or [ ]) != [ ]) all);
  withCapabilities = cuda.override { cudaCapabilities = [ "8.6" ]; };

  properties = {
    # 2: the overlay, applied as stage.nix applies overlays, on every system and on one without variants.
    "overlay: applied by lib.fix/lib.extends, its packages evaluate" = realLib.all (
      system: tries (map (d: d.drvPath) (builtins.attrValues (overlayAttrs system)))
    ) systems;
    "overlay: a system without a variant gets no attributes" = overlayAttrs "riscv64-linux" == { };
    "overlay: without allowUnfree the CUDA package is refused (its license), the CPU one is not" =
      !(tries overlaidWithout.stable-diffusion-webui-cuda.drvPath)
      && tries overlaidWithout.stable-diffusion-webui-cpu.drvPath;

    # 4: the manifest check reports (a derivation that fails with the diff), it does not throw.
    "checks.python-versions evaluates on every system" = realLib.all (
      system: tries self.checks.${system}.python-versions.drvPath
    ) systems;

    # 5: the images' references are valid Docker references.
    "docker: image name and tag follow Docker's reference grammar" =
      realLib.all
        (
          image:
          builtins.match dockerTag image.imageTag != null && builtins.match dockerName image.imageName != null
        )
        (
          builtins.attrValues (
            realLib.filterAttrs (n: _: realLib.hasPrefix "docker" n) self.packages.${linux}
          )
        );
    # 6
    "docker: the CUDA image names the driver directories" =
      realLib.any (realLib.hasPrefix "LD_LIBRARY_PATH=/run/opengl-driver/lib:/usr/lib64")
        self.packages.${linux}.docker.stream.passthru.config.Env;

    # 7: the CUDA variant evaluates (torch-bin's own problems satisfied) and the packages rebuilt
    # against torch-bin skip their test suites.
    "cuda: packages.cuda evaluates (no refused meta.problems)" = tries cuda.drvPath;
    "mps: packages.mps evaluates" = tries self.packages.aarch64-darwin.mps.drvPath;
    "cuda: torch is torch-bin" = cuda.python.pkgs.torch.drvPath == cuda.python.pkgs.torch-bin.drvPath;
    # (wheels have no test suite to skip: tomesd, spandrel-extra-arches, torchvision-bin)
    "cuda: every package built on torch skips its test suite" =
      let
        ps = cuda.python.pkgs;
        onTorch = realLib.filter (
          n:
          ps.${n}."format'" or null != "wheel"
          && realLib.any (d: (d.pname or null) == "torch") (ps.${n}.passthru.dependencies or [ ])
        ) (builtins.attrNames (realLib.filterAttrs (_: realLib.isDerivation) ps));
      in
      onTorch != [ ] && realLib.all (n: ps.${n}.passthru.doCheck == false) onTorch;

    # 8: cudaCapabilities takes only torch/torchvision from the cudaSupport nixpkgs.
    "capabilities: torch comes from a cudaSupport nixpkgs" =
      withCapabilities.python.pkgs.torch.cudaSupport or false;
    "capabilities: everything else is the caller's (opencv4, the interpreter, the tree)" =
      withCapabilities.python.pkgs.opencv4.drvPath == cuda.python.pkgs.opencv4.drvPath
      && withCapabilities.python.drvPath == cuda.python.drvPath
      && withCapabilities.tree.drvPath == cuda.tree.drvPath;
    "capabilities: refused on cpu and mps" =
      !(tries (self.packages.${linux}.cpu.override { cudaCapabilities = [ "8.6" ]; }).drvPath)
      && !(tries (self.packages.aarch64-darwin.mps.override { cudaCapabilities = [ "8.6" ]; }).drvPath);

    # 9: checks.patches tries every patched source, the curated extensions included.
    "checks.patches: every source with patches is given to check-patches.sh" = realLib.all (
      name: realLib.hasInfix "${name}=" self.checks.${linux}.patches.buildCommand
    ) entriesWithPatches;

    # 10
    "darwin: checks.cargo-test may use loopback" =
      self.checks.aarch64-darwin.cargo-test.__darwinAllowLocalNetworking or false;
    "homeModules.default, and homeManagerModules.default as its alias" =
      builtins.isFunction self.homeModules.default && builtins.isFunction self.homeManagerModules.default;
  };
in
{
  inherit targets properties self;
  lib = realLib;
  modules = import ./modules-test.nix {
    inherit lib;
    pkgs = stubNixpkgs { system = linux; };
    nixosModule = self.nixosModules.default;
    homeModule = self.homeModules.default;
  };
}
