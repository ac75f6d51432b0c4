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

  # What checks.module-eval expects of the configuration (nix/tests/module-eval-expect.nix).
  everythingExpect =
    cuda:
    let
      expect = import ../module-eval-expect.nix {
        inherit lib cuda;
        every = everything cuda;
      };
      failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) expect);
      checked = builtins.tryEval (builtins.deepSeq failed failed);
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

  # checks.home-manager-eval's configuration and expectations (nix/tests/home-manager-eval.nix),
  # against home-manager's option types.
  homeEval = import ../home-manager-eval.nix {
    inherit lib pkgs modelFile;
    module = homeModule;
  };
  home = homeEval.eval;

  homeForced = forceAll "home-manager" {
    "config.systemd.user.services" = home.config.systemd.user.services;
    "config.home.packages" = home.config.home.packages;
    "config.xdg" = {
      inherit (home.config.xdg) dataHome cacheHome;
    };
    "config.services.stable-diffusion-webui" = home.config.services.stable-diffusion-webui;
  };

  homeExpect =
    let
      checked = builtins.tryEval (builtins.deepSeq homeEval.problems homeEval.problems);
    in
    if checked.success then checked.value else [ "home-manager: the expectations cannot be evaluated" ];

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
    ++ homeExpect
    ++ notFailing;
  forced = lib.foldl' (n: r: n + r.forced) homeForced.forced nixosRuns;
}
