# The options the NixOS module and the home-manager module share (services.stable-diffusion-webui).
# Each module adds its own (the NixOS one: user, group, instances, nginx, openFirewall) and
# passes the defaults that differ (data dir, where the flake's packages are).
{
  lib,
  pkgs,
  # The flake's packages for this system (self.packages.${system}), or { } where it has none.
  packages,
  dataDirDefault,
  dataDirDefaultText,
  # Catalog names (models/catalog.json), for the models option's description.
  catalogNames,
  # The module's own config.services.stable-diffusion-webui (the package default reads it).
  cfg,
}:
let
  inherit (lib) mkOption types literalExpression;
  json = pkgs.formats.json { };

  # An upstream config.json key with a type; null means "not declared".
  typedKey =
    type: example: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit example description;
    };

  modelType = types.submodule {
    options = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "hf:stabilityai/sd-vae-ft-mse-original/vae-ft-mse-840000-ema-pruned.safetensors";
        description = ''
          Where to download the file from: `https://...`, `hf:ORG/REPO/FILE` or `civitai:ID`.
          Downloaded by `stable-diffusion-webui models ensure` into the data dir (not the Nix
          store), resumable, and renamed into place only once its hash is `sha256`.
        '';
      };
      sha256 = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75";
        description = "The file's SHA-256, 64 hex digits. Required with `url`.";
      };
      path = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression ''"''${pkgs.fetchurl { url = "..."; hash = "sha256-..."; }}"'';
        description = ''
          A file already in the Nix store (a fixed-output derivation, or a path, which is copied
          into the store): linked into `models/<folder>/` instead of downloaded.
        '';
      };
      folder = mkOption {
        type = types.str;
        example = "Lora";
        description = ''
          The folder below `models/`: `Stable-diffusion`, `VAE`, `Lora`, `ESRGAN`, ... or a
          path below one (`Lora/sdxl`).
        '';
      };
      name = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The file name in the folder (default: from the URL or path).";
      };
    };
  };
