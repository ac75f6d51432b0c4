# nix/python-versions.json (the version manifest) against the flake's own files, so the two cannot
# drift. Pure: with no arguments it needs builtins only (`.ci/nix-check.sh` runs
#   nix-instantiate --eval --strict --json nix/python-versions-check.nix -A problems
# without nixpkgs); checks.python-versions passes nixpkgs' lib and the real package sets, which
# adds the comparison with the pinned nixpkgs' versions.
#
# Without nixpkgs:
#   - every package in python-packages.nix's `requirements` is in the manifest, and every
#     manifest entry of role "requirement" is in `requirements`;
#   - every wheel the overlay builds is in the manifest as source "override" with the overlay's
#     version, every "override" entry is built by the overlay, and every package an overlay
#     wheel depends on is in the manifest (the overlay is evaluated with the manifest's nixpkgs
#     versions, so the starlette >= 1.0 switch is decided as it would be);
#   - the manifest's interpreter attribute is the one packages.nix uses.
# With `python` and `basePython` (nix flake check), `actual` holds the pin's versions: each
# entry's python.pkgs.<attr>.version, basePython.pkgs.<attr>.version where the entry has a
# `nixpkgsVersion`, and python.version. checks.python-versions (nix/python-versions.nix) hands it
# to nix/update_python_versions.py, which prints the full diff against the manifest.
{
  # nixpkgs' lib; a builtins-only stand-in when null.
  lib ? null,
  # The flake's interpreter with the overlay applied (mkWebui's `python`), and the same interpreter
  # without it (pkgs.python313). Both null: the nixpkgs comparison is skipped.
  python ? null,
  basePython ? null,
}:
let
  manifest = builtins.fromJSON (builtins.readFile ./python-versions.json);
  packagesFile = builtins.readFile ./python-packages.nix;

  stubLib = {
    assertOneOf =
      name: value: list:
      builtins.elem value list || throw "${name} must be one of ${builtins.toJSON list}";
    versionAtLeast = v: w: builtins.compareVersions v w >= 0;
    optionals = cond: list: if cond then list else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    elem = builtins.elem;
    remove = e: builtins.filter (x: x != e);
    genAttrs =
      names: f:
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = f n;
        }) names
      );
  };
  l = if lib == null then stubLib else lib;

  webuiPython = import ./python-packages.nix {
    lib = l;
    fetchurl = args: args;
    torchVariant = "cpu";
  };

  names = builtins.attrNames manifest.packages;
  entry = name: manifest.packages.${name};
  versionOf = name: (entry name).version;

  # Every identifier in python-packages.nix, so that `with ps; [ ... ]` and `with self; [ ... ]`
  # evaluate even for a package the manifest lacks (which is then reported, not an eval error).
  identifiers = map builtins.head (
    builtins.filter builtins.isList (builtins.split "([A-Za-z_][A-Za-z0-9_'-]*)" packagesFile)
  );
  stub = name: {
    pname = name;
    __stub = true;
    # overlay entries that patch a nixpkgs package (clip) stay that package: not a wheel
    overridePythonAttrs = f: stub name // f (stub name);
    version =
      if manifest.packages ? ${name} then (entry name).nixpkgsVersion or (versionOf name) else "0";
  };
  stubs = builtins.listToAttrs (
    map (name: {
      inherit name;
      value = stub name;
    }) (identifiers ++ names)
  );

  # requirements: evaluated against the stub set. A value that is not a package (a string) means
  # a name resolved lexically instead of through `with ps;` (e.g. the file's own `torch` argument).
  pname = p: if builtins.isAttrs p then p.pname else "<not a package: ${builtins.toJSON p}>";
  requirements = map pname (webuiPython.requirements stubs);

  # The overlay, evaluated over stub packages that carry the manifest's nixpkgs versions.
  super = stubs;
  self =
    stubs
    // {
      buildPythonPackage = args: args // { __wheel = true; };
      python.pythonVersion = builtins.concatStringsSep "." (
        builtins.genList (i: builtins.elemAt (builtins.splitVersion manifest.python.version) i) 2
      );
    }
    // overlaid;
  overlaid = webuiPython.overlay self super;
  wheels = builtins.filter (n: overlaid.${n}.__wheel or false) (builtins.attrNames overlaid);
  overrides = builtins.filter (n: (entry n).source == "override") names;

  problem = cond: msg: if cond then [ ] else [ msg ];

  pureProblems =
    builtins.concatMap (
      r:
      problem (
        manifest.packages ? ${r}
      ) "requirement ${r} (nix/python-packages.nix) is not in nix/python-versions.json"
    ) requirements
    ++ builtins.concatMap (
      n:
      problem (
        (entry n).role != "requirement" || builtins.elem n requirements
      ) "${n}: role \"requirement\" in the manifest but not in python-packages.nix's requirements"
    ) names
    ++ builtins.concatMap (
      w:
      problem (manifest.packages ? ${w}) "overlay wheel ${w} is not in the manifest"
      ++ problem (
        !(manifest.packages ? ${w}) || (entry w).source == "override"
      ) "${w}: the overlay builds it, the manifest says source \"${(entry w).source or ""}\""
      ++ problem (
        !(manifest.packages ? ${w}) || versionOf w == overlaid.${w}.version
      ) "${w}: overlay ${overlaid.${w}.version}, manifest ${(entry w).version or ""}"
      ++ builtins.concatMap (
        d:
        problem (
          manifest.packages ? ${pname d}
        ) "${pname d} (a dependency of the overlay's ${w}) is not in the manifest"
      ) (overlaid.${w}.dependencies or [ ])
    ) wheels
    ++ builtins.concatMap (
      o:
      problem (builtins.elem o wheels) "${o}: source \"override\" in the manifest, but the overlay does not build it"
    ) overrides
    ++ problem (
      builtins.match ".*pkgs\\.${manifest.python.attr}\\.override.*" (builtins.readFile ./packages.nix)
      != null
    ) "nix/packages.nix does not use ${manifest.python.attr} (the manifest's python.attr)";

  # nix flake check: the real versions of the pin. An attribute that is missing, or that throws
  # (a removed package's alias), reads as null rather than aborting the evaluation.
  versionIn =
    set: n:
    let
      tried = builtins.tryEval (if set ? ${n} then set.${n}.version or null else null);
    in
    if tried.success then tried.value else null;
  actual =
    if python == null || basePython == null then
      null
    else
      {
        python = python.version;
        packages = builtins.listToAttrs (
          map (n: {
            name = n;
            value = {
              version = versionIn python.pkgs n;
            }
            // (if (entry n) ? nixpkgsVersion then { nixpkgsVersion = versionIn basePython.pkgs n; } else { });
          }) names
        );
      };
in
{
  # What the manifest must say about this flake's own files (pure).
  problems = pureProblems;
  # The pin's versions, for nix/update_python_versions.py (null without python/basePython).
  inherit actual;
  inherit requirements wheels;
  packages = builtins.length names;
}
