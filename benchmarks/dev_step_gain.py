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

The gain alone can mislead: the scorer, a base model, finds any line inserted between two steps of a
worked solution surprising (measured on 30 GSM8K dev problems: a rationale lowered the second gold
step's probability in 30 of 30 cases for a trained rationalist, even where it repeated that step word for
word), while the search only compares candidates after the same rationale. So the script also measures
discrimination, the quantity the search uses: at each step the gold step against two wrong ones, the gold
step with the first digit of its last number changed (a wrong computation) and the gold step after it
(a step skipped), all scored after the same rationale and without one. The margin is the gold step's
mean token log-prob minus the wrong one's; the figures are the mean margin with the rationale (what the
implicit search ranks by), the same without (the scorer alone), and how often the gold step came first.

Two controls separate what a rationale says from the fact that a line is inserted: ``--fixed-rationale
TEXT`` scores every step after the same neutral line (no rationalist runs), and ``--shuffle`` after a
rationale the rationalist wrote for another problem's step (a line of the rationalist's kind that says
nothing about this problem). If a control moves the margins as much as the rationalist's own
rationales do, the insertion, not their content, is what the scorer reacts to.

``--save`` writes each step's gain and margins, for paired comparisons of two rationalists on the same steps.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from rationalyst.data.benchmarks import load_benchmark
from rationalyst.data.rationale_text import solution_steps
from rationalyst.lm import SamplingParams, ScoreRequest, load_model
from rationalyst.lm.registry import ModelConfig
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


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def wrong_result(step: str) -> str | None:
    """``step`` with the first digit of its last number changed (1 -> 2, ..., 9 -> 1), or None if it has none."""
    found = list(NUMBER.finditer(step))
    if not found:
        return None
    at = found[-1].start()
    return step[:at] + str(int(step[at]) % 9 + 1) + step[at + 1 :]


def distractors(steps: list[str], k: int) -> dict[str, str]:
    """Wrong candidates for gold step ``k``: a wrong computation and the step after it (skipping one)."""
    out = {}
    if (wrong := wrong_result(steps[k])) is not None and wrong != steps[k]:
        out["wrong number"] = wrong
    if k + 1 < len(steps) and steps[k + 1] != steps[k]:
        out["skipped step"] = steps[k + 1]
    return out


