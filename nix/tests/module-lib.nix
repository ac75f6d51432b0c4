# Expected outputs of nix/module/lib.nix, the NixOS / home-manager modules' pure logic.
# Evaluates to the list of failures: [] when every case holds.
#
#   nix-instantiate --eval --strict --json nix/tests/module-lib.nix          # the stub lib (CI)
#   nix-instantiate --eval --strict --json nix/tests/module-lib.nix \
#     --arg lib 'import <nixpkgs/lib>'                                       # nixpkgs' lib
{
  lib ? import ./module-lib-stub.nix,
}:
let
  m = import ../module/lib.nix { inherit lib; };
  inherit (builtins)
    all
    any
    concatMap
    length
    match
    toJSON
    ;

  # One case: a name, what lib.nix gives, what it must give.
  eq =
    name: got: expected:
    if got == expected then [ ] else [ "${name}: expected ${toJSON expected}, got ${toJSON got}" ];
  # Every pattern matches one of the messages, and there are exactly that many messages.
  messages =
    name: got: patterns:
    let
      matched = p: any (msg: match ".*${p}.*" msg != null) got;
    in
    (
      if length got == length patterns then
        [ ]
      else
        [
          "${name}: ${toString (length got)} messages, expected ${toString (length patterns)}: ${toJSON got}"
        ]
    )
    ++ concatMap (
      p: if matched p then [ ] else [ "${name}: no message matches '${p}' in ${toJSON got}" ]
    ) patterns;

  # What the module's options evaluate to when nothing is set.
  defaults = {
    dataDir = "/var/lib/stable-diffusion-webui";
    listenAddress = "127.0.0.1";
    port = 7860;
    extraArgs = [ ];
    environment = { };
    acceleration = null;
    cudaCapabilities = null;
    authFile = null;
    instances = { };
  };
  instance = {
    dataDir = null;
    listenAddress = null;
    devices = [ ];
    extraArgs = [ ];
    environment = { };
  };
  model = {
    url = null;
    sha256 = null;
    path = null;
    name = null;
  };
  sha = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa";
  catalog = {
    sd15 = "Stable-diffusion";
    sdxl-vae = "VAE";
    "4x-ultrasharp" = "ESRGAN";
  };

  multi = defaults // {
    acceleration = "cuda";
    extraArgs = [ "--api" ];
    environment = {
      A = "top";
      B = "top";
    };
    instances = {
      gpu0 = instance // {
        port = 7861;
        devices = [ 0 ];
      };
      gpu1 = instance // {
        port = 7862;
        devices = [
          1
          "2"
        ];
        dataDir = "/srv/sd-gpu1";
        listenAddress = "0.0.0.0";
        extraArgs = [ "--medvram" ];
        environment.B = "instance";
      };
    };
  };
  multiUnits = m.units multi;
  unitNamed = name: builtins.head (builtins.filter (u: u.unit == name) multiUnits);
  gpu0 = unitNamed "stable-diffusion-webui-gpu0";
  gpu1 = unitNamed "stable-diffusion-webui-gpu1";
  single = builtins.head (m.units defaults);

  declared = [
    "sd15"
    (
      model
      // {
        url = "https://example.org/lora.safetensors";
        sha256 = sha;
        folder = "Lora/sdxl";
      }
    )
    (
      model
      // {
        url = "hf:org/repo/vae.safetensors";
        sha256 = sha;
        folder = "VAE";
        name = "mine.safetensors";
      }
    )
    (
      model
      // {
        path = "/nix/store/00000000000000000000000000000000-tiny/tiny.safetensors";
        folder = "Stable-diffusion";
      }
    )
    (
      model
      // {
        path = "/nix/store/00000000000000000000000000000000-tiny/tiny.yaml";
        folder = "Stable-diffusion";
      }
    )
  ];
  goodModels = m.models { inherit declared catalog; };
  badModels = m.models {
    inherit catalog;
    declared = [
      "sd-15"
      (model // { folder = "VAE"; })
      (
        model
        // {
          url = "https://example.org/x";
          path = "/nix/store/x";
          folder = "VAE";
        }
      )
      (
        model
        // {
          url = "https://example.org/y.safetensors";
          folder = "../escape";
        }
      )
      (
        model
        // {
          url = "https://example.org/z.safetensors";
          sha256 = "abc";
          folder = "Lora/.hidden";
        }
      )
      (
        model
        // {
          path = "/nix/store/a/m.ckpt";
          folder = "ESRGAN";
        }
      )
      (
        model
        // {
          path = "/nix/store/b/m.ckpt";
          folder = "ESRGAN";
          sha256 = sha;
        }
      )
      (
        model
        // {
          path = "/nix/store/c/m.ckpt";
          folder = "ESRGAN";
          name = ".hidden";
        }
      )
    ];
  };

  problemsOf =
    cfg: args:
    m.problems (
      {
        inherit cfg;
        system = "x86_64-linux";
        packageVariant = null;
        storeDir = "/nix/store";
        modelProblems = [ ];
      }
      // args
    );

  cudaHardening = m.hardening {
    acceleration = "cuda";
    ports = [ 7861 ];
  };
  cpuHardening = m.hardening {
    acceleration = null;
    ports = [ 7860 ];
  };
  lowPortHardening = m.hardening {
    acceleration = null;
    ports = [
      8080
      443
    ];
  };
