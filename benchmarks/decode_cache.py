"""A decode step on a reserved KV cache (`lm.reserved_cache`) against transformers' ``DynamicCache``.

``DynamicCache`` appends each step's column with ``torch.cat``, a copy of the whole cache per layer;
the decode loop of the hf backend (`lm.hf_decode`) keeps its cache in buffers with room and writes the
column in place. Same model, same rows and columns, same attention mask (all ones), the two caches
alternating in one process (best of two rounds each): milliseconds per step for each and ``ratio: X``
(dynamic over reserved) at the largest shape.

    OMP_NUM_THREADS=2 python benchmarks/decode_cache.py [--shapes 4x400,16x400,32x400,32x800] [--steps 24]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import DynamicCache

from rationalyst.lm import load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.prefix_cache import cache_argument, output_cache
from rationalyst.lm.reserved_cache import with_room


def time_steps(model, prefilled, reserved: bool, steps: int) -> float:
    """Seconds per decode step of ``steps`` steps from a copy of ``prefilled``."""
    rows, columns = prefilled.layers[0].keys.shape[0], prefilled.layers[0].keys.shape[2]
    cache = DynamicCache(ddp_cache_data=[(layer.keys.clone(), layer.values.clone()) for layer in prefilled.layers])
    if reserved:
        cache = with_room(cache, steps)
    token = torch.full((rows, 1), 100)
    mask = torch.ones(rows, columns + 1, dtype=torch.long)
    arg = cache_argument(model)
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=token, attention_mask=mask, use_cache=True, **{arg: cache})
        cache = output_cache(out)
        token = out.logits[:, -1:].argmax(-1)
        mask = torch.cat([mask, mask[:, :1]], dim=1)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_LM)
    parser.add_argument("--shapes", default="4x400,16x400,32x400,32x800", help="ROWSxCOLUMNS of the cache, comma-separated.")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    model = load_model(args.model).model
    print(f"model {args.model}, {args.steps} decode steps per measurement")
    ratio = 1.0
    for shape in args.shapes.split(","):
        rows, columns = (int(x) for x in shape.split("x"))
        ids = torch.randint(100, 1000, (rows, columns), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            prefilled = output_cache(model(input_ids=ids, use_cache=True))
            best = {"dynamic": float("inf"), "reserved": float("inf")}
            for _ in range(2):
                for name in best:
                    best[name] = min(best[name], time_steps(model, prefilled, name == "reserved", args.steps))
        ratio = best["dynamic"] / best["reserved"]
        print(
            f"{rows:3d} rows x {columns:4d} columns: dynamic {best['dynamic'] * 1000:6.1f} ms/step, "
            f"reserved {best['reserved'] * 1000:6.1f} ms/step ({ratio:.2f}x)"
        )
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
