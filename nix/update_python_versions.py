"""Rewrite nix/python-versions.json (the version manifest) from what the pinned nixpkgs really has.

Run by `nix run .#update-python-versions` (writes the file) and by checks.python-versions (prints
the diff the command would make, and fails on any). The versions come from Nix: the flake
evaluates nix/python-versions-check.nix's `actual` at the pin and passes it as a JSON file:

    {"rev": "<nixpkgs rev>", "python": "3.13.x",
     "packages": {"<attr>": {"version": "...", "nixpkgsVersion": "..."}}}

Only versions and their provenance change: every other field of an entry (role, pypi, pypiVersion,
substitution, notes) is the maintainer's and stays. An entry whose attribute the pin lacks is
reported, not guessed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import tempfile
from pathlib import Path


def updated(manifest: dict, actual: dict) -> tuple[dict, list[str]]:
    """The manifest with the pin's versions, and what could not be read at the pin."""
    rev = actual["rev"]
    read = {"repo": "NixOS/nixpkgs", "commit": rev, "verified": True}
    problems = []
    new = json.loads(json.dumps(manifest))
    new["nixpkgs"]["rev"] = rev
    new["nixpkgs"]["read"] = {
        **read,
        "note": "Versions written by `nix run .#update-python-versions` from the pinned nixpkgs.",
    }
    new["python"]["version"] = actual["python"]
    new["python"]["read"] = dict(read)
    for name, entry in new["packages"].items():
        real = actual["packages"].get(name)
        if real is None or real.get("version") is None:
            problems.append(f"{name}: the pin has no python313Packages.{name}")
            continue
        entry["version"] = real["version"]
        if entry.get("source") == "nixpkgs":
            entry["read"] = dict(read)
            # Said of a version read elsewhere; the pin's own version needs no such caveat.
            entry.pop("notAtBranchOff", None)
        if "nixpkgsVersion" in entry:
            if real.get("nixpkgsVersion") is None:
                problems.append(f"{name}: the pin's nixpkgs has no python313Packages.{name}")
            else:
                entry["nixpkgsVersion"] = real["nixpkgsVersion"]
                if isinstance(entry.get("nixpkgs"), dict):
                    entry["nixpkgs"]["read"] = dict(read)
    return new, problems


def render(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="nix/python-versions.json")
    parser.add_argument("actual", type=Path, help="the pin's versions (JSON, from Nix)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the manifest in place")
    mode.add_argument("--check", action="store_true", help="print the diff; exit 1 if any")
    args = parser.parse_args(argv)

    if not args.manifest.is_file():
        print(
            f"update-python-versions: {args.manifest} not found; run this from the root of a "
            "stable-diffusion-nix checkout",
            file=sys.stderr,
        )
        return 2
    old_text = args.manifest.read_text()
    new, problems = updated(json.loads(old_text), json.loads(args.actual.read_text()))
    new_text = render(new)
    for problem in problems:
        print(f"python-versions: {problem}", file=sys.stderr)

    if args.write:
        if new_text != old_text:
            write_atomically(args.manifest, new_text)
            print(f"update-python-versions: rewrote {args.manifest}")
        else:
            print(f"update-python-versions: {args.manifest} already matches the pin")
        return 1 if problems else 0

    diff = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            f"{args.manifest} (committed)",
            f"{args.manifest} (the pin)",
        )
    )
    if diff:
        sys.stdout.writelines(diff)
        print(
            "\npython-versions: nix/python-versions.json differs from the pinned nixpkgs (diff above).\n"
            "Run `nix run .#update-python-versions` in the checkout, review and commit the result,\n"
            "then rebuild tests/nixpkgs-env from it."
        )
    return 1 if diff or problems else 0


if __name__ == "__main__":
    sys.exit(main())
