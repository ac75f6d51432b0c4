# The NixOS and home-manager modules evaluated with the real nixpkgs `lib` against the options
# NixOS and home-manager declare (nixos-options.nix, home-manager-options.nix, typed as upstream
# types them), and forced deeply: a value of the wrong type anywhere in what the modules set fails
# here as it would in NixOS / home-manager.
#
#   (a) nixosModule with every option set as nix/tests/module-everything.nix sets them (with and
#       without CUDA), plus checks.module-eval's boot.isContainer / system.stateVersion; the
#       NixOS VM tests' nodes (nix/tests/nixos-vm.nix, nixos-vm-instances.nix) likewise;
#   (b) homeModule as nix/tests/home-manager-eval.nix evaluates it;
#   (c) mistakes that must fail: serviceConfig values of the wrong type, unknown option names.
#
# Result: { problems = [ "..." ]; forced = <number of (configuration, option tree) pairs forced>; } (problems empty:
# all is well).
{
  lib,
  pkgs,
  # nix/module.nix applied to { self }
  nixosModule,
  # nix/home-manager.nix applied to { self }
  homeModule,
}:
let
  modelFile = "${pkgs.writeText "tiny.safetensors" ""}";

  # Something toJSON can write: derivations as their store paths, functions and paths named.
  plain =
    v:
    if lib.isDerivation v then
      v.outPath
    else if builtins.isAttrs v then
      lib.mapAttrs (_: plain) v
    else if builtins.isList v then
      map plain v
    else if builtins.isFunction v then
      "<function>"
    else if builtins.isPath v then
      toString v
    else
      v;
  deep = v: builtins.deepSeq (builtins.toJSON (plain v)) true;

  # Forced with tryEval: a throw (an option's type, an unknown option, a failed check) is reported
  # as a problem instead of stopping the whole test.
  forceAll =
    what: values:
    let
      results = lib.mapAttrsToList (name: v: {
        inherit name;
        ok = (builtins.tryEval (deep v)).success;
      }) values;
    in
    {
      problems = map (r: "${what}: forcing ${r.name} failed") (lib.filter (r: !r.ok) results);
      forced = lib.length (lib.filter (r: r.ok) results);
    };

  failedAssertions = c: map (a: a.message) (lib.filter (a: !a.assertion) c.config.assertions);

  # --- (a) NixOS --------------------------------------------------------------------------------

  nixos =
    modules:
    lib.evalModules {
      specialArgs = {
        inherit pkgs;
        modulesPath = "/nixos/modules";
      };
      modules = [
        ./nixos-options.nix
        nixosModule
        {
          # checks.module-eval
          boot.isContainer = true;
          system.stateVersion = "26.05";
        }
      ]
      ++ modules;
    };

  forceNixos =
    what: eval:
    let
      forced = forceAll what {
        "config.systemd.services" = eval.config.systemd.services;
        "config.systemd.units (the rendered unit files)" = lib.mapAttrs (
          _: u: u.text
        ) eval.config.systemd.units;
        "config.services.nginx" = eval.config.services.nginx;
        "config.users" = eval.config.users;
        "config.systemd.tmpfiles" = eval.config.systemd.tmpfiles;
        "config.networking.firewall" = eval.config.networking.firewall;
        "config.services.stable-diffusion-webui" = eval.config.services.stable-diffusion-webui;
        "config.warnings" = eval.config.warnings;
      };
      assertions = builtins.tryEval (deep (failedAssertions eval));
    in
    {
      problems =
        forced.problems
        ++ (
          if !assertions.success then
            [ "${what}: the assertions cannot be evaluated" ]
          else
            map (m: "${what}: failed assertion: ${m}") (failedAssertions eval)
        );
      inherit (forced) forced;
    };

  everything =
    cuda:
    nixos [
      (import ../module-everything.nix { inherit cuda modelFile; })
    ];

  # What checks.module-eval expects of the configuration (the parts that do not need a build).
  everythingExpect =
    cuda:
    let
      every = everything cuda;
      units = every.config.systemd.services;
      gpu0 = units.stable-diffusion-webui-gpu0.serviceConfig;
      gpu1 = units.stable-diffusion-webui-gpu1.serviceConfig;
      nginx = every.config.services.nginx;
      expect = {
        "one unit per instance and the models unit, none on the top-level port" =
          units ? stable-diffusion-webui-gpu0
          && units ? stable-diffusion-webui-gpu1
          && units ? stable-diffusion-webui-models
          && !(units ? stable-diffusion-webui);
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
      };
      checked = builtins.tryEval (
        builtins.deepSeq (lib.attrNames (lib.filterAttrs (_: ok: !ok) expect)) (
          lib.attrNames (lib.filterAttrs (_: ok: !ok) expect)
        )
      );
    in
    if checked.success then
      map (e: "module-everything (cuda = ${lib.boolToString cuda}): ${e}") checked.value
    else
      [ "module-everything (cuda = ${lib.boolToString cuda}): the expectations cannot be evaluated" ];

  # The VM tests' nodes, evaluated (not booted): what they set outside the module's options.
  vmNode =
    file:
    let
      test = import file {
        pkgs = pkgs // {
          testers.runNixOSTest = t: t;
        };
        module = nixosModule;
        # the cpu package the VM tests pass (the module's default without acceleration)
        package = (nixos [ enabled ]).config.services.stable-diffusion-webui.package;
        tinyModel = pkgs.writeText "tiny-model" "";
      };
    in
    # the node's `imports = [ module ]` is the nixosModule already in `nixos`
    nixos [ (removeAttrs test.nodes.machine [ "imports" ]) ];

  nixosRuns = [
    (forceNixos "module-everything (cuda = false)" (everything false))
    (forceNixos "module-everything (cuda = true)" (everything true))
    (forceNixos "nixos-vm node" (vmNode ../nixos-vm.nix))
    (forceNixos "nixos-vm-instances node" (vmNode ../nixos-vm-instances.nix))
  ];

  # --- (b) home-manager -------------------------------------------------------------------------

  home = lib.evalModules {
    specialArgs = { inherit pkgs; };
    modules = [
      ./home-manager-options.nix
      homeModule
      {
        # home-manager has no default for it (the stub gave /home/alice)
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

  homeForced = forceAll "home-manager" {
    "config.systemd.user.services" = home.config.systemd.user.services;
    "config.home.packages" = home.config.home.packages;
    "config.xdg" = {
      inherit (home.config.xdg) dataHome cacheHome;
    };
    "config.services.stable-diffusion-webui" = home.config.services.stable-diffusion-webui;
  };

  # nix/tests/home-manager-eval.nix's expectations. home-manager's type turns Service.ExecStart
  # into a list (apply = lib.toList), so the command line is its one element here.
  homeExpect =
    let
      inherit (home.config.systemd.user) services;
      webui = services.stable-diffusion-webui;
      models = services.stable-diffusion-webui-models or { };
      execStart = lib.concatStringsSep " " webui.Service.ExecStart;
      expect = [
        {
          what = "a notify service on the user's data dir and port, login file read in place";
          ok =
            webui.Service.Type == "notify"
            && lib.length webui.Service.ExecStart == 1
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
          ok = home.config.home.packages == [ home.config.services.stable-diffusion-webui.finalPackage ];
        }
      ];
      failed = map (e: "home-manager: ${e.what}") (lib.filter (e: !e.ok) expect);
      checked = builtins.tryEval (builtins.deepSeq failed failed);
    in
    if checked.success then checked.value else [ "home-manager: the expectations cannot be evaluated" ];

  homeAssertions =
    let
      r = builtins.tryEval (deep (failedAssertions home));
    in
    if r.success then
      map (m: "home-manager: failed assertion: ${m}") (failedAssertions home)
    else
      [ "home-manager: the assertions cannot be evaluated" ];

  # --- (c) mistakes that must fail ----------------------------------------------------------------

  enabled = {
    services.stable-diffusion-webui.enable = true;
  };
  mustFail = {
    # unitOption accepts any value; NixOS fails when it writes the unit file (toString of a set).
    "a serviceConfig value that is an attribute set" = {
      modules = [
        enabled
        {
          systemd.services.stable-diffusion-webui.serviceConfig.ProtectSystem = lib.mkForce {
            strict = true;
          };
        }
      ];
      force = e: lib.mapAttrs (_: u: u.text) e.config.systemd.units;
    };
    "serviceConfig.Type not one of systemd's" = {
      modules = [
        enabled
        { systemd.services.stable-diffusion-webui.serviceConfig.Type = lib.mkForce "notify-ready"; }
      ];
      force = e: e.config.systemd.services;
    };
    "a wantedBy that is not a list of unit names" = {
      modules = [
        enabled
        { systemd.services.stable-diffusion-webui.wantedBy = [ "multi-user" ]; }
      ];
      force = e: e.config.systemd.services;
    };
    "an unknown option (services.nginx.virtualhosts)" = {
      modules = [
        enabled
        { services.nginx.virtualhosts.x = { }; }
      ];
      force = e: e.config.services.nginx;
    };
    "an unknown sub-option of a systemd service (serviceconfig)" = {
      modules = [
        enabled
        { systemd.services.stable-diffusion-webui.serviceconfig.Type = "simple"; }
      ];
      force = e: e.config.systemd.services;
    };
  };
  homeMustFail = {
    "a home-manager Service value that is an attribute set" = [
      {
        home.homeDirectory = "/home/alice";
        services.stable-diffusion-webui.enable = true;
        systemd.user.services.stable-diffusion-webui.Service.ProtectSystem = {
          strict = true;
        };
      }
    ];
    "an unknown home-manager option (systemd.user.service)" = [
      {
        home.homeDirectory = "/home/alice";
        systemd.user.service.x = { };
      }
    ];
  };
  notFailing =
    lib.mapAttrsToList (name: _: "must fail, but evaluated: ${name}") (
      lib.filterAttrs (_: t: (builtins.tryEval (deep (t.force (nixos t.modules)))).success) mustFail
    )
    ++ lib.mapAttrsToList (name: _: "must fail, but evaluated: ${name}") (
      lib.filterAttrs (
        _: modules:
        (builtins.tryEval (
          deep
            (lib.evalModules {
              specialArgs = { inherit pkgs; };
              modules = [
                ./home-manager-options.nix
                homeModule
              ]
              ++ modules;
            }).config.systemd.user.services
        )).success
      ) homeMustFail
    );
in
{
  problems =
    lib.concatMap (r: r.problems) nixosRuns
    ++ everythingExpect false
    ++ everythingExpect true
    ++ homeForced.problems
    ++ homeAssertions
    ++ homeExpect
    ++ notFailing;
  forced = lib.foldl' (n: r: n + r.forced) homeForced.forced nixosRuns;
}
