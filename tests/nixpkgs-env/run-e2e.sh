#!/usr/bin/env bash
# The webui on the nixpkgs-equivalent Python environment, end to end.
#
#   tests/nixpkgs-env/run-e2e.sh UPSTREAM_TREE [ENV_DIR]
#
# UPSTREAM_TREE  an upstream stable-diffusion-webui tree at the pinned revision, with its
#                repositories/ (as the flake assembles it). It is only read: a copy is patched.
# ENV_DIR        where the environment lives [default: .cache/nixpkgs-env in the checkout]
#
# 1. build-env.sh ENV_DIR: the flake's CPython minor and the manifest's package versions (PyPI).
# 2. the launcher, built against that interpreter (PYO3_PYTHON; CARGO_TARGET_DIR or ENV_DIR/target).
# 3. ENV_DIR/webui: a copy of UPSTREAM_TREE with every patch of repositories/sources.json applied
#    (webui's at its root, each repository's in repositories/<name>), then compiled to bytecode
#    with SyntaxWarnings as errors, as nix/package.nix does, and made read-only.
# 4. the tiny model (tests/support/tiny_model.py), then tests/nixpkgs-env/e2e.py: the launcher
#    with --api, offline, and each step reported PASS/FAIL. Report: ENV_DIR/e2e-report.json.
# 4b. If SD_WEBUI_TEST_EXTENSIONS names a directory holding checkouts of the curated extensions
#    (sources.json `extensions`, one directory per name, at the pinned revs): the managed
#    extensions directory as nix/package.nix builds it (the `default` ones, patched, assembled by
#    nix/assemble_extensions.py), then checks.e2e-cpu's driver (nix/tests/e2e.py) against the
#    launcher, the tree and it. Without it this step says SKIP and why.
# 5. If SD_E2E_SUITE names a pytest directory (the project's e2e suite) and pytest imports in
#    the venv, that suite runs too, with SD_WEBUI_TEST_ROOT/SD_WEBUI_TEST_VENV/SD_WEBUI_LAUNCHER.
# 6. If SD_UPSTREAM_SUITE=1: upstream's own test suite (UPSTREAM_TREE/test, as upstream's CI runs
#    it; tests/nixpkgs-env/upstream_suite.py) against the launcher, the patched tree and the venv,
#    which needs pytest and pytest-base-url. Report: ENV_DIR/upstream-suite.json.
#
# Exit status 0 only when every step passed.
set -euo pipefail

upstream=${1:?usage: run-e2e.sh UPSTREAM_TREE [ENV_DIR]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
env_dir=${2:-$root/.cache/nixpkgs-env}
upstream=$(cd "$upstream" && pwd)
[[ -f $upstream/webui.py && -d $upstream/repositories ]] || {
  echo "run-e2e: $upstream is not a webui tree with repositories/" >&2
  exit 2
}
log() { printf '\n== %s\n' "$*" >&2; }

log "1. environment"
bash "$root/tests/nixpkgs-env/build-env.sh" "$env_dir" >/dev/null
env_dir=$(cd "$env_dir" && pwd)
venv=$env_dir/venv
minor=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
python=$env_dir/python/bin/python$minor

log "2. launcher against $python"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$env_dir/target}
(cd "$root" && PYO3_PYTHON=$python cargo build --release --locked --quiet)
launcher=$CARGO_TARGET_DIR/release/stable-diffusion-webui
linked=$(ldd "$launcher")
[[ $linked == *"$env_dir/python/lib/libpython$minor"* ]] || {
  echo "run-e2e: $launcher does not link $env_dir/python's libpython:" >&2
  grep -i python <<<"$linked" >&2
  exit 1
}

log "3. patched tree"
tree=$env_dir/webui
if [[ -d $tree ]]; then chmod -R u+w "$tree" && rm -rf "$tree"; fi
mkdir -p "$tree"
tar -C "$upstream" --exclude=.git -cf - . | tar -C "$tree" -xf -
chmod -R u+w "$tree"
# Every patch of sources.json to the copies given as NAME=DIR (git apply, as nix/sources.nix).
apply_patches() {
  "$python" - "$root" "$@" <<'PY'
import json, subprocess, sys
from pathlib import Path
root = Path(sys.argv[1])
s = json.loads((root / "repositories/sources.json").read_text())
pins = {"webui": s["webui"], **s.get("repositories", {}), **s.get("extensions", {})}
entries = [(name, Path(where), pins[name]) for name, where in (a.split("=", 1) for a in sys.argv[2:])]
for name, where, e in entries:
    if not e.get("patches"):
        continue
    # git apply resolves paths against an enclosing repository's root: give each its own.
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    for patch in e["patches"]:
        subprocess.run(["git", "-C", str(where), "apply", "--whitespace=nowarn", str(root / patch)], check=True)
        print(f"applied {patch} in {where}")
    subprocess.run(["rm", "-rf", str(where / ".git")], check=True)
PY
}
mapfile -t repositories < <("$python" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1])).get("repositories", {})))' "$root/repositories/sources.json")
patch_targets=("webui=$tree")
for name in "${repositories[@]}"; do patch_targets+=("$name=$tree/repositories/$name"); done
apply_patches "${patch_targets[@]}"
# As nix/package.nix's withBytecode: an invalid escape sequence (SyntaxWarning) fails the build.
"$python" -W error::SyntaxWarning -m compileall -q -j 0 --invalidation-mode unchecked-hash "$tree" >"$env_dir/compileall.log" 2>&1 || {
  echo "run-e2e: compileall -W error::SyntaxWarning failed:" >&2
  grep -v '^Listing' "$env_dir/compileall.log" | head -30 >&2
  exit 1
}
chmod -R a-w "$tree"

