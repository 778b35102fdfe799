"""Evaluation at engine speed (issue 13): the same problems one at a time and in lockstep batches.

The implicit method on generated word problems (benchmark ``word_problems``, seed 0) with the default
model on the hf backend, at batch 1 and at larger batches (``batch_problems``), same seeds, side by
side in one process (the prefix cache emptied before each run). For each: problems per minute, engine
calls per problem (``generate`` and ``score_many`` calls reaching the model), tokens forwarded (prompt
tokens run by generation + tokens run by scoring) against the minimum (every prompt or scored token
that no earlier call of the run had forwarded as a prefix: an unbounded, exact prefix cache), and
accuracy, and when all but the last problem were done (a problem that runs to ``max_steps`` alone at
the end bounds a batched run: its steps are sequential whatever the batch); then ``ratio: X`` (the
second batch size over batch 1, in problems/min) and the engine calls a 1,319-problem GSM8K run would
make at batch 1 and at batch 256, from the measured calls per problem. With an hf model the search
streams its generations (continuous batching): each batch of prompts joining the decode loop counts
as one engine call, and the decode steps are timed apart.

    OMP_NUM_THREADS=2 python benchmarks/eval_throughput.py [--problems 32] [--batches 1,8,16] [--dtype fastest]
    OMP_NUM_THREADS=2 python benchmarks/eval_throughput.py --model llamacpp:builtin:qwen2.5-coder-0.5b --batches 1,8

On llama.cpp (``--model llamacpp:...``) the search streams its generations through the stream decoder
(KV streams: ``batch_size``) and keeps a scoring context a problem; a model is loaded afresh for each
batch size, and only the scoring tokens are counted as forwarded.

On a GPU machine without the weights (scripts/device_check.sh carries no model): ``--random-weights
FOLDER`` builds the model from FOLDER's config.json with seeded random weights (its tokenizer files
beside it), and ``--benchmark NAME=FILE`` reads problems from a JSON Lines file, repeated with fresh
ids up to ``--problems``. A random model writes no answer and no stop string: every step runs to its
token limit and every problem to ``--max-steps``, so each problem costs the same and the figures are
the engine's, not the method's (accuracy 0).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from rationalyst.data.benchmarks import load_benchmark
from rationalyst.lm import load_model
from rationalyst.lm.base import LanguageModel
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.prefix_cache import PrefixCache
from rationalyst.search.methods import solve_many
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings


class Counting(LanguageModel):
    """The model behind a meter: engine calls, and the minimum tokens an exact unbounded prefix cache runs."""

    def __init__(self, inner) -> None:
        self.inner, self.name = inner, inner.name
        self.calls = 0
        self.minimum = 0
        self._seen: set[int] = set()
        #: Wall seconds and engine calls by call kind (the rationale and candidate generations, scoring).
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls_by_kind: dict[str, int] = defaultdict(int)

    def _timed(self, kind: str, call, *args):
        start = time.perf_counter()
        out = call(*args)
        self.seconds[kind] += time.perf_counter() - start
        self.calls_by_kind[kind] += 1
        return out

    def __getattr__(self, name):  # forwarded_tokens, forwarded_per_request, device, ...
        return getattr(self.inner, name)

    def _new_tokens(self, ids: list[int]) -> int:
        h, known, new = 0, True, 0
        for tok in ids:
            h = hash((h, tok))
            if known and h in self._seen:
                continue
            known = False
            new += 1
            self._seen.add(h)
        return new

    def render(self, prompt):
        return self.inner.render(prompt)

    def generate(self, prompts, params):
        return self.generate_seeded(prompts, params, [params.seed] * len(prompts))

    def generate_seeded(self, prompts, params, seeds):
        self.calls += 1
        self.minimum += sum(self._new_tokens(self.inner._encode(p)) for p in prompts)
        kind = f"generate n={params.n} max={params.max_new_tokens}"
        return self._timed(kind, self.inner.generate_seeded, prompts, params, seeds)

    def generate_mixed(self, prompts, params):
        self.calls += 1
        self.minimum += sum(self._new_tokens(self.inner._encode(p)) for p in prompts)
        kind = " + ".join(sorted({f"n={p.n} max={p.max_new_tokens}" for p in params}))
        return self._timed(f"generate {kind}", self.inner.generate_mixed, prompts, params)

    def open_stream(self):
        return CountingStream(self, self.inner.open_stream()) if hasattr(self.inner, "open_stream") else None

    def score_many(self, requests):
        self.calls += 1
        for r in requests:
            for c in r.continuations:
                self.minimum += self._new_tokens(self.inner.split(r.context, c).token_ids)
        return self._timed("score", self.inner.score_many, requests)


class CountingStream:
    """A model's stream behind the same meter: each `add` (one batch of prompts joining) is an engine call."""

    def __init__(self, counting: Counting, inner) -> None:
        self.counting, self.inner = counting, inner

    def __getattr__(self, name):  # busy, tags
        return getattr(self.inner, name)

    def add(self, prompts, params, tags):
        self.counting.calls += 1
        self.counting.minimum += sum(self.counting._new_tokens(self.counting.inner._encode(p)) for p in prompts)
        kind = "generate (stream) " + " + ".join(sorted({f"n={p.n} max={p.max_new_tokens}" for p in params}))
        return self.counting._timed(kind, self.inner.add, prompts, params, tags)

    def step(self):
        return self.counting._timed("decode steps", self.inner.step)


