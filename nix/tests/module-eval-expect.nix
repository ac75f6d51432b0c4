# What nix/tests/module-everything.nix's configuration must give: name -> bool. Evaluated by
# checks.module-eval (NixOS itself) and by nix/tests/flake-eval/modules-test.nix (the real
# lib.evalModules against NixOS's option declarations, where nixpkgs cannot be fetched).
{
  lib,
  # the evaluated configuration (nixosSystem / evalModules result)
  every,
  # whether it was evaluated with acceleration = "cuda"
  cuda,
}:
let
  cfg = every.config.services.stable-diffusion-webui;
  units = every.config.systemd.services;
  gpu0 = units.stable-diffusion-webui-gpu0.serviceConfig;
  gpu1 = units.stable-diffusion-webui-gpu1.serviceConfig;
  nginx = every.config.services.nginx;
in
{
  "one unit per instance and the models unit, none on the top-level port" =
    units ? stable-diffusion-webui-gpu0
    && units ? stable-diffusion-webui-gpu1
    && units ? stable-diffusion-webui-models
    && !(units ? stable-diffusion-webui);
  "the overridden package runs" =
    cfg.finalPackage.drvPath != cfg.package.drvPath
    && lib.hasPrefix ''"${lib.getExe cfg.finalPackage}" "--data-dir" "/srv/stable-diffusion-webui/instances/gpu0"'' gpu0.ExecStart;
  "instance ports, shared args first, the login credential" =
    lib.hasInfix ''"--port" "7861" --gradio-auth-path %d/gradio-auth "--api"'' gpu0.ExecStart
    && lib.hasInfix ''"--port" "7862" --gradio-auth-path %d/gradio-auth "--api" "--medvram"'' gpu1.ExecStart
    && gpu0.LoadCredential == [ "gradio-auth:/run/secrets/stable-diffusion-webui-login" ];
  "Type=notify, restart on failure, strict sandbox" =
    gpu0.Type == "notify"
    && gpu0.Restart == "on-failure"
    && gpu0.ProtectSystem == "strict"
    && gpu0.MemoryDenyWriteExecute == false;
  "GPU per instance" =
    !cuda
    || (
      units.stable-diffusion-webui-gpu1.environment.CUDA_VISIBLE_DEVICES == "1"
      && gpu1.PrivateDevices == false
      && lib.elem "char-nvidia-uvm" gpu1.DeviceAllow
    );
  "shared models read-only in each instance, own data dir writable" =
    lib.elem "/srv/stable-diffusion-webui/models/Stable-diffusion:/srv/sd-gpu1/models/Stable-diffusion" gpu1.BindReadOnlyPaths
    && lib.elem "/srv/stable-diffusion-webui/models/VAE:/srv/stable-diffusion-webui/instances/gpu0/models/VAE" gpu0.BindReadOnlyPaths
    && gpu1.BindPaths == [ "/srv/sd-gpu1" ];
  "directories exist before the units, owned by the user" =
    every.config.systemd.tmpfiles.settings."10-stable-diffusion-webui"."/srv/sd-gpu1/models/Stable-diffusion".d.user
    == "sd";
  "downloads without a start timeout" =
    units.stable-diffusion-webui-models.serviceConfig.TimeoutStartSec == "infinity";
  "nginx: sticky UI, balanced API, proxy headers" =
    nginx.enable
    && nginx.upstreams.stable-diffusion-webui-ui.extraConfig == "ip_hash;"
    && nginx.upstreams.stable-diffusion-webui-ui.servers ? "127.0.0.1:7862"
    && nginx.virtualHosts."sd.example.org".locations."/".proxyWebsockets
    && nginx.virtualHosts."sd.example.org".locations."/".recommendedProxySettings
    &&
      nginx.virtualHosts."sd.example.org".locations."/sdapi/".proxyPass
      == "http://stable-diffusion-webui-api";
  "the unit file renders the sandbox" =
    lib.hasInfix "ProtectSystem=strict\n"
      every.config.systemd.units."stable-diffusion-webui-gpu0.service".text;
}
