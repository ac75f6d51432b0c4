# NixOS module: services.stable-diffusion-webui runs the launcher as a system service, or one
# service per GPU (instances) behind an optional nginx virtual host.
#
# Units (names and everything computed from the options: nix/module/lib.nix, tested by
# nix/tests/module-lib.nix):
#   stable-diffusion-webui.service          without instances; Type=notify: active once the
#                                           launcher's proxy forwards to a ready webui
#   stable-diffusion-webui-<name>.service   one per instance: own port, data dir, GPU
#   stable-diffusion-webui-models.service   oneshot: links store-path models, downloads the
#                                           declared ones into <dataDir>/models (see below)
# Data: dataDir (StateDirectory under /var/lib); caches: /var/cache/stable-diffusion-webui.
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.stable-diffusion-webui;
  logic = import ./module/lib.nix { inherit lib; };
  inherit (lib) mkOption types;

  system = pkgs.stdenv.hostPlatform.system;
  cacheDir = "/var/cache/stable-diffusion-webui";
  modelsDir = "${cfg.dataDir}/models";
  catalog = builtins.listToAttrs (
    map (m: {
      inherit (m) name;
      value = m.folder;
    }) (lib.importJSON ../models/catalog.json).models
  );

  # Declared models as plain values; a path becomes a store path ("${./x}" copies it there).
  declared = map (
    m: if builtins.isString m then m else m // { path = if m.path == null then null else "${m.path}"; }
  ) cfg.models;
  models = logic.models { inherit declared catalog; };
  units = logic.units cfg;
  hasModelsUnit = models.downloads != [ ] || models.links != [ ];
  exe = lib.getExe cfg.finalPackage;

  settingsFile = pkgs.writeText "stable-diffusion-webui-settings.json" (
    builtins.toJSON (
      logic.settingsFile {
        source = "NixOS option ${logic.option}";
        schema = "${cfg.finalPackage}/share/stable-diffusion-webui/schema/settings-file.schema.json";
        inherit (cfg)
          presets
          settings
          lockedSettings
          uiSettings
          lockedUiSettings
          ;
      }
    )
  );
  modelsFile = pkgs.writeText "stable-diffusion-webui-models.json" (builtins.toJSON models.downloads);

  linkModels = import ./module/link-models.nix {
    inherit pkgs lib modelsDir;
    inherit (models) links;
  };

  overrides =
    lib.optionalAttrs (cfg.cudaCapabilities != null) { inherit (cfg) cudaCapabilities; }
    // lib.optionalAttrs (cfg.extensions != null) { inherit (cfg) extensions; }
    // lib.optionalAttrs (cfg.extraPythonPackages != null) { inherit (cfg) extraPythonPackages; };

  sandbox = logic.hardening {
    inherit (cfg) acceleration;
    ports = map (u: u.port) units;
  };

  webuiService = unit: {
    name = unit.unit;
    value = {
      description =
        "Stable Diffusion web UI" + lib.optionalString (unit.instance != null) " (${unit.instance})";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ] ++ lib.optional hasModelsUnit "${logic.modelsUnitName}.service";
      # Wants, not Requires: a download that failed (no network at boot) must not keep the UI
      # down; the UI starts with the models that are there.
      wants = lib.optional hasModelsUnit "${logic.modelsUnitName}.service";
      environment = logic.environment {
        inherit unit cacheDir;
        inherit (cfg) acceleration;
      };
      serviceConfig =
        sandbox
        // logic.dataDirectory unit.dataDir
        // {
          # The launcher sends READY=1 when its proxy forwards to the webui (upstream's
          # app-started point), again after an in-place restart (same PID), STOPPING=1 on stop.
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = logic.execStart {
            inherit exe unit cacheDir;
            settingsFile = "${settingsFile}";
            auth = if cfg.authFile == null then null else "credential";
          };
          User = cfg.user;
          Group = cfg.group;
          WorkingDirectory = unit.dataDir;
          StateDirectoryMode = "0750";
          CacheDirectory = "stable-diffusion-webui";
          CacheDirectoryMode = "0750";
          BindReadOnlyPaths = logic.modelBinds {
            inherit unit modelsDir;
            inherit (models) folders;
          };
          # Copied by systemd (as root) into a private directory of this unit: the file itself
          # can be root's only, and it never enters the store.
          LoadCredential = lib.optional (cfg.authFile != null) "${logic.authCredential}:${cfg.authFile}";
          EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
          Restart = "on-failure";
          RestartSec = "5s";
          # Importing torch and building the UI; minutes on a cold page cache and slow disks.
          TimeoutStartSec = "15min";
        };
    };
  };

  # A unit of its own, not ExecStartPre: downloads (gigabytes) get no start timeout while the
  # webui keeps its own; one download serves every instance; a webui restart (on failure, or
  # from the UI) does not hash the models again. Oneshot with RemainAfterExit: it runs at boot
  # and again when the declared list changes (its ExecStart names the list's store path).
  modelsService = {
    description = "Stable Diffusion web UI: declared models";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    environment = {
      HOME = cfg.dataDir;
      XDG_CACHE_HOME = cacheDir;
    }
    // cfg.environment;
    serviceConfig =
      logic.hardening {
        acceleration = null;
        ports = [ ];
      }
      // logic.dataDirectory cfg.dataDir
      // {
        # The downloader runs no JIT.
        MemoryDenyWriteExecute = true;
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart =
          lib.optional (models.links != [ ]) "${linkModels}"
          ++ lib.optional (models.downloads != [ ]) (
            logic.modelsExecStart {
              inherit exe cacheDir;
              inherit (cfg) dataDir;
              modelsFile = "${modelsFile}";
            }
          );
        User = cfg.user;
        Group = cfg.group;
        StateDirectoryMode = "0750";
        CacheDirectory = "stable-diffusion-webui";
        CacheDirectoryMode = "0750";
        EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
        # Downloads take as long as they take; progress is in the journal.
        TimeoutStartSec = "infinity";
      };
  };
