# The NixOS options that nix/module.nix (and nix/tests/module-everything.nix, checks.module-eval,
# nix/tests/nixos-vm.nix, nix/tests/nixos-vm-instances.nix) set or read outside
# services.stable-diffusion-webui, declared with NixOS's own types and defaults, so that the
# module can be evaluated with the real nixpkgs `lib` and no nixpkgs checkout.
#
# Sources (read through the code index; none of them is a checkout of the pinned nixpkgs):
#   S = Swarsel/nixpkgs@4aa6836a648ca76c68866decf0c8965e36ec2a3b, a nixpkgs master snapshot of
#       2026 (after the 26.05 branch-off: its users-groups.nix cites the 26.05 release notes).
#       Every nixos/modules/* file below is read from it.
#   L = NixOS/nixpkgs@6f03be6bc8255385259c5652a993fbbd751e2103 nixos/lib/systemd-lib.nix and
#       NixOS/nixpkgs@515c8fb59bc189b54fc47113d6248cd45f607f65 nixos/lib/systemd-unit-options.nix:
#       the index holds no 2026 copy of nixos/lib/ (S lacks the folder), these upstream copies are
#       from 2023. The parts used here were compared with the newest copies found,
#       NixOS/nixpkgs@2faec4eca3b0717c3e754e5858e006cd14d288c1 nixos/lib/systemd-types.nix
#       (nixfmt era) and jonasc-ant/nixpkgs@b699b3608bd4facf984d9ba7f040608bedfa46b6
#       nixos/lib/systemd-unit-options.nix (a fork of 2025+ master): the newer unitOption merges
#       "any list -> concatenate lists" (used below), and checkService also accepts Type =
#       "notify-reload" (used below); types and defaults of the sub-options are unchanged.
#
# Simplified (and why it still fails where NixOS fails):
#   - systemd.services.<name> declares only the sub-options our files set or read (description,
#     wantedBy, wants, after, environment, serviceConfig) plus unitConfig, which NixOS's own
#     unitConfig module (systemd-lib.nix) computes from them. Not reproduced: path / the default
#     PATH (stage2ServiceConfig adds coreutils, findutils, gnugrep, gnused, systemd and sets
#     environment.PATH), script/preStart/... and their job scripts, restartTriggers, startAt.
#   - serviceConfig: exactly NixOS's type, `addCheck (attrsOf unitOption) checkService`. unitOption
#     has no check of its own, so in NixOS an attribute-set value (e.g. `ProtectSystem = { }`)
#     passes the option type and fails only when the unit file is rendered (systemd-lib.nix
#     attrsToSection: `toString` of a set). That rendering is reproduced below as
#     systemd.units.<name>.service.text (systemd.nix maps systemd.services to systemd.units with
#     serviceToUnit); force it to see the failure. One difference: the coercion error is raised
#     with `throw` (same message) instead of Nix's uncatchable type error, so that a test can
#     builtins.tryEval it. A wrong Type=/Restart= value fails at the option type, as in NixOS
#     (checkService; the message goes to stderr through builtins.trace, as in NixOS).
#   - systemd.units.<name> has only `text` and `wantedBy` (NixOS: concreteUnitOptions), and the
#     rendered text leaves out systemd.globalEnvironment and the X-RestartIfChanged lines.
#   - users.users.<name>: isSystemUser, group, home, name; NixOS's assertions on users (primary
#     group defined, exactly one of isSystemUser/isNormalUser) are not reproduced.
#   - users.groups.<name>: gid and name (members, computed from users.users, is left out).
#   - services.nginx: enable, recommendedProxySettings, upstreams, virtualHosts.<name>.locations
#     with the location options our module sets or reads; the rest of vhost-options.nix and
#     location-options.nix is left out (e.g. sslCertificate, which has no default).
#   - system.stateVersion: default lib.trivial.release (NixOS: config.system.nixos.release, whose
#     default is lib.trivial.release) without the "not set" warning of its `apply`.
#   - boot.isContainer: default config.boot.isNspawnContainer (declared too, default false), as in S.
{ lib, config, ... }:
let
  inherit (lib) mkOption types;

  # --- nixos/lib/systemd-lib.nix (L) -----------------------------------------------------------

  # "a type for options that take a unit name"
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  assertValueOneOf =
    name: values: group: attr:
    lib.optional (
      attr ? ${name} && !lib.elem attr.${name} values
    ) "Systemd ${group} field `${name}' cannot have value `${toString attr.${name}}'.";

  # Applied at the top-level type (attrsOf unitOption), so definitions may still be wrapped in
  # mkOverride / mkIf.
  checkUnitConfig =
    group: checks: attrs:
    let
      defs = lib.mapAttrs (
        _: v:
        if v._type or "" == "override" then
          v.content
        else if v._type or "" == "if" then
          v.content
        else
          v
      ) attrs;
      errors = lib.concatMap (c: c group defs) checks;
    in
    if errors == [ ] then true else builtins.trace (lib.concatStringsSep "\n" errors) false;

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    # NixOS: `toString x`, which fails on a set that is neither a derivation nor has __toString
    # ("cannot coerce a set to a string"); thrown here so that tryEval sees it (see above).
    else if builtins.isAttrs x && !(x ? outPath || x ? __toString) then
      throw "cannot coerce a set to a string: systemd unit option value ${builtins.toJSON (builtins.attrNames x)}"
    else
      toString x;

  attrsToSection =
    as:
    lib.concatStrings (
      lib.concatLists (
        lib.mapAttrsToList (
          name: value:
          map (x: ''
            ${name}=${toOption x}
          '') (if lib.isList value then value else [ value ])
        ) as
      )
    );

  # unitConfig (systemd-lib.nix): the [Unit] section from the list options, only those declared.
  unitConfigModule =
    { config, ... }:
    {
      config.unitConfig =
        lib.optionalAttrs (config.wants != [ ]) { Wants = toString config.wants; }
        // lib.optionalAttrs (config.after != [ ]) { After = toString config.after; }
        // lib.optionalAttrs (config.description != "") { Description = config.description; };
    };

  # serviceToUnit (systemd-lib.nix), without globalEnvironment and the X-*IfChanged lines.
  serviceToUnit = name: def: {
    inherit (def) wantedBy;
    text = ''
      [Unit]
      ${attrsToSection def.unitConfig}
      [Service]
      ${lib.concatMapStrings (
        n:
        lib.optionalString (
          def.environment.${n} != null
        ) "Environment=${builtins.toJSON "${n}=${def.environment.${n}}"}\n"
      ) (builtins.attrNames def.environment)}
      ${attrsToSection def.serviceConfig}
    '';
  };

  # --- nixos/lib/systemd-unit-options.nix (L; unitOption and checkService as in the 2025+ copy) ---

  checkService = checkUnitConfig "Service" [
    (assertValueOneOf "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ])
    (assertValueOneOf "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "always"
    ])
  ];

  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  unitList = mkOption {
    default = [ ];
    type = types.listOf unitNameType;
  };

  # commonUnitOptions + serviceOptions, the sub-options used (systemd-types.nix: services =
  # attrsOf (submodule [ stage2ServiceOptions unitConfig stage2ServiceConfig ])).
  serviceOptions = {
    options = {
      description = mkOption {
        default = "";
        type = types.singleLineStr;
        description = "Description of this unit used in systemd messages and progress indicators.";
      };
      wantedBy = unitList;
      wants = unitList;
      after = unitList;
      unitConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
      environment = mkOption {
        default = { };
        type =
          with types;
          attrsOf (
            nullOr (oneOf [
              str
              path
              package
            ])
          );
      };
      serviceConfig = mkOption {
        default = { };
        type = types.addCheck (types.attrsOf unitOption) checkService;
      };
    };
  };

  # --- nixos/modules/system/boot/systemd/tmpfiles.nix (S) ----------------------------------------

  attrsWith' =
    placeholder: elemType:
    types.attrsWith {
      inherit elemType placeholder;
    };

  tmpfilesEntry = types.submodule (
    { name, ... }:
    {
      options.age = mkOption {
        default = "-";
        type = types.str;
      };
      options.argument = mkOption {
        default = "";
        type = types.str;
      };
      options.group = mkOption {
        default = "-";
        type = types.str;
      };
      options.mode = mkOption {
        default = "-";
        type = types.str;
      };
      options.type = mkOption {
        default = name;
        defaultText = "‹tmpfiles-type›";
        type = types.str;
      };
      options.user = mkOption {
        default = "-";
        type = types.str;
      };
    }
  );

  # --- nixos/modules/config/users-groups.nix (S) -------------------------------------------------

  userOpts =
    { name, ... }:
    {
      options = {
        isSystemUser = mkOption {
          default = false;
          type = types.bool;
        };
        group = mkOption {
          apply =
            x:
            assert (
              builtins.stringLength x < 32
              || abort "Group name '${x}' is longer than 31 characters which is not allowed!"
            );
            x;
          default = "";
          type = types.str;
        };
        home = mkOption {
          default = "/var/empty";
          type = types.passwdEntry types.path;
        };
        name = mkOption {
          apply =
            x:
            assert (
              builtins.stringLength x < 32
              || abort "Username '${x}' is longer than 31 characters which is not allowed!"
            );
            x;
          type = types.passwdEntry types.str;
        };
      };
      config.name = lib.mkDefault name;
    };

  groupOpts =
    { name, ... }:
    {
      options = {
        gid = mkOption {
          default = null;
          type = with types; nullOr int;
        };
        name = mkOption {
          type = types.passwdEntry types.str;
        };
      };
      config.name = lib.mkDefault name;
    };

  # --- nixos/modules/services/web-servers/nginx/{default,vhost-options,location-options}.nix (S) --

  # location-options.nix is imported with the system's `config` (vhost-options.nix passes its own).
  locationOptions = {
    options = {
      extraConfig = mkOption {
        default = "";
        type = types.lines;
      };
      proxyPass = mkOption {
        default = null;
        type = types.nullOr types.str;
      };
      proxyWebsockets = mkOption {
        default = false;
        type = types.bool;
      };
      recommendedProxySettings = mkOption {
        default = config.services.nginx.recommendedProxySettings;
        defaultText = lib.literalExpression "config.services.nginx.recommendedProxySettings";
        type = types.bool;
      };
    };
  };

  vhostOptions = {
    options.locations = mkOption {
      default = { };
      type = types.attrsOf (types.submodule locationOptions);
    };
  };

  upstreamOptions = {
    options = {
      extraConfig = mkOption {
        default = "";
        type = types.lines;
      };
      servers = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options.backup = mkOption {
              default = false;
              type = types.bool;
            };
            freeformType = types.attrsOf (
              types.oneOf [
                types.bool
                types.int
                types.str
              ]
            );
          }
        );
      };
    };
  };
