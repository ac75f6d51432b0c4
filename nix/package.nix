# The launcher: the Rust binary built against the Nix CPython (PyO3), with the pinned, patched
# upstream tree, the python/ shim and the Python environment baked in as store paths.
{
  lib,
  rustPlatform,
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
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;

  pythonEnv = python.withPackages (ps: webuiPython.requirements ps ++ extraPythonPackages ps);

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

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (
      [
        ../Cargo.toml
        ../Cargo.lock
        ../src
        ../repositories/sources.json
      ]
      ++ map lib.fileset.maybeMissing [
        ../build.rs
        ../benches
        ../tests
        ../python
      ]
    );
  };
in
rustPlatform.buildRustPackage {
  pname = "stable-diffusion-webui";
  version = "${cargoToml.package.version}+webui.${sources.pins.webuiShortRev}";
  inherit src;
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    python
    makeWrapper
  ];
  buildInputs = [ python ];

  env = {
    # build.rs: pyo3-build-config reads it and adds libpython's rpath.
    PYO3_PYTHON = python.interpreter;
    # Baked in with option_env! (src/env_vars.rs).
    SD_WEBUI_DEFAULT_ROOT = "${tree}";
    SD_WEBUI_DEFAULT_PYTHON_ENV = "${pythonEnv}";
    SD_WEBUI_SHIM_DIR = "${shim}";
  };

  # The tests run in checks.cargo-test (they need the Python environment and loopback ports);
  # the package itself builds without them.
  doCheck = false;

  # git: GitPython refuses to import without a git executable (modules/ui_extensions.py, ...).
  # Appended, so the user's own git wins.
  postInstall = ''
    wrapProgram $out/bin/stable-diffusion-webui \
      --suffix PATH : ${lib.makeBinPath [ gitMinimal ]}
  '';

  passthru = {
    inherit
      python
      pythonEnv
      tree
      shim
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
