#!/usr/bin/env bash
# Replays the source step of the Nix build of the launcher (nix/package.nix): copies exactly the
# files nix/rust-source.json lists (the git-tracked ones, which is what a flake's source holds) to a
# scratch directory and builds the crate there, offline and locked. A file the crate reads at
# compile time but the list leaves out fails here as it would in `nix build`.
# Usage: .ci/rust-source-build.sh   (needs cargo with the dependencies fetched: run `cargo fetch` first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

mapfile -t paths < <(python3 -c 'import json; print("\n".join(json.load(open("nix/rust-source.json"))["paths"]))')
# lib.fileset.unions fails on a path that does not exist; so does this.
for path in "${paths[@]}"; do
  if [[ ! -e $path ]]; then
    echo "rust-source: nix/rust-source.json lists $path, which does not exist" >&2
    exit 1
  fi
done

git ls-files -z --cached -- "${paths[@]}" | tar --null -T - -cf - | tar -xf - -C "$scratch"
echo "rust-source: $(find "$scratch" -type f | wc -l) files from nix/rust-source.json in $scratch"

# A target directory of its own: the scratch build must not replace target/'s binaries (they
# record this checkout's CARGO_MANIFEST_DIR). Kept between runs, so a rerun is incremental.
target=${SD_WEBUI_RUST_SOURCE_TARGET:-$PWD/target/rust-source-build}
(cd "$scratch" && CARGO_TARGET_DIR=$target cargo build --offline --locked)
echo "rust-source: the crate builds from exactly the Nix source set"
