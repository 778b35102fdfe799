"""What the search's candidate sampling costs on llama.cpp with and without the sampled tokens' log-probs.

The `llamacpp` backend samples token by token and then, unless told the caller will not read them
(``SamplingParams(logprobs=False)``, what the search asks for), evaluates the sampled tokens once more
in one batch for their exact log-probs. This times what one search step asks of the agent, 3 candidates
of up to 64 tokens after a zero-shot chat prompt with a few steps already taken, both ways, alternating
(best of ``--rounds`` each), and checks that both sample the same tokens. Prints the seconds of each,
tokens a second, and ``ratio: X`` (with log-probs over without: the speed-up the search gets).

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_sampling.py --model builtin:qwen2.5-coder-1.5b
"""

from __future__ import annotations

import argparse
import time

from rationalyst.lm import SamplingParams, load_model

QUESTION = (
    "Please reason step by step, and put your final answer within \\boxed{}.\n\nA waterpark charges $30 for "
    "admission. Kids' tickets are half price. Janet gets tickets for 10 people and 4 of them are children. "
    "How much does she pay?"
)
STEPS = "To find the total, we price the adult and the child tickets.\n\n1. Adults: 10 - 4 = 6 adults.\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m", help="A GGUF builtin or path (llamacpp backend).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    model = load_model(f"llamacpp:{args.model}")
    prompt = model.render([{"role": "user", "content": QUESTION}]) + STEPS

    def step(want: bool):
        params = SamplingParams(n=3, temperature=0.7, max_new_tokens=args.tokens, stop=("\n\n",), seed=3, logprobs=want)
        start = time.perf_counter()
        completions = model.generate([prompt], params)[0]
        return time.perf_counter() - start, completions

    step(False)  # warm-up: the prompt's prefill is in the cache for both
    best = {True: float("inf"), False: float("inf")}
    samples = {}
    for _ in range(args.rounds):
        for want in (True, False):
            seconds, completions = step(want)
            best[want] = min(best[want], seconds)
            samples[want] = [c.token_ids for c in completions]
    assert samples[True] == samples[False], "the two ways sampled different tokens"
    tokens = sum(len(ids) for ids in samples[True])
    print(f"model: {args.model}   one search step: 3 candidates, {tokens} tokens sampled")
    print(f"with log-probs (re-evaluated):  {best[True]:.2f} s  ({tokens / best[True]:.1f} tokens/s)")
    print(f"without (logprobs=False):       {best[False]:.2f} s  ({tokens / best[False]:.1f} tokens/s)")
    print(f"ratio: {best[True] / best[False]:.2f}")


if __name__ == "__main__":
    main()
