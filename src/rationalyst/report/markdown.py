"""``report.md``: accuracy with 95% intervals, cost per problem, where methods chose differently, choices between different answers, mining."""

from __future__ import annotations

from datetime import datetime, timezone

from rationalyst.report.collect import ROLES, Collection


def cell(value: object) -> str:
    """A table cell: pipes, newlines and angle brackets made harmless."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def ci_text(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def status(complete: bool, n: int | None = None) -> str:
    return "complete" if complete else "**incomplete**" + (f" ({n} so far)" if n is not None else "")


def compute(runs: list, plots: dict[str, str]) -> list[str]:
    """Accuracy against tokens per problem: the sampling curves and the best method at each budget."""
    from rationalyst.report import scaling

    points = scaling.points(runs)
    if not points:
        return []
    out = ["", "## Accuracy against compute", "", ("Tokens per problem over all roles. Best-of-n and "
           "self-consistency runs give a curve at n = 1, 2, 4, ... samples from their own traces (majority vote; "
           "for best-of-n also the best-scored sample and the vote weighted by exp(score), or by the score where a PRM's "
           "is a probability); cost at n = the agent's "
           "tokens of the first n samples + supervision scaled by n / N."), ""]
    if "compute" in plots:
        out += [f"![accuracy against tokens per problem]({plots['compute']})", ""]
    out.append("Best method within each budget (a row where the best one changes):")
    out.append("")
    rows = [[benchmark, num(budget, 0), label, pct(accuracy)]
            for benchmark, steps in scaling.best_at_each_budget(points).items() for budget, label, accuracy in steps]
    out.append(table(["benchmark", "tokens per problem <=", "best method", "accuracy"], rows))
    curve = [p for p in points if p.n is not None]
    if curve:
        out += ["", table(["benchmark", "curve point", "n", "tokens per problem", "accuracy"],
                          [[p.benchmark, p.label, p.n, num(p.tokens, 0), pct(p.accuracy)] for p in curve])]
    return out


def evaluation_data(runs: list) -> list[str]:
    """Lines on what each benchmark was evaluated on: its split (a train split is flagged) and how many
    items the contamination guard found in the rationalist's training text."""
    by_benchmark: dict[str, object] = {}
    for r in runs:  # per benchmark, a run that carries the guard's result, else any that says its split
        if r.split is None and r.contamination is None:
            continue
        if r.benchmark not in by_benchmark or (by_benchmark[r.benchmark].contamination is None and r.contamination):
            by_benchmark[r.benchmark] = r
    rows = []
    for r in by_benchmark.values():
        c = r.contamination
        overlap = "not checked" if c is None else f"{c.get('overlapping', 0)} of {c.get('items_checked', 0)} items"
        if c and c.get("ids"):
            overlap += " (" + ", ".join(map(str, c["ids"][:5])) + (", ..." if len(c["ids"]) > 5 else "") + ")"
        split = f"**{r.split} (a train split, allowed by allow_train_split)**" if r.train_split else (r.split or "-")
        rows.append([r.benchmark, split, overlap])
    if not rows:
        return []
    return ["", "## Evaluation data", "", ("The split each benchmark was evaluated on, and the evaluation items "
            "that share a 13-gram with the rationalist's training text (the contamination guard)."), "",
            table(["benchmark", "split", "13-gram overlap with training text"], rows)]


def answer_steps(found: list) -> list[str]:
    """The choices between candidates that state different answers, against a random pick."""
    if not found:
        return []
    return ["", "## Choices between different answers", "", (
        "Steps whose candidates (two or more) state final answers: all right, none right, or mixed; at the "
        "mixed ones, how often the method chose a right candidate, what a uniformly random pick would "
        "expect (the sum of right / candidates over those steps), and the exact one-sided p-value of a "
        "random pick doing at least as well. Best-of-n and self-consistency have one such step, their "
        "samples (any right = pass@N); a step-by-step search has the steps where answers are stated. "
        "Few mixed steps mean the answer was settled before the last choice."), "",
        table(["benchmark", "method", "answer steps", "all right", "none right", "mixed", "any right",
               "chosen right (mixed)", "random pick expects", "p (random >= chosen)"],
              [[a.benchmark, a.label, a.steps, a.all_right, a.none_right, a.mixed, a.any_right, a.chosen_right,
                num(a.expected, 1), f"{a.p_value:.3g}" if a.mixed else "-"] for a in found])]