in
{
  enable = lib.mkEnableOption "AUTOMATIC1111's Stable Diffusion web UI";

  package = mkOption {
    type = types.package;
    default =
      if packages == { } then
        throw "stable-diffusion-nix has no package for ${pkgs.stdenv.hostPlatform.system}; set services.stable-diffusion-webui.package"
      else if cfg.acceleration == "cuda" then
        # packages.cuda exists on x86_64-linux only; elsewhere an assertion explains.
        packages.cuda or packages.default
      else
        packages.cpu;
    defaultText = literalExpression ''
      stable-diffusion-nix.packages.''${system}.cuda   # acceleration = "cuda"
      stable-diffusion-nix.packages.''${system}.cpu    # acceleration = null
    '';
    description = ''
      The launcher package. The default follows `acceleration`. `extensions`,
      `extraPythonPackages` and `cudaCapabilities` are applied to it with `.override` (only those
      that are set, so a package without those arguments works when they are not).
    '';
  };

  finalPackage = mkOption {
    type = types.package;
    readOnly = true;
    internal = true;
    description = "The package with `extensions`, `extraPythonPackages` and `cudaCapabilities` applied.";
  };

  dataDir = mkOption {
    type = types.str;
    default = dataDirDefault;
    defaultText = dataDirDefaultText;
    example = "/srv/stable-diffusion-webui";
    description = ''
      Where the web UI keeps everything it writes: `config.json`, `outputs/`, `models/`,
      `extensions/`. A string, not a Nix path (which would be copied into the store).
    '';
  };

  listenAddress = mkOption {
    type = types.str;
    default = "127.0.0.1";
    example = "0.0.0.0";
    description = ''
      The address the launcher's proxy listens on (its `--server-name`): `0.0.0.0` for every
      IPv4 interface, `::` for every interface. gradio itself always stays on a private
      loopback port behind the proxy.
    '';
  };

  port = mkOption {
    type = types.port;
    default = 7860;
    description = "The port of the web UI (and of the API, with `--api`).";
  };

  extraArgs = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [
      "--api"
      "--medvram"
    ];
    description = ''
      Further arguments: upstream's webui flags (see `stable-diffusion-webui --webui-help`),
      passed on unchanged, after the module's own.
    '';
  };

  environment = mkOption {
    type = types.attrsOf types.str;
    default = { };
    example = {
      HF_ENDPOINT = "https://hf-mirror.example.org";
      PYTORCH_CUDA_ALLOC_CONF = "expandable_segments:True";
    };
    description = "Environment variables of the web UI (and of the model downloads). Secrets belong in `environmentFile`.";
  };

  environmentFile = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/secrets/stable-diffusion-webui.env";
    description = ''
      A file of `NAME=value` lines, read when the service starts and never copied into the Nix
      store: `HF_TOKEN=...`, `CIVITAI_API_TOKEN=...` for gated downloads, or
      `COMMANDLINE_ARGS=--api-auth user:password` to protect `/sdapi` (upstream's `--api-auth`
      takes no file).
    '';
  };

  acceleration = mkOption {
    type = types.nullOr (
      types.enum [
        "cuda"
        "rocm"
      ]
    );
    default = null;
    example = "cuda";
    description = ''
      The GPU the web UI uses: `"cuda"` (NVIDIA, x86_64-linux), `"rocm"` (AMD; needs a
      `package` with a ROCm torch, which this flake does not build yet) or `null` for the CPU.
      It chooses the default `package` and which device nodes the service may open.
    '';
  };

  cudaCapabilities = mkOption {
    type = types.nullOr (types.listOf types.str);
    default = null;
    example = [
      "8.6"
      "8.9"
    ];
    description = ''
      Build torch from source for these CUDA architectures instead of using PyTorch's wheel
      (whose list is PyTorch's). A long compile, unless a binary cache has that build.
      Needs `acceleration = "cuda"`.
    '';
  };

  settings = mkOption {
    type = types.submodule {
      freeformType = json.type;
      options = {
        samples_format =
          typedKey types.str "webp"
            "File format of saved images (`png`, `jpg`, `webp`, `avif`, ...).";
        samples_save = typedKey types.bool false "Save every generated image.";
        sd_model_checkpoint =
          typedKey types.str "v1-5-pruned-emaonly.safetensors"
            "The checkpoint to load.";
        sd_vae = typedKey types.str "Automatic" "The VAE (`Automatic`, `None` or a file name).";
        CLIP_stop_at_last_layers = typedKey (types.ints.between 1 12) 2 "Clip skip.";
        enable_pnginfo = typedKey types.bool false "Write the generation parameters into the image.";
        quicksettings_list = typedKey (types.listOf types.str) [
          "sd_model_checkpoint"
          "sd_vae"
        ] "Settings shown at the top of the page.";
      };
    };
    default = { };
    example = {
      samples_format = "webp";
      show_progress_every_n_steps = 5;
    };
    description = ''
      Defaults for upstream's `config.json` (keys as in `stable-diffusion-webui settings keys`).
      A value edited in the UI wins over a default; a key removed here goes back to upstream's
      default unless it was edited. The launcher checks the keys at start (a mistyped key is a
      warning with a suggestion). See README, "Declarative settings, presets and locks".
    '';
  };

  presets = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [
      "private"
      "low-vram"
    ];
    description = ''
      Setting presets applied above `settings`, later ones winning: built in (`cpu`,
      `low-vram`, `mac`, `private`, `sdxl`) or `<dataDir>/presets/NAME.json`.
    '';
  };

  lockedSettings = mkOption {
    type = types.attrsOf json.type;
    default = { };
    example = {
      enable_pnginfo = false;
    };
    description = ''
      `config.json` values written at every start and refused from the UI and the API
      (`POST /sdapi/v1/options` answers 403). An unknown key stops the start.
    '';
  };

  uiSettings = mkOption {
    type = types.attrsOf json.type;
    default = { };
    example = {
      "txt2img/Sampling steps/value" = 30;
    };
    description = "Defaults for upstream's `ui-config.json` (UI component defaults).";
  };

  lockedUiSettings = mkOption {
    type = types.attrsOf json.type;
    default = { };
    description = "`ui-config.json` values written at every start and kept by Settings > Defaults while the webui runs.";
  };

  extensions = mkOption {
    type = types.nullOr (types.listOf (types.either types.str types.package));
    default = null;
    example = literalExpression ''[ "sd-webui-regional-prompter" "a1111-sd-webui-tagcomplete" ]'';
    description = ''
      Managed extensions, read-only from the Nix store: curated names from
      `repositories/sources.json` or extension source derivations. `null` keeps the package's
      default set. Extensions installed from the UI still go to `<dataDir>/extensions`.
    '';
  };

  extraPythonPackages = mkOption {
    type = types.nullOr (types.functionTo (types.listOf types.package));
    default = null;
    example = literalExpression "ps: [ ps.ultralytics ]";
    description = "Python packages added to the web UI's environment (for extensions).";
  };

  models = mkOption {
    type = types.listOf (types.either types.str modelType);
    default = [ ];
    example = literalExpression ''
      [
        "sd15"
        { url = "hf:stabilityai/sd-vae-ft-mse-original/vae-ft-mse-840000-ema-pruned.safetensors";
          sha256 = "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75";
          folder = "VAE"; }
        { path = ./my-lora.safetensors; folder = "Lora"; }
      ]
    '';
    description = ''
      Models to have in `models/`: catalog names (${lib.concatStringsSep ", " catalogNames}),
      downloads `{ url, sha256, folder, name }`, or store paths `{ path, folder, name }`.
      Downloads run in their own unit, `stable-diffusion-webui-models`, which the web UI starts
      after; a failed download is in that unit's log and does not keep the UI down. Models
      that are no longer declared are not deleted.
    '';
  };

  authFile = mkOption {
    type = types.nullOr types.str;
    default = null;
    example = "/run/secrets/stable-diffusion-webui-login";
    description = ''
      A file of `user:password` lines (comma- or line-separated) for upstream's login page
      (`--gradio-auth-path`). Give a path as a string: it is read when the service starts and
      never copied into the Nix store. The NixOS service loads it with `LoadCredential=`, so the
      file can be readable by root only. It protects the UI, not `/sdapi` (see
      `environmentFile`).
    '';
  };
}
