"""``report.html``: one self-contained page (no server, no network) to explore a folder of runs.

The page is the template ``assets/report.html`` with its stylesheet, script and data inlined. The data
(summaries, every trace, the mining documents, the plots as base64 PNG data URIs) sits in a
``<script type="application/json">`` element, with ``<``, ``>`` and ``&`` written as JSON escapes so
no text from a trace can end that element or be read as markup. The script builds every element from
that data with ``textContent``, never by parsing HTML, and a Content-Security-Policy forbids any fetch.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from rationalyst.report.collect import Collection, Comparison, EvalRun, MiningRun, Trace

ASSETS = ("report.html", "report.css", "report.js")
_PLACEHOLDER = re.compile(r"<!--@([A-Z]+)@-->")


def asset(name: str) -> str:
    """The text of one of the page's asset files (package data)."""
    return (resources.files("rationalyst.report") / "assets" / name).read_text(encoding="utf-8")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``</script>``, no ``<!--``, no entities."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _trace(trace: Trace) -> dict[str, Any]:
    data = trace.model_dump(exclude_none=True, exclude={"benchmark", "method"})  # the run has them
    data["correct"] = trace.right
    return data


def _run(run: EvalRun) -> dict[str, Any]:
    return {
        "label": run.label, "benchmark": run.benchmark, "method": run.method, "path": run.info.rel,
        "complete": run.complete, "models": run.models, "n": run.n, "correct": run.correct,
        "accuracy": run.accuracy, "ci": list(run.ci) if run.ci else None, "tokens": run.tokens,
        "seconds": run.seconds, "supervision_share": run.supervision_share, "unparsed": run.unparsed,
        "errors": run.errors, "stop_reasons": run.stop_reasons, "problems": [_trace(t) for t in run.traces],
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    return {
        "benchmark": c.benchmark, "a": c.a, "b": c.b, "both": c.both, "comparable": c.comparable,
        "differ": len(c.differ), "a_only_right": c.a_only_right, "b_only_right": c.b_only_right,
        "both_right": c.both_right, "both_wrong": c.both_wrong,
    }


def _mining(run: MiningRun, plot: Path | None) -> dict[str, Any]:
    return {
        "path": run.info.rel, "complete": run.complete, "extract": run.extract.rel if run.extract else None,
        "gamma": run.gamma, "scored": len(run.deltas), "documents_total": run.documents_total,
        "histogram": data_uri(plot) if plot else None,
        "sources": [
            {"source": s.source, "documents": s.documents, "rationales": s.rationales, "kept": s.kept,
             "dropped": s.dropped, "unscored": s.unscored, "kept_share": s.kept_share, "mean_delta": s.mean_delta,
             "taus": sorted(s.taus)}
            for s in run.sources.values()
        ],
        "documents": run.documents,
    }


def page_data(collection: Collection, plots: dict[str, Path]) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data; ``plots`` maps plot keys to PNG files."""
    return {
        "title": f"RATIONALYST report: {collection.root.resolve().name}",
        "root": str(collection.root),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": [_run(r) for r in collection.eval_runs],
        "comparisons": [_comparison(c) for c in collection.comparisons],
        "plots": {key: data_uri(path) for key, path in plots.items() if not key.startswith("deltas:")},
        "mining": [_mining(m, plots.get(f"deltas:{m.info.rel}")) for m in collection.mining_runs],
    }


def render(collection: Collection, plots: dict[str, Path]) -> str:
    """The whole page as one string."""
    data = page_data(collection, plots)
    css, js = asset("report.css"), asset("report.js")
    if "</style" in css.lower() or "</script" in js.lower():
        raise RuntimeError("a report asset contains a closing tag that would end its element")
    values = {"TITLE": html.escape(data["title"]), "CSS": css, "JS": js, "DATA": script_json(data)}
    # One pass: text inserted for one placeholder is never searched for another.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], asset("report.html"))
