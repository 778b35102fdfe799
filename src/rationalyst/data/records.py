"""Reading JSON Lines records robustly: one object per line, bad lines reported, never fatal.

Stages hand records to each other as JSON lines (`rationalyst.runs.read_json_lines` reads a run
directory's shards with this). The reader here yields each JSON object with where it
came from (file and 1-based line), and reports lines it cannot use (invalid UTF-8, malformed JSON, not
an object, nested deeper than `MAX_DEPTH`, a string holding an unpaired surrogate, a NaN or infinite
number) to
``on_skip(reason, file, line)`` (a stage passes its run's `RunDir.skip`, which counts them in the
manifest); the stage then checks its own fields.
An unpaired surrogate (a JSON escape such as ``"\ud800"``, which Python's reader accepts) cannot be
written as UTF-8: a record holding one would fail every later write of it, so it is skipped here.
Deep nesting is refused here because Python's JSON reader raises ``RecursionError`` on it (about 1,000
levels), and a record just under that limit would raise it later in whatever walks the record.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


SkipReporter = Callable[[str, Path, int], None]

log = logging.getLogger(__name__)

MAX_DEPTH = 100
"""Records nested deeper than this (arrays and objects) are skipped; this project's records use < 10."""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins an escaped pair into one character
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # the only way one gets into a valid UTF-8 line
# Python's reader takes NaN and Infinity (not JSON) and reads 1e999 as infinite; no writer here writes them.
_NON_FINITE_SPELLING = re.compile(rb"NaN|Infinity|[eE]\+?\d{3}")


def lone_surrogate_at(value: Any) -> str | None:
    """Where ``value`` holds an unpaired surrogate code point, which cannot be encoded as UTF-8; None if
    nowhere. Every string counts, keys included, at any depth of objects and arrays. The answer names
    the field for messages: ``meta.tags[1]``; a bad key with its surrogate escaped (``meta.\\udfff``);
    ``""`` for ``value`` itself. Every reader of records uses this one check."""
    return _first_at(value, lambda item: isinstance(item, str) and bool(_LONE_SURROGATE.search(item)))


def non_finite_at(value: Any) -> str | None:
    """Where ``value`` holds a NaN or infinite float, which JSON cannot hold (Python would write the
    non-standard ``NaN``); None if nowhere. The answer names the field as `lone_surrogate_at` does."""
    return _first_at(value, lambda item: isinstance(item, float) and not math.isfinite(item))


def _first_at(value: Any, bad: Callable[[Any], bool]) -> str | None:
    """The path of the first item (or object key) of ``value`` for which ``bad`` holds, at any depth of
    objects and arrays (the walk is iterative: no recursion limit); None if none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                name = str(key)
                if bad(name):
                    name = name.encode("utf-8", "backslashreplace").decode("utf-8")
                    return f"{path}.{name}" if path else name
                stack.append((child, f"{path}.{name}" if path else name))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif bad(item):
            return path
    return None


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects more than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def json_objects(file: Path, on_skip: SkipReporter) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, line, record) for every JSON object of one JSON Lines file; other lines are skipped and
    reported (run directories of shards: `rationalyst.runs.read_json_lines`)."""
    with open(file, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark some editors write
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                on_skip("invalid UTF-8", file, line_no)
                continue
            except ValueError:
                on_skip("malformed JSON", file, line_no)
                continue
            except RecursionError:
                on_skip("malformed JSON (nested too deeply)", file, line_no)
                continue
            if not isinstance(record, dict):
                on_skip("record is not a JSON object", file, line_no)
                continue
            if _nested_deeper_than(record, MAX_DEPTH):
                on_skip("malformed JSON (nested too deeply)", file, line_no)
                continue
            if _SURROGATE_ESCAPE.search(raw) and lone_surrogate_at(record) is not None:
                on_skip("invalid unicode (an unpaired surrogate escape)", file, line_no)
                continue
            if _NON_FINITE_SPELLING.search(raw) and non_finite_at(record) is not None:
                on_skip("a number JSON cannot hold (NaN or infinite)", file, line_no)
                continue
            yield file, line_no, record