def render(collection: Collection, plots: dict[str, str]) -> str:
    """The Markdown report; ``plots`` maps a plot's key (accuracy, cost, deltas:<rel>) to its file name."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# RATIONALYST report",
        "",
        (f"Runs below `{collection.root}`, {now}. Accuracy with 95% Wilson score intervals; n = problems "
         "in the run; a problem that failed counts as wrong. Runs marked **incomplete** have no manifest "
         "yet: their numbers cover the problems done so far."),
    ]
    runs = collection.eval_runs
    if runs:
        out += ["", "## Accuracy", ""]
        out.append(table(
            ["benchmark", "method", "n", "correct", "accuracy", "95% CI", "unparsed", "errors", "status"],
            [[r.benchmark, r.label, r.n, r.correct, pct(r.accuracy), ci_text(r.ci), r.unparsed, r.errors, status(r.complete, r.n)]
             for r in runs],
        ))
        if "accuracy" in plots:
            out += ["", f"![accuracy per benchmark and method]({plots['accuracy']})"]
        out += evaluation_data(runs)
        out += compute(runs, plots)
        out += ["", "## Cost per problem", "", ("Means per problem, by role and in all (the total seconds include "
                "the search's own code). Supervision share = (rationalist + scorer + judge + prm seconds) / total "
                "seconds, summed over the run's problems."), ""]
        roles = [role for role in ROLES if role != "prm" or any(r.tokens.get(role) for r in runs)]  # prm: when used
        out.append(table(
            ["benchmark", "method", *[f"{role} tokens" for role in roles], "tokens", *[f"{role} s" for role in roles],
             "seconds", "supervision share", "status"],
            [[r.benchmark, r.label, *[num(r.tokens.get(role), 0) for role in roles], num(r.tokens.get("total"), 0),
              *[num(r.seconds.get(role), 2) for role in roles], num(r.seconds.get("total"), 2), pct(r.supervision_share),
              status(r.complete)] for r in runs],
        ))
        if "cost" in plots:
            out += ["", f"![cost per problem]({plots['cost']})"]
    if collection.paired:
        out += [
            "", "## Paired outcomes", "",
            ("Two runs of a benchmark on the problems both ran: accuracy difference (A - B), the problems only A "
             "got right and only B got right, and McNemar's exact two-sided p-value on those two counts."),
            "",
        ]
        out.append(table(
            ["benchmark", "A", "B", "problems in both", "A accuracy", "B accuracy", "A - B", "A only right",
             "B only right", "McNemar p"],
            [[p.benchmark, p.a, p.b, p.n, pct(p.a_right / p.n), pct(p.b_right / p.n), pct(p.difference), p.a_only,
              p.b_only, f"{p.p_value:.3g}"] for p in collection.paired],
        ))
    if collection.comparisons:
        out += [
            "", "## Where methods chose differently", "",
            ("Two runs of a benchmark offer identical candidates where their trajectories agree; counted are "
             "the problems where, at such a step, the two chose different candidates, and who was right there."),
            "",
        ]
        out.append(table(
            ["benchmark", "A", "B", "problems in both", "with identical candidates", "chose differently",
             "A right, B wrong", "A wrong, B right", "both right", "both wrong"],
            [[c.benchmark, c.a, c.b, c.both, c.comparable, len(c.differ), c.a_only_right, c.b_only_right, c.both_right, c.both_wrong]
             for c in collection.comparisons],
        ))
    out += answer_steps(collection.answer_steps)
    for run in collection.mining_runs:
        out += ["", f"## Mining: `{run.info.rel}` ({status(run.complete)})", ""]
        extract = f"; rationales not yet scored come from `{run.extract.rel}`" if run.extract else ""
        out += [f"{len(run.deltas)} rationales scored in {run.documents_total} documents{extract}.", ""]
        out.append(table(
            ["source", "documents", "rationales", "kept", "dropped", "not scored", "kept share", "mean delta", "tau"],
            [[s.source, s.documents, s.rationales, s.kept, s.dropped, s.unscored, pct(s.kept_share), num(s.mean_delta, 3),
              ", ".join(f"{t:g}" for t in sorted(s.taus)) or "-"] for s in run.sources.values()],
        ))
        key = f"deltas:{run.info.rel}"
        if key in plots:
            out += ["", f"![deltas with tau marked]({plots[key]})"]
    if not runs and not collection.mining_runs:
        out += ["", "No runs found."]
    out += ["", "The interactive explorer of the same runs (traces step by step, mining documents) is `report.html`.", ""]
    return "\n".join(out)
