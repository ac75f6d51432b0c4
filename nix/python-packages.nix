# The webui's Python packages: the interpreter and almost everything come from nixpkgs; this file
# adds what the pinned nixpkgs lacks or ships at a version the webui cannot use, picks the torch
# build for the variant, and lists what the environment holds.
#
# pydantic: webui pins fastapi 0.94.0, the last fastapi on pydantic 1. Forcing fastapi (and
# with it starlette and pydantic) back to that era would rebuild every package that depends on
# pydantic and drop the ones that need pydantic 2. Instead, patches/webui/0002 ports the webui's
# API models to pydantic 2 (a few lines), and the environment uses nixpkgs' pydantic 2 with a
# fastapi that supports it. gradio 3.41.2 accepts either pydantic.
#
# xformers: not included. nixpkgs' xformers is a source build (CUDA kernels for every
# capability: hours) against the source torch, not torch-bin, and no binary cache carries it
# for torch-bin. The webui runs without it (PyTorch's scaled-dot-product attention is the
# default); users who want it can add it with extraPythonPackages on a source-torch CUDA build.
{
  lib,
  fetchurl,
  # "cpu": nixpkgs' torch (a source build, CPU only, cached on cache.nixos.org).
  # "bin": nixpkgs' torch-bin / torchvision-bin (PyTorch's own wheels: CUDA 12.8 or 13.0 on
  #        x86_64-linux, CPU+MPS on aarch64-darwin).
  # "source": `sourceTorch`, nixpkgs' source torch and torchvision from an instance evaluated
  #        with config.cudaSupport and config.cudaCapabilities (nix/packages.nix): the CUDA build
  #        for a chosen set of GPU architectures.
  # Not called `torch`: a lexical `torch` would shadow the package in every `with ps;` and
  # `with self;` list below, which then held the string "cpu" instead of torch
  # (nix/python-versions-check.nix reports any such non-package value).
  torchVariant ? "cpu",
  # { torch, torchvision } for torchVariant "source".
  sourceTorch ? null,
  # major: the top-level cudaPackages_<major> (or null); torch-bin's CUDA libraries come from it.
  cudaPackagesFor ? (_: null),
}:
assert lib.assertOneOf "torchVariant" torchVariant [
  "cpu"
  "bin"
  "source"
];
assert torchVariant != "source" || sourceTorch != null;
let
  # Every package of the environment built on torch. With torch-bin they are all rebuilt
  # locally (no binary cache has them against torch-bin), and their test suites would run there:
  # accelerate's, timm's, open-clip-torch's and torchsde's are long (nixpkgs' files at Swarsel
  # 4aa6836a run pytestCheckHook), and they test nixpkgs' packaging of those libraries, which
  # Hydra already ran against the source torch. They skip them and keep their import checks.
  torchDependents = [
    "accelerate"
    "clean-fid"
    "clip"
    "facexlib"
    "kornia"
    "open-clip-torch"
    "pytorch-lightning"
    "resize-right"
    "spandrel"
    "timm"
    "torchdiffeq"
    "torchsde"
    "transformers"
  ];
  skipTestsOnTorchBin =
    name: package:
    if torchVariant == "bin" && lib.elem name torchDependents then
      package.overridePythonAttrs (_: {
        doCheck = false;
      })
    else
      package;

  # A py3-none-any wheel from PyPI: url is the exact file, hash is `nix hash file` of it
  # (repositories/README.md, "Python wheels", shows how each was computed).
  wheel =
    self:
    {
      pname,
      version,
      url,
      hash,
      dependencies ? [ ],
      description,
    }:
    self.buildPythonPackage {
      inherit pname version dependencies;
      format = "wheel";
      src = fetchurl { inherit url hash; };
      # These wheels' METADATA carries the 2023 pins of webui's environment (pillow<11,
      # websockets<12, numpy~=1.0, ...). nixpkgs ships newer releases; that they work together
      # is what checks.python-imports and the end-to-end check establish, not pip's resolver.
      dontCheckRuntimeDeps = true;
      meta = {
        inherit description;
        homepage = "https://pypi.org/project/${pname}/${version}/";
      };
    };
