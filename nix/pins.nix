# The pins, read from repositories/sources.json, and the pure checks on them.
#
# Builtins only (no nixpkgs), so .ci/nix-check.sh can evaluate it with a bare
# `nix-instantiate --eval` where nixpkgs cannot be fetched:
#   nix-instantiate --eval --strict nix/pins.nix -A problems     # [] when all is well
#
# sources.json is the single source of truth for every upstream revision and hash. The one
# revision that also lives elsewhere is the webui's: flake.lock pins the `webui` input (so
# `nix flake update webui` and `--override-input webui` work). `problems` compares the two, so a
# bump of one without the other fails `nix flake check` and CI instead of drifting.
{
  sourcesFile ? ../repositories/sources.json,
  lockFile ? ../flake.lock,
  patchesDir ? ../patches,
}:
let
  sources = builtins.fromJSON (builtins.readFile sourcesFile);
  lock = builtins.fromJSON (builtins.readFile lockFile);

  # { webui = {...}; "<dir under repositories/>" = {...}; } in one set; sources.json keeps them apart.
  entries = {
    webui = sources.webui;
  }
  // sources.repositories
  // (sources.extensions or { });

  patchesOf = name: entries.${name}.patches or [ ];
  listedPatches = builtins.concatLists (map patchesOf (builtins.attrNames entries));

  # Every *.patch under patches/, as "patches/<dir>/<file>".
  patchFilesIn =
    dir: prefix:
    let
      here = builtins.readDir dir;
      names = builtins.attrNames here;
    in
    builtins.concatLists (
      map (
        n:
        if here.${n} == "directory" then
          patchFilesIn (dir + "/${n}") "${prefix}/${n}"
        else if builtins.match ".*\\.patch" n != null then
          [ "${prefix}/${n}" ]
        else
          [ ]
      ) names
    );
  patchFiles = if builtins.pathExists patchesDir then patchFilesIn patchesDir "patches" else [ ];

  isSri = h: h != null && builtins.match "sha256-[A-Za-z0-9+/]{43}=" h != null;
  isRev = r: builtins.match "[0-9a-f]{40}" r != null;

  entryProblems =
    name:
    let
      e = entries.${name};
    in
    (if isRev e.rev then [ ] else [ "${name}: rev ${e.rev} is not a full commit id" ])
    ++ (if isSri (e.hash or null) then [ ] else [ "${name}: hash is not an SRI sha256" ])
    ++ map (p: "${name}: ${p} is not under patches/${name}/") (
      builtins.filter (p: builtins.match "patches/${name}/[^/]+\\.patch" p == null) (patchesOf name)
    );

  lockedWebui = lock.nodes.${lock.nodes.${lock.root}.inputs.webui}.locked;

  problems =
    builtins.concatLists (map entryProblems (builtins.attrNames entries))
    ++ map (p: "orphaned patch (not listed in sources.json): ${p}") (
      builtins.filter (p: !builtins.elem p listedPatches) patchFiles
    )
    ++ map (p: "listed patch is missing: ${p}") (
      builtins.filter (p: !builtins.elem p patchFiles) listedPatches
    )
    ++ (
      if lockedWebui.rev == sources.webui.rev then
        [ ]
      else
        [ "flake.lock pins webui ${lockedWebui.rev}, sources.json ${sources.webui.rev}" ]
    )
    ++ (
      if lockedWebui.narHash == sources.webui.hash then
        [ ]
      else
        [ "flake.lock has webui narHash ${lockedWebui.narHash}, sources.json ${sources.webui.hash}" ]
    )
    ++ (
      if lockedWebui.owner == sources.webui.owner && lockedWebui.repo == sources.webui.repo then
        [ ]
      else
        [
          "flake.lock's webui is ${lockedWebui.owner}/${lockedWebui.repo}, sources.json's ${sources.webui.owner}/${sources.webui.repo}"
        ]
    );
in
{
  inherit
    sources
    entries
    listedPatches
    patchFiles
    problems
    ;
  # Names of the trees placed under the webui's repositories/, in sources.json order-independent form.
  repositoryNames = builtins.attrNames sources.repositories;
  # The short revision, for store path names.
  webuiShortRev = builtins.substring 0 8 sources.webui.rev;
}
