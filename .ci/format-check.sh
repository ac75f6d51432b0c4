#!/usr/bin/env bash
# The formatters of nix/formatter.nix (treefmt) that install here, with treefmt's options, and a
# diff for anything they would change: shfmt -i 2 -s on every tracked *.sh (treefmt-nix's shfmt
# includes), ruff and rustfmt run in tests/run already. nixfmt is not here (Haskell, not in
# Debian 12 nor on a registry CI reaches; see nix/README.md): checks.treefmt checks Nix formatting.
# shfmt: SHFMT (default: shfmt on PATH); tests/requirements-ci.txt pins it (shfmt-py, see there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shfmt=${SHFMT:-shfmt}
command -v "$shfmt" >/dev/null || {
  echo "format-check: $shfmt not found (pip install -r tests/requirements-ci.txt)" >&2
  exit 1
}
mapfile -t scripts < <(git ls-files -- '*.sh')
if ! "$shfmt" -i 2 -s -d "${scripts[@]}"; then
  echo "format-check: run: $shfmt -i 2 -s -w ${scripts[*]}" >&2
  exit 1
fi
echo "format-check: ${#scripts[@]} shell scripts formatted (shfmt $("$shfmt" --version) -i 2 -s)"
