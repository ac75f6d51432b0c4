# Store-backed models: one fixed-output `fetchurl` per entry of models/catalog.json, for those
# who prefer models in the Nix store to the launcher's downloads into the data dir. Exposed by
# nix/models-outputs.nix as `legacyPackages.<system>.models`:
#
#   models.<name>                 the file, e.g. models.sd15 (/nix/store/<hash>-v1-5-pruned-emaonly.safetensors)
#   models.dir [ "sd15" ... ]     a models directory (linkFarm): Stable-diffusion/v1-5-pruned-emaonly.safetensors -> store
#   models.declared [ "sd15" ]    entries for `stable-diffusion-webui models ensure --from FILE`
#                                 (pkgs.writeText "models.json" (builtins.toJSON ...)): symlinked into
#                                 <data>/models/<folder>/, never copied, trusted without re-hashing
#
# The sha256 is the catalog's (hex; fetchurl accepts it), so Nix checks every byte once, when it
# builds or substitutes the path. `hf:` URLs resolve against `hfEndpoint` (a mirror, like the
# launcher's HF_ENDPOINT). Gated Hugging Face files need credentials fetchurl does not have: use
# `models pull` for those.
#
# Builtins only apart from the fetchurl and linkFarm passed in, so .ci/nix-check.sh evaluates it
# with stand-ins where nixpkgs cannot be fetched:
#   nix-instantiate --eval --strict --json nix/models.nix -A problems    # [] when all is well
{
  fetchurl ? (
    args: args // { outPath = "/nix/store/00000000000000000000000000000000-${args.name}"; }
  ),
  linkFarm ? (name: entries: { inherit name entries; }),
  catalogFile ? ../models/catalog.json,
  hfEndpoint ? "https://huggingface.co",
}:
let
  catalog = builtins.fromJSON (builtins.readFile catalogFile);

  # hf:ORG/REPO/FILE or hf:ORG/REPO@REVISION/FILE, as the launcher reads them (reference.rs).
  resolve =
    url:
    let
      hf = builtins.match "hf:([^/]+)/([^/@]+)(@([^/]+))?/(.+)" url;
      revision = if builtins.elemAt hf 3 == null then "main" else builtins.elemAt hf 3;
    in
    if hf == null then
      url
    else
      "${hfEndpoint}/${builtins.elemAt hf 0}/${builtins.elemAt hf 1}/resolve/${revision}/${builtins.elemAt hf 4}";

  # Entries without a published hash cannot be fixed-output paths.
  pinned = builtins.filter (e: e.sha256 or null != null) catalog.models;

  models = builtins.listToAttrs (
    map (e: {
      inherit (e) name;
      value = fetchurl {
        # The store path ends in upstream's file name (`models.declared` uses it as the link's).
        name = e.file;
        urls = map resolve e.urls;
        inherit (e) sha256;
        meta = {
          description = e.title;
          license = e.license;
        };
      };
    }) pinned
  );

  byName = builtins.listToAttrs (
    map (e: {
      inherit (e) name;
      value = e;
    }) pinned
  );

  entry =
    name:
    byName.${name}
      or (throw "models: `${name}` is not a catalog entry with a sha256 (models/catalog.json); known: ${builtins.concatStringsSep ", " (builtins.attrNames byName)}");

  helpers = {
    dir =
      names:
      linkFarm "stable-diffusion-webui-models" (
        map (name: {
          name = "${(entry name).folder}/${(entry name).file}";
          path = models.${name};
        }) names
      );
    declared =
      names:
      map (
        name:
        let
          e = entry name;
        in
        {
          path = "${models.${name}}";
          inherit (e) folder sha256;
          name = e.file;
        }
      ) names;
  };

  problems =
    (if catalog.version == 1 then [ ] else [ "catalog version ${toString catalog.version}" ])
    ++ builtins.concatMap (
      name:
      let
        e = byName.${name};
        f = models.${name};
      in
      (if builtins.match "[0-9a-f]{64}" f.sha256 != null then [ ] else [ "${name}: sha256" ])
      ++ (if f.name == e.file then [ ] else [ "${name}: store name" ])
      ++ builtins.concatMap (
        u: if builtins.match "https?://[^/]+/.+" u != null then [ ] else [ "${name}: url ${u}" ]
      ) f.urls
      ++ (if builtins.hasAttr name helpers then [ "${name}: clashes with a helper" ] else [ ])
    ) (builtins.attrNames byName)
    ++ (
      if builtins.length pinned == builtins.length catalog.models then
        [ ]
      else
        [ "entries without sha256" ]
    );
in
{
  inherit models problems;
  inherit (helpers) dir declared;
  # The attribute set legacyPackages.<system>.models exposes.
  attrs = models // helpers;
}
