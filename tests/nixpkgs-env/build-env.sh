#!/usr/bin/env bash
# Build a "nixpkgs-equivalent" Python environment from nix/python-versions.json, from PyPI and
# Debian only: the flake's CPython minor version built from Debian's source package, and a venv
# holding exactly the manifest's package versions (pypiVersion where PyPI has no exact match).
#
#   tests/nixpkgs-env/build-env.sh TARGET
#
# TARGET/python   CPython (Debian trixie's python3.X source, upstream tarball, --enable-shared)
# TARGET/venv     the venv
# TARGET/requirements.txt   what was asked of pip (from the manifest)
# TARGET/freeze.txt, TARGET/pip-check.txt, TARGET/versions.json   what it holds, checked
#
# Idempotent: each stage is skipped when its stamp matches (the manifest and this script's hash
# for the venv). Needs: apt-get (source download into TARGET, the system's apt state is not
# touched), a C toolchain and the usual CPython build headers, network to PyPI and Debian.
set -euo pipefail

target=${1:?usage: build-env.sh TARGET}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
manifest=$root/nix/python-versions.json
mkdir -p "$target"
target=$(cd "$target" && pwd)
log() { printf '== %s\n' "$*" >&2; }

# Everything read from the manifest, by the build interpreter (any python3 >= 3.8 will do).
host_python=$(command -v python3)
minor=$("$host_python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"]["version"].rsplit(".",1)[0])' "$manifest")
python=$target/python/bin/python$minor

# 1. CPython from Debian's source package (upstream tarball; Debian's patches are not applied).
if [[ ! -x $python ]] || ! "$python" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv' 2>/dev/null; then
  log "CPython $minor: Debian trixie source"
  src=$target/src
  apt=$src/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$apt/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
  apt-get "${aptopts[@]}" update -qq
  (cd "$src" && apt-get "${aptopts[@]}" source --download-only -qq "python$minor")
  tarball=$(ls "$src"/python"$minor"_*.orig.tar.xz | tail -1)
  rm -rf "$src/build" && mkdir -p "$src/build"
  tar -C "$src/build" -xf "$tarball" --strip-components=1
  (
    cd "$src/build"
    ./configure -q --enable-shared --prefix="$target/python" LDFLAGS="-Wl,-rpath,$target/python/lib" >"$src/configure.log" 2>&1
    make -j"$(nproc)" >"$src/make.log" 2>&1
    make install >"$src/install.log" 2>&1
  )
  "$python" -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv'
fi
log "CPython: $("$python" -c 'import sys; print(sys.version.split()[0], sys.prefix)')"

# 2. The requirement list, from the manifest.
"$python" - "$manifest" "$target" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
target = sys.argv[2]
lines = [
    f'{p["pypi"]}=={p.get("pypiVersion", p["version"])}'
    for name, p in sorted(m["packages"].items())
    if p["role"] != "variant"  # torch-bin / torchvision-bin: the same releases as torch / torchvision
]
open(f"{target}/requirements.txt", "w").write("\n".join(lines) + "\n")
open(f"{target}/no-binary.txt", "w").write(",".join(m["pypiSourceOnly"]["names"]) + "\n")
PY

# 3. The venv. Its stamp is the manifest plus this script: a change to either rebuilds it.
#
# A Nix Python environment is not resolved by pip: it holds exactly the packages and versions
# the package set gives, and nixpkgs relaxes version caps that would conflict (pythonRelaxDeps;
# the overlay's wheels skip the check altogether). So the manifest's packages are installed as
# they are (--no-deps), and only what they require and the manifest does not list is resolved by
# pip, constrained to the manifest's versions. Caps that the manifest's versions violate are
# what nixpkgs must be relaxing: they are listed in TARGET/pip-check.txt, not "fixed".
venv=$target/venv
stamp=$(cat "$manifest" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
if [[ ! -f $venv/.stamp || $(cat "$venv/.stamp") != "$stamp" ]]; then
  log "venv: installing the manifest's versions from PyPI"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip=("$venv/bin/python" -m pip --disable-pip-version-check)
  "${pip[@]}" install -q --upgrade pip
  binary=(--only-binary=:all: "--no-binary=$(cat "$target/no-binary.txt")")
  "${pip[@]}" install -q "${binary[@]}" --no-deps -r "$target/requirements.txt"
  # What the installed packages require and the manifest does not list (transitive packages
  # such as certifi or jsonschema), until nothing is missing.
  for round in 1 2 3 4 5 6; do
    missing=$(
      "$venv/bin/python" - "$manifest" <<'PY'
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
provides = {canon(k): v for k, v in json.load(open(sys.argv[1]))["pypiProvides"].items() if k != "_comment"}
installed = {canon(d.metadata["Name"]) for d in md.distributions()} | set(provides)
missing = set()
for d in md.distributions():
    for spec in d.requires or []:
        r = Requirement(spec)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue
        if canon(r.name) not in installed:
            # the requirement as written (extras and version range), so pinned dependencies
            # (torch's nvidia-* and triton) get the version their dependent asks for
            extras = f"[{','.join(sorted(r.extras))}]" if r.extras else ""
            missing.add(f"{canon(r.name)}{extras}{r.specifier}")
print("\n".join(sorted(missing)))
PY
    )
    [[ -n $missing ]] || break
    log "transitive, round $round: $(echo $missing)"
    mapfile -t specs <<<"$missing"
    "${pip[@]}" install -q "${binary[@]}" -c "$target/requirements.txt" "${specs[@]}"
  done
  # The source changes the overlay makes to nixpkgs packages (manifest: pypiPatch), made to
  # the installed files the same way.
  "$venv/bin/python" - "$manifest" <<'PY'
import json, sys, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
for name, p in json.load(open(sys.argv[1]))["packages"].items():
    patch = p.get("pypiPatch")
    if patch:
        f = site / patch["file"]
        old, new = patch["replace"]
        text = f.read_text()
        assert old in text or new in text, f"{name}: {old!r} not in {f}"
        f.write_text(text.replace(old, new))
        print(f"patched {f} ({name}, as nix/python-packages.nix does)")
PY
  echo "$stamp" >"$venv/.stamp"
fi

# 4. What the venv holds, against the manifest.
"$venv/bin/python" -m pip --disable-pip-version-check freeze --all >"$target/freeze.txt"
"$venv/bin/python" -m pip --disable-pip-version-check check >"$target/pip-check.txt" 2>&1 || true
"$venv/bin/python" - "$manifest" "$target/versions.json" <<'PY'
import importlib.metadata as md, json, sys
m = json.load(open(sys.argv[1]))
out, bad = {}, []
for name, p in sorted(m["packages"].items()):
    if p["role"] == "variant":
        continue
    want = p.get("pypiVersion", p["version"])
    try:
        have = md.version(p["pypi"])
    except md.PackageNotFoundError:
        have = None
    out[name] = {"pypi": p["pypi"], "want": want, "have": have}
    if have is None or have.split("+")[0] != want.split("+")[0]:
        bad.append(f"{name}: manifest {want}, venv {have}")
json.dump(out, open(sys.argv[2], "w"), indent=1)
print("\n".join(bad) or f"venv matches the manifest: {len(out)} packages")
sys.exit(1 if bad else 0)
PY
log "pip check (version caps nixpkgs relaxes, and the overlay's wheels' 2023 pins, show here):"
sed 's/^/   /' "$target/pip-check.txt" >&2
echo "$venv"
