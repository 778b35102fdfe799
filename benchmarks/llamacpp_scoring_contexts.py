"""Scoring problems side by side on llama.cpp: one scoring context against one a problem.

The batched step search scores the candidates of every active problem at each step, one problem after
the other. With one scoring context (the backend before) each request rewinds the cache to what it
shares with the previous request, another problem's: next to nothing, so the whole trajectory is
evaluated again. With ``prefix_cache`` contexts (`rationalyst.lm.llamacpp_scoring`) each problem extends
its own. The requests are those of real searches: the scorer's contexts (question, chosen steps, the
rationale) and unique candidates of the first problems of a kept eval run (default: the trained
rationalist's search of docs/results/cpu-gsm8k, steps in paragraphs), replayed step by step in batches
of ``--batch`` problems as the search sends them.

Prints, for one context and for ``--batch`` contexts: seconds, tokens evaluated a problem, and the
largest difference between their log-probs (0: each context holds what a fresh evaluation writes),
then ``ratio: X`` (one context's seconds over ``--batch`` contexts').

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_scoring_contexts.py --model builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rationalyst.data.benchmarks import BenchmarkItem
from rationalyst.lm import ScoreRequest, load_model
from rationalyst.search.prompts import scorer_context

TRACES = Path(__file__).parent.parent / "docs" / "results" / "cpu-gsm8k" / "kept" / "eval-trained"


def rounds(traces: list[dict], batch: int, separator: str) -> list[list[ScoreRequest]]:
    """The scoring calls of a batched search over ``traces``: for each batch of problems, one call a
    step holding the request of every problem still going (its context, its unique candidates)."""
    calls = []
    for first in range(0, len(traces), batch):
        group = traces[first : first + batch]
        for k in range(max(len(t["steps"]) for t in group)):
            call = []
            for t in group:
                if k >= len(t["steps"]):
                    continue
                item = BenchmarkItem(id=t["id"], benchmark="gsm8k", family="arithmetic", question=t["question"],
                                     choices=None, answer=str(t["gold"]))
                chosen = [s["candidates"][s["chosen"]]["text"] for s in t["steps"][:k]]
                step = t["steps"][k]
                unique = list(dict.fromkeys(c["text"] for c in step["candidates"]))
                call.append(ScoreRequest(scorer_context(item, chosen, step["rationale"], separator), unique))
            calls.append(call)
    return calls


def replay(model, calls: list[list[ScoreRequest]]) -> tuple[float, int, list[list[float]]]:
    """(seconds, tokens evaluated, every score's log-probs) of the calls on ``model``."""
    before = model.forwarded_tokens
    start = time.perf_counter()
    logprobs = [s.logprobs for call in calls for row in model.score_many(call) for s in row]
    return time.perf_counter() - start, model.forwarded_tokens - before, logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:qwen2.5-coder-0.5b")
    parser.add_argument("--traces", type=Path, default=TRACES, help="An eval run of step-search traces.")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="Problems side by side (the search's batch_problems).")
    parser.add_argument("--separator", default="\n\n", help="The steps' separator (paragraphs: a blank line).")
    args = parser.parse_args()
    shards = sorted(args.traces.rglob("part-*.jsonl"))
    if not shards:
        raise SystemExit(f"no traces under {args.traces}")
    traces = [json.loads(line) for f in shards for line in open(f, encoding="utf-8") if line.strip()]
    traces = [t for t in traces if t.get("steps")][: args.problems]
    calls = rounds(traces, args.batch, args.separator)
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    results = {}
    for contexts in (1, args.batch):
        model = load_model(f"llamacpp:{args.model}", n_ctx=2048, n_threads=threads, prefix_cache=contexts)
        results[contexts] = replay(model, calls)
        del model
    (one_s, one_tokens, one_lp), (many_s, many_tokens, many_lp) = results[1], results[args.batch]
    diff = max((abs(a - b) for x, y in zip(one_lp, many_lp) for a, b in zip(x, y)), default=0.0)
    requests = sum(len(c) for c in calls)
    print(f"model: {args.model}  threads: {threads}  {len(traces)} problems from {args.traces}, batch {args.batch}: "
          f"{len(calls)} scoring calls, {requests} requests")
    print(f"one context:        {one_s:7.1f} s  {one_tokens / len(traces):6.0f} tokens evaluated a problem")
    print(f"{args.batch} contexts:         {many_s:7.1f} s  {many_tokens / len(traces):6.0f} tokens evaluated a problem")
    print(f"max |logprob difference|: {diff:.2e}")
    print(f"ratio: {one_s / many_s:.2f}")


if __name__ == "__main__":
    main()