in
{
  options.services.stable-diffusion-webui =
    import ./module/options.nix {
      inherit lib pkgs cfg;
      packages = self.packages.${system} or { };
      dataDirDefault = "/var/lib/stable-diffusion-webui";
      dataDirDefaultText = "/var/lib/stable-diffusion-webui";
      catalogNames = builtins.attrNames catalog;
    }
    // {
      user = mkOption {
        type = types.str;
        default = "stable-diffusion-webui";
        description = ''
          The user the service runs as; created when left at the default. A fixed user, not
          DynamicUser: the models unit and every instance share the models directory.
        '';
      };

      group = mkOption {
        type = types.str;
        default = "stable-diffusion-webui";
        description = "The service's group; created when left at the default.";
      };

      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the web UI's port (every instance's port) in the firewall.";
      };

      instances = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, ... }:
            {
              options = {
                port = mkOption {
                  type = types.port;
                  example = 7861;
                  description = "This instance's port.";
                };
                devices = mkOption {
                  type = types.listOf (types.either types.ints.unsigned types.str);
                  default = [ ];
                  example = [ 0 ];
                  description = ''
                    The GPUs this instance uses, as nvidia-smi numbers them
                    (`CUDA_VISIBLE_DEVICES`, with `CUDA_DEVICE_ORDER=PCI_BUS_ID`; ROCm:
                    `HIP_VISIBLE_DEVICES`). Empty: every GPU.
                  '';
                };
                dataDir = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  defaultText = lib.literalExpression ''"''${dataDir}/instances/${name}"'';
                  description = ''
                    This instance's data dir (config, outputs, its own models). The folders of
                    declared `models` are the shared `<dataDir>/models/<folder>`, mounted
                    read-only over this instance's `models/<folder>`.
                  '';
                };
                listenAddress = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                  description = "This instance's address (default: `listenAddress`).";
                };
                extraArgs = mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                  description = "Arguments after the shared `extraArgs`.";
                };
                environment = mkOption {
                  type = types.attrsOf types.str;
                  default = { };
                  description = "Environment variables over the shared `environment`.";
                };
              };
            }
          )
        );
        default = { };
        example = lib.literalExpression ''
          {
            gpu0 = { port = 7861; devices = [ 0 ]; };
            gpu1 = { port = 7862; devices = [ 1 ]; };
          }
        '';
        description = ''
          Several web UIs, typically one per GPU: unit `stable-diffusion-webui-<name>` each,
          with its own port, GPU and data dir. When set, no unit listens on `port`. Settings,
          models, extensions and the package are shared.
        '';
      };

      nginx = {
        enable = lib.mkEnableOption ''
          an nginx virtual host in front of the web UI (or every instance): browser sessions stay
          on one instance (`ip_hash`, gradio keeps a session's state in its process), `/sdapi/`
          requests go to the least busy one. TLS, ACME and access rules are set on
          `services.nginx.virtualHosts.<virtualHost>` as usual
        '';
        virtualHost = mkOption {
          type = types.str;
          default = "stable-diffusion-webui";
          example = "sd.example.org";
          description = "The name of the `services.nginx.virtualHosts` entry (its server name unless set there).";
        };
        clientMaxBodySize = mkOption {
          type = types.str;
          default = "64m";
          description = "Largest request body (img2img uploads, base64 images sent to `/sdapi/`).";
        };
        timeout = mkOption {
          type = types.str;
          default = "1h";
          description = "How long nginx waits for a response: a large batch holds its request for the whole generation.";
        };
      };
    };

  config = lib.mkIf cfg.enable {
    services.stable-diffusion-webui.finalPackage =
      if overrides == { } then
        cfg.package
      else
        (cfg.package.override
          or (throw "${logic.option}.package has no .override, so extensions, extraPythonPackages and cudaCapabilities cannot be applied to it")
        )
          overrides;

    assertions =
      map
        (message: {
          assertion = false;
          inherit message;
        })
        (
          logic.problems {
            inherit cfg system;
            packageVariant = cfg.package.variant or cfg.package.passthru.variant or null;
            storeDir = builtins.storeDir;
            modelProblems = models.problems;
          }
        );

    warnings =
      lib.optional
        (
          cfg.openFirewall
          && builtins.all (u: lib.hasPrefix "127." u.listenAddress || u.listenAddress == "::1") units
        )
        "${logic.option}.openFirewall opens a port the web UI does not listen on from outside (listenAddress is loopback)."
      ++
        lib.optional (cfg.nginx.enable && cfg.openFirewall)
          "${logic.option}: nginx is in front, yet openFirewall also opens the web UI's own ports, which bypass it.";

    users.users = lib.mkIf (cfg.user == "stable-diffusion-webui") {
      stable-diffusion-webui = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.dataDir;
      };
    };
    users.groups = lib.mkIf (cfg.group == "stable-diffusion-webui") { stable-diffusion-webui = { }; };

    systemd.tmpfiles.settings."10-stable-diffusion-webui" = builtins.listToAttrs (
      map
        (path: {
          name = path;
          value.d = {
            inherit (cfg) user group;
            mode = "0750";
          };
        })
        (
          logic.directories {
            inherit cfg units;
            inherit (models) folders;
          }
        )
    );

    systemd.services =
      builtins.listToAttrs (map webuiService units)
      // lib.optionalAttrs hasModelsUnit { ${logic.modelsUnitName} = modelsService; };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall (map (u: u.port) units);

    services.nginx = lib.mkIf cfg.nginx.enable (
      let
        front = logic.nginx { inherit units; };
        limits = ''
          client_max_body_size ${cfg.nginx.clientMaxBodySize};
          proxy_read_timeout ${cfg.nginx.timeout};
          proxy_send_timeout ${cfg.nginx.timeout};
        '';
      in
      {
        enable = true;
        inherit (front) upstreams;
        virtualHosts.${cfg.nginx.virtualHost}.locations = lib.mapAttrs (
          _: location:
          location
          // {
            # Host and X-Forwarded-*: gradio builds its URLs from the request's host.
            recommendedProxySettings = true;
            extraConfig = limits;
          }
        ) front.locations;
      }
    );
  };
}