in
# --- systemd quoting
eq "escape plain" (m.escapeSystemdArg "--api") ''"--api"''
++ eq "escape space, percent, dollar, quote" (m.escapeSystemdArgs [
  "a b"
  "50%"
  "$HOME"
  ''say "hi"''
]) ''"a b" "50%%" "$$HOME" "say \"hi\""''

# --- settings file: schema v1, nulls (undeclared typed keys) left out
++
  eq "settings file"
    (m.settingsFile {
      source = "NixOS option services.stable-diffusion-webui.settings";
      presets = [
        "private"
        "sdxl"
      ];
      settings = {
        samples_format = "webp";
        sd_vae = null;
        CLIP_stop_at_last_layers = 2;
      };
      lockedSettings = {
        enable_pnginfo = false;
      };
      uiSettings = {
        "txt2img/Sampling steps/value" = 30;
      };
      lockedUiSettings = { };
    })
    {
      version = 1;
      source = "NixOS option services.stable-diffusion-webui.settings";
      presets = [
        "private"
        "sdxl"
      ];
      config = {
        defaults = {
          samples_format = "webp";
          CLIP_stop_at_last_layers = 2;
        };
        locked = {
          enable_pnginfo = false;
        };
      };
      ui_config = {
        defaults = {
          "txt2img/Sampling steps/value" = 30;
        };
        locked = { };
      };
    }
++
  eq "settings file names the package's schema"
    (m.settingsFile {
      source = "s";
      presets = [ ];
      settings = { };
      lockedSettings = { };
      uiSettings = { };
      lockedUiSettings = { };
      schema = "/nix/store/x-sd/share/stable-diffusion-webui/schema/settings-file.schema.json";
    })
    {
      "$schema" = "/nix/store/x-sd/share/stable-diffusion-webui/schema/settings-file.schema.json";
      version = 1;
      source = "s";
      presets = [ ];
      config = {
        defaults = { };
        locked = { };
      };
      ui_config = {
        defaults = { };
        locked = { };
      };
    }

# --- models
++ eq "models: downloads in `models ensure` form" goodModels.downloads [
  "sd15"
  {
    url = "https://example.org/lora.safetensors";
    sha256 = sha;
    folder = "Lora/sdxl";
  }
  {
    url = "hf:org/repo/vae.safetensors";
    sha256 = sha;
    folder = "VAE";
    name = "mine.safetensors";
  }
]
++ eq "models: store paths become links" goodModels.links [
  {
    folder = "Stable-diffusion";
    name = "tiny.safetensors";
    source = "/nix/store/00000000000000000000000000000000-tiny/tiny.safetensors";
    target = "Stable-diffusion/tiny.safetensors";
  }
  {
    folder = "Stable-diffusion";
    name = "tiny.yaml";
    source = "/nix/store/00000000000000000000000000000000-tiny/tiny.yaml";
    target = "Stable-diffusion/tiny.yaml";
  }
]
++ eq "models: top-level folders, catalog ones from the catalog" goodModels.folders [
  "Stable-diffusion"
  "Lora"
  "VAE"
]
++ eq "models: a good list has no problem" goodModels.problems [ ]
++ messages "models: every mistake named" badModels.problems [
  "'sd-15' is not in the catalog.*known names: 4x-ultrasharp, sd15, sdxl-vae"
  "VAE.*needs exactly one of `url`"
  "VAE.*needs exactly one of `url`"
  "folder '../escape' must be a relative path"
  "y.safetensors needs `sha256`"
  "folder 'Lora/.hidden' must be"
  "z.safetensors needs `sha256`"
  "/nix/store/b/m.ckpt is a store path: its hash is Nix's"
  "file name '.hidden' must be one visible file name"
  "two models are linked to models/ESRGAN/m.ckpt"
]
++
  eq "folder rule"
    (map m.validFolder [
      "Stable-diffusion"
      "Lora/sdxl"
      ""
      "/abs"
      "a/../b"
      "a//b"
      ".x"
      "a\\b"
    ])
    [
      true
      true
      false
      false
      false
      false
      false
      false
    ]

