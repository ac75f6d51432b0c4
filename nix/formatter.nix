# formatter = treefmt (nix fmt), and checks.treefmt (the tree is formatted).
{ inputs, ... }:
{
  imports = [ inputs.treefmt-nix.flakeModule ];

  perSystem = _: {
    treefmt = {
      projectRootFile = "flake.nix";
      programs = {
        nixfmt.enable = true;
        rustfmt.enable = true;
        ruff-format.enable = true;
        ruff-check.enable = true;
        shfmt.enable = true;
      };
      settings.global.excludes = [
        # git format-patch output: bytes of upstream files, CRLF included; never reformat.
        "patches/**"
        "flake.lock"
        "*.json"
      ];
    };
  };
}
