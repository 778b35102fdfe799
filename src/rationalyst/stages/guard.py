"""The contamination guard of a run: evaluation items against the text the rationalist learns from.

`rationalyst run` checks twice before any mining starts: the corpus inputs that are benchmark files
(seconds, before any model loads: this is where a recipe that mines an evaluation split is caught),
and every document the select stage kept (exactly the text that extraction and training see). The eval
stage checks its ``training_data`` again and writes the result into every run's manifest, so a report
says how many items overlapped. Each check writes ``contamination.json`` and refuses to go on when an
item overlaps, unless the recipe says ``allow_contamination: true``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.data.contamination import EvalNgrams, OverlapResult
from rationalyst.runs import read_json_lines
from rationalyst.errors import RationalystError

log = logging.getLogger(__name__)

REPORT_FILE = "contamination.json"


class ContaminationError(RationalystError):
    """Evaluation items overlap the training text and the recipe did not allow it."""


def record_text(record: Mapping[str, Any]) -> str:
    """The training text of a record: a document's ``text``, or a mined record's preceding, rationale
    and following text."""
    if isinstance(record.get("text"), str):
        return record["text"]
    return "\n".join(str(record[k]) for k in ("preceding", "rationale", "following") if isinstance(record.get(k), str))


def texts_of(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(id, text) of every record in run directories or JSONL files; bad lines are passed over."""
    for path in paths:
        for _, line, record in read_json_lines(Path(path), lambda *_: None, stage="training data"):
            if record.get("selected") is False:  # a select run's rejected documents carry no text
                continue
            yield str(record.get("id", f"{path}:{line}")), record_text(record)


def check(
    items: Mapping[str, list[BenchmarkItem]],
    texts: Iterable[tuple[str, str]],
    *,
    where: str,
    allow: bool,
    report: Path | None = None,
) -> dict[str, OverlapResult]:
    """Overlaps per benchmark of ``items`` with ``texts`` (streamed once); writes ``report`` and raises
    `ContaminationError` when any item overlaps unless ``allow``."""
    indexes = {name: EvalNgrams(group) for name, group in items.items()}
    results = {name: OverlapResult(items_checked=index.items) for name, index in indexes.items()}
    for text_id, text in texts:
        for name, index in indexes.items():
            results[name].texts_scanned += 1
            for item_id in index.matches(text):
                results[name].overlapping.setdefault(item_id, text_id)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        payload = {"checked": where, "allowed": allow, "benchmarks": {k: v.to_json() for k, v in results.items()}}
        report.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    bad = {name: r for name, r in results.items() if r.overlapping}
    if bad:
        summary = "; ".join(
            f"{name}: {len(r.overlapping)} of {r.items_checked} items (e.g. {next(iter(sorted(r.overlapping)))} "
            f"in {r.overlapping[next(iter(sorted(r.overlapping)))]})"
            for name, r in bad.items()
        )
        message = f"evaluation items share a 13-gram with {where}: {summary}"
        if not allow:
            raise ContaminationError(
                f"{message}. Take the evaluation split out of the corpus (mine train splits only), or set "
                "allow_contamination: true to go on anyway" + (f"; ids in {report}" if report else "")
            )
        log.warning("%s (allowed by allow_contamination)", message)
    return results
