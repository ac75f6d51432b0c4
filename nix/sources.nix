# The upstream tree: the webui and the five repositories it clones at start, fetched at the
# revisions pinned in repositories/sources.json, each with its patches/<name>/*.patch applied,
# assembled read-only as upstream lays it out (<webui>/repositories/<name>).
#
# The webui comes from the flake input `webui` (flake.lock); nix/pins.nix checks that it is the
# revision and hash sources.json pins. Everything else is fetched here from sources.json.
{
  lib,
  fetchFromGitHub,
  runCommand,
  gitMinimal,
  # The webui source; defaults to fetching the pinned revision (for use outside the flake).
  webuiSrc ? null,
}:
let
  pins = import ./pins.nix { };
  inherit (pins) sources;

  fetch =
    name: pin:
    fetchFromGitHub {
      inherit (pin) owner repo rev;
      hash =
        if pin.hash or null != null then
          pin.hash
        else
          throw "repositories/sources.json has no hash for ${name}; see repositories/README.md";
      name = "${name}-source";
    };

  # Patches are applied with `git apply`, the tool .ci/check-patches.sh checks them with, so a
  # patch that passes the check is one the build accepts (GNU patch would take fuzz git refuses).
  patched =
    name: src: patchPaths:
    if patchPaths == [ ] then
      src
    else
      runCommand "${name}-patched"
        {
          nativeBuildInputs = [ gitMinimal ];
          patchFiles = map (p: ../. + "/${p}") patchPaths;
        }
        ''
          cp -R --no-preserve=ownership ${src} $out
          chmod -R u+w $out
          cd $out
          for p in $patchFiles; do
            echo "applying $p"
            git apply --verbose --whitespace=nowarn "$p"
          done
        '';

  webui = patched "webui" (if webuiSrc != null then webuiSrc else fetch "webui" sources.webui) (
    sources.webui.patches or [ ]
  );

  repositories = lib.mapAttrs (
    name: pin: patched name (fetch name pin) (pin.patches or [ ])
  ) sources.repositories;

  # Curated extensions (sources.json `extensions`): fetched and patched the same way; the
  # package decides which of them it carries (nix/package.nix, `extensions`).
  extensions = lib.mapAttrs (name: pin: patched name (fetch name pin) (pin.patches or [ ])) (
    sources.extensions or { }
  );

  # Upstream's layout: paths.py finds stable-diffusion-stability-ai under repositories/ and the
  # others next to it; ui.py mounts repositories/stable-diffusion-webui-assets at /webui-assets.
  tree =
    runCommand "stable-diffusion-webui-tree-${pins.webuiShortRev}"
      {
        passthru = {
          inherit webui repositories pins;
        };
      }
      ''
        cp -R --no-preserve=ownership ${webui} $out
        chmod -R u+w $out
        mkdir -p $out/repositories
        ${lib.concatMapStrings (name: ''
          cp -R --no-preserve=ownership ${repositories.${name}} $out/repositories/${name}
        '') (builtins.attrNames repositories)}
      '';
in
{
  inherit
    pins
    webui
    repositories
    extensions
    tree
    ;
  # Unpatched sources, for the patch check (patches applied to these must succeed): every entry
  # of sources.json, the curated extensions included.
  pristine = {
    webui = if webuiSrc != null then webuiSrc else fetch "webui" sources.webui;
  }
  // lib.mapAttrs fetch sources.repositories
  // lib.mapAttrs fetch (sources.extensions or { });
}
