# A stand-in for `import nixpkgs { system; config; overlays; }`, over the real nixpkgs `lib`, for
# nix/tests/flake-eval (the flake evaluated with the real flake-parts, treefmt-nix and lib).
#
# Strict where nixpkgs is strict, and nowhere else (research notes: what each was read from; all
# signatures from Swarsel/nixpkgs 4aa6836a, a master snapshot five weeks after release-26.05
# branched off, the nearest readable copy of the pin 5e2305d5):
#   - derivations are real `derivation` calls: every attribute that reaches the environment must
#     coerce to a string, as in stdenv.mkDerivation (pkgs/stdenv/generic/make-derivation.nix);
#     `env` holds only strings, paths, bools, ints and derivations (same file);
#   - meta.problems of kind "broken" refuse evaluation unless config.problems.handlers says
#     otherwise (pkgs/stdenv/generic/check-meta.nix, problems.nix);
#   - closed argument sets stay closed: dockerTools.streamLayeredImage, fakeNss,
#     writeShellApplication, writeTextFile, fetchurl (pkgs/build-support/{docker,trivial-builders,
#     fetchurl}/default.nix, pkgs/by-name/fa/fakeNss/package.nix);
#   - buildPythonPackage throws without `format`/`pyproject`, asserts when both are set, throws on
#     pytestFlagsArray, refuses a dependency of another Python, and every derivation in the package
#     set must be a Python module (mk-python-derivation.nix, python-packages-base.nix, passthrufun.nix);
#   - buildRustPackage needs cargoLock/cargoHash/cargoDeps/cargoVendorDir, and importCargoLock
#     reads the lock file (build-support/rust/build-rust-package/default.nix);
#   - fetchFromGitHub: exactly one of rev and tag; fetchurl: url xor urls, at most one hash;
#   - callPackage is the real lib.callPackageWith (missing arguments are errors);
#   - an attribute of pkgs or of the Python set that nixpkgs does not have is an error: the sets
#     hold only the attributes listed here and in nix/python-versions.json.
# Nothing is built: the harness instantiates derivations (writes .drv files to a scratch store)
# and reads their graph. Every stub derivation records its constructor (`__stubCall`) and whether
# nixpkgs' binary cache would have it (`__stubCached`: a nixpkgs package, free or
# redistributable and built by Hydra), for the local-build estimate.
{
  lib,
  # The torch-bin of the pin is unread: "cu128" (2.11-era: CUDA 12.8 wheel, no cuda-bindings) or
  # "cu130" (master after the branch-off: CUDA 13.0 wheel, cuda-bindings, meta.problems).
  torchBinShape ? "cu130",
  manifest ? lib.importJSON ../../python-versions.json,
  # ./nixos-options.nix: the NixOS options runNixOSTest's nodes are evaluated against.
  nixosOptions ? ./nixos-options.nix,
}:
{
  system ? "x86_64-linux",
  config ? { },
  overlays ? [ ],
  ...
}:
let
  hostPlatform = lib.systems.elaborate system;

  # --- derivations -------------------------------------------------------------------------

  envOk =
    v:
    builtins.isString v
    || builtins.isBool v
    || builtins.isInt v
    || builtins.isPath v
    || lib.isDerivation v;

  handlerFor =
    pname: name: kind:
    config.problems.handlers.${pname}.${name} or (if kind == "broken" then "error" else "ignore");

  # stdenv.mkDerivation: `rattrs` is attrs or finalAttrs: attrs.
  mkDerivationWith =
    call: cached: rattrs:
    let
      fn = if lib.isFunction rattrs then rattrs else (_: rattrs);
      attrs = lib.fix fn;
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      env = attrs.env or { };
      badEnv = lib.filter (n: !envOk env.${n}) (builtins.attrNames env);
      meta = attrs.meta or { };
      pname = attrs.pname or (lib.getName name);
      refused = lib.filterAttrs (
        n: p: handlerFor pname n (p.kind or n) == "error" && (p.kind or n) == "broken"
      ) (meta.problems or { });
      # Checks nixpkgs makes only when the derivation is used (drvPath/outPath), not when the
      # attribute set is looked at: [ message ] fails.
      deferred = lib.concatLists (attrs.__stubDeferredChecks or [ ]);
      # check-meta.nix: an unfree package is refused unless config allows it.
      unfreeAllowed =
        !(meta.unfree or false)
        || (config.allowUnfree or false)
        || (config.allowUnfreePredicate or (_: false)) attrs;
      valid =
        if deferred != [ ] then
          throw (builtins.head deferred)
        else if !unfreeAllowed then
          throw "Package ‘${name}’ has an unfree license, refusing to evaluate."
        else if badEnv != [ ] then
          throw "${name}: The `env` attribute set can only contain derivation, string, boolean or integer attributes. The ${lib.concatStringsSep ", " badEnv} attribute(s) are of another type."
        else if refused != { } then
          throw "Refusing to evaluate package '${name}' because it has problems:\n${
            lib.concatStringsSep "\n" (
              lib.mapAttrsToList (n: p: "- ${n} (kind \"broken\"): ${p.message}") refused
            )
          }"
        else
          true;
      drv = derivation (
        builtins.removeAttrs attrs [
          "passthru"
          "meta"
          "env"
          "pos"
          "name"
          "__stubDeferredChecks"
        ]
        // env
        // {
          inherit name system;
          builder = "/bin/sh";
          __stubCall = call;
          __stubCached =
            if cached && !(meta.unfree or false) && (meta.hydraPlatforms or null) != [ ] then "1" else "0";
        }
      );
    in
    # As check-meta.nix does: the checks run when drvPath or outPath is used, not when the
    # attribute set is looked at.
    drv
    // (attrs.passthru or { })
    // {
      inherit meta;
      drvPath = builtins.seq valid drv.drvPath;
      outPath = builtins.seq valid drv.outPath;
      passthru = attrs.passthru or { };
      overrideAttrs = f: mkDerivationWith call cached (lib.extends (lib.toExtension f) fn);
    }
    // lib.optionalAttrs (attrs ? version) { inherit (attrs) version; }
    // lib.optionalAttrs (attrs ? pname) { inherit (attrs) pname; };

  # What nixpkgs' binary cache has: a package of the set (not one this flake makes), free.
  nixpkgsDrv = name: extra: mkDerivationWith "nixpkgs:${name}" true ({ inherit name; } // extra);
  tool =
    name: mainProgram:
    nixpkgsDrv name {
      pname = name;
      version = "stub";
      meta = { inherit mainProgram; };
    };
  unfree =
    attrs:
    attrs
    // {
      meta = (attrs.meta or { }) // {
        unfree = true;
      };
    };

  mkDerivation = mkDerivationWith "stdenv.mkDerivation" false;

  runCommandWith =
    {
      stdenv ? stdenvNoCC,
      name,
      derivationArgs ? { },
      runLocal ? false,
    }:
    buildCommand:
    mkDerivationWith "runCommand" false (
      derivationArgs
      // {
        inherit name buildCommand;
        passAsFile = [ "buildCommand" ] ++ derivationArgs.passAsFile or [ ];
      }
      // lib.optionalAttrs runLocal { preferLocalBuild = true; }
    );

  writeTextFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
      checkPhase ? "",
      meta ? { },
      passthru ? { },
      allowSubstitutes ? false,
      preferLocalBuild ? true,
      derivationArgs ? { },
    }:
    assert
      (destination != "" -> (lib.hasPrefix "/" destination && destination != "/"))
      || throw "destination must be an absolute path, relative to the derivation's out path, got '${destination}' instead.";
    mkDerivationWith "writeTextFile" false (
      derivationArgs
      // {
        inherit
          name
          text
          executable
          destination
          checkPhase
          passthru
          allowSubstitutes
          preferLocalBuild
          ;
        meta =
          lib.optionalAttrs (executable && builtins.match "/bin/([^/]+)" destination != null) {
            mainProgram = builtins.head (builtins.match "/bin/([^/]+)" destination);
          }
          // meta;
      }
    );

  writeText =
    name: text:
    assert
      lib.strings.isConvertibleWithToString text
      || throw "pkgs.writeText ${name}: The second argument should be a string, but it's a ${builtins.typeOf text} instead.";
    writeTextFile { inherit name text; };

  writeShellApplication =
    {
      name,
      text,
      runtimeInputs ? [ ],
      runtimeEnv ? null,
      meta ? { },
      passthru ? { },
      checkPhase ? null,
      excludeShellChecks ? [ ],
      extraShellCheckFlags ? [ ],
      bashOptions ? [
        "errexit"
        "nounset"
        "pipefail"
      ],
      inheritPath ? true,
      derivationArgs ? { },
    }:
    assert
      lib.all lib.isDerivation runtimeInputs
      || throw "writeShellApplication ${name}: runtimeInputs must be packages";
    writeTextFile {
      inherit
        name
        meta
        passthru
        derivationArgs
        ;
      executable = true;
      destination = "/bin/${name}";
      text = "#!/bin/sh\nPATH=${lib.makeBinPath runtimeInputs}:$PATH\n${text}";
    };

  fetchurl =
    {
      url ? "",
      urls ? [ ],
      hash ? "",
      sha256 ? "",
      sha1 ? "",
      sha512 ? "",
      outputHash ? "",
      outputHashAlgo ? "",
      name ? null,
      pname ? null,
      version ? null,
      executable ? false,
      recursiveHash ? false,
      postFetch ? "",
      downloadToTemp ? false,
      curlOpts ? "",
      curlOptsList ? [ ],
      netrcPhase ? null,
      netrcImpureEnvVars ? [ ],
      showURLs ? false,
      preferLocalBuild ? true,
      nativeBuildInputs ? [ ],
      meta ? { },
      passthru ? { },
      derivationArgs ? { },
    }:
    let
      urls' =
        if url != "" && urls == [ ] then
          (if builtins.isString url then [ url ] else throw "`url` is not a string")
        else if urls != [ ] && url == "" then
          (if builtins.isList urls then urls else throw "`urls` is not a list")
        else
          throw "fetchurl requires either `url` or `urls` to be set: url = ${toString url}";
      hashes = lib.filter (h: h != "") [
        hash
        sha256
        sha1
        sha512
        outputHash
      ];
      h =
        if builtins.length hashes > 1 then
          throw "multiple hashes passed to fetchurl: ${toString urls'}"
        else if outputHash != "" && outputHashAlgo == "" then
          throw "fetchurl was passed outputHash without outputHashAlgo"
        else if hashes == [ ] then
          lib.fakeHash
        else
          builtins.head hashes;
      algo =
        if sha256 != "" then
          "sha256"
        else if sha1 != "" then
          "sha1"
        else if sha512 != "" then
          "sha512"
        else if outputHashAlgo != "" then
          outputHashAlgo
        else
          null;
    in
    mkDerivationWith "fetchurl" true (
      {
        name = if name != null then name else baseNameOf (builtins.head urls');
        urls = urls';
        outputHash = h;
        outputHashMode = if recursiveHash || executable then "recursive" else "flat";
        passthru = {
          url = builtins.head urls';
        }
        // passthru;
        inherit meta;
      }
      // lib.optionalAttrs (algo != null) { outputHashAlgo = algo; }
    );

  fetchFromGitHub = lib.makeOverridable (
    {
      owner,
      repo,
      rev ? null,
      tag ? null,
      name ? "source",
      hash ? "",
      sha256 ? "",
      ...
    }:
    assert
      lib.xor (tag == null) (rev == null)
      || throw "fetchFromGitHub requires one of either `rev` or `tag` to be provided (not both).";
    mkDerivationWith "fetchFromGitHub" true {
      inherit name;
      url = "https://github.com/${owner}/${repo}/archive/${if rev != null then rev else tag}.tar.gz";
      outputHash =
        if hash != "" then
          hash
        else if sha256 != "" then
          sha256
        else
          lib.fakeHash;
      outputHashMode = "recursive";
      outputHashAlgo = if hash != "" then null else "sha256";
    }
  );

  linkFarm =
    name: entries:
    let
      entries' =
        if builtins.isList entries then
          entries
        else if builtins.isAttrs entries then
          lib.mapAttrsToList (name: path: { inherit name path; }) entries
        else
          throw "linkFarm entries must be either attrs or a list!";
    in
    mkDerivationWith "linkFarm" false {
      inherit name;
      links = map (e: "${e.name}=${e.path}") entries';
      passthru.entries = entries';
    };

  # --- the Rust build ------------------------------------------------------------------------

  importCargoLock =
    {
      lockFile,
      outputHashes ? { },
      ...
    }:
    let
      lock = builtins.fromTOML (builtins.readFile lockFile);
      gitDeps = lib.filter (p: lib.hasPrefix "git+" (p.source or "")) (lock.package or [ ]);
      missing = lib.filter (p: !(outputHashes ? "${p.name}-${p.version}")) gitDeps;
    in
    if missing != [ ] then
      throw "No hash was found while vendoring the git dependency ${(builtins.head missing).name}-${(builtins.head missing).version}. You can add a hash through the `outputHashes` argument of `importCargoLock`"
    else
      nixpkgsDrv "cargo-vendor-dir" { packages = builtins.length (lock.package or [ ]); };

  buildRustPackage =
    args:
    let
      attrs = if lib.isFunction args then lib.fix args else args;
      cargoDeps =
        if attrs.cargoVendorDir or null != null then
          null
        else if attrs.cargoDeps or null != null then
          attrs.cargoDeps
        else if attrs.cargoLock or null != null then
          importCargoLock attrs.cargoLock
        else if attrs ? cargoHash then
          nixpkgsDrv "cargo-vendor-fetched" { outputHash = attrs.cargoHash; }
        else
          throw "cargoHash, cargoVendorDir, cargoDeps, or cargoLock must be set";
    in
    assert
      (attrs.useFetchCargoVendor or true)
      || throw "buildRustPackage: `useFetchCargoVendor` is non‐optional";
    mkDerivationWith "rustPlatform.buildRustPackage" false (
      builtins.removeAttrs attrs [
        "cargoLock"
        "depsExtraArgs"
        "cargoUpdateHook"
        "useFetchCargoVendor"
      ]
      // {
        inherit cargoDeps;
        nativeBuildInputs = (attrs.nativeBuildInputs or [ ]) ++ [
          cargo
          rustc
        ];
      }
    );

  cargo = tool "cargo" "cargo";
  rustc = tool "rustc" "rustc" // {
    targetPlatforms = lib.platforms.all;
  };

  # --- Python ----------------------------------------------------------------------------

  pythonFor =
    {
      version,
      packageOverrides ? (_: _: { }),
      self ? null,
    }:
    let
      interpreter = mkDerivationWith "python313" true {
        pname = "python3";
        inherit version;
        passthru = {
          pythonVersion = lib.versions.majorMinor version;
          inherit version;
          executable = "python${lib.versions.majorMinor version}";
          sitePackages = "lib/python${lib.versions.majorMinor version}/site-packages";
        };
      };
      final = if self != null then self else python;
      python = interpreter // {
        interpreter = "${interpreter}/bin/python${lib.versions.majorMinor version}";
        pkgs = pythonSet final packageOverrides;
        override =
          args:
          pythonFor {
            inherit version;
            packageOverrides = args.packageOverrides or packageOverrides;
            self = args.self or null;
          };
        withPackages =
          f:
          let
            chosen = f python.pkgs;
            hasPythonModule = drv: drv ? pythonModule && drv.pythonModule == final;
            modules = lib.filter hasPythonModule chosen;
            required = lib.unique (modules ++ lib.concatLists (lib.catAttrs "requiredPythonModules" modules));
          in
          mkDerivationWith "python.withPackages" false {
            name = "python3-${version}-env";
            paths = [ interpreter ] ++ required;
            passthru = {
              inherit (python) interpreter;
              python = final;
            };
          };
      };
    in
    python;

  # buildPythonPackage as mk-python-derivation.nix checks it.
  buildPythonPackageFor =
    python: cached: args0:
    let
      args = if lib.isFunction args0 then lib.fix args0 else args0;
      name = args.name or "${args.pname}-${args.version}";
      format =
        if args.pyproject or null != null then
          assert (args.format or null) == null;
          (if args.pyproject then "pyproject" else "other")
        else if args.format or null != null then
          (
            if
              lib.elem args.format [
                "setuptools"
                "wheel"
                "pyproject"
                "egg"
                "other"
              ]
            then
              args.format
            else
              throw "${name}: format ${args.format} is not one of setuptools, wheel, pyproject, egg, other"
          )
        else
          throw "${name} does not configure a `format`. To build with setuptools as before, set `pyproject = true` and `build-system = [ setuptools ]`.";
      dependencies = args.dependencies or [ ];
      propagated = (args.propagatedBuildInputs or [ ]) ++ dependencies;
      mismatched = lib.filter (d: d ? pythonModule && d.pythonModule != python) propagated;
      modules = lib.filter (d: d ? pythonModule) propagated;
      drv = mkDerivationWith "buildPythonPackage" cached (
        builtins.removeAttrs args [
          "disabled"
          "checkPhase"
          "checkInputs"
          "nativeCheckInputs"
          "doCheck"
          "pyproject"
          "format"
          "dependencies"
          "optional-dependencies"
          "build-system"
          "pytestFlagsArray"
          "overridePythonAttrs"
        ]
        // {
          inherit name;
          format' = format;
          __stubDeferredChecks = [
            (lib.optional (
              mismatched != [ ]
            ) "Python version mismatch in '${name}': ${(builtins.head mismatched).name} is for another Python")
            (lib.optional ((args.pytestFlagsArray or [ ]) != [ ])
              "buildPythonPackage: Deprecated flag pytestFlagsArray found at ${name}. Use pytestFlags or (enabled|disabled)(TestPaths|Tests|TestMarks) instead."
            )
          ];
          propagatedBuildInputs = propagated;
          doInstallCheck = args.doCheck or true;
          nativeInstallCheckInputs = args.nativeCheckInputs or [ ];
          passthru = (args.passthru or { }) // {
            inherit dependencies;
            pythonModule = python;
            requiredPythonModules = lib.unique (
              modules ++ lib.concatLists (lib.catAttrs "requiredPythonModules" modules)
            );
            doCheck = args.doCheck or true;
          };
        }
      );
    in
    if (args.disabled or false) then
      throw "${name} not supported for interpreter ${python.executable}"
    else
      drv
      // {
        overridePythonAttrs =
          f: buildPythonPackageFor python cached (args // (if lib.isFunction f then f args else f));
      };

  # Which packages of the environment take torch (and so change when torch does), from their
  # nixpkgs files (research notes, D), and which run test suites there.
  torchDependents = {
    accelerate = [ "torch" ];
    clean-fid = [
      "torch"
      "torchvision"
    ];
    clip = [
      "torch"
      "torchvision"
    ];
    facexlib = [
      "torch"
      "torchvision"
    ];
    kornia = [ "torch" ];
    open-clip-torch = [
      "torch"
      "torchvision"
      "timm"
    ];
    pytorch-lightning = [ "torch" ];
    resize-right = [ "torch" ];
    spandrel = [
      "torch"
      "torchvision"
    ];
    timm = [
      "torch"
      "torchvision"
    ];
    torchdiffeq = [ "torch" ];
    torchsde = [ "torch" ];
    transformers = [ "torch" ];
  };

  # The base package set: every manifest entry at its nixpkgs version, torch-bin and its inputs.
  pythonSet =
    python: packageOverrides:
    let
      base =
        self:
        let
          buildPythonPackage = buildPythonPackageFor python true;
          # The manifest's version, except where it says the version cannot be the branch-off's
          # (notAtBranchOff): there the pin differs, as checks.python-versions must then report.
          plain =
            name: entry:
            buildPythonPackage {
              pname = name;
              version =
                if entry.notAtBranchOff or false then
                  "${entry.version}-not-at-the-pin"
                else
                  entry.nixpkgsVersion or entry.version;
              format = "setuptools";
              dependencies = map (d: self.${d}) (torchDependents.${name} or [ ]);
            };
          callPackage = lib.callPackageWith (pkgs // self);
        in
        lib.mapAttrs plain manifest.packages
        // {
          inherit python callPackage;
          buildPythonPackage = buildPythonPackageFor python false;
          # The package set's own torch and torchvision: nixpkgs' source builds, CUDA ones where
          # config.cudaSupport is set (python-modules/torch/source/default.nix:
          # cudaSupport ? config.cudaSupport); only the default configuration is cached.
          torch =
            (plain "torch" { version = "2.11.0"; }).overrideAttrs (_: {
              cudaSupport = config.cudaSupport or false;
              cudaCapabilities = toString (config.cudaCapabilities or [ ]);
            })
            // {
              cudaSupport = config.cudaSupport or false;
            };
          torchvision = plain "torchvision" { version = "0.26.0"; } // {
            dependencies = [ self.torch ];
          };
          torch-bin = callPackage torchBin { };
          torchvision-bin = callPackage torchvisionBin { };
          cuda-bindings = callPackage cudaBindings { };
          triton = plain "triton" { version = "3.6.0"; };
          # pkgs/development/libraries/opencv/4.x.nix: enableCuda ? config.cudaSupport (a CUDA
          # source build, not cached for capability lists other than the default).
          opencv4 = (plain "opencv4" manifest.packages.opencv4).overrideAttrs (_: {
            enableCuda = config.cudaSupport or false;
          });
          pythonOlder = v: lib.versionOlder python.pythonVersion v;
          pythonAtLeast = v: lib.versionAtLeast python.pythonVersion v;
        };
      # passthrufun.nix: packageOverrides last; every derivation in the set must be a Python
      # module (ensurePythonModules).
      fixed = lib.fix (lib.extends packageOverrides base);
    in
    lib.mapAttrs (
      name: value:
      if lib.isDerivation value && !(value ? pythonModule) && name != "python" then
        throw "${name} should use `buildPythonPackage` or `toPythonModule` if it is to be part of the Python packages set."
      else
        value
    ) fixed;

  # torch-bin (pkgs/development/python-modules/torch/bin/default.nix): the two shapes the pin may have.
  torchBin =
    if torchBinShape == "cu130" then
      {
        buildPythonPackage,
        fetchurl,
        cudaPackages,
        cuda-bindings,
        numpy,
        ...
      }:
      buildPythonPackage (unfree {
        pname = "torch";
        version = "2.12.0";
        format = "wheel";
        src = fetchurl {
          # binary-hashes.nix names each wheel (its URL's %2B is not a store-path character).
          name = "torch-wheel.whl";
          url =
            if hostPlatform.isDarwin then
              "https://download.pytorch.org/whl/cpu/torch-2.12.0-cp313-none-macosx_14_0_arm64.whl"
            else
              "https://download.pytorch.org/whl/cu130/torch-2.12.0%2Bcu130-cp313-cp313-manylinux_2_28_x86_64.whl";
          hash = lib.fakeHash;
        };
        dependencies = [ numpy ] ++ lib.optionals hostPlatform.isLinux [ cuda-bindings ];
        buildInputs = lib.optionals hostPlatform.isLinux [
          cudaPackages.cuda_cudart
          cudaPackages.cudnn
        ];
        meta = {
          hydraPlatforms = [ ];
          # Read on every platform, as nixpkgs' file does.
          problems = lib.optionalAttrs (lib.versionOlder cuda-bindings.version "13.0.3") {
            unsupported-cuda-version = {
              kind = "broken";
              message = "cudaPackages is too old (${cudaPackages.cudaMajorMinorVersion}). PyTorch expects cuda-bindings>=13.0.3, current is ${cuda-bindings.version}. Please override cudaPackages with a more recent version.";
            };
          };
        };
      })
    else
      {
        buildPythonPackage,
        fetchurl,
        cudaPackages,
        numpy,
        ...
      }:
      buildPythonPackage (unfree {
        pname = "torch";
        version = "2.11.0";
        format = "wheel";
        src = fetchurl {
          name = "torch-wheel.whl";
          url =
            if hostPlatform.isDarwin then
              "https://download.pytorch.org/whl/cpu/torch-2.11.0-cp313-none-macosx_14_0_arm64.whl"
            else
              "https://download.pytorch.org/whl/cu128/torch-2.11.0%2Bcu128-cp313-cp313-manylinux_2_28_x86_64.whl";
          hash = lib.fakeHash;
        };
        dependencies = [ numpy ];
        buildInputs = lib.optionals hostPlatform.isLinux [ cudaPackages.cuda_cudart ];
        meta.hydraPlatforms = [ ];
      });

  torchvisionBin =
    {
      buildPythonPackage,
      fetchurl,
      cudaPackages,
      torch-bin,
      pillow,
      ...
    }:
    buildPythonPackage (unfree {
      pname = "torchvision";
      version = if torchBinShape == "cu130" then "0.27.0" else "0.26.0";
      format = "wheel";
      src = fetchurl {
        url = "https://download.pytorch.org/whl/${torchBinShape}/torchvision.whl";
        hash = lib.fakeHash;
      };
      dependencies = [
        pillow
        torch-bin
      ];
      buildInputs = lib.optionals hostPlatform.isLinux [ cudaPackages.cuda_cudart ];
      meta.hydraPlatforms = [ ];
    });

  # cuda-bindings/default.nix: its version follows cudaPackages; other CUDA versions throw.
  cudaBindings =
    {
      buildPythonPackage,
      cudaPackages,
      ...
    }:
    let
      v = cudaPackages.cudaMajorMinorVersion;
      version =
        {
          "12.9" = "12.9.7";
          "13.0" = "13.0.3";
          "13.1" = "13.1.1";
          "13.2" = "13.2.0";
          "13.3" = "13.3.0";
        }
        .${v} or (throw "Unsupported cuda-bindings version: ${v}");
    in
    buildPythonPackage (unfree {
      pname = "cuda-bindings";
      inherit version;
      pyproject = true;
      buildInputs = [ cudaPackages.cuda_cudart ];
      doCheck = false;
    });

  cudaPackagesFor =
    version:
    let
      lib' =
        name:
        mkDerivationWith "cudaPackages" true (unfree {
          name = "${name}-${version}";
        });
    in
    {
      cudaMajorMinorVersion = version;
      cudaMajorVersion = lib.versions.major version;
      cuda_cudart = lib' "cuda_cudart";
      cudnn = lib' "cudnn";
    };

  python313 = pythonFor { version = manifest.python.version; };

  # --- the package set -------------------------------------------------------------------

  stdenvNoCC = {
    inherit hostPlatform mkDerivation;
    buildPlatform = hostPlatform;
    inherit (hostPlatform) isLinux isDarwin;
    shellDryRun = "bash -n";
  };

  dockerTools =
    let
      streamLayeredImage = lib.makeOverridable (
        {
          name,
          tag ? null,
          fromImage ? null,
          contents ? [ ],
          config ? { },
          architecture ? hostPlatform.linuxArch,
          created ? "1970-01-01T00:00:01Z",
          mtime ? "1970-01-01T00:00:01Z",
          uid ? 0,
          gid ? 0,
          uname ? "root",
          gname ? "root",
          maxLayers ? 100,
          extraCommands ? "",
          fakeRootCommands ? "",
          enableFakechroot ? false,
          includeStorePaths ? true,
          includeNixDB ? false,
          passthru ? { },
          meta ? { },
          layeringPipeline ? null,
          debug ? false,
        }:
        assert
          (layeringPipeline == null -> maxLayers > 1)
          || throw "the maxLayers argument of dockerTools.buildLayeredImage function must be greather than 1 (current value: ${toString maxLayers})";
        assert
          (enableFakechroot -> !hostPlatform.isDarwin)
          || throw "cannot use `enableFakechroot` because `proot` is not portable to Darwin.";
        mkDerivationWith "dockerTools.streamLayeredImage" false {
          name = "stream-${baseNameOf name}";
          imageName = name;
          imageTag = if tag == null then "latest" else tag;
          conf = builtins.toJSON config;
          inherit contents fakeRootCommands extraCommands;
          enableFakechroot = enableFakechroot;
          inherit maxLayers;
          passthru = passthru // {
            imageTag = if tag == null then "latest" else tag;
            inherit config;
          };
          inherit meta;
        }
      );
    in
    {
      inherit streamLayeredImage;
      buildLayeredImage = lib.makeOverridable (
        {
          name,
          compressor ? "gz",
          meta ? { },
          ...
        }@args:
        let
          stream = streamLayeredImage (builtins.removeAttrs args [ "compressor" ]);
        in
        assert
          lib.elem compressor [
            "gz"
            "none"
            "zstd"
          ]
          || throw "in docker image ${name}: compressor must be one of: [gz none zstd]";
        mkDerivationWith "dockerTools.buildLayeredImage" false {
          name = "${baseNameOf name}.tar.gz";
          inherit (stream) imageName;
          inherit meta;
          streamScript = stream;
          passthru = stream.passthru // {
            inherit (stream) imageTag;
            inherit stream;
          };
        }
      );
    };

  fakeNss = lib.makeOverridable (
    {
      extraPasswdLines ? [ ],
      extraGroupLines ? [ ],
    }:
    nixpkgsDrv "fake-nss" {
      passwd = lib.concatStringsSep "\n" extraPasswdLines;
      group = lib.concatStringsSep "\n" extraGroupLines;
    }
  ) { };

  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      ...
    }@attrs:
    mkDerivationWith "mkShell" false (
      builtins.removeAttrs attrs [
        "packages"
        "inputsFrom"
      ]
      // {
        inherit name;
        nativeBuildInputs = (attrs.nativeBuildInputs or [ ]) ++ packages;
        inputsFromDrvs = inputsFrom;
      }
    );

  formats = {
    json =
      { }:
      {
        type = lib.types.anything;
        generate = name: value: writeText name (builtins.toJSON value);
      };
    toml =
      { }:
      {
        type = lib.types.anything;
        generate = name: value: writeText name (builtins.toJSON value);
      };
  };

  base = final: {
    # `import pkgs.path { ... }` gives this stub again (nix/tests/flake-eval/nixpkgs).
    path = ./nixpkgs;
    inherit
      lib
      config
      system
      overlays
      ;
    stdenv = stdenvNoCC;
    inherit stdenvNoCC;
    inherit
      writeText
      writeTextFile
      writeShellApplication
      fetchurl
      fetchFromGitHub
      linkFarm
      dockerTools
      fakeNss
      mkShell
      formats
      cargo
      rustc
      python313
      ;
    callPackage = lib.callPackageWith final;
    runCommand =
      name: env:
      runCommandWith {
        inherit name;
        derivationArgs = env;
      };
    runCommandLocal =
      name: env:
      runCommandWith {
        inherit name;
        derivationArgs = env;
        runLocal = true;
      };
    inherit runCommandWith;
    writeShellScript =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        text = "#!/bin/sh\n${text}";
      };
    writeShellScriptBin =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        destination = "/bin/${name}";
        text = "#!/bin/sh\n${text}";
      };
    rustPlatform = { inherit buildRustPackage importCargoLock; };
    makeWrapper = tool "make-shell-wrapper-hook" null;
    installShellFiles = tool "install-shell-files" null;
    python3 = python313;
    python313Packages = python313.pkgs;
    python3Packages = python313.pkgs;
    cudaPackages = cudaPackagesFor "12.9";
    cudaPackages_12 = cudaPackagesFor "12.9";
    cudaPackages_13 = cudaPackagesFor "13.2";
    cacert = tool "nss-cacert" null;
    gitMinimal = tool "git-minimal" "git";
    git = tool "git" "git";
    git-lfs = tool "git-lfs" "git-lfs";
    bash = tool "bash" "bash";
    coreutils = tool "coreutils" null;
    findutils = tool "findutils" "find";
    gnutar = tool "gnutar" "tar";
    clippy = tool "clippy" "cargo-clippy";
    rustfmt = tool "rustfmt" "rustfmt";
    rust-analyzer = tool "rust-analyzer" "rust-analyzer";
    nixfmt = tool "nixfmt" "nixfmt";
    ruff = tool "ruff" "ruff";
    shfmt = tool "shfmt" "shfmt";
    treefmt = tool "treefmt" "treefmt" // {
      version = "2.4.0";
    };
    # testers.runNixOSTest (pkgs/build-support/testers/default.nix) runs nixos/lib's runTest,
    # which is not here: each node is evaluated with the real lib.evalModules against
    # ./nixos-options.nix, forced, and the test is a derivation over the nodes' units.
    testers.runNixOSTest =
      test:
      let
        t = if lib.isFunction test then test { pkgs = final; } else test;
        node =
          name: module:
          (lib.evalModules {
            modules = [
              nixosOptions
              { _module.args.pkgs = final; }
              module
            ];
          }).config;
        nodes = lib.mapAttrs node (t.nodes or { });
      in
      assert builtins.isString t.testScript || lib.isFunction t.testScript;
      mkDerivationWith "testers.runNixOSTest" false {
        name = "vm-test-run-${t.name}";
        units = map (n: builtins.toJSON (builtins.attrNames nodes.${n}.systemd.services)) (
          builtins.attrNames nodes
        );
        nodeCount = builtins.length (builtins.attrNames nodes);
      };
    # nixos/lib/make-options-doc: every option rendered (lib.optionAttrSetToDocList, as there).
    nixosOptionsDoc =
      {
        options,
        transformOptions ? lib.id,
        ...
      }:
      let
        docs = map transformOptions (lib.optionAttrSetToDocList options);
        undocumented = lib.filter (
          o: o.visible && !(o.internal or false) && (o.description or null) == null
        ) docs;
      in
      assert
        undocumented == [ ]
        || throw "nixosOptionsDoc: undocumented options: ${toString (map (o: o.name) undocumented)}";
      {
        optionsJSON = writeText "options.json" (builtins.toJSON (map (o: o.name) docs));
      };
    # The torch of the top-level set (meta.platforms read by nix/package.nix).
    torch = final.python313Packages.torch;
  };
  # pkgs/top-level/stage.nix: the set is the fixed point of its base and the overlays, in order.
  pkgs = lib.fix (lib.foldl' (lib.flip lib.extends) base overlays);
in
pkgs
