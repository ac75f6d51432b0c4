# checks.module-eval: a NixOS configuration that sets every option of the module (two GPU
# instances behind nginx where the system has CUDA, CPU instances elsewhere).
{
  cuda,
  # A store file declared as a model.
  modelFile,
}:
{ lib, ... }:
{
  users.users.sd = {
    isSystemUser = true;
    group = "sd";
  };
  users.groups.sd = { };

  services.stable-diffusion-webui = {
    enable = true;
    user = "sd";
    group = "sd";
    dataDir = "/srv/stable-diffusion-webui";
    listenAddress = "127.0.0.1";
    port = 7860;
    openFirewall = false;
    extraArgs = [ "--api" ];
    environment.HF_HUB_OFFLINE = "1";
    environmentFile = "/run/secrets/stable-diffusion-webui.env";
    acceleration = if cuda then "cuda" else null;
    cudaCapabilities = if cuda then [ "8.6" ] else null;
    settings = {
      samples_format = "webp";
      samples_save = true;
      sd_model_checkpoint = "tiny.safetensors";
      sd_vae = "Automatic";
      CLIP_stop_at_last_layers = 2;
      enable_pnginfo = true;
      quicksettings_list = [ "sd_model_checkpoint" ];
      show_progress_every_n_steps = 5;
    };
    presets = [ "private" ];
    lockedSettings.enable_pnginfo = false;
    uiSettings."txt2img/Sampling steps/value" = 30;
    lockedUiSettings."txt2img/Width/value" = 512;
    extensions = [ ];
    extraPythonPackages = ps: [ ps.pyyaml ];
    models = [
      "sd15"
      {
        url = "hf:stabilityai/sd-vae-ft-mse-original/vae-ft-mse-840000-ema-pruned.safetensors";
        sha256 = "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75";
        folder = "VAE";
        name = "vae-ft-mse.safetensors";
      }
      {
        path = modelFile;
        folder = "Stable-diffusion";
        name = "tiny.safetensors";
      }
    ];
    authFile = "/run/secrets/stable-diffusion-webui-login";
    instances = {
      gpu0 = {
        port = 7861;
        devices = lib.optional cuda 0;
      };
      gpu1 = {
        port = 7862;
        devices = lib.optional cuda 1;
        dataDir = "/srv/sd-gpu1";
        listenAddress = "127.0.0.1";
        extraArgs = [ "--medvram" ];
        environment.PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True";
      };
    };
    nginx = {
      enable = true;
      virtualHost = "sd.example.org";
      clientMaxBodySize = "128m";
      timeout = "2h";
    };
  };
}
