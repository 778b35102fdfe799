"""Reports on pipeline runs: Markdown with PNG plots, and one self-contained HTML explorer.

`build_report` finds every eval run (one per benchmark and method, trace records as in
``docs/traces.md``) and every filter run below a directory, and writes ``report.md``, the plots and
``report.html`` into one folder. `collect` reads runs into plain summaries, `markdown` and `html`
render them, `plots` draws them.
"""

from rationalyst.report.build import ReportResult, build_report, ensure_report

__all__ = ["ReportResult", "build_report", "ensure_report"]