def run(model, items, settings: SearchSettings, batch: int) -> dict:
    if isinstance(getattr(model, "prefix_cache", None), PrefixCache):
        model.prefix_cache = PrefixCache(model.prefix_cache.capacity)
    # One forward pass per engine call: a problem's rationale and its n candidates decode together
    # (llamacpp: as many KV streams, and a scoring context a problem, as eval reserves).
    model.batch_size = max(8, batch * (settings.n_candidates + 1))
    if hasattr(model, "reserve_scoring_contexts"):
        model.reserve_scoring_contexts(batch)
    counting = Counting(model)
    before = model.forwarded_tokens + getattr(model, "generation_forwarded", 0)
    start = time.perf_counter()
    traces, finished_at = [], []
    for _, trace in solve_many("implicit", items, Roles.of(counting), settings, 0, batch_problems=batch):
        traces.append(trace)
        finished_at.append(time.perf_counter() - start)
    seconds = time.perf_counter() - start
    forwarded = model.forwarded_tokens + getattr(model, "generation_forwarded", 0) - before
    return {
        "batch": batch, "seconds": seconds, "per_min": 60 * len(items) / seconds, "calls": counting.calls,
        "calls_per_problem": counting.calls / len(items), "forwarded": forwarded, "minimum": counting.minimum,
        "accuracy": sum(bool(t.get("correct")) for t in traces) / len(items),
        "steps": sum(len(t.get("steps", [])) for t in traces) / len(items),
        "by_kind": {k: (counting.calls_by_kind[k], counting.seconds[k]) for k in sorted(counting.seconds)},
        # The tail: when all but the last problem were done, and how many steps that last one took.
        "all_but_last": finished_at[-2] if len(finished_at) > 1 else seconds,
        "last_steps": len(traces[-1].get("steps", [])),
    }


def random_weights_model(folder: str):
    """A model of FOLDER's config with seeded random weights, saved beside its tokenizer and loaded as hf."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    target = Path(tempfile.mkdtemp(prefix="random-weights-"))
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                 "special_tokens_map.json"):
        if (Path(folder) / name).exists():
            shutil.copy(Path(folder) / name, target / name)
    return load_model(f"hf:{target}")


def problems(benchmark: str | None, count: int):
    if benchmark is None:
        return load_benchmark("word_problems", "seed=0", limit=count)
    name, _, source = benchmark.partition("=")
    base = load_benchmark(name, source or None)
    return [base[i % len(base)].model_copy(update={"id": f"{base[i % len(base)].id}#{i}"}) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_LM)
    parser.add_argument("--dtype", default="auto", help="auto (float32 on CPU), fastest (bfloat16 where the CPU "
                        "computes it natively: AVX512-BF16/AMX), float32, bfloat16, float16.")
    parser.add_argument("--random-weights", metavar="FOLDER", help="Random weights of FOLDER's config (no weights needed).")
    parser.add_argument("--benchmark", metavar="NAME=FILE", help="Problems from a file (default: generated word problems).")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--max-steps", type=int, help="Steps per problem at most (default: the search's).")
    args = parser.parse_args()
    items = problems(args.benchmark, args.problems)
    load = lambda: random_weights_model(args.random_weights) if args.random_weights else load_model(args.model, dtype=args.dtype)  # noqa: E731
    model = load()
    dtype = getattr(getattr(model, "model", None), "dtype", "?")
    print(f"model {model.name} on {getattr(model, 'device', '?')} in {dtype}, {len(items)} problems", flush=True)
    settings = SearchSettings(**({"max_steps": args.max_steps} if args.max_steps else {}))
    batches = [int(b) for b in args.batches.split(",")]
    # llama.cpp's generation prompts are not counted as forwarded (its scoring tokens are), and its
    # contexts keep what earlier runs left: each batch size gets a model loaded afresh.
    counts_generation = hasattr(model, "generation_forwarded")
    results = []
    for i, batch in enumerate(batches):
        if i and not isinstance(getattr(model, "prefix_cache", None), PrefixCache):
            model = load()
        r = run(model, items, settings, batch)
        results.append(r)
        tokens = (f"tokens forwarded {r['forwarded']} vs minimum {r['minimum']} ({r['forwarded'] / max(r['minimum'], 1):.2f}x)"
                  if counts_generation else f"scoring tokens forwarded {r['forwarded']}")
        print(
            f"batch {r['batch']:>3}: {r['per_min']:.2f} problems/min ({r['seconds']:.0f} s), "
            f"{r['calls_per_problem']:.2f} engine calls/problem, {r['steps']:.2f} steps/problem, {tokens}, "
            f"accuracy {r['accuracy']:.3f}",
            flush=True,
        )
        print("    " + "; ".join(f"{kind}: {n} calls, {sec:.0f} s" for kind, (n, sec) in r["by_kind"].items()), flush=True)
        print(f"    all but the last problem done at {r['all_but_last']:.0f} s; the last took {r['last_steps']} steps", flush=True)
    base = results[0]
    if len(results) > 1:
        print(f"ratio: {results[1]['per_min'] / base['per_min']:.2f}")
    widest = results[-1]
    # Lockstep overhead measured at the widest batch (stragglers, refills): calls = N / B * rounds per problem.
    rounds_per_problem = widest["calls_per_problem"] * widest["batch"]
    gsm8k = 1319
    print(
        f"GSM8K ({gsm8k} problems): {base['calls_per_problem'] * gsm8k:,.0f} engine calls at batch 1, "
        f"about {max(rounds_per_problem * gsm8k / 256, rounds_per_problem):,.0f} at batch 256 "
        f"(from {widest['calls_per_problem']:.2f} calls/problem at batch {widest['batch']})"
    )


if __name__ == "__main__":
    main()