# --- units
++ eq "single unit" single {
  unit = "stable-diffusion-webui";
  instance = null;
  dataDir = "/var/lib/stable-diffusion-webui";
  port = 7860;
  listenAddress = "127.0.0.1";
  devices = [ ];
  extraArgs = [ ];
  environment = { };
  sharedModels = false;
}
++ eq "instances: one unit each, none on the top-level port" (map (u: u.unit) multiUnits) [
  "stable-diffusion-webui-gpu0"
  "stable-diffusion-webui-gpu1"
]
++ eq "instance gpu0" gpu0 {
  unit = "stable-diffusion-webui-gpu0";
  instance = "gpu0";
  dataDir = "/var/lib/stable-diffusion-webui/instances/gpu0";
  port = 7861;
  listenAddress = "127.0.0.1";
  devices = [ "0" ];
  extraArgs = [ "--api" ];
  environment = {
    A = "top";
    B = "top";
  };
  sharedModels = true;
}
++ eq "instance gpu1: its own dir, address, args after the shared ones, environment wins" gpu1 {
  unit = "stable-diffusion-webui-gpu1";
  instance = "gpu1";
  dataDir = "/srv/sd-gpu1";
  port = 7862;
  listenAddress = "0.0.0.0";
  devices = [
    "1"
    "2"
  ];
  extraArgs = [
    "--api"
    "--medvram"
  ];
  environment = {
    A = "top";
    B = "instance";
  };
  sharedModels = true;
}
++
  eq "ExecStart with the login credential and the user's arguments"
    (m.execStart {
      exe = "/nix/store/p/bin/stable-diffusion-webui";
      unit = gpu1;
      cacheDir = "/var/cache/stable-diffusion-webui";
      settingsFile = "/nix/store/s-settings.json";
      auth = "credential";
    })
    (
      ''"/nix/store/p/bin/stable-diffusion-webui" "--data-dir" "/srv/sd-gpu1" ''
      + ''"--cache-dir" "/var/cache/stable-diffusion-webui" "--settings-file" "/nix/store/s-settings.json" ''
      + ''"--server-name" "0.0.0.0" "--port" "7862" --gradio-auth-path %d/gradio-auth "--api" "--medvram"''
    )
++
  eq "ExecStart without login or arguments"
    (m.execStart {
      exe = "/x";
      unit = single;
      cacheDir = "/c";
      settingsFile = "/s";
      auth = null;
    })
    ''"/x" "--data-dir" "/var/lib/stable-diffusion-webui" "--cache-dir" "/c" "--settings-file" "/s" "--server-name" "127.0.0.1" "--port" "7860"''
++
  eq "ExecStart with a login file outside the store (home-manager)"
    (m.execStart {
      exe = "/x";
      unit = single;
      cacheDir = "/c";
      settingsFile = "/s";
      auth = "/home/me/100% secret";
    })
    ''"/x" "--data-dir" "/var/lib/stable-diffusion-webui" "--cache-dir" "/c" "--settings-file" "/s" "--server-name" "127.0.0.1" "--port" "7860" --gradio-auth-path "/home/me/100%% secret"''