in
{
  options = {
    # nixos/modules/misc/assertions.nix (S)
    assertions = mkOption {
      default = [ ];
      internal = true;
      type = types.listOf types.unspecified;
    };
    warnings = mkOption {
      default = [ ];
      internal = true;
      type = types.listOf types.str;
    };

    # nixos/modules/virtualisation/nixos-containers.nix (S)
    boot.isContainer = mkOption {
      default = config.boot.isNspawnContainer;
      defaultText = "config.boot.isNspawnContainer";
      type = types.bool;
    };
    boot.isNspawnContainer = mkOption {
      default = false;
      type = types.bool;
    };

    # nixos/modules/misc/version.nix (S)
    system.stateVersion = mkOption {
      default = lib.trivial.release;
      defaultText = lib.literalExpression "config.system.nixos.release";
      type = types.str;
    };

    # nixos/modules/config/users-groups.nix (S)
    users.users = mkOption {
      default = { };
      type = with types; attrsOf (submodule userOpts);
    };
    users.groups = mkOption {
      default = { };
      type = with types; attrsOf (submodule groupOpts);
    };

    # nixos/modules/system/boot/systemd.nix (S): type = systemdUtils.types.services / .units
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule [
          serviceOptions
          unitConfigModule
        ]
      );
    };
    systemd.units = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.text = mkOption {
            default = null;
            type = types.nullOr types.str;
          };
          options.wantedBy = unitList;
        }
      );
    };

    # nixos/modules/system/boot/systemd/tmpfiles.nix (S)
    systemd.tmpfiles.rules = mkOption {
      default = [ ];
      type = types.listOf types.str;
    };
    systemd.tmpfiles.settings = mkOption {
      default = { };
      type = attrsWith' "config-name" (attrsWith' "path" (attrsWith' "tmpfiles-type" tmpfilesEntry));
    };

    # nixos/modules/services/networking/firewall.nix (S)
    networking.firewall.allowedTCPPorts = mkOption {
      apply = ports: lib.unique (builtins.sort builtins.lessThan ports);
      default = [ ];
      type = types.listOf types.port;
    };

    # nixos/modules/services/web-servers/nginx/default.nix (S)
    services.nginx = {
      enable = lib.mkEnableOption "Nginx Web Server";
      recommendedProxySettings = mkOption {
        default = false;
        type = types.bool;
      };
      upstreams = mkOption {
        default = { };
        type = types.attrsOf (types.submodule upstreamOptions);
      };
      virtualHosts = mkOption {
        default = {
          localhost = { };
        };
        type = types.attrsOf (types.submodule vhostOptions);
      };
    };

    # nixos/modules/virtualisation/qemu-vm.nix (S)
    virtualisation.memorySize = mkOption {
      default = 1024;
      type = types.ints.positive;
    };
    virtualisation.cores = mkOption {
      default = 1;
      type = types.ints.positive;
    };
    # nixos/modules/virtualisation/disk-size-option.nix (S), imported by qemu-vm.nix;
    # diskSizeAutoSupported is true there.
    virtualisation.diskSize = mkOption {
      default = "auto";
      defaultText = lib.literalExpression ''if virtualisation.diskSizeAutoSupported then "auto" else 1024'';
      type = types.either (types.enum [ "auto" ]) types.ints.positive;
    };
  };

  # nixos/modules/system/boot/systemd.nix (S): `systemd.units = mapAttrs' (n: v: nameValuePair
  # "${n}.service" (serviceToUnit v)) cfg.services // ...`: where NixOS renders the unit files.
  config.systemd.units = lib.mapAttrs' (
    n: v: lib.nameValuePair "${n}.service" (serviceToUnit n v)
  ) config.systemd.services;
}
