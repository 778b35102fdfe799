"""How much a rationalist's rationales raise the scorer's probability of the correct next step, on
worked solutions held out from mining (a dev slice): the yardstick for choosing tau, the amount of
data or the scorer without looking at the problems a report is made on.

For each dev problem and each of its first ``--steps`` gold steps (`solution_steps`: GSM8K's worked
solution one step per line, the last one "The answer is N."), the rationalist writes a rationale after
the question and the gold steps before it, exactly as in the step search (`prompts.rationalist_prompt`,
greedy, stop at the end of the line), and the scorer gives the gold step's mean token log-prob after
the trajectory with the rationale and without it (`prompts.scorer_context`), as the implicit heuristic
scores a candidate. The figure is the mean gain (with - without) over all steps with a 95% bootstrap
interval, and the share of steps the rationale made more probable. A rationalist that helps the search
should raise the probability of correct steps; the untrained base model is the baseline to beat.

    python benchmarks/dev_step_gain.py --ids recipes/cpu-gsm8k.dev-ids.txt \\
        --data ../shared/benchmarks/gsm8k/train.jsonl --rationalist hf:runs/cpu-gsm8k/train/merged \\
        --scorer builtin:qwen2.5-coder-0.5b [--problems 30] [--steps 2] [--save gains.jsonl]

``--save`` writes each step's gain, for paired comparisons of two rationalists on the same steps.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rationalyst.data.benchmarks import load_benchmark
from rationalyst.data.rationale_text import solution_steps
from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.search import prompts
from rationalyst.search.heuristics import RATIONALE_STOP
from rationalyst.search.roles import Roles


def read_ids(path: Path) -> list[str]:
    """One problem id a line; blank lines and # comments are skipped."""
    ids = [line.split("#", 1)[0].strip() for line in path.read_text("utf-8").splitlines()]
    return [i for i in ids if i]


def mean_interval(values: list[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """The mean and a 95% percentile bootstrap interval (seeded)."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return sum(values) / len(values), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=Path, required=True, help="File of dev problem ids, one a line.")
    parser.add_argument("--data", required=True, help="The benchmark file holding them (GSM8K train).")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--rationalist", required=True)
    parser.add_argument("--scorer", required=True)
    parser.add_argument("--problems", type=int, default=30, help="The first N dev ids.")
    parser.add_argument("--steps", type=int, default=2, help="Gold steps per problem (the first ones).")
    parser.add_argument("--max-rationale-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    wanted = read_ids(args.ids)[: args.problems]
    by_id = {item.id: item for item in load_benchmark(args.benchmark, args.data)}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SystemExit(f"{args.ids}: {len(missing)} ids not in {args.data}, e.g. {missing[0]}")
    cases = []  # (item, gold steps before, gold step)
    for item in (by_id[i] for i in wanted):
        steps = solution_steps(item) or []
        cases += [(item, steps[:k], steps[k]) for k in range(min(args.steps, len(steps)))]
    scorer = load_model(args.scorer)
    rationalist = scorer if args.rationalist == args.scorer else load_model(args.rationalist)
    roles = Roles.of(rationalist, rationalist, scorer)
    params = SamplingParams(max_new_tokens=args.max_rationale_tokens, stop=RATIONALE_STOP)
    started = time.perf_counter()
    rows = []
    for start in range(0, len(cases), args.batch):
        batch = cases[start : start + args.batch]
        written = roles.rationalist.generate(
            [prompts.rationalist_prompt(item, before, roles.rationalist_instruction) for item, before, _ in batch], params
        )
        rationales = [out[0].text.strip() for out in written]
        requests = [ScoreRequest(prompts.scorer_context(item, before, r), [step]) for (item, before, step), r in zip(batch, rationales)]
        requests += [ScoreRequest(prompts.scorer_context(item, before, None), [step]) for item, before, step in batch]
        scores = [row[0].mean for row in roles.scorer.score_many(requests)]
        for k, ((item, before, step), rationale) in enumerate(zip(batch, rationales)):
            with_r, without = scores[k], scores[len(batch) + k]
            rows.append({"id": item.id, "step": len(before), "rationale": rationale, "with": with_r,
                         "without": without, "gain": with_r - without})
    seconds = time.perf_counter() - started
    gains = [r["gain"] for r in rows]
    mean, low, high = mean_interval(gains)
    print(f"{len(rows)} gold steps of {len(wanted)} dev problems, rationalist {args.rationalist}, scorer {args.scorer}, "
          f"{seconds:.0f} s")
    print(f"mean gain in the gold step's mean token log-prob: {mean:+.4f} [95% bootstrap {low:+.4f}, {high:+.4f}]")
    print(f"steps made more probable by the rationale: {sum(g > 0 for g in gains)}/{len(gains)}")
    if args.save:
        with args.save.open("w") as out:
            for r in rows:
                out.write(json.dumps(r) + "\n")
        print(f"per-step gains: {args.save}")


if __name__ == "__main__":
    main()
