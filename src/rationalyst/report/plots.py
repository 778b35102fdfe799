"""The report's PNG plots (matplotlib, headless): accuracy with confidence intervals, cost, deltas."""

from __future__ import annotations

from pathlib import Path

from rationalyst.plots import histogram
from rationalyst.report.collect import ROLES, EvalRun, MiningRun, method_sort_key

# One colour per role and, cycling, per method (matplotlib's tab10 without its greys).
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_plot(runs: list[EvalRun], path: Path) -> Path | None:
    """Grouped bars: accuracy per benchmark (groups) and method (bars), 95% Wilson intervals as error
    bars, n above each bar; incomplete runs hatched. None when there is no run with problems."""
    runs = [r for r in runs if r.n]
    if not runs:
        return None
    plt = _pyplot()
    benchmarks = sorted({r.benchmark for r in runs})
    labels = sorted({r.label for r in runs}, key=lambda label: method_sort_key(label))
    width = 0.8 / len(labels)
    labelled: set[str] = set()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + len(benchmarks) * len(labels) * 0.55), 4.5))
    for j, label in enumerate(labels):
        for i, benchmark in enumerate(benchmarks):
            run = next((r for r in runs if r.benchmark == benchmark and r.label == label), None)
            if run is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            low, high = run.ci
            ax.bar(
                x, run.accuracy, width * 0.9, color=PALETTE[j % len(PALETTE)],
                hatch=None if run.complete else "//", edgecolor="white" if run.complete else "black",
                label=None if label in labelled else label,
            )
            labelled.add(label)
            ax.errorbar(x, run.accuracy, yerr=[[run.accuracy - low], [high - run.accuracy]], fmt="none", ecolor="black", capsize=3)
            ax.text(x, min(high + 0.02, 1.04), f"n={run.n}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(benchmarks)), benchmarks)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy (95% Wilson interval)")
    title = "Accuracy per benchmark and method"
    if any(not r.complete for r in runs):
        title += " (hatched: incomplete run)"
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cost_plot(runs: list[EvalRun], path: Path) -> Path | None:
    """Mean tokens and seconds per problem, stacked by role, one row per benchmark and method."""
    runs = [r for r in runs if r.n]
    if not runs:
        return None
    plt = _pyplot()
    names = [f"{r.benchmark} · {r.label}" + ("" if r.complete else " (incomplete)") for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.2 + 0.35 * len(runs)), sharey=True)
    for ax, attribute, unit in ((axes[0], "tokens", "tokens per problem"), (axes[1], "seconds", "seconds per problem")):
        left = [0.0] * len(runs)
        for k, role in enumerate(ROLES):
            values = [getattr(r, attribute).get(role, 0.0) for r in runs]
            ax.barh(range(len(runs)), values, left=left, color=PALETTE[k], label=role)
            left = [a + b for a, b in zip(left, values)]
        if attribute == "seconds":  # wall time outside the four roles (parsing, bookkeeping)
            other = [max(0.0, r.seconds.get("total", 0.0) - done) for r, done in zip(runs, left)]
            ax.barh(range(len(runs)), other, left=left, color="#BBBBBB", label="other")
        ax.set_xlabel(unit + " (mean)")
    axes[0].set_yticks(range(len(runs)), names, fontsize=8)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Cost per problem by role")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def deltas_plot(run: MiningRun, path: Path) -> Path | None:
    """The histogram of a filter run's deltas with each tau marked (with the sources it applies to)."""
    gamma = f", gamma = {run.gamma:g}" if run.gamma is not None else ""
    return histogram(
        run.deltas, path,
        title=f"{len(run.deltas)} rationales scored{gamma}" + ("" if run.complete else " (incomplete run)"),
        xlabel="delta = score with rationale - score without",
        ylabel="rationales",
        markers=[(tau, f"tau = {tau:g} ({', '.join(sources)})") for tau, sources in run.tau_sources.items()],
    )
