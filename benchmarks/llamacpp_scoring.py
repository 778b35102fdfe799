"""Scoring on llama.cpp: output rows only where a token is scored, against every position's logits.

K continuations of ~40 tokens follow one ~500-token context (the shape of candidate scoring and of the
filter), scored two ways on the same GGUF, side by side:

* ``every position`` (the backend before): llama-cpp-python's `Llama` opened with ``logits_all=True``;
  `Llama.eval` projects every evaluated position onto the vocabulary and copies the rows into
  ``Llama.scores`` (an ``n_ctx`` x vocabulary float32 array). The context is evaluated once and each
  continuation after rewinding to it (``n_tokens``), as the backend did;
* ``scored rows only`` (the backend now, `LlamaCppModel.score`): ``llama_decode`` asked for an output
  row at the positions whose next token is scored, the context's last and the continuation's.

Both start from an empty cache each repeat. Prints continuation tokens scored per second, tokens
evaluated and rows projected for both, the largest log-prob difference (0: the rows are the same) and
``ratio: X`` (every position over scored rows only).

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_scoring.py --model builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from llamacpp_batching import every_position_llama
from score_throughput import PARAGRAPH, STEPS, timed

import rationalyst.lm.llamacpp_scoring as backend
from rationalyst.lm import load_model
from rationalyst.lm.llamacpp_scoring import log_softmax_rows


class EveryPositionScorer:
    """The backend's scoring before: `Llama.eval` with ``logits_all``, the cache rewound to the context."""

    def __init__(self, model) -> None:
        self.llm = every_position_llama(model)
        self.evaluated = 0

    def score(self, seqs) -> list[list[float]]:
        llm, out = self.llm, []
        llm.n_tokens = 0
        for seq in seqs:
            ids = seq.token_ids
            keep = min(llm.n_tokens, seq.n_context)
            keep = keep - 1 if len(ids) - keep == 1 else keep  # never a one-token batch
            llm.n_tokens = keep
            llm.eval(ids[keep:])
            self.evaluated += len(ids) - keep
            rows = log_softmax_rows(llm.scores[seq.n_context - 1 : len(ids) - 1])
            out.append(rows[np.arange(len(ids) - seq.n_context), ids[seq.n_context :]].tolist())
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:smollm2-135m", help="A GGUF builtin or path (llamacpp backend).")
    parser.add_argument("--k", type=int, default=8, help="continuations per context")
    parser.add_argument("--context-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = load_model(f"llamacpp:{args.model}", n_ctx=2048)
    context = PARAGRAPH
    while len(model.split(context, "").token_ids) < args.context_tokens:
        context += PARAGRAPH
    context += "\nLet us work it out step by step."
    continuations = [STEPS[i % len(STEPS)] for i in range(args.k)]
    seqs = [model.split(context, c) for c in continuations]
    scored = sum(len(s.continuation_ids) for s in seqs)
    before = EveryPositionScorer(model)

    counted = {"tokens": 0, "rows": 0}
    decode = backend.decode_entries

    def counting(lc, ctx, batch, entries):
        counted["tokens"] += len(entries)
        counted["rows"] += sum(bool(e[3]) for e in entries)
        decode(lc, ctx, batch, entries)

    backend.decode_entries = counting

    def ours():
        model._scoring.reset()
        return [s.logprobs for s in model.score(context, continuations)]

    before_s, before_lp = timed(lambda: before.score(seqs), args.repeats)
    ours_s, ours_lp = timed(ours, args.repeats)
    evaluated = before.evaluated // (args.repeats + 1)
    ours_tokens, ours_rows = (counted[k] // (args.repeats + 1) for k in ("tokens", "rows"))
    max_diff = max(abs(a - b) for x, y in zip(ours_lp, before_lp) for a, b in zip(x, y))

    print(f"model: {args.model}  threads: {os.environ.get('OMP_NUM_THREADS', 'all')}")
    print(f"context: {seqs[0].n_context} tokens, K = {args.k} continuations, {scored / args.k:.0f} tokens each")
    print(f"every position:    {before_s * 1000:8.1f} ms  {scored / before_s:6.0f} tokens/s  "
          f"evaluated {evaluated} tokens, {evaluated} rows projected")
    print(f"scored rows only:  {ours_s * 1000:8.1f} ms  {scored / ours_s:6.0f} tokens/s  "
          f"evaluated {ours_tokens} tokens, {ours_rows} rows projected")
    print(f"max |logprob difference|: {max_diff:.2e}")
    print(f"ratio: {before_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
