# `nix flake check`: properties, not only "it builds".
#
#   pins                   sources.json and flake.lock agree; every patch listed, every listed one present
#   python-versions        (nix/python-versions.nix) the manifest = python-packages.nix's set and the pin's versions
#   patches                .ci/check-patches.sh applies every patch to the pristine pinned sources
#   cargo-test             the launcher's tests, with the package's Python environment
#   python-imports         every module the webui imports, imported in the environment
#   webui-import           `import webui` from the assembled, patched, read-only tree
#   torch-<variant>        the torch is the one the variant claims (CUDA build / MPS build / CPU)
#   e2e-cpu                txt2img with a tiny model through the launcher, proxy and a dot data dir;
#                          every default managed extension listed, enabled, loaded without errors
#   module-lib             nix/module/lib.nix (the modules' logic) gives nix/tests/module-lib.nix's outputs
#   module-eval            a NixOS config setting every option evaluates to the expected units, nginx
#                          and tmpfiles, impossible ones fail with their messages, the option docs build (Linux)
#   home-manager-eval      the home-manager module against a stub of home-manager's options (Linux)
#   nixos-vm               NixOS VM: the service on the CPU, tiny model, txt2img through the proxy (Linux)
#   nixos-vm-instances     NixOS VM: two instances behind nginx, shared models read-only (Linux)
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
      tinyModel = pkgs.callPackage ./tests/tiny-model.nix { inherit (cpu) pythonEnv; };

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
          # The tests talk to servers they start on 127.0.0.1; the darwin sandbox forbids that
          # unless the derivation asks (stdenv's __darwinAllowLocalNetworking; ignored on Linux).
          __darwinAllowLocalNetworking = true;
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
      // {
        # The same expectations .ci/nix-check.sh evaluates with a stub lib, here with nixpkgs' lib.
        module-lib =
          let
            failures = import ./tests/module-lib.nix { inherit lib; };
          in
          if failures == [ ] then
            runCommand "check-module-lib" { } "touch $out"
          else
            throw "nix/tests/module-lib.nix:\n  ${lib.concatStringsSep "\n  " failures}";
      }
      // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
        module-eval =
          let
            nixos =
              modules:
              inputs.nixpkgs.lib.nixosSystem {
                inherit system;
                modules = [
                  self.nixosModules.default
                  {
                    boot.isContainer = true;
                    system.stateVersion = "26.05";
                  }
                ]
                ++ modules;
              };
            failedAssertions = c: map (a: a.message) (lib.filter (a: !a.assertion) c.config.assertions);

            cuda = self'.packages ? cuda;
            every = nixos [
              (import ./tests/module-everything.nix {
                inherit cuda;
                modelFile = "${pkgs.writeText "tiny.safetensors" ""}";
              })
            ];
            units = every.config.systemd.services;
            expect = import ./tests/module-eval-expect.nix { inherit lib every cuda; };
            problems = failedAssertions every ++ lib.attrNames (lib.filterAttrs (_: ok: !ok) expect);

            # A configuration that cannot work stops with messages that say why.
            wrong = failedAssertions (nixos [
              {
                services.stable-diffusion-webui = {
                  enable = true;
                  acceleration = "rocm";
                  cudaCapabilities = [ "8.6" ];
                  authFile = "/nix/store/00000000000000000000000000000000-login";
                  models = [ "sd-15" ];
                };
              }
            ]);
            wrongExpected = [
              "no ROCm torch yet"
              "cudaCapabilities is set but acceleration is \"rocm\""
              "authFile is in the Nix store"
              "'sd-15' is not in the catalog"
            ];
            missing = lib.filter (p: !(lib.any (lib.hasInfix p) wrong)) wrongExpected;

            # The option docs: every option documented and rendered (warnings are errors).
            docs = pkgs.nixosOptionsDoc {
              options = {
                services.stable-diffusion-webui = every.options.services.stable-diffusion-webui;
              };
              transformOptions = o: o // { declarations = [ ]; };
            };
          in
          if problems != [ ] then
            throw "checks.module-eval:\n  ${lib.concatStringsSep "\n  " problems}"
          else if missing != [ ] || builtins.length wrong != builtins.length wrongExpected then
            throw "checks.module-eval: the impossible configuration said ${builtins.toJSON wrong}"
          else
            runCommand "check-module-eval" { } ''
              mkdir $out
              cp ${docs.optionsJSON}/share/doc/nixos/options.json $out/
              # What the units run, without making the check depend on building them.
              echo ${
                lib.escapeShellArg (
                  builtins.unsafeDiscardStringContext (
                    builtins.toJSON (lib.mapAttrs (_: u: u.serviceConfig.ExecStart) units)
                  )
                )
              } > $out/exec-start.json
            '';

        home-manager-eval =
          let
            result = import ./tests/home-manager-eval.nix {
              inherit lib pkgs;
              module = self.homeModules.default;
              modelFile = "${pkgs.writeText "tiny.safetensors" ""}";
            };
          in
          if result.problems == [ ] then
            runCommand "check-home-manager-eval" { } "touch $out"
          else
            throw "checks.home-manager-eval:\n  ${lib.concatStringsSep "\n  " result.problems}";

        nixos-vm = import ./tests/nixos-vm.nix {
          inherit pkgs tinyModel;
          module = self.nixosModules.default;
          package = cpu;
        };

        nixos-vm-instances = import ./tests/nixos-vm-instances.nix {
          inherit pkgs tinyModel;
          module = self.nixosModules.default;
          package = cpu;
        };

        # The CPU end-to-end generation, in the build sandbox (loopback only, no network).
        e2e-cpu =
          runCommand "check-e2e-cpu"
            {
              nativeBuildInputs = [ cpu.pythonEnv ];
              meta.timeout = 3600;
            }
            ''
              ${pythonCheckEnv}
              # The directory, so that e2e.py imports api_routes.py beside it.
              python ${./tests}/e2e.py ${lib.getExe cpu} ${../tests/support/tiny_model.py} $TMPDIR/e2e \
                ${cpu.managedExtensionsDir}
              touch $out
            '';
      };
    };
}
