"""Contamination guard: evaluation questions that share a 13-gram with the training text.

The test of lm-evaluation-harness's decontamination and of the GPT-3 paper: an evaluation item is
contaminated when its question and some training document share a run of 13 words. Here the training
text is what the method mines (corpus documents, mined records), so a contaminated item is one whose
question the rationalist may have been trained on.

Memory is bounded by the evaluation side: the 13-grams of every evaluation question are hashed into
one dict (a few MB for the paper's ~32,000 questions); the training side is streamed once and never
held. A question shorter than 13 words is matched whole (as GPT-3 did). Words are lower-cased runs of
letters and digits, so punctuation, case and spacing do not hide an overlap.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rationalyst.data.benchmarks import BenchmarkItem

#: Words per n-gram (lm-evaluation-harness and GPT-3 used 13).
NGRAM = 13
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The case-folded words of ``text`` (runs of letters and digits), after NFKC normalization: a copy
    in another Unicode form (é as e + accent, fullwidth digits) has the same words."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _key(ngram: Iterable[str]) -> bytes:
    return hashlib.blake2b(" ".join(ngram).encode("utf-8"), digest_size=8).digest()


def _ngrams(tokens: list[str], n: int) -> Iterator[bytes]:
    for i in range(len(tokens) - n + 1):
        yield _key(tokens[i : i + n])


@dataclass
class OverlapResult:
    """Which evaluation items overlap the training text, with the first training text that did."""

    items_checked: int = 0
    texts_scanned: int = 0
    overlapping: dict[str, str] = field(default_factory=dict)  # item id -> id of the training text

    def to_json(self) -> dict:
        return {
            "ngram": NGRAM,
            "items_checked": self.items_checked,
            "texts_scanned": self.texts_scanned,
            "overlapping": len(self.overlapping),
            "ids": sorted(self.overlapping),
            "first_match": dict(sorted(self.overlapping.items())),
        }


class EvalNgrams:
    """The hashed 13-grams of evaluation questions (short questions whole), for streaming scans."""

    def __init__(self, items: Iterable[BenchmarkItem], n: int = NGRAM) -> None:
        self.n = n
        self.index: dict[bytes, list[str]] = {}
        self.lengths: set[int] = set()  # n-gram lengths to look for: n, and each shorter question's length
        self.items = 0
        for item in items:
            self.items += 1
            tokens = words(item.question)
            if not tokens:
                continue
            size = min(n, len(tokens))
            self.lengths.add(size)
            for key in set(_ngrams(tokens, size)):
                self.index.setdefault(key, []).append(item.id)

    def matches(self, text: str) -> set[str]:
        """Ids of the evaluation items that share an n-gram with ``text``."""
        tokens = words(text)
        found: set[str] = set()
        for size in self.lengths:
            for key in _ngrams(tokens, size):
                ids = self.index.get(key)
                if ids:
                    found.update(ids)
        return found

    def scan(self, texts: Iterable[tuple[str, str]]) -> OverlapResult:
        """Stream ``(text id, text)`` pairs once; every overlapping item with its first match."""
        result = OverlapResult(items_checked=self.items)
        for text_id, text in texts:
            result.texts_scanned += 1
            for item_id in self.matches(text):
                result.overlapping.setdefault(item_id, text_id)
        return result