++ eq "Environment= line" (m.environmentLine "NO_PROXY" "a b,50%$") ''"NO_PROXY=a b,50%%$"''
++ eq "models ExecStart" (m.modelsExecStart {
  exe = "/x";
  dataDir = "/d";
  cacheDir = "/c";
  modelsFile = "/m.json";
}) ''"/x" "models" "ensure" "--from" "/m.json" "--data-dir" "/d" "--cache-dir" "/c"''

# --- environment
++
  eq "environment: CUDA instance"
    (m.environment {
      unit = gpu1;
      cacheDir = "/c";
      acceleration = "cuda";
    })
    {
      HOME = "/srv/sd-gpu1";
      XDG_CACHE_HOME = "/c";
      CUDA_CACHE_PATH = "/c/nv";
      CUDA_DEVICE_ORDER = "PCI_BUS_ID";
      CUDA_VISIBLE_DEVICES = "1,2";
      A = "top";
      B = "instance";
    }
++
  eq "environment: ROCm instance chooses with HIP_VISIBLE_DEVICES"
    (
      let
        env = m.environment {
          unit = gpu0;
          cacheDir = "/c";
          acceleration = "rocm";
        };
      in
      [
        (env.HIP_VISIBLE_DEVICES or null)
        (env ? CUDA_VISIBLE_DEVICES)
      ]
    )
    [
      "0"
      false
    ]
++
  eq "environment: a single CPU unit chooses no device"
    (builtins.attrNames (
      m.environment {
        unit = single;
        cacheDir = "/c";
        acceleration = null;
      }
    ))
    [
      "CUDA_CACHE_PATH"
      "HOME"
      "XDG_CACHE_HOME"
    ]
++
  eq "environment: the user's value wins over the module's"
    (m.environment {
      unit = single // {
        environment.HOME = "/elsewhere";
      };
      cacheDir = "/c";
      acceleration = null;
    }).HOME
    "/elsewhere"

# --- directories, binds
++
  eq "data dir under /var/lib is a StateDirectory"
    (m.dataDirectory "/var/lib/stable-diffusion-webui/instances/gpu0")
    {
      StateDirectory = "stable-diffusion-webui/instances/gpu0";
    }
++ eq "data dir elsewhere is bound in" (m.dataDirectory "/srv/sd-gpu1") {
  BindPaths = [ "/srv/sd-gpu1" ];
}
++
  eq "instances see the declared folders read-only"
    (m.modelBinds {
      unit = gpu1;
      modelsDir = "/var/lib/stable-diffusion-webui/models";
      folders = [
        "Stable-diffusion"
        "Lora"
      ];
    })
    [
      "/var/lib/stable-diffusion-webui/models/Stable-diffusion:/srv/sd-gpu1/models/Stable-diffusion"
      "/var/lib/stable-diffusion-webui/models/Lora:/srv/sd-gpu1/models/Lora"
    ]
++ eq "a single unit writes its own models dir" (m.modelBinds {
  unit = single;
  modelsDir = "/var/lib/stable-diffusion-webui/models";
  folders = [ "Stable-diffusion" ];
}) [ ]
++
  eq "directories created before the units"
    (m.directories {
      cfg = multi;
      units = multiUnits;
      folders = [ "VAE" ];
    })
    [
      "/var/lib/stable-diffusion-webui"
      "/var/lib/stable-diffusion-webui/models"
      "/var/lib/stable-diffusion-webui/models/VAE"
      "/var/lib/stable-diffusion-webui/instances/gpu0"
      "/var/lib/stable-diffusion-webui/instances/gpu0/models"
      "/var/lib/stable-diffusion-webui/instances/gpu0/models/VAE"
      "/srv/sd-gpu1"
      "/srv/sd-gpu1/models"
      "/srv/sd-gpu1/models/VAE"
    ]

# --- sandbox
++
  eq "CPU: private /dev, no device"
    [
      cpuHardening.PrivateDevices
      cpuHardening.DeviceAllow
      cpuHardening.DevicePolicy
      cpuHardening.MemoryDenyWriteExecute
      cpuHardening.ProtectSystem
      cpuHardening.ProtectHome
      cpuHardening.PrivateUsers
      cpuHardening.CapabilityBoundingSet
      cpuHardening.SupplementaryGroups
    ]
    [
      true
      [ ]
      "closed"
      false
      "strict"
      "tmpfs"
      true
      [ "" ]
      [ ]
    ]
