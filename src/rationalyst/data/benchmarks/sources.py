"""Where benchmark rows come from: files, folders, the benchmarks folder and the hub.

`file_rows` reads a ``.jsonl``/``.json``/``.csv``/``.parquet`` file, `math_folder_rows` the original
MATH layout (one ``.json`` file per problem), `hub_rows` a Hugging Face dataset (through
`rationalyst.data.hub`). `benchmarks_dir` finds the benchmarks folder (``$RATIONALYST_BENCHMARKS``,
else `DEFAULT_BENCHMARK_DIRS`); `default_path` and `resolve_path` turn a benchmark's source into a
path there; `benchmark_split` names the split a source holds.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rationalyst.data.benchmarks.formats import detect_format, json_type
from rationalyst.data.benchmarks.items import BENCHMARKS, GENERATED, BenchmarkSpec
from rationalyst.data.benchmarks.rows import Reporter
from rationalyst.data.hub import HubSource, load_hub_dataset, parse_hf_spec
from rationalyst.errors import InputError, RationalystError

#: Environment variable naming the benchmarks folder.
BENCHMARKS_ENV = "RATIONALYST_BENCHMARKS"
#: Folders tried, in order, relative to the current directory when the variable is not set.
DEFAULT_BENCHMARK_DIRS = ("shared/benchmarks", "../shared/benchmarks")


def _jsonl_rows(path: Path, report: Reporter) -> Iterator[tuple[int, int, Any]]:
    from rationalyst.data.records import json_objects

    for _file, line, record in json_objects(path, report):
        yield line, line - 1, record


def _json_rows(path: Path, report: Reporter) -> Iterator[tuple[int, int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a valid JSON file ({e})") from None
    if isinstance(data, Mapping) and not detect_format(data):
        # {"id": {...}, ...}: an object of records keyed by id
        if data and all(isinstance(v, Mapping) for v in data.values()):
            data = [{"id": k, **v} if "id" not in v else dict(v) for k, v in data.items()]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records or one record object")
    for i, record in enumerate(data):
        if not isinstance(record, Mapping):
            report(f"record {i + 1} is {json_type(record)}, not a JSON object", path, i + 1)
            continue
        yield i + 1, i, record


def _csv_rows(path: Path, report: Reporter) -> Iterator[tuple[int, int, Any]]:
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read the CSV header: {e}") from None
        index = 0
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                report(f"unreadable CSV record ({e})", path, start)
                return
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                report(f"CSV record has {len(values)} fields, the header {len(header)}", path, start)
                index += 1
                continue
            yield start, index, dict(zip(header, values))
            index += 1


def _parquet_rows(path: Path, report: Reporter) -> Iterator[tuple[int, int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
        raise InputError(f"{path}: cannot read as Parquet: {e}") from None
    for i, record in enumerate(table.to_pylist()):
        yield i + 1, i, record


def file_rows(path: Path, report: Reporter) -> Iterator[tuple[int, int, Any]]:
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return _jsonl_rows(path, report)
    if name.endswith(".json"):
        return _json_rows(path, report)
    if name.endswith(".csv"):
        return _csv_rows(path, report)
    if name.endswith(".parquet"):
        return _parquet_rows(path, report)
    raise InputError(f"{path}: unknown benchmark file type (expected .jsonl, .json, .csv or .parquet)")


def math_folder_rows(folder: Path, report: Reporter) -> Iterator[tuple[str, int, int, Any]]:
    """The original MATH layout: one problem per ``.json`` file. Ids are paths relative to the folder
    given, led by the split folder's name when that is the folder given: ``MATH/`` and ``MATH/test/``
    both give ``test/algebra/1.json``, the form of MATH-500's ``unique_id``."""
    files = sorted(folder.rglob("*.json"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])
    for index, path in enumerate(files):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            report(f"not a valid JSON file ({e})", path, None)
            continue
        if not isinstance(record, Mapping):
            report("the file is not a JSON object", path, None)
            continue
        rel = path.relative_to(folder).as_posix()
        if folder.name in ("train", "test"):
            rel = f"{folder.name}/{rel}"
        yield str(path), 1, index, {"unique_id": rel, **record}


