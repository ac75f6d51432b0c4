# The version manifest (nix/python-versions.json) against the pinned nixpkgs:
#   checks.python-versions           fails with the full diff the pin would make, never at eval time
#   apps.update-python-versions      `nix run .#update-python-versions` rewrites the manifest
# Both run nix/update_python_versions.py on the versions Nix reads from the pin
# (nix/python-versions-check.nix's `actual`); the manifest's pure checks against
# nix/python-packages.nix are reported by the same check.
{ inputs, ... }:
{
  perSystem =
    {
      pkgs,
      lib,
      self',
      ...
    }:
    let
      manifest = lib.importJSON ./python-versions.json;
      result = import ./python-versions-check.nix {
        inherit lib;
        inherit (self'.packages.cpu) python;
        basePython = pkgs.${manifest.python.attr};
      };
      actual = pkgs.writeText "python-versions-actual.json" (
        builtins.toJSON (result.actual // { rev = inputs.nixpkgs.rev or "unknown"; })
      );
      script = ./update_python_versions.py;
    in
    {
      checks.python-versions =
        pkgs.runCommand "check-python-versions" { nativeBuildInputs = [ pkgs.python3 ]; }
          ''
            ${lib.concatMapStrings (p: ''
              echo ${lib.escapeShellArg "python-versions: ${p}"} >&2
            '') result.problems}
            python3 ${script} --check ${./python-versions.json} ${actual}
            ${lib.optionalString (result.problems != [ ]) "exit 1"}
            touch $out
          '';

      apps.update-python-versions = {
        type = "app";
        program = lib.getExe (
          pkgs.writeShellApplication {
            name = "update-python-versions";
            runtimeInputs = [ pkgs.python3 ];
            text = "exec python3 ${script} --write nix/python-versions.json ${actual}";
          }
        );
        meta.description = "Rewrite nix/python-versions.json with the pinned nixpkgs' versions";
      };
    };
}