in
{
  overlay =
    self: super:
    let
      mkWheel = wheel self;
      # gradio 3.41.2 renders its pages with TemplateResponse(name, context), which starlette
      # 1.0 removed (every page answers 500). Below 1.0 nixpkgs' fastapi and starlette are kept
      # as they are; from 1.0 on, both are pinned to the last pair checked with gradio 3.41.2.
      starletteTooNew = lib.versionAtLeast super.starlette.version "1.0";
    in
    {
      torch =
        {
          cpu = super.torch;
          bin = self.torch-bin;
          source = sourceTorch.torch;
        }
        .${torchVariant};
      torchvision =
        {
          cpu = super.torchvision;
          bin = self.torchvision-bin;
          source = sourceTorch.torchvision;
        }
        .${torchVariant};

      # torch-bin's CUDA libraries: the CUDA package set its wheel was built for, read from
      # torch-bin itself. The wheel's "+cuNNN" tag names it on Linux (cu128: CUDA 12, the default
      # cudaPackages; cu130: CUDA 13); where torch-bin also declares meta.problems
      # `unsupported-cuda-version` (master after 26.05 branched off: cuda-bindings older than the
      # wheel wants; nixpkgs reads it on every platform, darwin included), the cuda-bindings version
      # its message asks for names it. torch-bin, torchvision-bin and cuda-bindings then take that
      # set, so the problem is solved rather than silenced. Neither hint: nixpkgs' defaults stay.
      # The attribute names must not depend on these values: the package set's callPackage forces
      # the final set, whose names would then depend on torch-bin itself (infinite recursion).
    }
    // lib.optionalAttrs (torchVariant == "bin") (
      let
        bin = super.torch-bin;
        url = builtins.tryEval (bin.src.url or "");
        wheelCuda = builtins.match ".*%2Bcu([0-9]+)[0-9]-.*" (if url.success then url.value else "");
        # Its problems as nixpkgs alone gives them: with nixpkgs' own cuda-bindings, not the one
        # chosen here (which is chosen from this).
        unchosen =
          if (lib.functionArgs bin.override) ? cuda-bindings && super ? cuda-bindings then
            bin.override { inherit (super) cuda-bindings; }
          else
            bin;
        problem = (unchosen.meta.problems or { }).unsupported-cuda-version.message or null;
        wantedCuda =
          if problem == null then null else builtins.match ".*cuda-bindings>=([0-9]+)[.].*" problem;
        major =
          if wheelCuda != null then
            builtins.head wheelCuda
          else if wantedCuda != null then
            builtins.head wantedCuda
          else
            null;
        cudaPackages = if major == null then null else cudaPackagesFor major;
        withCuda =
          package:
          if cudaPackages != null && (lib.functionArgs package.override) ? cudaPackages then
            package.override { inherit cudaPackages; }
          else
            package;
      in
      {
        torch-bin = withCuda bin;
        torchvision-bin = withCuda super.torchvision-bin;
      }
      // lib.optionalAttrs (super ? cuda-bindings) { cuda-bindings = withCuda super.cuda-bindings; }
    )
    // lib.genAttrs (lib.remove "clip" torchDependents) (name: skipTestsOnTorchBin name super.${name})
    // {
      # nixpkgs tracks gradio 6; webui is written against gradio 3.41.2 (its only supported version).
      gradio = mkWheel {
        pname = "gradio";
        version = "3.41.2";
        url = "https://files.pythonhosted.org/packages/df/e7/e0b548208ff5db6323ad974f094e9435adb0a377f35274196fb74adaf58a/gradio-3.41.2-py3-none-any.whl";
        hash = "sha256-6lx7KZYVbZ4Vh1BeL9mI7YT1/ylyXr/OZj7O5Icu3NM=";
        description = "Build machine learning web apps (the 3.41.2 release webui needs)";
        dependencies =
          with self;
          [
            aiofiles
            altair
            fastapi
            ffmpy
            gradio-client
            httpx
            huggingface-hub
            importlib-resources
            jinja2
            markupsafe
            matplotlib
            numpy
            orjson
            packaging
            pandas
            pillow
            pydantic
            pydub
            python-multipart
            pyyaml
            requests
            semantic-version
            # gradio 3.41 imports distutils, which Python 3.12 removed; setuptools provides it
            setuptools
            typing-extensions
            uvicorn
            websockets
          ]
          # pydub imports audioop, which Python 3.13 removed
          ++ lib.optionals (lib.versionAtLeast self.python.pythonVersion "3.13") [ audioop-lts ];
      };

      # gradio 3.41.2 requires exactly gradio-client 0.5.0; nixpkgs' follows gradio 6.
      gradio-client = mkWheel {
        pname = "gradio-client";
        version = "0.5.0";
        url = "https://files.pythonhosted.org/packages/fe/85/ec0323f39192c4bee04e8e06e64213aff816b9d1b61c3c8367e75b1c7e10/gradio_client-0.5.0-py3-none-any.whl";
        hash = "sha256-jge93Uwh92/SGIl3A9+AEsfpXcdONmDt3nisif5M8oQ=";
        description = "Python client for gradio apps (the release gradio 3.41.2 requires)";
        dependencies = with self; [
          fsspec
          httpx
          huggingface-hub
          packaging
          requests
          typing-extensions
          websockets
        ];
      };

      # Only when nixpkgs' starlette is 1.0 or later (see starletteTooNew): fastapi 0.115.14 is the
      # last fastapi on starlette < 0.47, checked with gradio 3.41.2 on Python 3.13.
      fastapi =
        if starletteTooNew then
          mkWheel {
            pname = "fastapi";
            version = "0.115.14";
            url = "https://files.pythonhosted.org/packages/53/50/b1222562c6d270fea83e9c9075b8e8600b8479150a18e4516a6138b980d1/fastapi-0.115.14-py3-none-any.whl";
            hash = "sha256-bAyL+UIL1Y9WXlhQNtlxhyRytPfT9sc7aY4Qz/3vs8o=";
            description = "FastAPI (pinned below starlette 1.0 for gradio 3.41.2)";
            dependencies = with self; [
              starlette
              pydantic
              typing-extensions
            ];
          }
        else
          super.fastapi;

      # Only when nixpkgs' starlette is 1.0 or later: 0.46.2 still has TemplateResponse(name, ctx).
      starlette =
        if starletteTooNew then
          mkWheel {
            pname = "starlette";
            version = "0.46.2";
            url = "https://files.pythonhosted.org/packages/8b/0c/9d30a4ebeb6db2b25a841afbb80f6ef9a854fc3b41be131d249a977b4959/starlette-0.46.2-py3-none-any.whl";
            hash = "sha256-WVYzzon4/6caAVyu00pbLcHAzbPw8fvR5pM5zyq+7DU=";
            description = "Starlette (the last 0.46 release, for gradio 3.41.2)";
            dependencies = with self; [ anyio ];
          }
        else
          super.starlette;

      # openai CLIP imports `packaging` through pkg_resources, which setuptools 82 removed: with
      # it, `import clip` (k-diffusion, at webui start) fails. Import packaging itself (a no-op
      # where nixpkgs has already fixed it). tests/nixpkgs-env mirrors this (pypiPatch).
      clip = skipTestsOnTorchBin "clip" (
        super.clip.overridePythonAttrs (old: {
          postPatch = (old.postPatch or "") + ''
            substituteInPlace clip/clip.py --replace-quiet \
              "from pkg_resources import packaging" "import packaging.version"
          '';
          dependencies = (old.dependencies or [ ]) ++ [ self.packaging ];
        })
      );

      # Not in nixpkgs; webui imports it for Token Merging (modules/sd_models.py).
      tomesd = mkWheel {
        pname = "tomesd";
        version = "0.1.3";
        url = "https://files.pythonhosted.org/packages/0c/02/367c67c8f510313f143a7818e92254a5f861c7d94c98ad6a08d25db52fee/tomesd-0.1.3-py3-none-any.whl";
        hash = "sha256-PVqghX/iwqqyU4kQUGAcoTqH2Nepm2dgucoIVqoMY1U=";
        description = "Token Merging for Stable Diffusion";
        dependencies = with self; [ torch ];
      };

      # Not in nixpkgs; webui loads the extra upscaler architectures from it. 0.2.0 is the release
      # for spandrel 0.4 (nixpkgs' spandrel); webui pins 0.1.1 for spandrel 0.3.4.
      spandrel-extra-arches = mkWheel {
        pname = "spandrel-extra-arches";
        version = "0.2.0";
        url = "https://files.pythonhosted.org/packages/c4/16/f0935e3a2a3ed362e2d5f357bdd7260b3bec279dd3d95940532a730883ea/spandrel_extra_arches-0.2.0-py3-none-any.whl";
        hash = "sha256-FS5Ku9EIRwp3txYDACnD5/xvYWAOx2kmnJSkbUoTC08=";
        description = "Extra (non-commercial) model architectures for spandrel";
        dependencies = with self; [
          einops
          numpy
          spandrel
          torch
          torchvision
          typing-extensions
        ];
      };

      # pillow-avif-plugin: nixpkgs 26.05 removed it (Pillow >= 11.3 does AVIF itself);
      # patches/webui/0004 makes the webui's import of it optional, so nothing is added here.
    };

  # The environment: what `import webui` and the webui's lazy imports need (from webui's
  # requirements_versions.txt and the five repositories, minus what moved into the patches).
  requirements =
    ps: with ps; [
      torch
      torchvision
      accelerate
      blendmodes
      clean-fid
      clip # openai CLIP (k-diffusion imports it)
      diskcache
      einops
      facexlib
      fastapi
      ftfy
      gitpython
      gradio
      gradio-client
      httpx
      inflection
      jsonmerge
      kornia
      lark
      numpy
      omegaconf
      open-clip-torch
      opencv4
      piexif
      pillow
      protobuf
      psutil
      pydantic
      pytorch-lightning
      pytz # modules/images.py imports it (pandas 3 no longer depends on it)
      regex
      resize-right
      safetensors
      scikit-image
      scipy
      setuptools # requirements_versions.txt lists it; gradio 3.41 needs its distutils
      spandrel
      spandrel-extra-arches
      starlette
      timm
      tomesd
      torchdiffeq
      torchsde
      transformers
      uvicorn
    ];

  # Top-level modules the webui imports (sys.modules after `import webui` on upstream's own
  # environment, third-party part, plus the lazily imported spandrel*/facexlib).
  # checks.python-imports imports each of them in the built environment.
  imports = [
    "PIL"
    "accelerate"
    "blendmodes"
    "cleanfid"
    "clip"
    "cv2"
    "diskcache"
    "einops"
    "facexlib"
    "fastapi"
    "ftfy"
    "git"
    "gradio"
    "gradio_client"
    "httpx"
    "inflection"
    "jsonmerge"
    "kornia"
    "lark"
    "numpy"
    "omegaconf"
    "open_clip"
    "piexif"
    "packaging" # autocrop.py (patches/webui/0006: setuptools 82 has no pkg_resources)
    "psutil"
    "pydantic"
    "pytorch_lightning"
    "pytz"
    "regex"
    "resize_right"
    "safetensors"
    "scipy"
    "skimage"
    "spandrel"
    "spandrel_extra_arches"
    "starlette"
    "timm"
    "tomesd"
    "torch"
    "torchdiffeq"
    "torchsde"
    "torchvision"
    "transformers"
    "uvicorn"
  ];
}
