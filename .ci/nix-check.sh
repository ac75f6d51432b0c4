#!/usr/bin/env bash
# The Nix checks that run without nixpkgs (CI has Debian's nix-bin, no nixpkgs, no binary cache):
#   1. every .nix file (tracked or untracked, not ignored) parses;
#   2. nix/pins.nix: sources.json and flake.lock agree, every patch is listed and present,
#      every rev is a full commit id and every hash an SRI sha256;
#   3. flake.lock is lock format 7, every locked input has a narHash, and its follows are sane;
#   4. nix/python-versions-check.nix: the version manifest nix/python-versions.json lists exactly
#      python-packages.nix's requirements and the overlay's wheels (with their versions) and deps;
#   5. nix/tests/module-lib.nix: the NixOS / home-manager modules' logic (nix/module/lib.nix, with
#      a stub of the few nixpkgs lib functions it uses) gives the expected settings file, models,
#      units, command lines, environment, sandbox, nginx upstreams and assertion messages.
#   6. nix/models.nix: every catalog entry becomes a fixed-output fetchurl (hex sha256, http(s)
#      URLs with hf: resolved, upstream's file name) and `declared` gives what `models ensure` reads.
#   7. the Docker images' name and tag are valid Docker references.
# Usage: .ci/nix-check.sh   (installs nothing; the caller provides nix-instantiate)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters ='

command -v nix-instantiate >/dev/null || {
  echo "nix-check: nix-instantiate not found (apt-get install -y nix-bin)" >&2
  exit 1
}

fail=0

# 1. parse
count=0
while IFS= read -r -d '' file; do
  count=$((count + 1))
  if ! nix-instantiate --parse "$file" >/dev/null; then
    echo "FAIL parse: $file"
    fail=1
  fi
done < <(git ls-files -z --cached --others --exclude-standard -- '*.nix')
echo "parse: $count .nix files"
if ((count == 0)); then
  echo "FAIL parse: no .nix files found"
  fail=1
fi

# 2. pins (pure: builtins only)
problems=$(nix-instantiate --eval --strict --json nix/pins.nix -A problems)
if [[ $problems != "[]" ]]; then
  echo "FAIL pins: $problems"
  fail=1
else
  echo "pins: sources.json and flake.lock agree; patches all listed"
fi

# 3. flake.lock shape
lock_problems=$(nix-instantiate --eval --strict --json --expr '
  let
    lock = builtins.fromJSON (builtins.readFile ./flake.lock);
    names = builtins.filter (n: n != lock.root) (builtins.attrNames lock.nodes);
    node = n: lock.nodes.${n};
    follows = builtins.concatMap (n:
      builtins.concatMap (i: let v = (node n).inputs.${i}; in
        if builtins.isList v then (if builtins.elem (builtins.head v) (builtins.attrNames lock.nodes)
          then [] else [ "${n}.${i} follows unknown ${builtins.head v}" ])
        else if lock.nodes ? ${v} then [] else [ "${n}.${i} points at missing node ${v}" ])
      (builtins.attrNames ((node n).inputs or {}))) (builtins.attrNames lock.nodes);
  in
    (if lock.version == 7 then [] else [ "lock version ${toString lock.version}" ])
    ++ builtins.concatMap (n:
      let l = (node n).locked or {}; in
      (if builtins.match "sha256-[A-Za-z0-9+/]{43}=" (l.narHash or "") != null then [] else [ "${n}: no narHash" ])
      ++ (if builtins.match "[0-9a-f]{40}" (l.rev or "") != null then [] else [ "${n}: no full rev" ]))
      names
    ++ follows
')
if [[ $lock_problems != "[]" ]]; then
  echo "FAIL flake.lock: $lock_problems"
  fail=1
else
  echo "flake.lock: version 7, every input locked with rev and narHash"
fi

# 4. the version manifest against python-packages.nix (pure: builtins only)
manifest_problems=$(nix-instantiate --eval --strict --json nix/python-versions-check.nix -A problems) || manifest_problems='["evaluation failed"]'
if [[ $manifest_problems != "[]" ]]; then
  echo "FAIL python-versions: $manifest_problems"
  fail=1
else
  echo "python-versions: nix/python-versions.json matches nix/python-packages.nix ($(nix-instantiate --eval nix/python-versions-check.nix -A packages) packages)"
fi

# 5. the modules' pure logic against its expected outputs (pure: builtins and a stub lib)
module_failures=$(nix-instantiate --eval --strict --json --expr 'import ./nix/tests/module-lib.nix { }') ||
  module_failures='["evaluation failed"]'
if [[ $module_failures != "[]" ]]; then
  echo "FAIL module-lib: $module_failures"
  fail=1
else
  echo "module-lib: nix/module/lib.nix gives every expected output"
fi

# 6. store-backed models (pure: fetchurl and linkFarm are stand-ins)
model_problems=$(nix-instantiate --eval --strict --json nix/models.nix -A problems) || model_problems='["evaluation failed"]'
# What `models ensure --from` reads (Declared::Store in src/models/mod.rs): path, folder, name, sha256.
declared_ok=$(nix-instantiate --eval --strict --expr '
  (import ./nix/models.nix { }).declared [ "sd15" ] == [ {
    path = "/nix/store/00000000000000000000000000000000-v1-5-pruned-emaonly.safetensors";
    folder = "Stable-diffusion";
    name = "v1-5-pruned-emaonly.safetensors";
    sha256 = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa";
  } ]') || declared_ok=false
if [[ $model_problems != "[]" ]]; then
  echo "FAIL models: $model_problems"
  fail=1
elif [[ $declared_ok != "true" ]]; then
  echo 'FAIL models: declared [ "sd15" ] is not what `models ensure` reads'
  fail=1
else
  echo "models: $(nix-instantiate --eval --expr 'builtins.length (builtins.attrNames (import ./nix/models.nix { }).models)') catalog entries as fixed-output fetchurl"
fi

# 7. the Docker images' references (nix/docker-reference.nix, with nix/version.nix as
#    nix/package.nix computes the version) against Docker's reference grammar: `docker load`
#    refuses a tag outside [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} or a name outside the path-component
#    grammar (distribution/reference, regexp.go).
docker_problems=$(nix-instantiate --eval --strict --json --expr '
  let
    version = import ./nix/version.nix;
    tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    component = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*";
    check = variant:
      let r = import ./nix/docker-reference.nix { inherit variant version; }; in
      (if builtins.match tag r.tag != null then [ ] else [ "tag ${r.tag}" ])
      ++ (if builtins.match "${component}(/${component})*" r.name != null then [ ] else [ "name ${r.name}" ]);
  in builtins.concatMap check [ "cpu" "cuda" "mps" ]') || docker_problems='["evaluation failed"]'
if [[ $docker_problems != "[]" ]]; then
  echo "FAIL docker: not a valid Docker reference: $docker_problems"
  fail=1
else
  echo "docker: image references valid ($(nix-instantiate --eval --expr '(import ./nix/docker-reference.nix { variant = "cuda"; version = import ./nix/version.nix; }).tag'))"
fi

if ((fail)); then
  echo "nix-check: FAILED"
  exit 1
fi
echo "nix-check: passed"
