"""`load_benchmark`: the items of a benchmark, from whichever source is given.

The one entry point over the rest of the package: generated benchmarks are made (`generated`), the
others read from the hub, a folder or a file (`sources`) and parsed (`rows`, `formats`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from rationalyst.data.benchmarks.formats import SourceRow
from rationalyst.data.benchmarks.generated import GSM_SYMBOLIC_DEFAULT_SIZE, generated_items
from rationalyst.data.benchmarks.items import BENCHMARKS, GENERATED, BenchmarkItem
from rationalyst.data.benchmarks.rows import OnSkip, Reporter, parse_rows
from rationalyst.data.benchmarks.sources import default_path, file_rows, hub_rows, math_folder_rows, resolve_path
from rationalyst.errors import InputError, RationalystError


def load_benchmark(
    name: str,
    source: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    on_skip: OnSkip | None = None,
    seed: int | None = None,
) -> list[BenchmarkItem]:
    """The items of benchmark ``name`` (a key of `BENCHMARKS`) read from ``source``, in file order.

    ``source``: see the package docstring, `rationalyst.data.benchmarks` (None: the default file of the benchmarks folder).
    ``limit``: at most this many items (the first ones); for ``gsm_symbolic`` the number generated
    (default `GSM_SYMBOLIC_DEFAULT_SIZE`). ``on_skip(reason, file, line)``: called for each bad row;
    without it a bad row raises `InputError`. ``seed``: for ``gsm_symbolic`` only (default 0; also
    ``source="seed=N"``).
    """
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise RationalystError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    if limit is not None and limit < 0:
        raise RationalystError(f"{name}: limit must be >= 0, got {limit}")
    report = Reporter(on_skip)
    src = os.fspath(source) if source is not None else None
    if name in GENERATED:
        m = re.fullmatch(r"\s*seed\s*=\s*(-?\d+)\s*", src) if src is not None else None
        if src is None or m:
            from_source = int(m.group(1)) if m else None
            if from_source is not None and seed is not None and from_source != seed:
                raise RationalystError(f"{name}: source {src!r} and seed={seed} disagree")
            chosen = seed if seed is not None else (from_source if from_source is not None else 0)
            size = GSM_SYMBOLIC_DEFAULT_SIZE if limit is None else limit
            return generated_items(spec, size, chosen, report)
    elif seed is not None:
        raise RationalystError(f"{name}: seed applies to generated benchmarks ({', '.join(GENERATED)}) only")
    if src is None and spec.default_file is None:  # pragma: no cover - every file benchmark has one
        raise RationalystError(f"{name}: no default file; pass a source")

    rows: Iterable[SourceRow]
    if src is not None and src.startswith("hf:"):
        label, split, records = hub_rows(spec, src)
        rows = ((label, line, index, split, record) for line, index, record in records)
        return parse_rows(spec, rows, report, limit, label)
    path = default_path(spec) if src is None else resolve_path(spec, Path(src))
    if path.is_dir():
        inner = path / spec.default_file if spec.default_file else None
        if inner is not None and inner.is_file():
            path = inner
        elif spec.family == "math" and any(path.rglob("*.json")):
            folder_rows = ((f, line, index, "test", record) for f, line, index, record in math_folder_rows(path, report))
            return parse_rows(spec, folder_rows, report, limit, str(path))
        else:
            raise InputError(f"{name}: {path} is a folder without {spec.default_file}; pass the file itself")
    part = path.name.split(".")[0]
    rows = ((str(path), line, index, part, record) for line, index, record in file_rows(path, report))
    return parse_rows(spec, rows, report, limit, str(path))
