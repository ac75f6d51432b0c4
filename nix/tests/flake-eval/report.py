"""Read the derivations .ci/flake-eval.sh instantiated and say what was forced.

    report.py STORE_ROOT TARGETS_JSON

STORE_ROOT is the scratch store's root (its .drv files are under STORE_ROOT/nix/store);
TARGETS_JSON maps "<system>.<group>.<name>" to the top-level .drv path. Prints, per system, how
many targets and derivations were instantiated, how many derivations each stub constructor made
(the calls whose arguments the stub checked), and, for packages.x86_64-linux.cuda, which
derivations a first `nix run .#cuda` would build locally rather than fetch from a binary cache:
those the flake makes itself, the unfree or Hydra-less ones (torch-bin, the CUDA libraries), and
every nixpkgs package with one of those in its inputs (rebuilt).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def parse_aterm(text: str):
    """Derive(...) as nested Python lists and strings."""
    pos = 0

    def value():
        nonlocal pos
        c = text[pos]
        if c == '"':
            pos += 1
            out = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                    out.append({"n": "\n", "t": "\t", "r": "\r"}.get(text[pos], text[pos]))
                else:
                    out.append(text[pos])
                pos += 1
            pos += 1
            return "".join(out)
        if c in "[(":
            close = "]" if c == "[" else ")"
            pos += 1
            items = []
            while text[pos] != close:
                items.append(value())
                if text[pos] == ",":
                    pos += 1
            pos += 1
            return items
        if text.startswith("Derive", pos):
            pos += len("Derive")
            return value()
        raise ValueError(f"unexpected {c!r} at {pos}")

    return value()


class Graph:
    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[str, dict] = {}

    def drv(self, path: str) -> dict:
        if path not in self.cache:
            _outputs, inputs, _srcs, system, _builder, _args, env = parse_aterm(
                (self.root / path.lstrip("/")).read_text()
            )
            env = dict(env)
            self.cache[path] = {
                "name": env.get("name", path),
                "inputs": [i[0] for i in inputs],
                "call": env.get("__stubCall", "?"),
                "cached": env.get("__stubCached", "1") == "1",
                "system": system,
            }
        return self.cache[path]

    def closure(self, paths) -> set[str]:
        seen: set[str] = set()
        stack = list(paths)
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(self.drv(p)["inputs"])
        return seen

    def local(self, paths) -> set[str]:
        memo: dict[str, bool] = {}

        def is_local(p: str) -> bool:
            if p not in memo:
                memo[p] = False
                d = self.drv(p)
                memo[p] = not d["cached"] or any(is_local(i) for i in d["inputs"])
            return memo[p]

        return {p for p in self.closure(paths) if is_local(p)}


def main() -> int:
    root, targets_file = Path(sys.argv[1]), Path(sys.argv[2])
    targets: dict[str, str] = json.loads(targets_file.read_text())
    graph = Graph(root)

    by_system: dict[str, list[str]] = {}
    for key, drv in targets.items():
        by_system.setdefault(key.split(".")[0], []).append(drv)
    everything: set[str] = set()
    for system, drvs in sorted(by_system.items()):
        closure = graph.closure(drvs)
        everything |= closure
        groups = Counter(k.split(".")[1] for k in targets if k.startswith(system + "."))
        print(
            f"{system}: {len(drvs)} targets ({', '.join(f'{n} {g}' for g, n in sorted(groups.items()))}), "
            f"{len(closure)} derivations instantiated"
        )
    calls = Counter(graph.drv(p)["call"] for p in everything)
    print(f"all systems: {len(everything)} distinct derivations; made by (stub constructor: count):")
    for call, n in sorted(calls.items()):
        print(f"  {call}: {n}")

    cuda = targets.get("x86_64-linux.packages.cuda")
    if cuda:
        local = graph.local([cuda])
        names = sorted(graph.drv(p)["name"] for p in local)
        total = len(graph.closure([cuda]))
        print(
            f"\nnix run .#cuda, first time: {len(local)} of {total} derivations built locally "
            "(the rest from cache.nixos.org):"
        )
        for name in names:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