def other_problems_rationales(rationales: list[str], problem_ids: list[str]) -> list[str]:
    """Each case's rationale replaced by one written for another problem: the list rotated by the most
    cases any problem has (the cases of a problem are consecutive), so no case keeps its own problem's."""
    shift = max(problem_ids.count(i) for i in set(problem_ids))
    if len(set(problem_ids)) < 2 or len(rationales) < 2 * shift:
        raise SystemExit("--shuffle needs at least two problems (and twice as many steps as one problem has)")
    return [rationales[(i + shift) % len(rationales)] for i in range(len(rationales))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=Path, required=True, help="File of dev problem ids, one a line.")
    parser.add_argument("--data", required=True, help="The benchmark file holding them (GSM8K train).")
    parser.add_argument("--benchmark", default="gsm8k")
    parser.add_argument("--rationalist", help="The rationalist's spec (not with --fixed-rationale).")
    parser.add_argument("--rationalist-lora", help="With a llamacpp: rationalist, its trained adapter (ModelConfig.lora).")
    control = parser.add_mutually_exclusive_group()
    control.add_argument("--fixed-rationale", metavar="TEXT", help="Control: every step after this line instead.")
    control.add_argument("--shuffle", action="store_true", help="Control: each step after another problem's rationale.")
    parser.add_argument("--scorer", required=True)
    parser.add_argument("--problems", type=int, default=30, help="The first N dev ids.")
    parser.add_argument("--steps", type=int, default=2, help="Gold steps per problem (the first ones).")
    parser.add_argument("--max-rationale-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    if (args.rationalist is None) == (args.fixed_rationale is None):
        parser.error("give either --rationalist or --fixed-rationale")
    wanted = read_ids(args.ids)[: args.problems]
    by_id = {item.id: item for item in load_benchmark(args.benchmark, args.data)}
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SystemExit(f"{args.ids}: {len(missing)} ids not in {args.data}, e.g. {missing[0]}")
    cases = []  # (item, gold steps before, gold step, wrong candidates by kind)
    for item in (by_id[i] for i in wanted):
        steps = solution_steps(item) or []
        cases += [(item, steps[:k], steps[k], distractors(steps, k)) for k in range(min(args.steps, len(steps)))]
    scorer = load_model(args.scorer)
    started = time.perf_counter()
    if args.fixed_rationale is not None:
        all_rationales = [args.fixed_rationale.strip()] * len(cases)
    else:
        if args.rationalist == args.scorer and args.rationalist_lora is None:
            rationalist = scorer
        else:
            rationalist = load_model(ModelConfig(spec=args.rationalist, lora=args.rationalist_lora))
        roles = Roles.of(rationalist, rationalist, scorer)
        params = SamplingParams(max_new_tokens=args.max_rationale_tokens, stop=RATIONALE_STOP)
        all_rationales = []
        for start in range(0, len(cases), args.batch):
            written = roles.rationalist.generate([
                prompts.rationalist_prompt(item, before, roles.rationalist_instruction)
                for item, before, _, _ in cases[start : start + args.batch]
            ], params)
            all_rationales += [out[0].text.strip() for out in written]
        if args.shuffle:
            all_rationales = other_problems_rationales(all_rationales, [item.id for item, *_ in cases])
    rows = []
    for start in range(0, len(cases), args.batch):
        batch = cases[start : start + args.batch]
        rationales = all_rationales[start : start + args.batch]
        requests = [
            ScoreRequest(prompts.scorer_context(item, before, r), [step, *wrong.values()])
            for (item, before, step, wrong), r in zip(batch, rationales)
        ]
        requests += [ScoreRequest(prompts.scorer_context(item, before, None), [step, *wrong.values()]) for item, before, step, wrong in batch]
        scores = [[s.mean for s in row] for row in scorer.score_many(requests)]
        for k, ((item, before, step, wrong), rationale) in enumerate(zip(batch, rationales)):
            (with_r, *wrong_with), (without, *wrong_without) = scores[k], scores[len(batch) + k]
            rows.append({
                "id": item.id, "step": len(before), "rationale": rationale, "with": with_r, "without": without,
                "gain": with_r - without,
                "margin_with": {kind: with_r - w for kind, w in zip(wrong, wrong_with)},
                "margin_without": {kind: without - w for kind, w in zip(wrong, wrong_without)},
            })
    seconds = time.perf_counter() - started
    gains = [r["gain"] for r in rows]
    mean, low, high = mean_interval(gains)
    source = f"the fixed line {args.fixed_rationale!r}" if args.fixed_rationale is not None else (
        f"rationalist {args.rationalist}"
        + (f" with the adapter {args.rationalist_lora}" if args.rationalist_lora else "")
        + (", each step after another problem's rationale" if args.shuffle else ""))
    print(f"{len(rows)} gold steps of {len(wanted)} dev problems, {source}, scorer {args.scorer}, {seconds:.0f} s")
    print(f"mean gain in the gold step's mean token log-prob: {mean:+.4f} [95% bootstrap {low:+.4f}, {high:+.4f}]")
    print(f"steps made more probable by the rationale: {sum(g > 0 for g in gains)}/{len(gains)}")
    for kind in ("wrong number", "skipped step", "all"):
        pairs = [(r["margin_with"][k], r["margin_without"][k]) for r in rows for k in r["margin_with"] if kind in ("all", k)]
        if not pairs:
            continue
        with_r, without = [p[0] for p in pairs], [p[1] for p in pairs]
        mean_w, low_w, high_w = mean_interval(with_r)
        print(f"discrimination, {kind} ({len(pairs)} pairs): gold minus wrong with the rationale {mean_w:+.4f} "
              f"[{low_w:+.4f}, {high_w:+.4f}], without {sum(without) / len(without):+.4f}; gold first "
              f"{sum(m > 0 for m in with_r)}/{len(pairs)} with, {sum(m > 0 for m in without)}/{len(pairs)} without")
    if args.save:
        with args.save.open("w") as out:
            for r in rows:
                out.write(json.dumps(r) + "\n")
        print(f"per-step gains: {args.save}")


if __name__ == "__main__":
    main()
