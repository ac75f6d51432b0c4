# checks.home-manager-eval: the home-manager module against home-manager's own option types
# (nix/tests/flake-eval/home-manager-options.nix, typed as home-manager types them).
# Evaluates to { services, problems }: problems is [] when the user services are what they must be.
{
  lib,
  pkgs,
  # nix/home-manager.nix, applied to { self }.
  module,
  # A store file to declare as a model.
  modelFile,
}:
let
  eval = lib.evalModules {
    specialArgs = { inherit pkgs; };
    modules = [
      ./flake-eval/home-manager-options.nix
      module
      {
        home.homeDirectory = "/home/alice";
        services.stable-diffusion-webui = {
          enable = true;
          port = 7870;
          extraArgs = [ "--api" ];
          environment.HF_HUB_OFFLINE = "1";
          authFile = "/home/alice/.config/sd-login";
          settings.samples_format = "webp";
          presets = [ "private" ];
          models = [
            "sd15"
            {
              path = modelFile;
              folder = "Stable-diffusion";
              name = "tiny.safetensors";
            }
          ];
        };
      }
    ];
  };
  inherit (eval.config.systemd.user) services;
  webui = services.stable-diffusion-webui;
  # home-manager declares ExecStart with `apply = lib.toList`: one command is a list of one.
  execStart = lib.concatStringsSep " " (lib.toList webui.Service.ExecStart);
  models = services.stable-diffusion-webui-models or { };
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) eval.config.assertions);
  expect = [
    {
      what = "a notify service on the user's data dir and port, login file read in place";
      ok =
        webui.Service.Type == "notify"
        && lib.hasInfix ''"--data-dir" "/home/alice/.local/share/stable-diffusion-webui"'' execStart
        && lib.hasInfix ''"--cache-dir" "/home/alice/.cache/stable-diffusion-webui"'' execStart
        && lib.hasInfix ''"--port" "7870"'' execStart
        && lib.hasInfix ''--gradio-auth-path "/home/alice/.config/sd-login" "--api"'' execStart;
    }
    {
      what = "HOME stays the user's; the user's variables are set";
      ok =
        builtins.elem ''"HOME=/home/alice"'' webui.Service.Environment
        && builtins.elem ''"HF_HUB_OFFLINE=1"'' webui.Service.Environment;
    }
    {
      what = "started with the session, after the models unit";
      ok =
        webui.Install.WantedBy == [ "default.target" ]
        && builtins.elem "stable-diffusion-webui-models.service" webui.Unit.After;
    }
    {
      what = "the models unit links the store file and ensures the catalog model";
      ok =
        (models.Service.Type or null) == "oneshot"
        && builtins.length models.Service.ExecStart == 2
        && lib.hasInfix ''"models" "ensure" "--from"'' (builtins.elemAt models.Service.ExecStart 1);
    }
    {
      what = "the launcher is on PATH (models and settings commands)";
      ok = eval.config.home.packages == [ eval.config.services.stable-diffusion-webui.finalPackage ];
    }
  ];
in
{
  inherit services eval;
  problems =
    failedAssertions ++ map (e: "home-manager: ${e.what}") (builtins.filter (e: !e.ok) expect);
}
