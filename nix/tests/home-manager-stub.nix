# The home-manager options nix/home-manager.nix reads or sets, declared as home-manager names
# them (modules/misc/xdg.nix, modules/systemd.nix, modules/home-environment.nix,
# modules/misc/assertions.nix), so that checks.home-manager-eval evaluates the module without a
# home-manager input. Types are looser than home-manager's: this checks our module's output,
# not home-manager's unit rendering.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    home.homeDirectory = mkOption {
      type = types.str;
      default = "/home/alice";
    };
    home.packages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    xdg.dataHome = mkOption {
      type = types.str;
      default = "/home/alice/.local/share";
    };
    xdg.cacheHome = mkOption {
      type = types.str;
      default = "/home/alice/.cache";
    };
    systemd.user.services = mkOption {
      type = types.attrsOf (types.attrsOf (types.attrsOf types.anything));
      default = { };
    };
  };
}
