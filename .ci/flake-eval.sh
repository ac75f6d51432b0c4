#!/usr/bin/env bash
# Evaluates the flake as `nix flake check` and `nix run` would, with the real flake-parts,
# treefmt-nix and nixpkgs lib over a stub nixpkgs (nix/tests/flake-eval): every package, check,
# app, dev shell, formatter, model and overlay package on all three systems is instantiated (its
# .drv written to a scratch store, nothing built), the issue-#16 properties are asserted, the
# NixOS and home-manager modules are evaluated with lib.evalModules, and report.py says what was
# forced and what `nix run .#cuda` would build locally. Once per torch-bin shape the pin may have.
#
#   SD_FLAKE_PARTS=<flake-parts@flake.lock rev> SD_TREEFMT_NIX=<treefmt-nix@flake.lock rev> \
#   SD_NIXPKGS_LIB=<nix-community/nixpkgs.lib checkout> [SD_NIX_INSTANTIATE=nix-instantiate] \
#     .ci/flake-eval.sh
#
# The checkouts are not part of this repository (fetch them; see nix/README.md). Without them
# this prints SKIP and why, and exits 0. Needs Nix >= 2.14 (nixpkgs' lib uses
# builtins.readFileType). The flake's source is what git tracks (builtins.fetchGit of this
# checkout, uncommitted changes to tracked files included): `git add` new files first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
for var in SD_FLAKE_PARTS SD_TREEFMT_NIX SD_NIXPKGS_LIB; do
  [[ -n ${!var-} && -d ${!var} ]] || missing+=("$var")
done
if ((${#missing[@]})); then
  echo "flake-eval: SKIP: ${missing[*]} not set to a checkout (flake-parts and treefmt-nix at flake.lock's revisions, nix-community/nixpkgs.lib)"
  exit 0
fi
nix=${SD_NIX_INSTANTIATE:-nix-instantiate}
version=$("$nix" --version | grep -oE '[0-9]+\.[0-9]+' | head -1)
if ! printf '2.14\n%s\n' "$version" | sort -VC; then
  echo "flake-eval: $nix is Nix $version; nixpkgs' lib needs 2.14 or later (SD_NIX_INSTANTIATE)" >&2
  exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
store="local?root=$scratch/store"
export SD_FLAKE_EVAL_NIXPKGS_LIB=$SD_NIXPKGS_LIB
fail=0

eval_json() { # attribute of nix/tests/flake-eval for the shape $1, as JSON
  SD_FLAKE_EVAL_TORCH_BIN=$1 "$nix" --store "$store" --read-write-mode --eval --strict --json \
    --arg flakeParts "$SD_FLAKE_PARTS" --arg treefmtNix "$SD_TREEFMT_NIX" --arg nixpkgsLib "$SD_NIXPKGS_LIB" \
    --argstr torchBinShape "$1" \
    --expr "{ flakeParts, treefmtNix, nixpkgsLib, torchBinShape }@args: let e = import ./nix/tests/flake-eval (args // { src = builtins.fetchGit ./.; }); in $2"
}

for shape in cu130 cu128; do
  echo "== torch-bin shape $shape"
  # One evaluation per property, so that one that throws (or recurses forever) is reported as
  # such and the others still run.
  mapfile -t names < <(eval_json "$shape" 'builtins.attrNames e.properties' | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)))')
  for name in "${names[@]}"; do
    if result=$(eval_json "$shape" "e.properties.\"$name\"" 2>"$scratch/error"); then
      if [[ $result == true ]]; then
        echo "PASS $name"
      else
        echo "FAIL $name"
        fail=1
      fi
    else
      echo "FAIL $name: $(grep -E '^ *error: .' "$scratch/error" | tail -1 | sed 's/^ *//')"
      fail=1
    fi
  done
  eval_json "$shape" 'builtins.listToAttrs (builtins.concatLists (e.lib.mapAttrsToList (system: groups:
      builtins.concatLists (e.lib.mapAttrsToList (group: drvs: e.lib.mapAttrsToList (name: d: {
        name = "${system}.${group}.${name}"; value = d.drvPath; }) drvs) groups)) e.targets))' \
    >"$scratch/targets.json"
  python3 nix/tests/flake-eval/report.py "$scratch/store" "$scratch/targets.json"
  eval_json "$shape" 'e.modules' >"$scratch/modules.json"
  python3 - "$scratch/modules.json" <<'PY' || fail=1
import json, sys
m = json.load(open(sys.argv[1]))
for p in m["problems"]:
    print("FAIL modules: " + p)
print(f"modules: NixOS and home-manager modules evaluated with lib.evalModules ({m['forced']} values forced)")
sys.exit(1 if m["problems"] else 0)
PY
done

if ((fail)); then
  echo "flake-eval: FAILED"
  exit 1
fi
echo "flake-eval: passed"
