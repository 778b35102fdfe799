"""What the llama.cpp prefix layout (`rationalyst.lm.llamacpp_layout`) costs, and what it buys.

The step search's pattern on llama.cpp, run two ways on the same GGUF, side by side: a problem's
contexts grow by one step (and a one-line rationale) at a time and three candidates are scored after
each (the scorer), and the agent's prompts grow the same way and are prefilled into one stream (the
stream decoder). Two layouts:

* ``reuse all shared`` (the backend before): every cached token the new context shares is reused,
  batches start anywhere (at least two tokens each);
* ``canonical`` (the backend now): only the cache one evaluation of the context would write alike is
  reused (batches aligned to 16 tokens, 32 or more a batch), so a score is a function of its inputs.

Prints, for each: seconds, tokens evaluated, and the largest difference from a fresh evaluation of
each context (log-probs of the scored candidates; the prompts' last logits), then ``ratio: X`` (the
canonical layout's seconds over reuse-all-shared's).

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_prefix_layout.py --model builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rationalyst.lm import llamacpp_layout as layout
from rationalyst.lm import load_model

PROBLEM = (
    "Question: A baker makes 24 muffins in the morning and 3 times as many in the afternoon. She sells half "
    "of all the muffins at $2 each and the rest at $1.50 each. She spends $40 on flour and $12 on sugar. "
    "How much profit does she make?\nAnswer, one step a line:\n"
)
STEPS = [
    "In the afternoon she makes 3 * 24 = 72 muffins.",
    "So she makes 24 + 72 = 96 muffins in all, which she sells over the day at the bakery on the corner.",
    "Half of them is 96 / 2 = 48 muffins.",
    "At $2 each, 48 muffins bring 48 * 2 = $96.",
    "The other 48 at $1.50 each bring 48 * 1.5 = $72, a little less, since they are sold later in the day.",
    "Her sales are 96 + 72 = $168.",
    "She spends 40 + 12 = $52.",
]
RATIONALE = "Rationale: the next step uses the numbers found so far.\n"
ALIGN, MIN_ROWS = layout.ALIGN, layout.MIN_ROWS  # the canonical layout (`run` changes the module's for a pass)
CANDIDATES = [" The profit is 168 - 52 = $116.", " Next, add the costs.", " So the answer is 116."]


def contexts() -> list[str]:
    return [PROBLEM + "".join(s + "\n" for s in STEPS[:k]) + RATIONALE for k in range(len(STEPS) + 1)]


def run(model, align: int, min_rows: int) -> tuple[float, int, dict]:
    """One pass of the pattern under a layout: (seconds, tokens evaluated, results to compare)."""
    layout.ALIGN, layout.MIN_ROWS = align, min_rows
    model._scoring.reset()
    decoder = model._streams()
    forget(decoder)
    evaluated = decoder.forwarded + model.forwarded_tokens
    results = {}
    start = time.perf_counter()
    for k, context in enumerate(contexts()):
        for candidate, score in zip(CANDIDATES, model.score(context, CANDIDATES)):
            results["score", k, candidate] = np.asarray(score.logprobs)
        results["prompt", k] = decoder._prefill(0, model._encode(context))
    seconds = time.perf_counter() - start
    return seconds, decoder.forwarded + model.forwarded_tokens - evaluated, results


def forget(decoder) -> None:
    """Nothing in any stream is reused by the next prefill."""
    decoder._held = [[] for _ in decoder._held]
    decoder._canonical = [0] * len(decoder._canonical)


def fresh(model) -> dict:
    """Each context evaluated from an empty cache (canonical layout: one evaluation from position 0)."""
    layout.ALIGN, layout.MIN_ROWS = ALIGN, MIN_ROWS
    decoder = model._streams()
    results = {}
    for k, context in enumerate(contexts()):
        for candidate in CANDIDATES:
            results["score", k, candidate] = np.asarray(model.score_full_passes(context, [candidate])[0].logprobs)
        forget(decoder)
        results["prompt", k] = decoder._prefill(0, model._encode(context))
    return results



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:qwen2.5-coder-0.5b")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    model = load_model(f"llamacpp:{args.model}", n_ctx=1024, n_threads=threads, batch_size=2)
    reference = fresh(model)
    ways = {"reuse all shared": (1, 2), "canonical": (ALIGN, MIN_ROWS)}
    best: dict[str, tuple[float, int, float]] = {}
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        for name, (align, min_rows) in ways.items():
            seconds, evaluated, results = run(model, align, min_rows)
            worst = max(float(np.max(np.abs(results[key] - reference[key]))) for key in reference)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, evaluated, worst)
    layout.ALIGN, layout.MIN_ROWS = ALIGN, MIN_ROWS
    for name, (seconds, evaluated, worst) in best.items():
        print(f"{name:>17}: {seconds:6.2f} s, {evaluated:5d} tokens evaluated, largest difference from a fresh evaluation {worst:.3g}")
    print(f"ratio: {best['canonical'][0] / best['reuse all shared'][0]:.2f}")


if __name__ == "__main__":
    main()
