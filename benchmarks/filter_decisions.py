"""How many filter decisions the rationale insertion changes: the previous definition against today's.

Before, the filter scored ``following`` after ``preceding`` and after ``preceding + " " + rationale + " "``:
at a line break the with-pass saw " \\n..." where the document has ".\\n...", so the first scored token
(weight gamma^0 = 1) could differ between the passes. Today (`rationale_text.scoring_texts`) the
boundary's whitespace belongs to the context and the rationale is a line of its own, so both passes
score the same tokens. This script scores every record of an extract run both ways with the same
scorer and counts kept/dropped decisions at tau, records whose scored tokens differed, and flips.

    python benchmarks/filter_decisions.py runs/measure/extract [--scorer builtin:smollm2-135m] [--tau 0]
"""

from __future__ import annotations

import argparse
from collections import Counter

from rationalyst.data.rationale_text import scoring_texts
from rationalyst.lm import load_model
from rationalyst.runs import read_records


def previous_texts(preceding: str, rationale: str, following: str) -> tuple[str, str, str]:
    """The insertion before issue 12: (context without, context with, scored text)."""
    sep = "" if not preceding or preceding[-1].isspace() else " "
    return preceding, f"{preceding}{sep}{rationale.strip()} ", following


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extract_run")
    parser.add_argument("--scorer", default="builtin:smollm2-135m")
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--tau", type=float, default=0.0)
    args = parser.parse_args()
    model = load_model(args.scorer)
    counts: Counter = Counter()
    by_source: Counter = Counter()
    for record in read_records(args.extract_run):
        p, r, f = record["preceding"], record["rationale"], record["following"]
        decisions, same = [], []
        new = scoring_texts(p, r, f)
        for without_ctx, with_ctx, scored in (previous_texts(p, r, f), (new.without, new.with_rationale, new.following)):
            (without,) = model.score_full_passes(without_ctx, [scored])
            (with_r,) = model.score_full_passes(with_ctx, [scored])
            decisions.append(with_r.discounted(args.gamma) - without.discounted(args.gamma) >= args.tau)
            same.append(list(without.token_ids) == list(with_r.token_ids))
        source = record.get("source", "unknown")
        counts["records"] += 1
        counts["kept_before"] += decisions[0]
        counts["kept_after"] += decisions[1]
        counts["tokens_differed_before"] += not same[0]
        counts["tokens_differed_after"] += not same[1]
        counts["kept_to_dropped"] += decisions[0] and not decisions[1]
        counts["dropped_to_kept"] += decisions[1] and not decisions[0]
        by_source[(source, "records")] += 1
        by_source[(source, "flips")] += decisions[0] != decisions[1]
    print(f"scorer {args.scorer}, gamma {args.gamma}, tau {args.tau}")
    for key in ("records", "kept_before", "kept_after", "kept_to_dropped", "dropped_to_kept",
                "tokens_differed_before", "tokens_differed_after"):
        print(f"{key}: {counts[key]}")
    for source in sorted({s for s, _ in by_source}):
        print(f"{source}: {by_source[(source, 'flips')]} of {by_source[(source, 'records')]} decisions changed")


if __name__ == "__main__":
    main()
