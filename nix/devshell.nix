# devShells.default: the Rust toolchain, the same Python the package embeds (with the webui's
# packages), and the formatters, so `cargo build` here links against the Nix interpreter.
{ ... }:
{
  perSystem =
    {
      pkgs,
      config,
      self',
      ...
    }:
    let
      webui = self'.packages.cpu;
    in
    {
      devShells.default = pkgs.mkShell {
        inputsFrom = [ webui ];
        packages = [
          webui.pythonEnv
          pkgs.cargo
          pkgs.rustc
          pkgs.clippy
          pkgs.rustfmt
          pkgs.rust-analyzer
          pkgs.gitMinimal
          config.treefmt.build.wrapper
        ];
        env = {
          PYO3_PYTHON = webui.python.interpreter;
          # The same defaults the package bakes in, so `cargo run` finds a complete webui.
          SD_WEBUI_DEFAULT_ROOT = "${webui.tree}";
          SD_WEBUI_DEFAULT_PYTHON_ENV = "${webui.pythonEnv}";
          # Tests that run gradio (tests/proxy_*.rs) take their interpreter from here.
          SD_WEBUI_TEST_PYTHON = "${webui.pythonEnv}/bin/python3";
        };
      };
    };
}