def benchmarks_dir() -> Path | None:
    """The benchmarks folder: ``$RATIONALYST_BENCHMARKS`` if set, else the first existing of
    `DEFAULT_BENCHMARK_DIRS` (relative to the current directory), else None."""
    env = os.environ.get(BENCHMARKS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    for candidate in DEFAULT_BENCHMARK_DIRS:
        path = Path(candidate)
        if path.is_dir():
            return path
    return None


def _places_looked() -> str:
    env = os.environ.get(BENCHMARKS_ENV, "").strip()
    if env:
        return f"${BENCHMARKS_ENV}={env}"
    cwd = Path.cwd()
    return f"${BENCHMARKS_ENV} (not set), " + ", ".join(str((cwd / c).resolve()) for c in DEFAULT_BENCHMARK_DIRS)


def default_path(spec: BenchmarkSpec) -> Path:
    how = (
        f"set ${BENCHMARKS_ENV} to the benchmarks folder, or pass a file, a folder or hf:<dataset> "
        f"as the source (see rationalyst.data.benchmarks)"
    )
    assert spec.default_file is not None
    folder = benchmarks_dir()
    if folder is None:
        raise RationalystError(f"{spec.name}: no benchmarks folder found (looked at {_places_looked()}); {how}")
    path = folder / spec.default_file
    if not path.is_file():
        if spec.missing_hint:
            how = f"for {spec.missing_hint}"
        raise RationalystError(f"{spec.name}: {path} not found (benchmarks folder from {_places_looked()}); {how}")
    return path


def benchmark_split(name: str, source: str | os.PathLike[str] | None = None) -> str | None:
    """The split a benchmark source holds, by its name (``train``, ``test``, ``val``...): the file's
    name up to its first dot, the folder's name, or the hub split; None for generated benchmarks."""
    spec = BENCHMARKS.get(name)
    if spec is None or (name in GENERATED and (source is None or str(source).strip().startswith("seed"))):
        return None
    src = os.fspath(source) if source is not None else None
    if src is not None and src.startswith("hf:"):
        return parse_hub_source(spec, src).split
    path = Path(src if src is not None else (spec.default_file or ""))
    return path.name.split(".")[0] or None


def resolve_path(spec: BenchmarkSpec, source: Path) -> Path:
    if source.exists():
        return source
    if not source.is_absolute():
        folder = benchmarks_dir()
        if folder is not None and (folder / source).exists():
            return folder / source
        also = f" nor in the benchmarks folder {folder}" if folder is not None else ""
        raise InputError(f"{spec.name}: {source} not found (relative to {Path.cwd()}{also})")
    raise InputError(f"{spec.name}: {source} not found")


def parse_hub_source(spec: BenchmarkSpec, source: str) -> HubSource:
    """``hf:<dataset>[:<config>][@<split>]`` -> `HubSource`; ``hf:`` alone is the spec's hub copy,
    and parts left out (config, split) default to it when the dataset is the spec's (else no config,
    split ``test``). The spec's syntax is `rationalyst.data.hub.parse_hf_spec`'s."""
    if not source[len("hf:") :].strip() and spec.hf is None:
        raise RationalystError(f"{spec.name}: no hub copy is known; pass hf:<dataset>[:<config>][@<split>] or a file")
    return parse_hf_spec(source, default=spec.hf, default_split="test")


def hub_rows(spec: BenchmarkSpec, source: str) -> tuple[str, str, Iterator[tuple[int, int, Any]]]:
    """(label, split, rows) of a hub dataset, or a clear `RationalystError` when it cannot be had."""
    hub = parse_hub_source(spec, source)
    label = hub.spec()
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise RationalystError(f"{label}: reading hub datasets needs the `datasets` package") from e
    how = (
        "download it where the hub is reachable (or copy the file) and pass the file as the source; "
        "with a copy in the local datasets cache, set HF_HUB_OFFLINE=1"
    )
    ds, _offline = load_hub_dataset(datasets, hub, label, how)

    def rows() -> Iterator[tuple[int, int, Any]]:
        for i, record in enumerate(ds):
            yield i + 1, i, record

    return label, hub.split, rows()
