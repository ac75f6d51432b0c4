"""Assemble the read-only managed extensions directory the launcher loads (--managed-extensions).

    assemble_extensions.py OUT MANIFEST NAME=SOURCE...

Copies each extension's source to OUT/NAME (writable copies, owner not kept), compiles it to
bytecode as the tree is (unchecked-hash .pyc: the store has no meaningful mtimes), and writes
MANIFEST (where each came from) as OUT/manifest.json. nix/package.nix builds
managedExtensionsDir with it; tests/nixpkgs-env/run-e2e.sh replays that build step with it.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import stat
import sys
from pathlib import Path


def writable(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | stat.S_IWUSR)
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv[2:]):
        print(__doc__, file=sys.stderr)
        return 2
    out, manifest = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True)
    for spec in argv[2:]:
        name, source = spec.split("=", 1)
        if "/" in name or name in ("", ".", "..", "manifest.json"):
            print(f"assemble_extensions: {name!r} is not a directory name", file=sys.stderr)
            return 2
        shutil.copytree(source, out / name, symlinks=True, copy_function=shutil.copy)
        writable(out / name)
    workers = int(os.environ.get("NIX_BUILD_CORES", "0") or 0)
    ok = compileall.compile_dir(
        out,
        quiet=1,
        workers=workers,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    shutil.copyfile(manifest, out / "manifest.json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
