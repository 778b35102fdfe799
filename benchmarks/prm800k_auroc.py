"""How well implicit supervision spots wrong steps: AUROC against PRM800K's human step ratings.

Each PRM800K row is one step of a MATH solution with its earlier steps and a human rating (1 good,
0 neutral, -1 wrong). For every rated step, the rationalist writes a rationale after the question
and earlier steps, and the scorer gives the step's mean token log-prob after that rationale (exactly
what `rationalyst verify` and the step search compute). The script reports the AUROC of that score
for telling good steps (rating 1) from wrong ones (rating -1), and the same for the score without a
rationale and for their difference, so the rationale's own contribution is visible.

    python benchmarks/prm800k_auroc.py [--data ../shared/benchmarks/prm800k/phase1_test_steps.jsonl]
        [--rationalist SPEC] [--scorer SPEC] [--limit 200]

Neutral (0) and unrated rows are left out. AUROC 0.5 = chance.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.runs import read_json_lines
from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.search import prompts
from rationalyst.search.heuristics import RATIONALE_STOP
from rationalyst.search.roles import Roles

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "benchmarks" / "prm800k" / "phase1_test_steps.jsonl"
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "benchmarks" / "prm800k.jsonl"


def auroc(scores: list[float], labels: list[int]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half (Mann-Whitney)."""
    ranked = sorted(zip(scores, labels))
    rank_sum, i, n = 0.0, 0, len(ranked)
    while i < n:  # average ranks over ties
        j = i
        while j < n and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2
        i = j
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def rated_rows(path: Path, limit: int | None) -> list[dict]:
    rows = []
    for _, _, record in read_json_lines(path, lambda *a: None, stage="prm800k"):
        meta = record.get("meta") or {}
        if meta.get("rating") in (1, -1) and isinstance(meta.get("step"), str):
            rows.append(record)
            if limit and len(rows) == limit:
                break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else FIXTURE)
    parser.add_argument("--rationalist", default="builtin:smollm2-135m")
    parser.add_argument("--scorer", default="builtin:smollm2-135m")
    parser.add_argument("--limit", type=int, default=200, help="Rated steps to use (0 = all).")
    parser.add_argument("--max-rationale-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    scorer = load_model(args.scorer)
    rationalist = scorer if args.rationalist == args.scorer else load_model(args.rationalist)
    roles = Roles.of(rationalist, rationalist, scorer)
    rows = rated_rows(args.data, args.limit or None)
    started = time.perf_counter()
    with_r, without, labels = [], [], []
    params = SamplingParams(max_new_tokens=args.max_rationale_tokens, stop=RATIONALE_STOP)
    for start in range(0, len(rows), args.batch):
        batch = rows[start : start + args.batch]
        items = [
            BenchmarkItem(id=r["id"], benchmark="prm800k", family="math", question=r["question"], answer=r["answer"] or "?")
            for r in batch
        ]
        prefixes = [list(r["meta"].get("prefix_steps") or []) for r in batch]
        steps = [r["meta"]["step"] for r in batch]
        rationales = [
            out[0].text.strip()
            for out in roles.rationalist.generate([prompts.rationalist_prompt(i, p, roles.rationalist_instruction) for i, p in zip(items, prefixes)], params)
        ]
        requests = [ScoreRequest(prompts.scorer_context(i, p, r), [s]) for i, p, r, s in zip(items, prefixes, rationales, steps)]
        requests += [ScoreRequest(prompts.scorer_context(i, p, None), [s]) for i, p, s in zip(items, prefixes, steps)]
        scores = [row[0].mean for row in roles.scorer.score_many(requests)]
        with_r += scores[: len(batch)]
        without += scores[len(batch) :]
        labels += [1 if r["meta"]["rating"] == 1 else 0 for r in batch]
    seconds = time.perf_counter() - started
    print(f"{len(labels)} rated steps from {args.data} ({sum(labels)} good, {len(labels) - sum(labels)} wrong), "
          f"rationalist {args.rationalist}, scorer {args.scorer}, {seconds:.0f} s")
    print(f"AUROC implicit (step log-prob after the rationale): {auroc(with_r, labels):.3f}")
    print(f"AUROC scorer alone (no rationale):                 {auroc(without, labels):.3f}")
    print(f"AUROC rationale gain (with - without):             {auroc([a - b for a, b in zip(with_r, without)], labels):.3f}")


if __name__ == "__main__":
    main()
