# The home-manager options that nix/home-manager.nix (and nix/tests/home-manager-eval.nix) set or
# read, declared with home-manager's own types and defaults, so that the module can be evaluated
# with the real nixpkgs `lib` and no home-manager input. Used by checks.home-manager-eval too. Stricter than the loose stub it replaced:
# the unit type is home-manager's, so a Service value that is an attribute set fails, and
# Service.ExecStart / Environment come back as home-manager normalises them (lists).
#
# Sources:
#   HM = nix-community/home-manager@ec1a8fdf74ed3f276148ee106299a2ba0e65d51f (master, 2026-08-22;
#        the files used last changed in 0668fdbc15bd602e463cab37ff64346021193652, 2026-08-13):
#        modules/systemd.nix, modules/misc/xdg/default.nix, modules/home-environment.nix,
#        modules/modules.nix (which imports nixpkgs' nixos/modules/misc/assertions.nix).
#   S  = Swarsel/nixpkgs@4aa6836a648ca76c68866decf0c8965e36ec2a3b (nixpkgs master, 2026):
#        nixos/modules/misc/assertions.nix.
#
# Simplified:
#   - xdg.dataHome / xdg.cacheHome get their defaults as home-manager's "modern deterministic"
#     branch sets them (mkOptionDefault "${home.homeDirectory}/.local/share", ".cache"); the
#     xdg.enable and home.stateVersion < 20.09 branches are left out.
#   - home.homeDirectory has no default, as in home-manager (stateVersion >= 20.09): set it.
#   - systemd.user.services: home-manager's serviceType exactly (unitBaseType "service" with its
#     Unit.X-* trigger options and Service.Environment/ExecStart); other systemd.user options
#     and the unit-file rendering are left out.
{ lib, config, ... }:
let
  inherit (lib) mkOption types literalExpression;

  # modules/systemd.nix (HM)
  unitBaseType =
    unitKind: mod:
    types.submodule {
      freeformType =
        with types;
        let
          primitive = oneOf [
            bool
            int
            str
            path
          ];
        in
        attrsOf (attrsOf (either primitive (listOf primitive)))
        // {
          description = "systemd ${unitKind} unit configuration";
        };

      imports = [
        {
          options.Unit = {
            Description = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "My daily database backup";
              description = "A short human-readable label of the unit.";
            };

            Documentation = mkOption {
              type = with types; coercedTo str lib.toList (listOf str);
              example = [ "my-${unitKind}.${unitKind}" ];
              default = [ ];
              description = "List of URIs referencing documentation for the unit.";
            };
          };
        }

        mod
      ];
    };

  serviceType = types.attrsOf (
    unitBaseType "service" {
      options = {
        Unit = {
          X-Reload-Triggers = mkOption {
            type = with types; listOf (either package str);
            default = [ ];
            description = ''
              List of free form strings that can be used to trigger a service
              reload during Home Manager activation.
            '';
          };

          X-Restart-Triggers = mkOption {
            type = with types; listOf (either package str);
            default = [ ];
            description = ''
              List of free form strings that can be used to trigger a service
              restart during Home Manager activation.
            '';
          };

          X-SwitchMethod = mkOption {
            type = types.enum [
              null
              "reload"
              "restart"
              "stop-start"
              "keep-old"
            ];
            default = null;
            description = ''
              The preferred method to use when switching from an old to a new
              version of this service.
            '';
          };
        };

        Service = {
          Environment = mkOption {
            type = with types; coercedTo str lib.toList (listOf str);
            default = [ ];
            description = "Environment variables available to executed processes.";
          };

          ExecStart = mkOption {
            type =
              with types;
              let
                primitive = either package str;
              in
              either primitive (listOf primitive);
            apply = lib.toList;
            default = [ ];
            example = "/absolute/path/to/command arg1 arg2";
            description = "Command that is executed when this service is started.";
          };
        };
      };
    }
  );
in
{
  options = {
    # nixos/modules/misc/assertions.nix (S), imported by modules/modules.nix (HM)
    assertions = mkOption {
      default = [ ];
      internal = true;
      type = types.listOf types.unspecified;
    };

    # modules/home-environment.nix (HM)
    home.homeDirectory = mkOption {
      type = types.path;
      defaultText = lib.literalMD ''
        `$HOME`,   for state version < 20.09
        undefined, otherwise.
      '';
      apply = toString;
      example = "/home/jane.doe";
      description = "The user's home directory. Must be an absolute path.";
    };
    home.packages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "The set of packages to appear in the user environment.";
    };

    # modules/misc/xdg/default.nix (HM)
    xdg.cacheHome = mkOption {
      type = types.path;
      defaultText = "~/.cache";
      apply = toString;
      description = "Absolute path to directory holding application caches.";
    };
    xdg.dataHome = mkOption {
      type = types.path;
      defaultText = "~/.local/share";
      apply = toString;
      description = "Absolute path to directory holding application data.";
    };

    # modules/systemd.nix (HM)
    systemd.user.services = mkOption {
      default = { };
      type = serviceType;
      description = "Definition of systemd per-user service units.";
      example = literalExpression "{ }";
    };
  };

  # modules/misc/xdg/default.nix (HM), "Modern" deterministic setup.
  config = {
    xdg.cacheHome = lib.mkOptionDefault "${config.home.homeDirectory}/.cache";
    xdg.dataHome = lib.mkOptionDefault "${config.home.homeDirectory}/.local/share";
  };
}
