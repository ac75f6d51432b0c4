# `nix flake check`: properties, not only "it builds".
#
#   pins                   sources.json and flake.lock agree; every patch listed, every listed one present
#   python-versions        nix/python-versions.json = python-packages.nix's set and the pin's versions
#   patches                .ci/check-patches.sh applies every patch to the pristine pinned sources
#   cargo-test             the launcher's tests, with the package's Python environment
#   python-imports         every module the webui imports, imported in the environment
#   webui-import           `import webui` from the assembled, patched, read-only tree
#   torch-<variant>        the torch is the one the variant claims (CUDA build / MPS build / CPU)
#   e2e-cpu                txt2img with a tiny model through the launcher, proxy and a dot data dir
#   module-eval            the NixOS module evaluates to a service (Linux)
#   treefmt                the tree is formatted (from treefmt-nix)
{ self, inputs, ... }:
{
  perSystem =
    {
      pkgs,
      lib,
      self',
      system,
      ...
    }:
    let
      inherit (pkgs) runCommand;
      cpu = self'.packages.cpu;
      pins = import ./pins.nix { };

      # Offline, no GPU, writable HOME; what every check that runs Python sets.
      pythonCheckEnv = ''
        export HOME=$TMPDIR MPLCONFIGDIR=$TMPDIR/mpl GRADIO_ANALYTICS_ENABLED=False
        export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
      '';

      # The torch of a package is what it claims. Each assertion fails on a torch of another
      # kind, so a CPU torch cannot pass the CUDA or MPS check vacuously.
      torchCheck =
        name: package: script:
        runCommand "check-torch-${name}" { nativeBuildInputs = [ package.pythonEnv ]; } ''
          ${pythonCheckEnv}
          python - <<'EOF'
          import torch
          print("torch", torch.__version__, "cuda", torch.version.cuda,
                "cuda built", torch.backends.cuda.is_built(), "mps built", torch.backends.mps.is_built())
          ${script}
          EOF
          touch $out
        '';

      variantChecks = {
        cpu = torchCheck "cpu" cpu ''
          assert torch.version.cuda is None, "the cpu variant's torch is a CUDA build"
          assert not torch.backends.cuda.is_built(), "the cpu variant's torch has CUDA"
        '';
      }
      // lib.optionalAttrs (self'.packages ? cuda) {
        cuda = torchCheck "cuda" self'.packages.cuda ''
          assert torch.version.cuda is not None, "the cuda variant's torch has no CUDA (a CPU build)"
          assert torch.backends.cuda.is_built(), "the cuda variant's torch was built without CUDA"
          assert "+cpu" not in torch.__version__, torch.__version__
          arches = torch._C._cuda_getArchFlags().split()
          print("CUDA architectures:", arches)
          assert arches, "the cuda variant's torch was compiled for no CUDA architecture"
        '';
      }
      // lib.optionalAttrs (self'.packages ? mps) {
        # is_available() also needs the GPU, which a build sandbox may hide; is_built() is the
        # property of the package, and it is False on every non-MPS torch.
        mps = torchCheck "mps" self'.packages.mps ''
          assert torch.backends.mps.is_built(), "the mps variant's torch was built without MPS"
          assert torch.version.cuda is None
        '';
      };
    in
    {
      checks = {
        pins =
          if pins.problems == [ ] then
            runCommand "check-pins" { } "touch $out"
          else
            throw "repositories/sources.json:\n  ${lib.concatStringsSep "\n  " pins.problems}";

        patches =
          let
            repo = lib.fileset.toSource {
              root = ../.;
              fileset = lib.fileset.unions [
                ../.ci/check-patches.sh
                ../repositories/sources.json
                ../patches
              ];
            };
            inherit (cpu.passthru.sources) pristine;
          in
          runCommand "check-patches"
            {
              nativeBuildInputs = [
                pkgs.bash
                pkgs.gitMinimal
                pkgs.gnutar
                pkgs.python3
              ];
            }
            ''
              export HOME=$TMPDIR
              bash ${repo}/.ci/check-patches.sh ${
                lib.escapeShellArgs (lib.mapAttrsToList (name: src: "${name}=${src}") pristine)
              } | tee $out
            '';

        cargo-test = cpu.overrideAttrs (old: {
          pname = "stable-diffusion-webui-cargo-test";
          doCheck = true;
          nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [ pkgs.gitMinimal ];
          # tests/proxy_*.rs start a real gradio 3.41.2 from this interpreter.
          env = old.env // {
            SD_WEBUI_TEST_PYTHON = "${cpu.pythonEnv}/bin/python3";
          };
          preCheck = pythonCheckEnv;
        });

        python-imports = runCommand "check-python-imports" { nativeBuildInputs = [ cpu.pythonEnv ]; } ''
          ${pythonCheckEnv}
          python - ${lib.escapeShellArgs cpu.webuiPython.imports} <<'EOF'
          import importlib, sys
          failed = []
          for name in sys.argv[1:]:
              try:
                  importlib.import_module(name)
              except Exception as e:
                  failed.append(f"{name}: {type(e).__name__}: {e}")
          print("\n".join(failed) or f"imported {len(sys.argv) - 1} modules")
          sys.exit(1 if failed else 0)
          EOF
          touch $out
        '';

        # nix/python-versions.json (the manifest tests/nixpkgs-env builds its PyPI environment from)
        # against python-packages.nix and against the versions of the pinned nixpkgs itself.
        python-versions =
          let
            manifest = lib.importJSON ./python-versions.json;
            result = import ./python-versions-check.nix {
              inherit lib;
              inherit (cpu) python;
              basePython = pkgs.${manifest.python.attr};
            };
          in
          if result.problems == [ ] then
            runCommand "check-python-versions" { } "touch $out"
          else
            throw "nix/python-versions.json:\n  ${lib.concatStringsSep "\n  " result.problems}";

        # What the launcher does first, without the launcher: upstream's own import of webui, from
        # the store (read-only, bytecode precompiled), with its data in a scratch directory.
        webui-import = runCommand "check-webui-import" { nativeBuildInputs = [ cpu.pythonEnv ]; } ''
          ${pythonCheckEnv}
          cd ${cpu.tree}
          python -c 'import sys; import webui' --data-dir $TMPDIR/data --skip-torch-cuda-test
          touch $out
        '';

      }
      // lib.mapAttrs' (name: value: lib.nameValuePair "torch-${name}" value) variantChecks
      // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
        module-eval =
          let
            nixos = inputs.nixpkgs.lib.nixosSystem {
              inherit system;
              modules = [
                self.nixosModules.default
                {
                  services.stable-diffusion-webui = {
                    enable = true;
                    package = cpu;
                    extraArgs = [ "--api" ];
                  };
                  boot.isContainer = true;
                  system.stateVersion = "26.05";
                }
              ];
            };
            service = nixos.config.systemd.services.stable-diffusion-webui;
          in
          pkgs.writeText "check-module-eval" service.serviceConfig.ExecStart;

        # The CPU end-to-end generation, in the build sandbox (loopback only, no network).
        e2e-cpu =
          runCommand "check-e2e-cpu"
            {
              nativeBuildInputs = [ cpu.pythonEnv ];
              meta.timeout = 3600;
            }
            ''
              ${pythonCheckEnv}
              python ${./tests/e2e.py} ${lib.getExe cpu} ${../tests/support/tiny_model.py} $TMPDIR/e2e
              touch $out
            '';
      };
    };
}
