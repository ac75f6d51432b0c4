#!/usr/bin/env bash
# Check patches/ against repositories/sources.json and, given upstream trees, against those trees.
#
#   .ci/check-patches.sh                          # references only (no upstream source needed)
#   .ci/check-patches.sh /path/to/webui           # + webui, and repositories/<name> inside it
#   .ci/check-patches.sh webui=/a k-diffusion=/b  # + the named trees (names are sources.json keys)
#
# 1. Every patches/**/*.patch is listed in sources.json (webui.patches or
#    repositories.<name>.patches), every listed file exists, and each lives in patches/<name>/.
#    A patch nobody applies, or a listed one that is gone, fails the check.
# 2. For each tree given, its patches are applied in order, with `git apply --check` then
#    `git apply`, to a scratch copy (the tree itself is never written). A tree that is a git
#    checkout must be at the pinned rev.
# Exit status 0 only when everything passed. Needs bash, git, python3 (for JSON), tar.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sources=${SOURCES_JSON:-$root/repositories/sources.json}
fail=0

# name<TAB>rev<TAB>patch path (relative to the repository root), one line per patch;
# a name without patches gets one line with an empty third field.
listing=$(
  python3 - "$sources" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
entries = {"webui": s["webui"], **s.get("repositories", {}), **s.get("extensions", {})}
for name, e in entries.items():
    patches = e.get("patches", [])
    if not patches:
        print(f"{name}\t{e['rev']}\t")
    for p in patches:
        print(f"{name}\t{e['rev']}\t{p}")
PY
)

# 1. references
declare -A listed=()
while IFS=$'\t' read -r name _ patch; do
  [[ -n $patch ]] || continue
  if [[ -n ${listed[$patch]-} ]]; then
    echo "FAIL listed twice: $patch"
    fail=1
  fi
  listed[$patch]=$name
  if [[ ! -f $root/$patch ]]; then
    echo "FAIL listed in sources.json but missing: $patch"
    fail=1
  fi
  if [[ $patch != "patches/$name/"*.patch ]]; then
    echo "FAIL $patch is listed for '$name' but is not under patches/$name/"
    fail=1
  fi
done <<<"$listing"

while IFS= read -r -d '' file; do
  rel=${file#"$root"/}
  if [[ -z ${listed[$rel]-} ]]; then
    echo "FAIL orphaned (not listed in sources.json): $rel"
    fail=1
  fi
done < <(find "$root/patches" -type f -name '*.patch' -print0 | sort -z)
echo "references: ${#listed[@]} patches listed in $(basename "$sources")"

# 2. trees
declare -A trees=()
for arg in "$@"; do
  if [[ $arg == *=* ]]; then
    trees[${arg%%=*}]=${arg#*=}
  else
    trees[webui]=$arg
    while IFS=$'\t' read -r name _ _; do
      if [[ $name != webui && -d $arg/repositories/$name ]]; then
        trees[$name]=$arg/repositories/$name
      fi
    done <<<"$listing"
  fi
done

scratch=$(mktemp -d)
trap 'chmod -R u+w "$scratch"; rm -rf "$scratch"' EXIT

names=()
if ((${#trees[@]})); then
  mapfile -t names < <(printf '%s\n' "${!trees[@]}" | sort)
fi
for name in "${names[@]}"; do
  tree=${trees[$name]}
  rev=$(awk -F'\t' -v n="$name" '$1 == n { print $2; exit }' <<<"$listing")
  if [[ -z $rev ]]; then
    echo "FAIL $name: no such entry in sources.json"
    fail=1
    continue
  fi
  if [[ ! -d $tree ]]; then
    echo "FAIL $name: $tree is not a directory"
    fail=1
    continue
  fi
  if head=$(git -C "$tree" rev-parse --verify -q HEAD 2>/dev/null) &&
    [[ $(git -C "$tree" rev-parse --show-toplevel) == "$(cd "$tree" && pwd -P)" ]]; then
    if [[ $head != "$rev" ]]; then
      echo "FAIL $name: $tree is at $head, sources.json pins $rev"
      fail=1
      continue
    fi
  fi
  copy=$scratch/$name
  mkdir -p "$copy"
  # webui's repositories/ holds the other trees; they are checked under their own names.
  tar -C "$tree" --exclude=./.git --exclude=./repositories -cf - . | tar -C "$copy" -xf -
  chmod -R u+w "$copy" # trees from the Nix store are read-only
  git -C "$copy" init -q
  count=0
  while IFS=$'\t' read -r n _ patch; do
    [[ $n == "$name" && -n $patch ]] || continue
    count=$((count + 1))
    if git -C "$copy" apply --check --whitespace=nowarn "$root/$patch" 2>"$scratch/err" &&
      git -C "$copy" apply --whitespace=nowarn "$root/$patch" 2>>"$scratch/err"; then
      echo "ok   $name: $patch"
    else
      echo "FAIL $name: $patch does not apply to $tree"
      sed 's/^/     /' "$scratch/err"
      fail=1
    fi
  done <<<"$listing"
  echo "tree $name: $count patches checked against $tree"
done

if ((fail)); then
  echo "check-patches: FAILED"
  exit 1
fi
echo "check-patches: passed"
