# home-manager module: services.stable-diffusion-webui as a systemd user service (Linux), with
# the NixOS module's core options (nix/module/options.nix) and the same logic
# (nix/module/lib.nix). Data in $XDG_DATA_HOME/stable-diffusion-webui, the launcher's own
# default, so `stable-diffusion-webui models ...` and `settings ...` in a shell (the package is
# on PATH) work on the service's data. No instances, nginx or sandbox: those are the system
# service's. home-manager option names used: xdg.dataHome, xdg.cacheHome (modules/misc/xdg.nix),
# systemd.user.services.<name>.{Unit,Service,Install}, home.packages, assertions.
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

  system = pkgs.stdenv.hostPlatform.system;
  cacheDir = "${config.xdg.cacheHome}/stable-diffusion-webui";
  catalog = builtins.listToAttrs (
    map (m: {
      inherit (m) name;
      value = m.folder;
    }) (lib.importJSON ../models/catalog.json).models
  );
  declared = map (
    m: if builtins.isString m then m else m // { path = if m.path == null then null else "${m.path}"; }
  ) cfg.models;
  models = logic.models { inherit declared catalog; };
  modelsDir = "${cfg.dataDir}/models";
  hasModelsUnit = models.downloads != [ ] || models.links != [ ];
  exe = lib.getExe cfg.finalPackage;

  # The logic's view of this service: one unit, no instances.
  unit = builtins.head (logic.units (cfg // { instances = { }; }));

  settingsFile = pkgs.writeText "stable-diffusion-webui-settings.json" (
    builtins.toJSON (
      logic.settingsFile {
        source = "home-manager option ${logic.option}";
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

  environmentLines = env: lib.mapAttrsToList logic.environmentLine env;
  environmentFile = lib.optionalAttrs (cfg.environmentFile != null) {
    EnvironmentFile = cfg.environmentFile;
  };
in
{
  options.services.stable-diffusion-webui = import ./module/options.nix {
    inherit lib pkgs cfg;
    packages = self.packages.${system} or { };
    dataDirDefault = "${config.xdg.dataHome}/stable-diffusion-webui";
    dataDirDefaultText = lib.literalExpression ''"''${config.xdg.dataHome}/stable-diffusion-webui"'';
    catalogNames = builtins.attrNames catalog;
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

    assertions = [
      {
        assertion = pkgs.stdenv.hostPlatform.isLinux;
        message = "${logic.option} (home-manager) is a systemd user service, so Linux only; on macOS run `nix run` or `stable-diffusion-webui` yourself.";
      }
    ]
    ++
      map
        (message: {
          assertion = false;
          inherit message;
        })
        (
          logic.problems {
            cfg = cfg // {
              instances = { };
            };
            inherit system;
            packageVariant = cfg.package.variant or cfg.package.passthru.variant or null;
            storeDir = builtins.storeDir;
            modelProblems = models.problems;
          }
        );

    home.packages = [ cfg.finalPackage ];

    systemd.user.services = {
      stable-diffusion-webui = {
        Unit = {
          Description = "Stable Diffusion web UI";
          After = [ "network.target" ] ++ lib.optional hasModelsUnit "${logic.modelsUnitName}.service";
          Wants = lib.optional hasModelsUnit "${logic.modelsUnitName}.service";
        };
        Service = {
          # READY=1 from the launcher once the proxy forwards to a ready webui.
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = logic.execStart {
            inherit exe unit cacheDir;
            settingsFile = "${settingsFile}";
            # The user's own file, read in place (it is theirs already).
            auth = cfg.authFile;
          };
          Environment = environmentLines (
            logic.environment {
              inherit unit cacheDir;
              inherit (cfg) acceleration;
            }
            # A user service inherits the session's HOME; keep it.
            // lib.optionalAttrs (!(cfg.environment ? HOME)) { HOME = config.home.homeDirectory; }
          );
          Restart = "on-failure";
          RestartSec = "5s";
          TimeoutStartSec = "15min";
        }
        // environmentFile;
        Install.WantedBy = [ "default.target" ];
      };
    }
    // lib.optionalAttrs hasModelsUnit {
      ${logic.modelsUnitName} = {
        Unit.Description = "Stable Diffusion web UI: declared models";
        Service = {
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
          Environment = environmentLines cfg.environment;
          TimeoutStartSec = "infinity";
        }
        // environmentFile;
        Install.WantedBy = [ "default.target" ];
      };
    };
  };
}
