"""Write constraints.txt: the installed versions of rationalyst's dependency tree (`make lock`).

Walks the requirements of the installed ``rationalyst`` distribution (core and the extras named on the
command line, default: dev serve ray browser llamacpp) through their own requirements, and pins every
installed package met on the way to its installed version. torch is left out: the Makefile installs
it first and pinned, as a CPU or CUDA build (its local version label, e.g. +cpu, differs per machine).
Refresh it deliberately, after upgrading on purpose and running the test tiers:

    make lock          # = .venv/bin/python scripts/lock_constraints.py > constraints.txt
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LEFT_OUT = {"torch", "rationalyst"}
LEFT_OUT_PREFIXES = ("nvidia-", "triton")  # torch's CUDA wheels: they follow the torch build


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None:
            out.append(req)
            continue
        environments = [{"extra": e} for e in extras] or [{"extra": ""}]
        if any(req.marker.evaluate(env) for env in environments):
            out.append(req)
    return out


def closure(root: str, extras: set[str]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    todo = [(root, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), frozenset(wanted))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an extra that is not installed here
        canonical = canonicalize_name(dist.metadata["Name"])
        if canonical not in LEFT_OUT and not canonical.startswith(LEFT_OUT_PREFIXES):
            pinned[canonical] = dist.version
        for req in _requirements(dist, wanted):
            todo.append((req.name, set(req.extras)))
    return pinned


def main(argv: list[str]) -> int:
    extras = set(argv) or {"dev", "serve", "ray", "browser", "llamacpp", "prm"}
    pinned = closure("rationalyst", extras)
    print("# The versions CI tested: `pip install -c constraints.txt -e '.[dev]'` (the Makefile does).")
    print(f"# Written by `make lock` (scripts/lock_constraints.py, extras: {', '.join(sorted(extras))}); torch is")
    print("# pinned in the Makefile. Refresh deliberately: upgrade, run every test tier, then `make lock`.")
    for name in sorted(pinned):
        print(f"{name}=={pinned[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
