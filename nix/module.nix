# NixOS module: services.stable-diffusion-webui runs the launcher as a system service.
# Data in /var/lib/stable-diffusion-webui (StateDirectory), caches in /var/cache/....
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.stable-diffusion-webui;
  inherit (lib) mkOption types;
in
{
  options.services.stable-diffusion-webui = {
    enable = lib.mkEnableOption "AUTOMATIC1111's Stable Diffusion web UI";

    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = lib.literalExpression "stable-diffusion-nix.packages.\${system}.default";
      description = ''
        The package to run: `packages.cuda`, `packages.cpu`, or one built with
        `.override { extraPythonPackages = ps: [ ... ]; cudaCapabilities = [ ... ]; }`.
      '';
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = "Address the web UI listens on (the launcher's `--server-name`).";
    };

    port = mkOption {
      type = types.port;
      default = 7860;
      description = "Port the web UI listens on.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open `port` in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--api"
        "--medvram"
      ];
      description = "Further arguments: launcher options and upstream webui flags.";
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Extra environment variables for the service.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.stable-diffusion-webui = {
      description = "Stable Diffusion web UI";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      environment = {
        # The launcher's default data and cache directories are $XDG_DATA_HOME/stable-diffusion-webui
        # and $XDG_CACHE_HOME/stable-diffusion-webui: the State- and CacheDirectory below.
        XDG_DATA_HOME = "/var/lib";
        XDG_CACHE_HOME = "/var/cache";
        HOME = "/var/lib/stable-diffusion-webui";
      }
      // cfg.environment;
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            (lib.getExe cfg.package)
            "--server-name"
            cfg.host
            "--port"
            (toString cfg.port)
          ]
          ++ cfg.extraArgs
        );
        DynamicUser = true;
        StateDirectory = "stable-diffusion-webui";
        CacheDirectory = "stable-diffusion-webui";
        WorkingDirectory = "/var/lib/stable-diffusion-webui";
        Restart = "on-failure";
        # The GPU: /dev/nvidia* and /dev/dri must stay visible.
        PrivateDevices = false;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        NoNewPrivileges = true;
        # torch JIT-compiles kernels into writable, executable memory.
        MemoryDenyWriteExecute = false;
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
  };
}
