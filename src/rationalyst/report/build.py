"""`rationalyst report` and `rationalyst view`: collect the runs, draw the plots, write both reports."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from rationalyst.errors import RationalystError
from rationalyst.report import html, markdown, plots, scaling
from rationalyst.report.collect import Collection, collect

log = logging.getLogger(__name__)

REPORT_DIR = "report"
HTML_FILE = "report.html"
MARKDOWN_FILE = "report.md"


@dataclass
class ReportResult:
    """What `build_report` wrote, and the summaries it wrote them from."""

    collection: Collection
    output: Path
    markdown: Path
    html: Path
    plots: dict[str, Path] = field(default_factory=dict)


def _slug(rel: str) -> str:
    """The delta plot's file name for the filter run at ``rel``; where characters had to be replaced
    (``a/b``), a hash of ``rel`` keeps it apart from a run whose name reads the same (``a-b``)."""
    if rel == ".":
        return "deltas"
    plain = re.sub(r"[^A-Za-z0-9._-]+", "-", rel).strip("-")
    if plain == rel:
        return f"deltas-{plain}"
    return f"deltas-{plain}-{hashlib.sha256(rel.encode()).hexdigest()[:8]}"


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RationalystError(f"cannot write {path}: {exc.strerror or exc}") from None


def build_report(run_dir: str | Path, output: str | Path | None = None, *, max_documents: int = 1000) -> ReportResult:
    """Write ``report.md``, the PNG plots and ``report.html`` for every run below ``run_dir``.

    ``output`` defaults to ``run_dir/report``. The mining view holds the first ``max_documents``
    documents of each filter run (counts and the histogram cover all of them).
    """
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / REPORT_DIR
    collection = collect(run_dir, skip=[output], max_documents=max_documents)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RationalystError(f"cannot create the report folder {output}: {exc.strerror or exc}") from None
    drawn: dict[str, Path | None] = {
        "accuracy": plots.accuracy_plot(collection.eval_runs, output / "accuracy.png"),
        "cost": plots.cost_plot(collection.eval_runs, output / "cost.png"),
        "compute": scaling.accuracy_tokens_plot(scaling.points(collection.eval_runs), output / "compute.png"),
    }
    for run in collection.mining_runs:
        drawn[f"deltas:{run.info.rel}"] = plots.deltas_plot(run, output / f"{_slug(run.info.rel)}.png")
    written = {key: path for key, path in drawn.items() if path is not None}
    _write(output / MARKDOWN_FILE, markdown.render(collection, {k: p.name for k, p in written.items()}))
    _write(output / HTML_FILE, html.render(collection, written))
    for rel in collection.incomplete:
        log.warning("run %s is incomplete (no manifest): reported as far as it got", rel)
    return ReportResult(collection, output, output / MARKDOWN_FILE, output / HTML_FILE, written)


def ensure_report(run_dir: str | Path, *, rebuild: bool = False) -> Path:
    """The HTML report of ``run_dir``: ``run_dir/report/report.html`` (built if missing or ``rebuild``).

    ``run_dir`` may also be a report folder or the HTML file itself.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".html":
        return run_dir
    if not run_dir.is_dir():
        raise RationalystError(f"run directory not found: {run_dir}")
    if (run_dir / HTML_FILE).is_file() and not rebuild:
        return run_dir / HTML_FILE
    page = run_dir / REPORT_DIR / HTML_FILE
    if rebuild or not page.is_file():
        build_report(run_dir)
    return page
