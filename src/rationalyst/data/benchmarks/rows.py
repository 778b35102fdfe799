"""Rows to items: the parse loop every source goes through, and the reporting of skipped rows.

A source yields rows ``(file, line, index, part, record)`` (`SourceRow`); `parse_rows` picks their
format (`formats.choose_format`), parses each, checks it as a `BenchmarkItem` and drops repeated ids.
Bad rows go to the `Reporter`: ``on_skip(reason, file, line)`` (`OnSkip`), or without one an
`InputError` at the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path

from pydantic import ValidationError

from rationalyst.data.benchmarks.formats import FORMATS, BadRow, Row, SourceRow, choose_format
from rationalyst.data.benchmarks.items import BenchmarkItem, BenchmarkSpec
from rationalyst.errors import InputError

OnSkip = Callable[[str, "str | None", "int | None"], None]
"""``on_skip(reason, file, line)``: called once for every skipped row (``line`` is 1-based: the line
of a JSON Lines file, the first line of a CSV record, the position in a JSON list or a dataset)."""

#: Rows read ahead to decide a file's format (`formats.choose_format`).
_DETECT_ROWS = 20


class Reporter:
    """Forwards skips to ``on_skip``; without one, the first bad row raises `InputError`.

    While the first rows are read ahead to decide the format, skips are held back (`defer`) and
    released in their place among the rows (`release`), so they are reported in file order.
    """

    def __init__(self, on_skip: OnSkip | None) -> None:
        self.on_skip = on_skip
        self._held: list[tuple[int, str, str | None, int | None]] | None = None
        self.rows_read = 0

    def __call__(self, reason: str, file: str | Path | None, line: int | None) -> None:
        file_s = str(file) if file is not None else None
        if self._held is not None:
            self._held.append((self.rows_read, reason, file_s, line))
            return
        self.send(reason, file_s, line)

    def send(self, reason: str, file: str | None, line: int | None) -> None:
        """Report a skip now (row-level problems found while parsing are never held)."""
        if self.on_skip is None:
            where = file or "input"
            if line is not None:
                where += f", line {line}"
            raise InputError(f"{where}: {reason}")
        self.on_skip(reason, file, line)

    def defer(self) -> None:
        self._held = []
        self.rows_read = 0

    def discard(self) -> None:
        self._held = None

    def release(self, up_to: int | None = None) -> None:
        """Report the held skips that came before row ``up_to`` (all of them, and stop holding, if None)."""
        held = self._held or []
        keep = [h for h in held if up_to is not None and h[0] > up_to]
        self._held = keep if up_to is not None else None
        for _pos, reason, file, line in held:
            if up_to is None or _pos <= up_to:
                self.send(reason, file, line)


def parse_rows(
    spec: BenchmarkSpec,
    rows: Iterable[SourceRow],
    report: Reporter,
    limit: int | None,
    default_source: str | None,
) -> list[BenchmarkItem]:
    """Parse rows (file, line, index, part, record), all with the format `choose_format` picks."""
    rows = iter(rows)
    head: list[SourceRow] = []
    report.defer()
    for row in rows:
        head.append(row)
        report.rows_read = len(head)
        if len(head) >= _DETECT_ROWS:
            break
    if not head:
        report.release()
        return []
    fmt = choose_format(spec, head)
    parse = FORMATS[fmt][1]
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for n, (file, line, index, part, record) in enumerate(chain(head, rows)):
        if limit is not None and len(items) >= limit:
            break
        if n < len(head):
            report.release(up_to=n)
        elif n == len(head):
            report.release()
        try:
            fields = parse(Row(record, file, line, index, part))
            fields["source"] = fields.get("source") or default_source
            item = BenchmarkItem(benchmark=spec.name, family=spec.family, **fields)
        except BadRow as e:
            report.send(str(e), file, line)
            continue
        except ValidationError as e:
            report.send(_validation_reason(e), file, line)
            continue
        if item.id in seen:
            report.send(f"field 'id': {item.id!r} repeats an earlier row's id", file, line)
            continue
        seen.add(item.id)
        items.append(item)
    else:
        report.release()  # skips after the last row
    report.discard()  # rows read ahead past the limit are not reported
    return items


def _validation_reason(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = first.get("msg", str(error)).removeprefix("Value error, ")
    return f"field {loc!r}: {msg}" if loc else msg

