"""The cost of rationale-guided search, side by side with the naive way, on one model.

(a) Scoring per step. Along one trajectory of S steps, each step scores N candidate steps after the
    question, the steps so far and a rationale (implicit supervision). The naive way (the authors'
    code) runs one full forward pass of the whole prompt per candidate; ours scores the N candidates
    in one batched call sharing the KV of trajectory + rationale, and reuses the trajectory's KV
    from the previous step (prefix cache). Prints seconds per step for both and ``ratio: X``.
(b) Whole problems. The guided search (``implicit``) against greedy chain of thought on the same
    problems: wall time and tokens per problem, and the share of the guided search's time spent on
    supervision (writing rationales + scoring), with the prefix cache on and off.

    python benchmarks/search_cost.py [--model builtin:smollm2-135m] [--problems 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rationalyst.data.benchmarks import BenchmarkItem, load_benchmark
from rationalyst.lm import ScoreRequest, load_model
from rationalyst.search import prompts
from rationalyst.search.methods import METHODS
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "benchmarks" / "gsm8k.jsonl"

QUESTION = (
    "A farmer has a field that is 120 metres long and 45 metres wide. She plants a row of beans every 3 metres "
    "across the width, and each row holds one plant every half metre along the length. Watering one plant costs "
    "2 cents a day. How many dollars does watering the whole field cost in a 30-day month?"
)
STEPS = [
    "The number of rows is 45 / 3 = 15.",
    "Each row holds 120 / 0.5 = 240 plants.",
    "The field holds 15 * 240 = 3600 plants.",
    "Watering costs 3600 * 2 = 7200 cents a day, which is 72 dollars.",
    "In 30 days that is 30 * 72 = 2160 dollars.",
    "The answer is 2160.",
]
RATIONALES = [
    "The rows are spaced 3 metres apart across the 45 metre width.",
    "Plants are half a metre apart along each 120 metre row.",
    "Every row holds the same number of plants.",
    "The daily cost is the number of plants times 2 cents.",
    "A month has 30 days of watering.",
    "The monthly cost is the final answer.",
]


def wrong_variants(step: str) -> list[str]:
    """Two plausible but wrong versions of a step (numbers and operators changed)."""
    return [step.replace("*", "+").replace("/", "*"), step.replace("=", "= about").replace("0", "5")]


def scoring_per_step(model, item: BenchmarkItem, n: int, repeats: int) -> None:
    contexts = [prompts.scorer_context(item, STEPS[:t], RATIONALES[t]) for t in range(len(STEPS))]
    candidates = [([STEPS[t]] + wrong_variants(STEPS[t]))[:n] for t in range(len(STEPS))]

    def naive():
        model.prefix_cache.capacity = 0
        return [model.score_full_passes(c, k) for c, k in zip(contexts, candidates)]

    def ours():
        model.prefix_cache.capacity = 8
        model.prefix_cache.clear()
        return [model.score_many([ScoreRequest(c, k)])[0] for c, k in zip(contexts, candidates)]

    results = {}
    for name, fn in (("naive", naive), ("ours", ours)):
        fn()  # warm-up
        times, tokens = [], 0
        for _ in range(repeats):
            before = model.forwarded_tokens
            start = time.perf_counter()
            results[name] = fn()
            times.append(time.perf_counter() - start)
            tokens = model.forwarded_tokens - before
        results[name + "_time"] = statistics.median(times) / len(STEPS)
        results[name + "_tokens"] = tokens / len(STEPS)
    diff = max(
        abs(a - b)
        for step_n, step_o in zip(results["naive"], results["ours"])
        for sn, so in zip(step_n, step_o)
        for a, b in zip(sn.logprobs, so.logprobs)
    )
    print(f"(a) scoring: {len(STEPS)} steps x N={n} candidates, context up to "
          f"{len(model.split(contexts[-1], candidates[-1][0]).token_ids)} tokens")
    print(f"    naive (one full pass per candidate): {results['naive_time'] * 1000:.1f} ms/step, "
          f"{results['naive_tokens']:.0f} tokens forwarded/step")
    print(f"    ours (batched, shared KV, prefix cache): {results['ours_time'] * 1000:.1f} ms/step, "
          f"{results['ours_tokens']:.0f} tokens forwarded/step")
    print(f"    max |logprob difference|: {diff:.2e}")
    print(f"ratio: {results['naive_time'] / results['ours_time']:.2f}")


def whole_problems(model, items: list[BenchmarkItem], settings: SearchSettings) -> None:
    roles = Roles.of(model)
    print(f"(b) whole problems: {len(items)} problems, N={settings.n_candidates}, one model in every role")
    rows = []
    for label, method, capacity in (("cot", "cot", 8), ("implicit", "implicit", 8), ("implicit, no prefix cache", "implicit", 0)):
        model.prefix_cache.capacity = capacity
        model.prefix_cache.clear()
        traces = [METHODS[method](item, roles, settings, 0) for item in items]
        seconds = sum(t["seconds"]["total"] for t in traces) / len(traces)
        tokens = sum(sum(t["tokens"].values()) for t in traces) / len(traces)
        supervision = sum(t["seconds"]["rationalist"] + t["seconds"]["scorer"] for t in traces) / len(traces)
        steps = sum(len(t["steps"]) for t in traces) / len(traces)
        rows.append((label, seconds, tokens, supervision, steps))
        print(f"    {label:28s} {seconds:6.2f} s/problem  {tokens:7.0f} tokens/problem  {steps:4.1f} steps  "
              f"supervision {supervision:5.2f} s = {100 * supervision / seconds:4.1f}% of the time")
    cot, guided = rows[0], rows[1]
    print(f"guided / cot wall time: {guided[1] / cot[1]:.2f}x; supervision share: {100 * guided[3] / guided[1]:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model(args.model)
    item = BenchmarkItem(id="farmer", benchmark="bench", family="arithmetic", question=QUESTION, choices=None,
                         answer="2160", solution=None, meta={})
    scoring_per_step(model, item, args.candidates, args.repeats)
    items = load_benchmark("gsm8k", FIXTURE, limit=args.problems)
    whole_problems(model, items, SearchSettings(n_candidates=args.candidates))


if __name__ == "__main__":
    main()
