# The package version: the launcher's (Cargo.toml) and the webui revision it carries, as semver
# build metadata. Pure, so CI computes the same string nix/package.nix does.
let
  cargo = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  pins = import ./pins.nix { };
in
"${cargo.package.version}+webui.${pins.webuiShortRev}"
