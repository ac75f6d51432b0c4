# The launcher: the Rust binary built against the Nix CPython (PyO3), with the pinned, patched
# upstream tree, the python/ shim and the Python environment baked in as store paths.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  runCommand,
  makeWrapper,
  gitMinimal,
  # The interpreter, its package set already extended by nix/python-packages.nix's overlay.
  python,
  # nix/python-packages.nix, applied.
  webuiPython,
  # nix/sources.nix, applied.
  sources,
  # What the torch in this build is, for the name and for checks.torch-*: "cpu", "cuda" or "mps".
  variant,
  # Extra packages for extensions: ps: [ ps.ultralytics ... ].
  extraPythonPackages ? (_: [ ]),
  # Managed extensions: null = the curated ones marked `default` in repositories/sources.json;
  # or a list of curated names and/or extension sources (derivations; the directory is named
  # after the derivation, `pname` or `name`). [ ] = none.
  extensions ? null,
}:
let
  curated = sources.pins.sources.extensions or { };
  selectedExtensions =
    if extensions == null then
      lib.filter (name: curated.${name}.default or false) (builtins.attrNames curated)
    else
      extensions;
  resolveExtension =
    extension:
    if builtins.isString extension then
      {
        name = extension;
        src =
          sources.extensions.${extension} or (throw ''
            stable-diffusion-webui: no curated extension named "${extension}". Curated: ${lib.concatStringsSep ", " (builtins.attrNames curated)}.
            For another one, pass its source: extensions = [ (fetchFromGitHub { ... }) ];'');
        pin = curated.${extension};
      }
    else
      {
        name = extension.pname or (lib.getName extension);
        src = extension;
        pin = extension.passthru.extensionPin or { };
      };
  managedExtensions = map resolveExtension selectedExtensions;

  # The Python packages the managed extensions need (sources.json `pythonPackages`: nixpkgs
  # attribute names), so their install.py finds everything it asks for.
  extensionPythonPackages =
    ps: lib.concatMap (e: map (attr: ps.${attr}) (e.pin.pythonPackages or [ ])) managedExtensions;

  pythonEnv = python.withPackages (
    ps: webuiPython.requirements ps ++ extensionPythonPackages ps ++ extraPythonPackages ps
  );

  # The read-only managed extensions directory the launcher loads next to the built-in ones
  # (webui_shim.extensions), with bytecode like the tree, and manifest.json saying where each
  # came from (shown in the Extensions tab and by `extensions list`).
  managedExtensionsDir =
    runCommand "stable-diffusion-webui-extensions"
      {
        nativeBuildInputs = [ python ];
        manifest = builtins.toJSON {
          version = 1;
          extensions = lib.listToAttrs (
            map (e: {
              inherit (e) name;
              value = {
                url = if e.pin ? owner then "https://github.com/${e.pin.owner}/${e.pin.repo}" else null;
                rev = e.pin.rev or null;
                date = e.pin.date or null;
                pythonPackages = e.pin.pythonPackages or [ ];
              };
            }) managedExtensions
          );
        };
        passAsFile = [ "manifest" ];
      }
      ''
        python ${./assemble_extensions.py} $out $manifestPath ${
          lib.escapeShellArgs (map (e: "${e.name}=${e.src}") managedExtensions)
        }
      '';

  # Bytecode compiled at build time: the store is read-only, so Python could never cache it and
  # would recompile every module at every start. unchecked-hash .pyc files are used without
  # looking at the source's mtime (meaningless in the store). -W error::SyntaxWarning fails the
  # build on an invalid escape sequence, which patches/*/...-escape-sequence*.patch fix.
  withBytecode =
    name: src:
    runCommand name { nativeBuildInputs = [ python ]; } ''
      cp -R --no-preserve=ownership ${src} $out
      chmod -R u+w $out
      python -W error::SyntaxWarning -m compileall -q -j "$NIX_BUILD_CORES" \
        --invalidation-mode unchecked-hash $out
    '';

  tree = withBytecode "stable-diffusion-webui-${sources.pins.webuiShortRev}" sources.tree;
  shim = withBytecode "stable-diffusion-webui-shim" (
    lib.fileset.toSource {
      root = ../python;
      fileset = lib.fileset.fileFilter (f: f.hasExt "py") ../python;
    }
  );

  # The Rust build's files, listed once in rust-source.json; .ci/rust-source-build.sh builds the
  # crate from exactly these files, so a file it embeds cannot be missing here.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (
      map (path: ../. + "/${path}") (lib.importJSON ./rust-source.json).paths
    );
  };
in
rustPlatform.buildRustPackage {
  pname = "stable-diffusion-webui";
  version = import ./version.nix;
  inherit src;
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    python
    makeWrapper
    installShellFiles
  ];
  buildInputs = [ python ];

  env = {
    # build.rs: pyo3-build-config reads it and adds libpython's rpath.
    PYO3_PYTHON = python.interpreter;
    # Baked in with option_env! (src/env_vars.rs).
    SD_WEBUI_DEFAULT_ROOT = "${tree}";
    SD_WEBUI_DEFAULT_PYTHON_ENV = "${pythonEnv}";
    SD_WEBUI_SHIM_DIR = "${shim}";
  }
  // lib.optionalAttrs (managedExtensions != [ ]) {
    SD_WEBUI_DEFAULT_MANAGED_EXTENSIONS = "${managedExtensionsDir}";
  };

  # The tests run in checks.cargo-test (they need the Python environment and loopback ports);
  # the package itself builds without them.
  doCheck = false;

  # Completions and the man page come from the binary (clap), so they match --help; only where
  # the build machine can run what it built. git: GitPython refuses to import without a git
  # executable (modules/ui_extensions.py, ...); appended, so the user's own git wins.
  postInstall =
    lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd stable-diffusion-webui \
        --bash <($out/bin/stable-diffusion-webui completions bash) \
        --zsh <($out/bin/stable-diffusion-webui completions zsh) \
        --fish <($out/bin/stable-diffusion-webui completions fish)
      $out/bin/stable-diffusion-webui man > stable-diffusion-webui.1
      installManPage stable-diffusion-webui.1
    ''
    + ''
      # JSON Schemas of the settings file and presets: the modules' settings file names one.
      install -Dm444 -t $out/share/stable-diffusion-webui/schema settings/schema/*.schema.json
      wrapProgram $out/bin/stable-diffusion-webui \
        --suffix PATH : ${lib.makeBinPath [ gitMinimal ]}
    '';

  passthru = {
    inherit
      python
      pythonEnv
      tree
      shim
      managedExtensionsDir
      managedExtensions
      variant
      sources
      webuiPython
      ;
  };

  meta = {
    description = "AUTOMATIC1111's Stable Diffusion web UI, run read-only by a Rust launcher (${variant} torch)";
    homepage = "https://github.com/AUTOMATIC1111/stable-diffusion-webui";
    license = lib.licenses.agpl3Plus;
    mainProgram = "stable-diffusion-webui";
    platforms = python.pkgs.torch.meta.platforms or lib.platforms.unix;
  };
}
