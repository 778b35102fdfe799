"""Streaming corpus readers: unlabeled documents and benchmark questions for Stage 1 of RATIONALYST.

Stage 1 selects reasoning-rich documents from an unlabeled corpus (the paper: the Pile) by comparing
each document's embedding with the mean embedding of benchmark questions. This module turns the many
shapes such data comes in into one stream of `Document` records. Three properties matter:

**Streaming.** A corpus may be 100 GB; it never sits in memory. JSON Lines files (plain, ``.gz``,
``.zst``, ``.bz2``, ``.xz``) are read line by line through a bounded buffer, Parquet files one record
batch at a time, Hugging Face datasets saved with ``save_to_disk`` through their memory-mapped Arrow
files in batches, and ``hf:<name>`` hub datasets with ``streaming=True``. Folders are walked lazily.
Only a text file (``.txt``/``.md``, one document per file) is read whole: it *is* one document.

**Stable ids.** Every document gets an id that is the same on every run, on every machine, and does
not depend on which other files are read or in what order, so a resumed stage (see
`rationalyst.runs`) recognises work it already did:

* the record's own ``id_field`` value (a string, or an integer written as a string) when present;
* otherwise ``<file>:<n>``: ``<file>`` is the file's path relative to the input root, ``/``-separated
  (the file's own name when the input is a single file, the path below the folder for a folder, the
  path below the pattern's fixed prefix for a glob), and ``<n>`` the record's 1-based position in the
  file: its line number in JSON Lines, its row number in Parquet and Arrow datasets;
* a text file's id is its relative path alone (``notes/a.txt``);
* saved Hugging Face datasets use ``<folder>:<n>`` (``<folder>/<split>:<n>`` for a ``DatasetDict``),
  hub datasets ``hf:<name>[:<config>]/<split>:<n>``.

Derived ids are unique within one input; when a stage combines several inputs whose files share names
it should namespace ids by source (e.g. ``f"{doc.source}/{doc.id}"``). Ids taken from the data are
used as they are; this module does not deduplicate them (that would need memory proportional to the
corpus).

**Skip and count, never crash on data.** A bad record (malformed JSON, a line that is not valid UTF-8,
JSON that is not an object, a missing / null / non-string / empty text field, an invalid id, a
string anywhere in the record holding an unpaired surrogate, which cannot be written out) is skipped
and reported through ``on_skip(reason, file, line, detail)``; ``reason`` is one of the
``SKIP_*`` constants below, ``file`` the file's path, ``line`` the 1-based line (row) number or None
when the problem concerns a whole file, ``detail`` a message naming the field. A stage forwards these
to `RunDir.skip` so its manifest counts them::

    on_skip=lambda reason, file, line, detail: run.skip(reason, file=file, line=line, detail=detail)

Without ``on_skip`` skips are logged. A file that cannot be read part-way (a truncated ``.gz``, a
corrupt Parquet file) is reported as ``read_error`` and reading goes on with the next file. Problems
with the input *as a whole* — a path that does not exist, a file of an unknown format, a glob that
matches nothing, a hub dataset that cannot be reached — raise `RationalystError` (an `InputError`
for local paths) when `read_corpus` is called, with a message naming the path (a split missing from a
saved ``DatasetDict``, and a hub stream that breaks part-way, raise when they are met).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import json
import logging
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from rationalyst.data.hub import HF_PREFIX, load_hub_dataset, parse_hf_spec
from rationalyst.data.hub import hub_reachable as _hub_reachable
from rationalyst.data.records import lone_surrogate_at
from rationalyst.errors import InputError, RationalystError

logger = logging.getLogger(__name__)

SkipCallback = Callable[[str, str, "int | None", str], None]
"""``on_skip(reason, file, line, detail)``: called once for every skipped record or file."""

# Skip reasons (stable strings: they become keys of a manifest's skip counts).
SKIP_INVALID_UTF8 = "invalid_utf8"  # the line (or text file) is not valid UTF-8
SKIP_INVALID_JSON = "invalid_json"  # the line is not valid JSON
SKIP_NOT_OBJECT = "not_an_object"  # the line is JSON but not an object
SKIP_MISSING_TEXT = "missing_text"  # the text field (or column) is absent or null
SKIP_TEXT_NOT_STRING = "text_not_string"  # the text field holds a number, list, object, ...
SKIP_EMPTY_TEXT = "empty_text"  # the text is empty or whitespace only
SKIP_INVALID_UNICODE = "invalid_unicode"  # a string (text, id, any field) holds a lone surrogate, unencodable
SKIP_BAD_ID = "bad_id"  # the id field is present but not a non-empty string or an integer
SKIP_BAD_CHOICES = "bad_choices"  # read_questions: ``choices`` is present but not a list
SKIP_READ_ERROR = "read_error"  # a file could not be opened or read to its end (truncated, corrupt)
SKIP_UNSUPPORTED_FILE = "unsupported_file"  # a file in a folder has no supported suffix

JSONL_SUFFIXES: dict[str, str | None] = {
    ".jsonl": None,
    ".jsonl.gz": "gz",
    ".jsonl.zst": "zst",
    ".jsonl.zstd": "zst",
    ".jsonl.bz2": "bz2",
    ".jsonl.xz": "xz",
}
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt", ".md")

_READ_BUFFER = 1 << 20  # bytes read from disk at a time
_DECOMPRESSED_BUFFER = 1 << 16  # decompressed bytes buffered for splitting into lines
_BATCH_ROWS = 256  # Parquet / Arrow rows converted to Python at a time
_LOGGED_SKIPS = 20  # without on_skip, this many skips are logged as warnings, the rest at debug level
_BOM = b"\xef\xbb\xbf"
_GLOB_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class Document:
    """One document (or benchmark question) read from a corpus.

    ``id``: stable across runs (see the module docstring). ``text``: the document text, unchanged.
    ``source``: the ``source`` label given to the reader, else the file's relative name (``hf:<name>``
    for hub datasets). ``meta``: where it came from — ``file`` (relative name, as in the id), ``line``
    (JSON Lines, 1-based) or ``row`` (Parquet / Arrow / hub, 1-based), ``split`` (saved ``DatasetDict``
    and hub datasets) — and ``fields``: the record's other fields (everything except the text and id
    fields), e.g. the Pile's ``{"meta": {"pile_set_name": ...}}``.
    """

    id: str
    text: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """A plain dict (``id``, ``text``, ``source``, ``meta``) for writing as a JSON line."""
        return {"id": self.id, "text": self.text, "source": self.source, "meta": self.meta}


class _Skip(Exception):
    """Raised inside record parsing: the record is skipped with this reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _DefaultSkipLogger:
    """The ``on_skip`` used when none is given: logs the first skips as warnings, the rest at debug."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, reason: str, file: str, line: int | None, detail: str) -> None:
        self.count += 1
        where = f"{file}:{line}" if line is not None else file
        level = logging.WARNING if self.count <= _LOGGED_SKIPS else logging.DEBUG
        logger.log(level, "skipped %s (%s): %s", where, reason, detail)
        if self.count == _LOGGED_SKIPS:
            logger.warning("further skipped records are logged at debug level only")


@dataclass
class _Context:
    """What every file reader needs: how to turn a record into a document, and where to report skips."""

    text_of: Callable[[Mapping[str, Any]], str]
    text_column: str
    drop_fields: tuple[str, ...]
    id_field: str | None
    source: str | None
    on_skip: SkipCallback

    def skip(self, reason: str, file: str | Path, line: int | None, detail: str) -> None:
        self.on_skip(reason, str(file), line, detail)


@dataclass(frozen=True)
class _Unit:
    """One thing to read: a file (or saved dataset folder) and its name relative to the input root."""

    kind: str  # "jsonl", "parquet", "text", "hf_disk"
    path: Path
    rel: str
    compression: str | None = None


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def read_corpus(
    path_or_spec: str | os.PathLike[str],
    *,
    text_field: str = "text",
    id_field: str | None = "id",
    source: str | None = None,
    on_skip: SkipCallback | None = None,
    split: str | None = None,
) -> Iterator[Document]:
    """Stream the documents of a corpus, skipping (and reporting) bad records.

    ``path_or_spec`` is one of:

    * a JSON Lines file: ``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst`` (``.zstd``), ``.jsonl.bz2``,
      ``.jsonl.xz`` — one JSON object per line, blank lines ignored;
    * a Parquet file (``.parquet``), read one record batch at a time;
    * a text file (``.txt``, ``.md``): one document;
    * a folder: every supported file below it, recursively, in sorted order (names starting with
      ``.`` or ``_`` are ignored; other files are reported as ``unsupported_file``); a folder written by
      ``datasets``' ``save_to_disk`` (it holds ``state.json`` or ``dataset_dict.json``) is read as a
      dataset, wherever it is found;
    * a glob pattern (``data/**/*.jsonl.zst``), matched recursively, in sorted order;
    * ``hf:<name>`` — a Hugging Face hub dataset, streamed; options as a query string:
      ``hf:<name>?config=<config>&split=<split>`` (split default ``train``; the benchmarks' spelling
      ``hf:<name>[:<config>][@<split>]`` is read too, see `rationalyst.data.hub`). Where the hub cannot be
      reached this fails with a `RationalystError`; with ``HF_HUB_OFFLINE=1`` a copy in the local
      ``datasets`` cache is used if there is one.

    ``text_field``: the field (column) holding the text. ``id_field``: the field holding the id; where
    it is None or a record lacks it, ids are derived from file and position (see the module
    docstring). ``source``: the label put into `Document.source` (default: the file's relative name).
    ``on_skip(reason, file, line, detail)``: called for each skipped record. ``split``: for a saved
    ``DatasetDict`` the split to read (default: all, in sorted order), for ``hf:`` names the split
    (overrides the spec's). Input problems that concern the whole input raise `RationalystError` here,
    before the first document is read.
    """

    def text_of(record: Mapping[str, Any]) -> str:
        return _text_field(record, text_field)

    ctx = _Context(
        text_of=text_of,
        text_column=text_field,
        drop_fields=tuple(f for f in (text_field, id_field) if f),
        id_field=id_field,
        source=source,
        on_skip=on_skip if on_skip is not None else _DefaultSkipLogger(),
    )
    return _read(path_or_spec, ctx, split)


def default_sources(path_or_spec: str | os.PathLike[str]) -> set[str]:
    """The source labels `read_corpus` gives an input's documents when it is given none: the relative
    names of its files. Lists folders and globs, reads no record; empty for a hub dataset."""
    spec = _spec(path_or_spec)
    if spec.startswith(HF_PREFIX):
        return set()
    ctx = _Context(
        text_of=lambda record: "", text_column="text", drop_fields=(), id_field=None, source=None,
        on_skip=lambda reason, file, line, detail: None,
    )
    return {unit.rel for unit in _resolve(spec, ctx, None)}


def read_questions(
    path_or_spec: str | os.PathLike[str],
    *,
    include_choices: bool = True,
    id_field: str | None = "id",
    source: str | None = None,
    on_skip: SkipCallback | None = None,
) -> Iterator[Document]:
    """Stream benchmark questions from normalized benchmark JSON Lines (any input `read_corpus` takes).

    Each row's ``question`` is the document text; when ``include_choices`` and the row has a
    ``choices`` list, the options follow the question, one per line (without letters, which carry no
    meaning for embedding similarity). Rows without a usable question are skipped and reported like
    any bad record; a ``choices`` value that is neither null nor a list is reported as ``bad_choices``.
    The other fields (``answer``, ``solution``, ``choices``, ...) are in ``meta["fields"]``.
    Stage 1 embeds these texts and averages them: ``[d.text for d in read_questions(path)]``.
    """

    def text_of(record: Mapping[str, Any]) -> str:
        question = _text_field(record, "question")
        choices = record.get("choices")
        if not include_choices or choices is None:
            return question
        if not isinstance(choices, list):
            raise _Skip(SKIP_BAD_CHOICES, f"field 'choices' is {_json_type(choices)}, not a list")
        options = [c if isinstance(c, str) else json.dumps(c, ensure_ascii=False) for c in choices if c is not None]
        return "\n".join([question, *options]) if options else question

    ctx = _Context(
        text_of=text_of,
        text_column="question",
        drop_fields=tuple(f for f in ("question", id_field) if f),
        id_field=id_field,
        source=source,
        on_skip=on_skip if on_skip is not None else _DefaultSkipLogger(),
    )
    return _read(path_or_spec, ctx, None)


# --------------------------------------------------------------------------------------------------
# Resolving the input
# --------------------------------------------------------------------------------------------------


def _read(path_or_spec: str | os.PathLike[str], ctx: _Context, split: str | None) -> Iterator[Document]:
    """Check the input eagerly (raising `RationalystError`), then return the lazy document stream."""
    spec = _spec(path_or_spec)
    if spec.startswith(HF_PREFIX):
        return _read_hub(spec, ctx, split)
    units = _resolve(spec, ctx, split)
    return _read_units(units, ctx, split)


def _spec(path_or_spec: str | os.PathLike[str]) -> str:
    """The input as a string, ``~`` expanded (a recipe's ``~/data/x.jsonl`` reaches no shell)."""
    spec = os.fspath(path_or_spec)
    if not isinstance(spec, str):
        spec = os.fsdecode(spec)
    return spec if spec.startswith(HF_PREFIX) else os.path.expanduser(spec)


def _resolve(spec: str, ctx: _Context, split: str | None) -> Iterable[_Unit]:
    """The files to read, lazily where a folder is walked; raises for a missing or unknown input."""
    path = Path(spec)
    if path.is_dir():
        if _is_saved_dataset(path):
            _require_datasets(path)
            return [_Unit("hf_disk", path, path.name or path.resolve().name)]
        return _walk(path, PurePosixPath(), ctx)
    if path.exists():
        unit = _file_unit(path, path.name)
        if unit is None:
            raise InputError(
                f"{path}: unknown corpus format; supported are {_supported_formats()}, a folder of them, "
                f"a folder saved by `datasets` (save_to_disk), a glob pattern, or hf:<name>"
            )
        return [unit]
    if _GLOB_MAGIC.search(spec):
        matches = sorted(glob.glob(spec, recursive=True), key=_sort_key)
        if not matches:
            raise InputError(f"{spec}: the pattern matches no file")
        return _glob_units(spec, matches, ctx)
    raise InputError(f"{path}: no such file or folder")


def _glob_units(spec: str, matches: list[str], ctx: _Context) -> Iterator[_Unit]:
    base = _glob_base(spec)
    covered: set[Path] = set()  # folders already read whole: "data/**" also matches what lies inside them
    for match in matches:
        path = Path(match)
        resolved = path.resolve()
        if any(parent in covered for parent in resolved.parents):
            continue
        rel = PurePosixPath(*Path(os.path.relpath(path, base)).parts) if base else PurePosixPath(*path.parts)
        if _undecodable(rel.as_posix()):
            ctx.skip(SKIP_INVALID_UNICODE, _shown(path), None, "the name is not valid UTF-8, so no id can be made of it")
            continue
        if path.is_dir():
            covered.add(resolved)
            if _is_saved_dataset(path):
                yield _Unit("hf_disk", path, rel.as_posix())
            else:
                yield from _walk(path, rel, ctx)
        else:
            unit = _file_unit(path, rel.as_posix())
            if unit is None:
                ctx.skip(SKIP_UNSUPPORTED_FILE, path, None, f"not a supported format ({_supported_formats()})")
            else:
                yield unit


def _glob_base(spec: str) -> str:
    """The pattern's leading folders without wildcards (ids are relative to it)."""
    parts = Path(spec).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else ""


def _walk(root: Path, rel: PurePosixPath, ctx: _Context, _seen: frozenset[tuple[int, int]] = frozenset()) -> Iterator[_Unit]:
    """Depth first, entries of each folder in name order; symlinked folders are followed, cycles not."""
    try:
        stat = root.stat()
        key = (stat.st_dev, stat.st_ino)
        if key in _seen:
            return
        seen = _seen | {key}
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        ctx.skip(SKIP_READ_ERROR, root, None, f"cannot list the folder: {e}")
        return
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        path = Path(entry.path)
        if _undecodable(entry.name):
            ctx.skip(SKIP_INVALID_UNICODE, _shown(path), None, "the name is not valid UTF-8, so no id can be made of it")
            continue
        child = rel / entry.name
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if _is_saved_dataset(path):
                yield _Unit("hf_disk", path, child.as_posix())
            else:
                yield from _walk(path, child, ctx, seen)
            continue
        unit = _file_unit(path, child.as_posix())
        if unit is None:
            ctx.skip(SKIP_UNSUPPORTED_FILE, path, None, f"not a supported format ({_supported_formats()})")
        else:
            yield unit


def _undecodable(name: str) -> bool:
    """Whether a file name from the OS held bytes that are not UTF-8 (Python keeps them as lone
    surrogates, which no id, record or manifest can be written with)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(path: Path) -> str:
    """``path`` as printable, writable text: bytes that are not UTF-8 shown as ``\\xff`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _file_unit(path: Path, rel: str) -> _Unit | None:
    name = path.name.lower()
    for suffix, compression in JSONL_SUFFIXES.items():
        if name.endswith(suffix):
            return _Unit("jsonl", path, rel, compression)
    if name.endswith(PARQUET_SUFFIXES):
        return _Unit("parquet", path, rel)
    if name.endswith(TEXT_SUFFIXES):
        return _Unit("text", path, rel)
    return None


def _supported_formats() -> str:
    return ", ".join([*JSONL_SUFFIXES, *PARQUET_SUFFIXES, *TEXT_SUFFIXES])


def _sort_key(path: str) -> tuple[str, ...]:
    return Path(path).parts


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _require_datasets(where: Path | str) -> Any:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RationalystError(f"{where}: reading Hugging Face datasets needs the `datasets` package (pip install datasets)") from e
    return datasets


def _read_units(units: Iterable[_Unit], ctx: _Context, split: str | None) -> Iterator[Document]:
    for unit in units:
        if unit.kind == "jsonl":
            yield from _read_jsonl(unit, ctx)
        elif unit.kind == "parquet":
            yield from _read_parquet(unit, ctx)
        elif unit.kind == "text":
            doc = _read_text_file(unit, ctx)
            if doc is not None:
                yield doc
        else:
            yield from _read_saved_dataset(unit, ctx, split)


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _text_field(record: Mapping[str, Any], name: str) -> str:
    if name not in record:
        raise _Skip(SKIP_MISSING_TEXT, f"field {name!r} is missing")
    text = record[name]
    if text is None:
        raise _Skip(SKIP_MISSING_TEXT, f"field {name!r} is null")
    if not isinstance(text, str):
        raise _Skip(SKIP_TEXT_NOT_STRING, f"field {name!r} is {_json_type(text)}, not a string")
    if not text.strip():
        raise _Skip(SKIP_EMPTY_TEXT, f"field {name!r} is empty or whitespace only")
    return text


def _make_document(record: Any, unit_rel: str, n: int, position: str, ctx: _Context, extra_meta: Mapping[str, Any] | None = None) -> Document:
    """A document from one parsed record (raises `_Skip`); ``position`` is "line" or "row"."""
    if not isinstance(record, Mapping):
        raise _Skip(SKIP_NOT_OBJECT, f"the record is {_json_type(record)}, not an object")
    text = ctx.text_of(record)
    where = lone_surrogate_at(record)  # the text, the id, or a field kept in meta: all are written out
    if where is not None:
        detail = f"field '{where}' holds an unpaired surrogate (a JSON escape such as \\ud800): it cannot be written as UTF-8"
        raise _Skip(SKIP_INVALID_UNICODE, detail)
    doc_id = None
    if ctx.id_field is not None:
        value = record.get(ctx.id_field)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise _Skip(SKIP_BAD_ID, f"field {ctx.id_field!r} is {_json_type(value)}, not a string or integer")
            doc_id = str(value)
            if not doc_id.strip():
                raise _Skip(SKIP_BAD_ID, f"field {ctx.id_field!r} is an empty string")
    if doc_id is None:
        doc_id = f"{unit_rel}:{n}"
    meta: dict[str, Any] = {"file": unit_rel, position: n}
    if extra_meta:
        meta.update(extra_meta)
    meta["fields"] = {k: v for k, v in record.items() if k not in ctx.drop_fields}
    return Document(id=doc_id, text=text, source=ctx.source if ctx.source is not None else unit_rel, meta=meta)


# --------------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------------


class _ZstdRaw(io.RawIOBase):
    """A raw binary stream decompressing a (multi-frame) Zstandard file, which notices truncation.

    ``zstandard``'s own stream reader ends quietly at a truncated frame; here an unfinished frame at
    the end of the file raises `EOFError` so the loss is reported. ``max_window_size`` allows files
    written with ``zstd --long`` (as some corpus dumps are).
    """

    def __init__(self, fileobj: io.BufferedIOBase) -> None:
        import zstandard

        self._fileobj = fileobj
        self._dctx = zstandard.ZstdDecompressor(max_window_size=2**31)
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._buffer = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            if self._done:
                return 0
            chunk = self._fileobj.read(_READ_BUFFER)
            if not chunk:
                self._done = True
                if self._in_frame:
                    raise EOFError("the Zstandard stream is truncated (the file ends inside a frame)")
                return 0
            self._buffer = memoryview(self._decompress(chunk))
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_frame = True
            out.append(self._obj.decompress(data))
            if not self._obj.eof:
                break
            self._in_frame = False
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
        return b"".join(out)


def _open_lines(path: Path, compression: str | None, stack: ExitStack) -> io.BufferedIOBase:
    """A binary stream of the file's (decompressed) bytes, read through a bounded buffer; ``stack``
    closes it and the underlying file."""
    raw = stack.enter_context(open(path, "rb", buffering=_READ_BUFFER))
    if compression is None:
        return raw
    # The decompressing readers are buffered already, in small buffers: a truncated file then loses
    # little more than the lines after the damage (they are read in bulk from ``raw`` regardless).
    if compression == "gz":
        return stack.enter_context(gzip.GzipFile(fileobj=raw))
    if compression == "bz2":
        return stack.enter_context(bz2.BZ2File(raw))
    if compression == "xz":
        return stack.enter_context(lzma.LZMAFile(raw))
    if compression == "zst":
        try:
            inner = stack.enter_context(_ZstdRaw(raw))
        except ImportError as e:
            raise RationalystError(f"{path}: reading .zst files needs the `zstandard` package (pip install zstandard)") from e
        return stack.enter_context(io.BufferedReader(inner, buffer_size=_DECOMPRESSED_BUFFER))
    raise ValueError(f"unknown compression {compression!r}")


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _read_jsonl(unit: _Unit, ctx: _Context) -> Iterator[Document]:
    errors = _read_errors()
    line_no = 0
    with ExitStack() as stack:
        try:
            stream = _open_lines(unit.path, unit.compression, stack)
        except errors as e:
            ctx.skip(SKIP_READ_ERROR, unit.path, None, f"cannot open the file: {e}")
            return
        try:
            for raw in stream:
                line_no += 1
                if line_no == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                try:
                    try:
                        line = raw.rstrip(b"\r\n").decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise _Skip(SKIP_INVALID_UTF8, f"the line is not valid UTF-8 (byte {e.start}: {e.reason})") from None
                    if not line.strip():
                        continue  # blank lines (e.g. a trailing one) are not records
                    try:
                        record = json.loads(line)
                    except (ValueError, RecursionError) as e:
                        raise _Skip(SKIP_INVALID_JSON, f"the line is not valid JSON ({e})") from None
                    doc = _make_document(record, unit.rel, line_no, "line", ctx)
                except _Skip as skip:
                    ctx.skip(skip.reason, unit.path, line_no, skip.detail)
                    continue
                yield doc
        except errors as e:
            ctx.skip(SKIP_READ_ERROR, unit.path, line_no + 1, f"the file cannot be read past line {line_no}: {e}")


# --------------------------------------------------------------------------------------------------
# Parquet and Arrow
# --------------------------------------------------------------------------------------------------


def _rows_of_batch(batch: Any, first_row: int, path: Path, ctx: _Context) -> Iterator[tuple[int, Any]]:
    """(1-based row number, row dict) for each row of a record batch; a row that cannot be converted
    to Python (e.g. invalid UTF-8 in a string column) is reported and skipped alone."""
    try:
        rows = batch.to_pylist()
    except Exception:  # noqa: BLE001 - isolate the bad row(s) below
        rows = None
    if rows is not None:
        for i, row in enumerate(rows):
            yield first_row + i, row
        return
    for i in range(batch.num_rows):
        try:
            row = batch.slice(i, 1).to_pylist()[0]
        except UnicodeDecodeError as e:
            ctx.skip(SKIP_INVALID_UTF8, path, first_row + i, f"a string value is not valid UTF-8 ({e.reason})")
            continue
        except Exception as e:  # noqa: BLE001
            ctx.skip(SKIP_READ_ERROR, path, first_row + i, f"the row cannot be read: {e}")
            continue
        yield first_row + i, row


def _documents_of_batches(
    batches: Iterator[Any], unit_rel: str, path: Path, ctx: _Context, extra_meta: Mapping[str, Any] | None = None
) -> Iterator[Document]:
    first = 1
    for batch in batches:
        for n, row in _rows_of_batch(batch, first, path, ctx):
            try:
                doc = _make_document(row, unit_rel, n, "row", ctx, extra_meta)
            except _Skip as skip:
                ctx.skip(skip.reason, path, n, skip.detail)
                continue
            yield doc
        first += batch.num_rows


def _check_columns(names: list[str], path: Path, ctx: _Context) -> bool:
    """Whether the table has the text column; if not, the whole file is reported once and skipped."""
    if ctx.text_column not in names:
        ctx.skip(SKIP_MISSING_TEXT, path, None, f"column {ctx.text_column!r} is not in the file (columns: {', '.join(names)})")
        return False
    return True


def _read_parquet(unit: _Unit, ctx: _Context) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(unit.path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        ctx.skip(SKIP_READ_ERROR, unit.path, None, f"cannot open as Parquet: {e}")
        return
    try:
        if not _check_columns(list(pf.schema_arrow.names), unit.path, ctx):
            return
        batches = pf.iter_batches(batch_size=_BATCH_ROWS)
        yield from _guarded_batches(_documents_of_batches(batches, unit.rel, unit.path, ctx), unit.path, ctx)
    finally:
        pf.close()


def _guarded_batches(docs: Iterator[Document], path: Path, ctx: _Context) -> Iterator[Document]:
    """Pass documents through; a read error part-way (a corrupt row group) is reported, not raised."""
    last_row = 0
    try:
        for doc in docs:
            last_row = doc.meta.get("row", last_row)
            yield doc
    except RationalystError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow's errors have no common base but Exception
        ctx.skip(SKIP_READ_ERROR, path, None, f"the file cannot be read past row {last_row}: {e}")


def _read_saved_dataset(unit: _Unit, ctx: _Context, split: str | None) -> Iterator[Document]:
    datasets = _require_datasets(unit.path)
    try:
        loaded = datasets.load_from_disk(str(unit.path))  # memory-maps the Arrow files
    except Exception as e:  # noqa: BLE001
        ctx.skip(SKIP_READ_ERROR, unit.path, None, f"cannot load the saved dataset: {e}")
        return
    if isinstance(loaded, datasets.DatasetDict):
        if split is not None:
            if split not in loaded:
                raise InputError(f"{unit.path}: the dataset has no split {split!r} (splits: {', '.join(sorted(loaded))})")
            parts = [(split, loaded[split])]
        else:
            parts = sorted(loaded.items())
        for name, ds in parts:
            yield from _read_arrow_dataset(ds, f"{unit.rel}/{name}", unit.path / name, ctx, {"split": name})
    else:
        yield from _read_arrow_dataset(loaded, unit.rel, unit.path, ctx, None)


def _read_arrow_dataset(ds: Any, rel: str, path: Path, ctx: _Context, extra_meta: Mapping[str, Any] | None) -> Iterator[Document]:
    if not _check_columns(list(ds.column_names), path, ctx):
        return
    tables = ds.with_format("arrow").iter(batch_size=_BATCH_ROWS)
    batches = (batch for table in tables for batch in table.to_batches())
    yield from _guarded_batches(_documents_of_batches(batches, rel, path, ctx, extra_meta), path, ctx)


# --------------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------------


def _read_text_file(unit: _Unit, ctx: _Context) -> Document | None:
    try:
        data = unit.path.read_bytes()
    except OSError as e:
        ctx.skip(SKIP_READ_ERROR, unit.path, None, f"cannot read the file: {e}")
        return None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        ctx.skip(SKIP_INVALID_UTF8, unit.path, line, f"the file is not valid UTF-8 (byte {e.start}: {e.reason})")
        return None
    if not text.strip():
        ctx.skip(SKIP_EMPTY_TEXT, unit.path, None, "the file is empty or whitespace only")
        return None
    return Document(
        id=unit.rel,
        text=text,
        source=ctx.source if ctx.source is not None else unit.rel,
        meta={"file": unit.rel, "fields": {}},
    )


# --------------------------------------------------------------------------------------------------
# Hugging Face hub
# --------------------------------------------------------------------------------------------------


def _read_hub(spec: str, ctx: _Context, split: str | None) -> Iterator[Document]:
    hub = parse_hf_spec(spec)
    hub = hub._replace(split=split or hub.split)
    datasets = _require_datasets(spec)
    how = (
        "to read it offline, download it where the hub is reachable and save it with "
        "`datasets.Dataset.save_to_disk(<folder>)`, then pass that folder; or, with a copy in the local datasets "
        "cache, set HF_HUB_OFFLINE=1"
    )
    # Offline, a cached copy is memory-mapped Arrow (not held in memory); online it is streamed.
    # `_hub_reachable` is looked up here, at call time, so that tests can replace it.
    ds, offline = load_hub_dataset(datasets, hub, spec, how, streaming=True, reachable=_hub_reachable)
    name, config, split = hub
    rel = f"hf:{name}" + (f":{config}" if config else "") + f"/{split}"
    source_ctx = ctx if ctx.source is not None else _with_source(ctx, f"hf:{name}")
    if offline:
        return _read_arrow_dataset(ds, rel, Path(spec), source_ctx, {"split": split})
    return _read_hub_stream(ds, spec, rel, source_ctx, split)


def _with_source(ctx: _Context, source: str) -> _Context:
    return _Context(ctx.text_of, ctx.text_column, ctx.drop_fields, ctx.id_field, source, ctx.on_skip)


def _read_hub_stream(ds: Any, spec: str, rel: str, ctx: _Context, split: str) -> Iterator[Document]:
    n = 0
    iterator = iter(ds)
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - a network failure part-way is not a data problem
            raise RationalystError(f"{spec}: streaming stopped after row {n}: {e}") from e
        n += 1
        try:
            doc = _make_document(row, rel, n, "row", ctx, {"split": split})
        except _Skip as skip:
            ctx.skip(skip.reason, spec, n, skip.detail)
            continue
        yield doc


def benchmark_documents(
    name: str,
    path_or_spec: str,
    *,
    source: str | None = None,
    on_skip: SkipCallback | None = None,
) -> Iterator[Document]:
    """A benchmark's rows as corpus documents, the paper's "question, then worked solution"
    (`rationale_text.document_text`); rows without a solution are skipped and reported."""
    from rationalyst.data.benchmarks import load_benchmark
    from rationalyst.data.rationale_text import document_text

    report = on_skip if on_skip is not None else _DefaultSkipLogger()
    items = load_benchmark(name, path_or_spec, on_skip=lambda reason, file, line: report(reason, file, line, ""))
    for item in items:
        text = document_text(item)
        if text is None:
            report(SKIP_MISSING_TEXT, str(path_or_spec), None, f"{item.id}: no worked solution")
            continue
        yield Document(id=item.id, text=text, source=source or name, meta={"file": str(path_or_spec), "benchmark": name})