++
  eq "CUDA: /dev shared, only NVIDIA's nodes allowed"
    [
      cudaHardening.PrivateDevices
      cudaHardening.DeviceAllow
    ]
    [
      false
      [
        "char-nvidiactl"
        "char-nvidia-caps"
        "char-nvidia-frontend"
        "char-nvidia-uvm"
      ]
    ]
++
  eq "ROCm: its nodes and groups"
    (
      let
        h = m.hardening {
          acceleration = "rocm";
          ports = [ 7860 ];
        };
      in
      [
        h.DeviceAllow
        h.SupplementaryGroups
      ]
    )
    [
      [
        "char-drm"
        "char-kfd"
      ]
      [
        "render"
        "video"
      ]
    ]
++
  eq "a port below 1024 gets CAP_NET_BIND_SERVICE, on the host's user namespace"
    [
      lowPortHardening.CapabilityBoundingSet
      lowPortHardening.AmbientCapabilities
      lowPortHardening.PrivateUsers
    ]
    [
      [ "CAP_NET_BIND_SERVICE" ]
      [ "CAP_NET_BIND_SERVICE" ]
      false
    ]

# --- nginx
++
  eq "nginx upstreams: sticky UI, least-connections API, wildcard addresses on loopback"
    (m.nginx {
      units = multiUnits ++ [
        (
          single
          // {
            listenAddress = "::";
            port = 7863;
          }
        )
        (
          single
          // {
            listenAddress = "fd00::2";
            port = 7864;
          }
        )
      ];
    })
    {
      upstreams = {
        stable-diffusion-webui-ui = {
          servers = {
            "127.0.0.1:7861" = { };
            "127.0.0.1:7862" = { };
            "[::1]:7863" = { };
            "[fd00::2]:7864" = { };
          };
          extraConfig = "ip_hash;";
        };
        stable-diffusion-webui-api = {
          servers = {
            "127.0.0.1:7861" = { };
            "127.0.0.1:7862" = { };
            "[::1]:7863" = { };
            "[fd00::2]:7864" = { };
          };
          extraConfig = "least_conn;";
        };
      };
      locations = {
        "/" = {
          proxyPass = "http://stable-diffusion-webui-ui";
          proxyWebsockets = true;
        };
        "/sdapi/" = {
          proxyPass = "http://stable-diffusion-webui-api";
        };
      };
    }

# --- impossible combinations
++ eq "a good configuration has no problem" (problemsOf multi { }) [ ]
++ messages "CUDA on aarch64-linux" (problemsOf (defaults // { acceleration = "cuda"; }) {
  system = "aarch64-linux";
}) [ "acceleration = \"cuda\" needs x86_64-linux.*this system is aarch64-linux" ]
++
  messages "ROCm without a ROCm package" (problemsOf (defaults // { acceleration = "rocm"; }) { })
    [
      "no ROCm torch yet"
    ]
++ eq "ROCm with a ROCm package" (problemsOf (defaults // { acceleration = "rocm"; }) {
  packageVariant = "rocm";
}) [ ]
++
  messages "capabilities without CUDA, CUDA package on CPU"
    (problemsOf
      (
        defaults
        // {
          cudaCapabilities = [ "8.6" ];
        }
      )
      {
        packageVariant = "cuda";
      }
    )
    [
      "cudaCapabilities is set but acceleration is null"
      "package is a CUDA build but acceleration = null"
    ]
++
  messages "login file in the store, relative data dir"
    (problemsOf (
      defaults
      // {
        authFile = "/nix/store/abc-auth";
        dataDir = "var/lib/sd";
      }
    ) { })
    [
      "dataDir must be an absolute path"
      "authFile is in the Nix store"
    ]
++
  messages "instance names, ports, devices on a CPU"
    (problemsOf (
      defaults
      // {
        instances = {
          "gpu 0" = instance // {
            port = 7861;
            devices = [ 0 ];
          };
          b = instance // {
            port = 7861;
          };
        };
      }
    ) { })
    [
      "instances.gpu 0: instance names are used in unit names"
      "port 7861 is used twice"
      "instances.gpu 0.devices is set but acceleration = null"
    ]
++ eq "model problems are passed on" (problemsOf defaults { modelProblems = [ "x" ]; }) [ "x" ]
