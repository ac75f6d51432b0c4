# The pure logic of the NixOS and home-manager modules: what the settings file, the declared
# models, the units, their arguments, environment and sandbox are, given the options' values.
#
# Kept apart from the modules so that CI (no nixpkgs there) can evaluate it with
# `nix-instantiate --eval` against nix/tests/module-lib-stub.nix, a stand-in for the few `lib`
# functions used here; nix/tests/module-lib.nix holds the expected outputs. Everything else is
# builtins. Inputs are plain values (strings, lists, attrsets), never `pkgs` or derivations.
{ lib }:
let
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    head
    isString
    length
    listToAttrs
    map
    match
    replaceStrings
    split
    toJSON
    ;
  inherit (lib)
    filterAttrs
    hasPrefix
    mapAttrsToList
    optional
    optionalAttrs
    optionals
    removePrefix
    unique
    ;

  # "a/b/c" -> [ "a" "b" "c" ] (builtins.split interleaves the separators as lists).
  components = path: filter isString (split "/" path);
in
rec {
  # Unit and option names used in messages and unit names.
  option = "services.stable-diffusion-webui";
  unitName = "stable-diffusion-webui";
  modelsUnitName = "stable-diffusion-webui-models";
  instanceUnitName = name: "stable-diffusion-webui-${name}";

  # Where systemd puts the credential with the gradio login file; `%d` is expanded by systemd
  # to $CREDENTIALS_DIRECTORY, a private ramfs only this unit's user can read.
  authCredential = "gradio-auth";

  # One argument of ExecStart=, quoted for systemd: double quotes with C escapes (JSON is a
  # subset), and `%`/`$` doubled so a user's argument is never read as a specifier or variable.
  # The same rule as nixpkgs' utils.escapeSystemdExecArg.
  escapeSystemdArg = arg: replaceStrings [ "%" "$" ] [ "%%" "$$" ] (toJSON (toString arg));
  escapeSystemdArgs = args: concatStringsSep " " (map escapeSystemdArg args);
  # One Environment= assignment (home-manager writes the unit file itself): quoted, `%`
  # doubled; systemd does not expand `$` there.
  environmentLine = name: value: replaceStrings [ "%" ] [ "%%" ] (toJSON "${name}=${value}");

  # --- settings -------------------------------------------------------------------------------

  # null is "not declared" (the typed keys default to null): such keys are left out, so the
  # launcher leaves them to upstream's default or the user's own edit.
  dropNulls = filterAttrs (_: v: v != null);

  # The launcher's settings file, schema version 1 (README "Declarative settings, presets and
  # locks"; src/settings/schema.rs refuses unknown fields, so only these fields are written).
  settingsFile =
    {
      source,
      presets,
      settings,
      lockedSettings,
      uiSettings,
      lockedUiSettings,
      # The package's JSON Schema of this format, so an editor opening the file validates it.
      schema ? null,
    }:
    (if schema == null then { } else { "$schema" = schema; })
    // {
      version = 1;
      inherit source presets;
      config = {
        defaults = dropNulls settings;
        locked = dropNulls lockedSettings;
      };
      ui_config = {
        defaults = dropNulls uiSettings;
        locked = dropNulls lockedUiSettings;
      };
    };

  # --- models ---------------------------------------------------------------------------------

  # The launcher's rule for a folder below <data>/models (src/models/paths.rs validate_folder):
  # relative, plain components, none hidden.
  validFolder =
    folder:
    folder != ""
    && !(hasPrefix "/" folder)
    && match ".*[\\\\].*" folder == null
    && builtins.all (c: c != "" && !(hasPrefix "." c)) (components folder);
  # validate_file_name: one plain, visible name.
  validFileName = name: name != "" && !(hasPrefix "." name) && match ".*[/\\\\].*" name == null;

  # A declared model is a catalog name, `{ url, sha256, folder, name }` (downloaded by the
  # launcher into the data dir, checked against sha256) or `{ path, folder, name }` (a file
  # already in the Nix store, linked into place: nothing to download).
  # `catalog` maps catalog names to their folder (models/catalog.json).
  models =
    { declared, catalog }:
    let
      kind =
        m:
        if isString m then
          "catalog"
        else if m.url != null && m.path == null then
          "url"
        else if m.path != null && m.url == null then
          "path"
        else
          "invalid";
      nameOf =
        m:
        if m.name != null then
          m.name
        else if m.path != null then
          baseNameOf m.path
        else
          null;
      folderOf = m: if isString m then catalog.${m} or null else m.folder;
      describe = m: if isString m then "'${m}'" else "{ folder = \"${m.folder}\"; ... }";

      problemsOf =
        m:
        let
          k = kind m;
        in
        if k == "catalog" then
          optional (!(catalog ? ${m}))
            "${option}.models: '${m}' is not in the catalog (models/catalog.json); known names: ${concatStringsSep ", " (attrNames catalog)}"
        else if k == "invalid" then
          [
            "${option}.models: ${describe m} needs exactly one of `url` (downloaded) or `path` (a file in the Nix store)"
          ]
        else
          optional (!(validFolder m.folder))
            "${option}.models: folder '${m.folder}' must be a relative path of plain names below models/, like \"Stable-diffusion\" or \"Lora/sdxl\""
          ++
            optional (k == "url" && (m.sha256 == null || match "[0-9a-fA-F]{64}" m.sha256 == null))
              "${option}.models: ${m.url} needs `sha256`, 64 hex digits (the launcher checks the download against it)"
          ++ optional (
            k == "path" && m.sha256 != null
          ) "${option}.models: ${toString m.path} is a store path: its hash is Nix's, leave `sha256` out"
          ++ optional (
            nameOf m != null && !(validFileName (nameOf m))
          ) "${option}.models: file name '${nameOf m}' must be one visible file name";

      links = map (m: {
        folder = m.folder;
        name = nameOf m;
        source = toString m.path;
        target = "${m.folder}/${nameOf m}";
      }) (filter (m: kind m == "path") declared);
      targets = map (l: l.target) links;
      duplicates = unique (filter (t: length (filter (x: x == t) targets) > 1) targets);
    in
    {
      # The JSON list `models ensure --from FILE` reads (src/models/mod.rs `Declared`).
      downloads = concatMap (
        m:
        let
          k = kind m;
        in
        if k == "catalog" then
          [ m ]
        else if k == "url" then
          [
            (
              {
                inherit (m) url sha256 folder;
              }
              // optionalAttrs (m.name != null) { inherit (m) name; }
            )
          ]
        else
          [ ]
      ) declared;
      inherit links;
      # The top-level folders that hold declared models: what instances get read-only.
      folders = unique (
        concatMap (
          m:
          let
            f = folderOf m;
          in
          optional (f != null && validFolder f) (head (components f))
        ) declared
      );
      problems =
        concatMap problemsOf declared
        ++ map (t: "${option}.models: two models are linked to models/${t}") duplicates;
    };

  # --- units ----------------------------------------------------------------------------------

  # Without instances: one unit, stable-diffusion-webui, on cfg's port and data dir. With
  # instances: one unit per instance and none on cfg.port; each has its own data dir and sees
  # the shared models dir's declared folders read-only.
  units =
    cfg:
    let
      common = {
        listenAddress = cfg.listenAddress;
        extraArgs = cfg.extraArgs;
        environment = cfg.environment;
      };
    in
    if cfg.instances == { } then
      [
        (
          common
          // {
            unit = unitName;
            instance = null;
            dataDir = cfg.dataDir;
            port = cfg.port;
            devices = [ ];
            sharedModels = false;
          }
        )
      ]
    else
      mapAttrsToList (
        name: i:
        common
        // {
          unit = instanceUnitName name;
          instance = name;
          dataDir = if i.dataDir != null then i.dataDir else "${cfg.dataDir}/instances/${name}";
          port = i.port;
          listenAddress = if i.listenAddress != null then i.listenAddress else cfg.listenAddress;
          devices = map toString i.devices;
          extraArgs = cfg.extraArgs ++ i.extraArgs;
          environment = cfg.environment // i.environment;
          sharedModels = true;
        }
      ) cfg.instances;

  # The launcher's command line. Launcher options first (src/cli.rs pulls them out anywhere),
  # then the user's arguments, which go to upstream unchanged.
  # `auth`: null, "credential" (the NixOS unit's LoadCredential=, read at %d) or a file path.
  execStart =
    {
      exe,
      unit,
      cacheDir,
      settingsFile,
      auth,
    }:
    escapeSystemdArgs [
      exe
      "--data-dir"
      unit.dataDir
      "--cache-dir"
      cacheDir
      "--settings-file"
      settingsFile
      "--server-name"
      unit.listenAddress
      "--port"
      (toString unit.port)
    ]
    + (
      if auth == null then
        ""
      else if auth == "credential" then
        # Not escaped: %d must reach systemd as the specifier.
        " --gradio-auth-path %d/${authCredential}"
      else
        " --gradio-auth-path ${escapeSystemdArg auth}"
    )
    + (if unit.extraArgs == [ ] then "" else " " + escapeSystemdArgs unit.extraArgs);

  # The models unit: `models ensure` into the shared data dir.
  modelsExecStart =
    {
      exe,
      dataDir,
      cacheDir,
      modelsFile,
    }:
    escapeSystemdArgs [
      exe
      "models"
      "ensure"
      "--from"
      modelsFile
      "--data-dir"
      dataDir
      "--cache-dir"
      cacheDir
    ];

  environment =
    {
      unit,
      cacheDir,
      acceleration,
    }:
    {
      HOME = unit.dataDir;
      XDG_CACHE_HOME = cacheDir;
      # The driver's PTX cache (default ~/.nv/ComputeCache) in the cache directory. The launcher
      # itself puts Triton's and inductor's caches there and line-buffers upstream's output.
      CUDA_CACHE_PATH = "${cacheDir}/nv";
    }
    // optionalAttrs (acceleration == "cuda" && unit.devices != [ ]) {
      # CUDA's default order is fastest first; PCI bus order makes the numbers nvidia-smi's.
      CUDA_DEVICE_ORDER = "PCI_BUS_ID";
      CUDA_VISIBLE_DEVICES = concatStringsSep "," unit.devices;
    }
    // optionalAttrs (acceleration == "rocm" && unit.devices != [ ]) {
      HIP_VISIBLE_DEVICES = concatStringsSep "," unit.devices;
    }
    // unit.environment;

  # A data dir under /var/lib is the unit's StateDirectory (systemd creates it, owned by the
  # user, and it is the only writable place under ProtectSystem=strict); anywhere else it is
  # created by tmpfiles and bind-mounted into the unit (a bind, not ReadWritePaths, so that it is
  # there under ProtectHome's empty /home too).
  dataDirectory =
    path:
    if hasPrefix "/var/lib/" path then
      { StateDirectory = removePrefix "/var/lib/" path; }
    else
      { BindPaths = [ path ]; };

  # The shared models dir's declared folders, read-only over the instance's own models/<folder>.
  modelBinds =
    {
      unit,
      modelsDir,
      folders,
    }:
    optionals unit.sharedModels (map (f: "${modelsDir}/${f}:${unit.dataDir}/models/${f}") folders);

  # Directories tmpfiles creates before any unit starts, owned by the service user: a bind
  # mount's target that does not exist would be created by systemd as root, and upstream could
  # then not create its other folders (ESRGAN, Lora, ...) next to it.
  directories =
    {
      cfg,
      units,
      folders,
    }:
    let
      modelsDir = "${cfg.dataDir}/models";
    in
    unique (
      [
        cfg.dataDir
        modelsDir
      ]
      ++ map (f: "${modelsDir}/${f}") folders
      ++ concatMap (
        u:
        optionals u.sharedModels (
          [
            u.dataDir
            "${u.dataDir}/models"
          ]
          ++ map (f: "${u.dataDir}/models/${f}") folders
        )
      ) units
    );

  # --- sandbox --------------------------------------------------------------------------------

  # GPU device nodes by major name (/proc/devices), as nixpkgs' ollama module lists them.
  deviceAllow = {
    cuda = [
      "char-nvidiactl"
      "char-nvidia-caps"
      "char-nvidia-frontend"
      "char-nvidia-uvm"
    ];
    rocm = [
      "char-drm"
      "char-kfd"
    ];
  };

  # The systemd sandbox of a webui unit. Options that must stay off for torch say why.
  hardening =
    {
      acceleration,
      ports,
    }:
    let
      gpu = acceleration != null;
      lowPort = builtins.any (p: p < 1024) ports;
    in
    {
      ProtectSystem = "strict";
      # "tmpfs", not true: an empty /home in which a data dir under /home (BindPaths) can still
      # be mounted; `true` makes /home inaccessible, binds below it included.
      ProtectHome = "tmpfs";
      PrivateTmp = true;
      NoNewPrivileges = true;
      # Off with a GPU: a private /dev has no /dev/nvidia*, /dev/dri or /dev/kfd. DeviceAllow
      # below still limits the unit to the GPU's nodes. On a CPU nothing beyond /dev/null & co.
      PrivateDevices = !gpu;
      DevicePolicy = "closed";
      DeviceAllow = if gpu then deviceAllow.${acceleration} else [ ];
      # Off: torch generates machine code at run time (oneDNN's JIT on CPUs, the CUDA driver's
      # PTX JIT, Triton) into memory that is written and then made executable.
      MemoryDenyWriteExecute = false;
      # "all": torch and psutil read /proc/cpuinfo and /proc/meminfo, which "pid" hides.
      ProcSubset = "all";
      ProtectProc = "invisible";
      # A port below 1024 needs CAP_NET_BIND_SERVICE, which a private user namespace would not
      # give on the host's network.
      PrivateUsers = !lowPort;
      CapabilityBoundingSet = if lowPort then [ "CAP_NET_BIND_SERVICE" ] else [ "" ];
      AmbientCapabilities = if lowPort then [ "CAP_NET_BIND_SERVICE" ] else [ ];
      LockPersonality = true;
      ProtectClock = true;
      ProtectControlGroups = true;
      ProtectHostname = true;
      ProtectKernelLogs = true;
      ProtectKernelModules = true;
      ProtectKernelTunables = true;
      RemoveIPC = true;
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      # AF_UNIX: sd_notify; AF_INET/AF_INET6: the proxy, gradio on loopback, downloads.
      RestrictAddressFamilies = [
        "AF_UNIX"
        "AF_INET"
        "AF_INET6"
      ];
      SystemCallArchitectures = "native";
      SystemCallFilter = [
        "@system-service"
        "@resources"
        "~@privileged"
      ];
      # A filtered call fails with EPERM instead of killing the process: a library probing
      # for a feature gets an error it handles, not a SIGSYS in the middle of a generation.
      SystemCallErrorNumber = "EPERM";
      # ROCm opens /dev/kfd and /dev/dri/renderD*, which belong to these groups.
      SupplementaryGroups = optionals (acceleration == "rocm") [
        "render"
        "video"
      ];
      UMask = "0027";
    };

  # --- nginx ----------------------------------------------------------------------------------

  # How nginx reaches a unit: a wildcard listen address is reached on loopback; IPv6 in [].
  connectAddress =
    unit:
    let
      host =
        if unit.listenAddress == "0.0.0.0" then
          "127.0.0.1"
        else if
          elem unit.listenAddress [
            "::"
            "[::]"
          ]
        then
          "[::1]"
        else if match ".*:.*" unit.listenAddress != null && !(hasPrefix "[" unit.listenAddress) then
          "[${unit.listenAddress}]"
        else
          unit.listenAddress;
    in
    "${host}:${toString unit.port}";

  # Two upstream groups over the same units: the UI needs every request of a browser session
  # on the instance that holds its gradio state (ip_hash; open-source nginx has no `sticky`),
  # the API is stateless, so each request goes to the instance with the fewest open requests
  # (a txt2img holds its connection for the whole generation).
  nginx =
    { units }:
    let
      servers = listToAttrs (
        map (u: {
          name = connectAddress u;
          value = { };
        }) units
      );
    in
    {
      upstreams = {
        stable-diffusion-webui-ui = {
          inherit servers;
          extraConfig = "ip_hash;";
        };
        stable-diffusion-webui-api = {
          inherit servers;
          extraConfig = "least_conn;";
        };
      };
      locations = {
        "/" = {
          proxyPass = "http://stable-diffusion-webui-ui";
          # gradio's queue runs over a websocket (/queue/join).
          proxyWebsockets = true;
        };
        "/sdapi/" = {
          proxyPass = "http://stable-diffusion-webui-api";
        };
      };
    };

  # --- checks ---------------------------------------------------------------------------------

  # Impossible combinations, as messages (empty: fine). `system` is the host's system double;
  # `packageVariant` what the package says its torch is (passthru.variant), or null.
  problems =
    {
      cfg,
      system,
      packageVariant,
      storeDir,
      modelProblems,
    }:
    let
      ports = map (u: u.port) (units cfg);
      duplicatePorts = unique (filter (p: length (filter (x: x == p) ports) > 1) ports);
      badNames = filter (n: match "[A-Za-z0-9_-]+" n == null) (attrNames cfg.instances);
    in
    optional (cfg.acceleration == "cuda" && system != "x86_64-linux")
      "${option}.acceleration = \"cuda\" needs x86_64-linux (this flake's CUDA torch is PyTorch's x86_64 wheel); this system is ${system}. Use acceleration = null for the CPU."
    ++
      optional (cfg.acceleration == "rocm" && packageVariant != "rocm")
        "${option}.acceleration = \"rocm\": this flake has no ROCm torch yet (nixpkgs' torchWithRocm is a source build the package does not offer). Set ${option}.package to a package whose passthru.variant is \"rocm\", or use acceleration = null for the CPU."
    ++
      optional (cfg.cudaCapabilities != null && cfg.acceleration != "cuda")
        "${option}.cudaCapabilities is set but acceleration is ${
          if cfg.acceleration == null then "null (CPU)" else "\"${cfg.acceleration}\""
        }; capabilities only apply to acceleration = \"cuda\"."
    ++
      optional (cfg.acceleration == null && packageVariant == "cuda")
        "${option}.package is a CUDA build but acceleration = null: the unit would get no GPU device. Set acceleration = \"cuda\", or use the cpu package."
    ++ optional (
      !(hasPrefix "/" cfg.dataDir)
    ) "${option}.dataDir must be an absolute path, not '${cfg.dataDir}'."
    ++
      optional (cfg.authFile != null && hasPrefix "${storeDir}/" cfg.authFile)
        "${option}.authFile is in the Nix store (${cfg.authFile}), which every user can read. Give the path of a file outside the store, as a string."
    ++ optional (
      cfg.authFile != null && !(hasPrefix "/" cfg.authFile)
    ) "${option}.authFile must be an absolute path, not '${cfg.authFile}'."
    ++ map (
      n:
      "${option}.instances.${n}: instance names are used in unit names; use letters, digits, '-' and '_'."
    ) badNames
    ++ map (
      p: "${option}: port ${toString p} is used twice (each instance needs its own port)."
    ) duplicatePorts
    ++ concatMap (
      u:
      optional (u.devices != [ ] && cfg.acceleration == null)
        "${option}.instances.${u.instance}.devices is set but acceleration = null: there is no GPU to choose."
    ) (units cfg)
    ++ modelProblems;
}