log "4. end to end"
run=$env_dir/run
if [[ -d $run ]]; then chmod -R u+w "$run" && rm -rf "$run"; fi
mkdir -p "$run/model"
"$venv/bin/python" "$root/tests/support/tiny_model.py" "$run/model" >/dev/null
status=0
"$venv/bin/python" "$root/tests/nixpkgs-env/e2e.py" --launcher "$launcher" --root "$tree" --venv "$venv" \
  --ckpt "$run/model/tiny.safetensors" --work "$run" --report "$env_dir/e2e-report.json" || status=$?

log "4b. managed extensions, as nix/package.nix assembles them"
if [[ -z ${SD_WEBUI_TEST_EXTENSIONS-} ]]; then
  echo "run-e2e: SKIP managed extensions: SD_WEBUI_TEST_EXTENSIONS is not set (a directory of the curated extensions' checkouts, one per sources.json name)" >&2
else
  managed=$env_dir/managed-extensions
  sources=$env_dir/extension-sources
  for dir in "$managed" "$sources"; do
    if [[ -d $dir ]]; then chmod -R u+w "$dir" && rm -rf "$dir"; fi
  done
  mkdir -p "$sources"
  # nix/package.nix's default selection and manifest.json, from sources.json.
  mapfile -t curated < <(
    "$python" - "$root/repositories/sources.json" "$sources/manifest.json" <<'PY'
import json, sys
ext = json.load(open(sys.argv[1])).get("extensions", {})
chosen = sorted(n for n, e in ext.items() if e.get("default"))
manifest = {"version": 1, "extensions": {n: {
    "url": f"https://github.com/{ext[n]['owner']}/{ext[n]['repo']}", "rev": ext[n]["rev"],
    "date": ext[n].get("date"), "pythonPackages": ext[n].get("pythonPackages", [])} for n in chosen}}
json.dump(manifest, open(sys.argv[2], "w"))
print("\n".join(chosen))
PY
  )
  assemble=()
  for name in "${curated[@]}"; do
    [[ -d $SD_WEBUI_TEST_EXTENSIONS/$name ]] || {
      echo "run-e2e: $SD_WEBUI_TEST_EXTENSIONS/$name is missing (a checkout of the curated extension $name)" >&2
      exit 2
    }
    tar -C "$SD_WEBUI_TEST_EXTENSIONS/$name" --exclude=.git -cf - . | (mkdir -p "$sources/$name" && tar -C "$sources/$name" -xf -)
    assemble+=("$name=$sources/$name")
  done
  apply_patches "${assemble[@]}"
  "$python" "$root/nix/assemble_extensions.py" "$managed" "$sources/manifest.json" "${assemble[@]}"
  chmod -R a-w "$managed"
  SD_WEBUI_ROOT=$tree SD_WEBUI_PYTHON_ENV=$venv "$venv/bin/python" "$root/nix/tests/e2e.py" \
    "$launcher" "$root/tests/support/tiny_model.py" "$run/nix-e2e" "$managed" || status=$?
fi

if [[ -n ${SD_E2E_SUITE-} ]]; then
  log "5. e2e suite $SD_E2E_SUITE"
  if "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    SD_WEBUI_TEST_ROOT=$tree SD_WEBUI_TEST_VENV=$venv SD_WEBUI_LAUNCHER=$launcher \
      "$venv/bin/python" -m pytest -q -p no:cacheprovider "$SD_E2E_SUITE" || status=$?
  else
    echo "run-e2e: pytest is not in $venv (pip install pytest there to run $SD_E2E_SUITE)" >&2
    status=1
  fi
fi

if [[ ${SD_UPSTREAM_SUITE-} == 1 ]]; then
  log "6. upstream's test suite"
  if "$venv/bin/python" -c 'import pytest, pytest_base_url' 2>/dev/null; then
    "$venv/bin/python" "$root/tests/nixpkgs-env/upstream_suite.py" --tests "$upstream/test" \
      --launcher "$launcher" --root "$tree" --venv "$venv" --ckpt "$run/model/tiny.safetensors" \
      --work "$run/upstream-suite" --report "$env_dir/upstream-suite.json" || status=$?
  else
    echo "run-e2e: pytest and pytest-base-url are not in $venv (pip install pytest pytest-base-url there)" >&2
    status=1
  fi
fi
exit "$status"
