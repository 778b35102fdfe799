"""Scoring throughput: KV-shared batched scoring vs the naive way, side by side on one model.

K continuations of ~40 tokens follow one ~500-token context (the shape of Stage 3 filtering and of
Stage 5 candidate scoring). The naive way runs K full forward passes of context + continuation, as
the authors' code does; ours runs the context once and scores all K continuations in one batched
pass over its cached keys and values. Both compute the same numbers (checked here too).

    python benchmarks/score_throughput.py [--model builtin:smollm2-135m] [--k 8] [--repeats 3]

Prints continuation tokens scored per second for both, tokens forwarded, and a line ``ratio: X``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rationalyst.lm import load_model

PARAGRAPH = (
    "A farmer has a field that is 120 metres long and 45 metres wide. She plants rows of beans "
    "every 3 metres along the length, and each row holds one plant every half metre. Water for "
    "each plant costs 2 cents a day, and she sells the beans at the market on Saturdays. "
)
STEPS = [
    " First, the number of rows is 45 divided by 3, which gives 15 rows across the width of the field,"
    " since the rows run along its length.",
    " Each row is 120 metres long with a plant every half metre, so every row holds 240 bean plants,"
    " because 120 divided by 0.5 is 240.",
    " Multiplying 15 rows by 240 plants per row gives 3,600 plants in the whole field this season,"
    " which is the number we need for the water.",
    " Watering one plant costs 2 cents a day, so the field costs 7,200 cents, or 72 dollars, per day"
    " for all of the plants together.",
    " Over a thirty-day month the water bill adds up to 30 times 72 dollars, which is 2,160 dollars"
    " before the harvest comes in.",
    " If each plant yields half a kilogram, the harvest is 1,800 kilograms of beans for the market,"
    " from 3,600 plants in total.",
    " Selling the beans at 3 dollars a kilogram brings in 5,400 dollars on the Saturday market days,"
    " spread over the whole season.",
    " So the profit after the water bill is 5,400 minus 2,160, which leaves 3,240 dollars in total"
    " for the farmer at the end.",
]


def build_context(model, target_tokens: int) -> str:
    text = ""
    while len(model.tokenizer(text)["input_ids"]) < target_tokens:
        text += PARAGRAPH
    return text + "\nLet us work it out step by step."


def timed(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--k", type=int, default=8, help="continuations per context")
    parser.add_argument("--context-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    # prefix_cache=0: repeats of the same call must not find the context cached by the previous repeat
    # (reuse across calls is what benchmarks/search_cost.py measures).
    model = load_model(args.model, batch_size=args.k, prefix_cache=0)
    context = build_context(model, args.context_tokens)
    continuations = [STEPS[i % len(STEPS)] for i in range(args.k)]
    splits = [model.split(context, c) for c in continuations]
    n_context = splits[0].n_context
    scored = sum(len(s.continuation_ids) for s in splits)
    full = sum(len(s.token_ids) for s in splits)

    naive_s, naive = timed(lambda: model.score_full_passes(context, continuations), args.repeats)
    ours_s, ours = timed(lambda: model.score(context, continuations), args.repeats)
    max_diff = max(abs(a - b) for x, y in zip(ours, naive) for a, b in zip(x.logprobs, y.logprobs))

    print(f"model: {args.model}  threads: {torch.get_num_threads()}  device: {model.device}")
    print(f"context: {n_context} tokens, K = {args.k} continuations, {scored / args.k:.0f} tokens each")
    print(f"naive (K full passes):   {naive_s * 1000:8.1f} ms  {scored / naive_s:8.0f} tokens/s  forwarded {full} tokens")
    print(f"ours (shared KV, batch): {ours_s * 1000:8.1f} ms  {scored / ours_s:8.0f} tokens/s  forwarded {n_context + scored + args.k} tokens")
    print(f"max |logprob difference|: {max_diff:.2e}")
    print(f"ratio: {naive_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
