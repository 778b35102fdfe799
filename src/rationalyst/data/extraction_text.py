"""The text side of Stage 2 (extract), as pure functions: where a rationale may go in a document
(`split_boundaries`, `spread`), reading a ``<BOT>…<EOT>`` rewrite back (`parse_rewrite`) and mapping its
offsets onto the original (`map_offsets`), how faithful a rewrite is (`fidelity`), and tidying a
generated rationale (`clean_rationale`, `copies`, `truncate_left`). No model, no files.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

try:  # rapidfuzz is fast and exact; difflib is the fallback (its ratio is a lower bound of fuzz.ratio)
    from rapidfuzz.distance import Indel as _Indel
except ImportError:  # pragma: no cover - depends on the environment
    _Indel = None

BOT, EOT = "<BOT>", "<EOT>"


# ============================================================================ text utilities


def normalize_ws(text: str) -> str:
    return " ".join(text.split())


def similarity(a: str, b: str) -> float:
    """Normalized Indel similarity in [0, 1] (rapidfuzz ``fuzz.ratio / 100``); 1.0 for two empty texts."""
    if not a and not b:
        return 1.0
    if _Indel is not None:
        return float(_Indel.normalized_similarity(a, b))
    from difflib import SequenceMatcher

    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def fidelity(stripped: str, original: str) -> float:
    """How faithfully a rewrite (rationales stripped) kept the document, on whitespace-normalized text."""
    return similarity(normalize_ws(stripped), normalize_ws(original))


# ============================================================================ boundary splitting

_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_LIST_MARKER = re.compile(r"[ \t]*(?:\d+|[a-zA-Z])[.)]")
# Abbreviations that rarely end a sentence ("etc." and "no." often do, so they are not here).
_ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr vs e.g i.e cf fig eq approx".split())


def _ends_sentence(text: str, end: int) -> bool:
    """Whether ``text[:end]`` ends a sentence: ``. ! ?`` (maybe before a closing quote or bracket),
    not a list number at the start of a line ("2.") and not a common abbreviation ("e.g.")."""
    window = text[max(0, end - 40) : end]
    if not _SENTENCE_END.search(window):
        return False
    line_start = text.rfind("\n", 0, end) + 1
    if _LIST_MARKER.fullmatch(text, line_start, end):
        return False
    words = window.split()
    last = words[-1].rstrip("\"'”’)]").rstrip(".!?").lower() if words else ""
    return last not in _ABBREVIATIONS


def split_boundaries(text: str, min_preceding_chars: int = 0) -> list[int]:
    """Insertion points of a document: offsets right after a sentence end or at a line end.

    An offset ``p`` means ``preceding = text[:p]`` (never ending in whitespace) and the rest starts
    with the whitespace after it. Points with fewer than ``min_preceding_chars`` characters before
    them, or with only whitespace after them, are left out.
    """
    points = []
    for match in re.finditer(r"\s+", text):
        start, end = match.span()
        if start == 0 or end == len(text) or start < min_preceding_chars:
            continue
        if "\n" in match.group() or _ends_sentence(text, start):
            points.append(start)
    return points


def spread(points: Sequence[int], k: int) -> list[int]:
    """At most ``k`` of ``points``, spread evenly (first and last kept), in order."""
    if len(points) <= k:
        return list(points)
    if k == 1:
        return [points[len(points) // 2]]
    step = (len(points) - 1) / (k - 1)
    return [points[round(i * step)] for i in range(k)]


# ============================================================================ rewrite parsing

_MARKER = re.compile(r"<(/?)(BOT|EOT)>", re.IGNORECASE)


@dataclass
class ParsedRewrite:
    """A rewritten document: its text without rationales, where each rationale sat, what was dropped."""

    stripped: str
    rationales: list[tuple[int, str]]  # (offset in ``stripped``, rationale text), in order
    dropped: Counter = field(default_factory=Counter)


def parse_rewrite(text: str) -> ParsedRewrite:
    """Split a model's rewrite into the document text and its ``<BOT>…<EOT>`` rationales.

    Never raises: malformed markers are dropped and counted (see the module docstring). Removing a
    rationale between two whitespace runs keeps only the one after it, so ``"a. <BOT>r<EOT> b"``
    strips to ``"a. b"`` with the rationale at offset 2.
    """
    markers = [(m.start(), m.end(), m.group(2).upper() == "BOT" and not m.group(1)) for m in _MARKER.finditer(text)]
    out = ""
    floor = 0  # the last recorded offset: whitespace collapsing never moves before it
    rationales: list[tuple[int, str]] = []
    dropped: Counter = Counter()
    pos = 0

    def remove_span(span_start: int, span_end: int) -> int:
        """Copy the text before the span, skip the span; returns the offset in ``out`` where it was."""
        nonlocal out
        out += text[pos:span_start]
        if span_end >= len(text) or text[span_end].isspace():
            trimmed = out.rstrip(" \t")
            out = out[: max(len(trimmed), floor)]
        return len(out)

    i = 0
    while i < len(markers):
        start, end, is_open = markers[i]
        if not is_open:  # a close marker with no open one
            dropped["stray_marker"] += 1
            remove_span(start, end)
            pos, i = end, i + 1
            continue
        if i + 1 < len(markers) and not markers[i + 1][2]:  # <BOT> … <EOT>
            close_start, close_end, _ = markers[i + 1]
            content = normalize_ws(text[end:close_start])
            offset = remove_span(start, close_end)
            if content:
                rationales.append((offset, content))
                floor = offset
            else:
                dropped["empty"] += 1
            pos, i = close_end, i + 2
            continue
        depth, close_at = 0, None
        for n in range(i, len(markers)):
            depth += 1 if markers[n][2] else -1
            if depth == 0:
                close_at = n
                break
        if close_at is not None:  # <BOT> … <BOT> … <EOT> … <EOT>: nested, dropped whole
            dropped["nested_markers"] += sum(1 for m in markers[i : close_at + 1] if m[2])
            remove_span(start, markers[close_at][1])
            pos, i = markers[close_at][1], close_at + 1
            continue
        # <BOT> never closed: its text runs to the end of its line or the next marker.
        next_marker = markers[i + 1][0] if i + 1 < len(markers) else len(text)
        newline = text.find("\n", end, next_marker)
        span_end = newline if newline >= 0 else next_marker
        dropped["unclosed_marker"] += 1
        remove_span(start, span_end)
        pos, i = span_end, i + 1
    out += text[pos:]
    return ParsedRewrite(out, rationales, dropped)


def _opcodes(src: str, dst: str) -> list[tuple[str, int, int, int, int]]:
    if _Indel is not None:
        return [tuple(op) for op in _Indel.opcodes(src, dst)]  # type: ignore[misc]
    from difflib import SequenceMatcher

    return SequenceMatcher(None, src, dst, autojunk=False).get_opcodes()


def _closing_punctuation(text: str) -> bool:
    """Whether ``text`` is some punctuation that ends what comes before it (``. ? ! , ; : ) ”`` …, not
    an opening bracket or quote: Unicode categories Ps, Pi), maybe with whitespace between."""
    return bool(text.strip()) and all(
        ch.isspace() or (unicodedata.category(ch)[0] == "P" and unicodedata.category(ch) not in ("Ps", "Pi"))
        for ch in text
    )


def map_offsets(stripped: str, original: str, offsets: Sequence[int]) -> list[int | None]:
    """Each offset in ``stripped`` as an offset in ``original``, or None where it has no clear place.

    Where the model dropped or replaced only closing punctuation next to its rationale (the sentence's
    ``?`` turned into the space before ``<BOT>``), the rationale goes after that punctuation: it ends
    the text before the rationale, so ``following`` never starts with it.
    """
    blocks: list[list[Any]] = []  # [equal, s0, s1, d0, d1]; neighbouring changes merged
    for tag, s0, s1, d0, d1 in _opcodes(stripped, original):
        if tag != "equal" and blocks and not blocks[-1][0]:
            blocks[-1][2], blocks[-1][4] = s1, d1
        else:
            blocks.append([tag == "equal", s0, s1, d0, d1])
    if not blocks:  # both empty
        blocks = [[True, 0, 0, 0, 0]]
    mapped: list[int | None] = []
    for k in offsets:
        result: int | None = None
        for equal, s0, s1, d0, d1 in blocks:
            if equal and s0 <= k <= s1:
                result = d0 + (k - s0)
                break
        for equal, s0, s1, d0, d1 in blocks:
            if equal or not (s0 <= k <= s1):
                continue
            replaced = original[d0:d1].strip()
            if _closing_punctuation(replaced):
                result = d1
            elif s0 < k < s1:  # inside the change: fine only if the model added text and replaced none
                result = None if replaced else d0
            elif s0 == s1 == k and replaced:  # right where the model dropped original text
                result = None
            elif result is None:
                result = d0 if k == s0 else d1
            break
        mapped.append(result)
    return mapped


def clean_rationale(text: str) -> str:
    """A generated rationale as one line of text: markers and enclosing quotes removed, whitespace collapsed."""
    text = normalize_ws(_MARKER.sub(" ", text))
    if len(text) >= 2 and (text[0], text[-1]) in {('"', '"'), ("'", "'"), ("“", "”")}:
        text = text[1:-1].strip()
    return text


def copies(rationale: str, text: str) -> bool:
    """Whether ``rationale`` repeats ``text`` (contained in it, or nearly equal to its start or end)."""
    r, t = normalize_ws(rationale).lower(), normalize_ws(text).lower()
    if not r or not t:
        return False
    return r in t or similarity(r, t[: len(r)]) >= 0.9 or similarity(r, t[-len(r) :]) >= 0.9


def truncate_left(text: str, max_chars: int) -> str:
    """The last ``max_chars`` characters of ``text``, starting at a word, marked with an ellipsis."""
    if len(text) <= max_chars:
        return text
    tail = text[-max_chars:]
    cut = re.search(r"\s", tail)
    if cut and cut.start() < len(tail) // 4:
        tail = tail[cut.start() :].lstrip()
    return "… " + tail
