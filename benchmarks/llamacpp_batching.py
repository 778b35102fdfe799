"""What one batched search step asks of a llama.cpp agent, sampled one row at a time and all rows together.

A search step of ``--problems`` problems asks the agent for 3 candidates of up to ``--tokens`` tokens
after each problem's prompt (Qwen's zero-shot chat turn with one step taken, stopping at a blank line),
then the next step asks again after each prompt extended by its first candidate. Timed three ways,
two steps each, on the same model:

* ``one sequence``: the way the backend sampled before streams, a token loop of one-token
  evaluations in llama-cpp-python's single-sequence context, one sample after another (the
  prompt's cache reused by rewinding);
* ``batch_size 1``: the stream decoder with one row at a time (the same one-row kernel path);
* ``batch_size N``: every row of the step together (N = problems x 3).

The first two take the same one-row kernel path; batch_size N rounds differently (llama.cpp's kernels
pick their path by the number of rows), and on repacked weights (Q4_K) so does a prompt prefilled in
other chunks, so some samples differ between the three ways: counted, not asserted.
Prints seconds, tokens/s, tokens forwarded and rows moved into consecutive KV streams for each, and ``ratio: X`` (one sequence over batch_size
N: the speed-up the search gets).

    OMP_NUM_THREADS=2 python benchmarks/llamacpp_batching.py --model builtin:qwen2.5-coder-1.5b
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rationalyst.lm import SamplingParams, load_model
from rationalyst.lm.boundary import common_prefix_length
from rationalyst.lm.llamacpp_streams import draw_tokens

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}.\n\n"
PROBLEMS = [
    ("A waterpark charges $30 for admission. Kids' tickets are half price. Janet gets tickets for 10 people "
     "and 4 of them are children. How much does she pay?", "Adults: 10 - 4 = 6 adults."),
    ("Tom reads 12 pages an hour. How many hours does he need for 3 books of 96 pages each?",
     "The books have 3 * 96 = 288 pages in all."),
    ("A baker makes 45 muffins and sells two thirds of them. He then bakes 20 more. How many does he have?",
     "He sells 45 * 2/3 = 30 muffins."),
    ("Maria saves $15 a week. Her bike costs $240 and she already has $60. How many weeks must she save?",
     "She still needs 240 - 60 = $180."),
    ("A train travels 80 km an hour for 2.5 hours, then 60 km an hour for 1 hour. How far does it go?",
     "The first part is 80 * 2.5 = 200 km."),
    ("Liam has 3 boxes of 24 crayons. He gives 18 crayons to his sister. How many are left?",
     "He has 3 * 24 = 72 crayons."),
    ("A garden is 12 m long and 8 m wide. Fencing costs $5 a metre. What does it cost to fence it?",
     "The perimeter is 2 * (12 + 8) = 40 m."),
    ("Sara buys 4 notebooks at $2.50 each and a pen for $1.20. She pays with $20. What is her change?",
     "The notebooks cost 4 * 2.50 = $10."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m", help="A GGUF builtin or path (llamacpp backend).")
    parser.add_argument("--problems", type=int, default=8, choices=range(1, len(PROBLEMS) + 1))
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    problems = PROBLEMS[: args.problems]
    rows = 3 * len(problems)
    params = SamplingParams(
        n=3, temperature=0.7, max_new_tokens=args.tokens, stop=("\n\n",), seed=3, logprobs=False
    )

    def first_prompts(model) -> list[str]:
        return [model.render([{"role": "user", "content": INSTRUCTION + q}]) + s + "\n\n" for q, s in problems]

    results = {}
    for size in (1, rows):
        model = load_model(f"llamacpp:{args.model}", batch_size=size)
        prompts = first_prompts(model)
        model.generate(prompts[:1], params.model_copy(update={"max_new_tokens": 2}))  # open the streams
        start = time.perf_counter()
        forwarded, moved = model._decoder.forwarded, model._decoder.moved
        step1 = model.generate(prompts, params)
        step2 = model.generate([p + r[0].text + "\n\n" for p, r in zip(prompts, step1)], params)
        seconds = time.perf_counter() - start
        tokens = [c.token_ids for r in step1 + step2 for c in r]
        results[size] = (seconds, tokens, model._decoder.forwarded - forwarded, model._decoder.moved - moved)
        del model

    model = load_model(f"llamacpp:{args.model}")
    one_sequence = OneSequenceSampler(model)
    prompts = first_prompts(model)
    start = time.perf_counter()
    one_tokens, one_forwarded, one_samples = 0, 0, []
    for step in range(2):
        next_prompts = []
        for k, prompt in enumerate(prompts):
            first_text = None
            for sample in range(3):
                rng = np.random.default_rng(params.seed + k * 3 + sample)
                ids, forwarded = one_sequence.sample(prompt, params, rng)
                one_samples.append(ids)
                one_tokens += len(ids)
                one_forwarded += forwarded
                text = b"".join(model._piece(t, special=False) for t in ids).decode("utf-8", errors="replace")
                first_text = first_text if first_text is not None else text.split("\n\n")[0]
            next_prompts.append(prompt + first_text + "\n\n")
        prompts = next_prompts
    one_seconds = time.perf_counter() - start

    differ_one = sum(a != b for a, b in zip(results[1][1], one_samples))
    differ = sum(a != b for a, b in zip(results[1][1], results[rows][1]))
    print(f"model: {args.model}   2 search steps of {len(problems)} problems x 3 candidates (<= {args.tokens} tokens)")
    print(f"one sequence (before):  {one_seconds:7.1f} s  {one_tokens / one_seconds:5.1f} tokens/s  "
          f"{one_tokens} sampled, {one_forwarded} forwarded")
    for size, (seconds, samples, forwarded, moved) in results.items():
        sampled = sum(len(t) for t in samples)
        print(f"batch_size {size:<3}:          {seconds:7.1f} s  {sampled / seconds:5.1f} tokens/s  "
              f"{sampled} sampled, {forwarded} forwarded, {moved} rows moved")
    print(f"samples that differ from batch_size 1: one sequence {differ_one}, batch_size {rows} {differ} "
          f"(of {len(one_samples)})")
    print(f"ratio: {one_seconds / results[rows][0]:.2f}  (batch_size 1 over {rows}: {results[1][0] / results[rows][0]:.2f})")


def every_position_llama(model):
    """llama-cpp-python's own `Llama` on ``model``'s GGUF with its settings, logits for every position
    (``logits_all``): how the backend evaluated before it drove ``llama_decode`` itself."""
    import llama_cpp

    threads = int(model.llm.context_params.n_threads)
    return llama_cpp.Llama(model_path=str(model.path), n_ctx=model.n_ctx, n_threads=threads,
                           n_threads_batch=threads, logits_all=True, verbose=False)


class OneSequenceSampler:
    """The pre-stream sampler: llama-cpp-python's single-sequence context (logits for every position),
    the prompt evaluated after rewinding to the prefix it shares with the previous prompt (never into
    a one-token batch, never past the prompt: one-token steps use another kernel path), then one-token
    `Llama.eval` steps."""

    def __init__(self, model) -> None:
        self.model = model
        self.llm = every_position_llama(model)
        self.prompt: list[int] = []  # the prompt last evaluated, whose cache is reused

    def sample(self, prompt: str, params: SamplingParams, rng) -> tuple[list[int], int]:
        """One sample's tokens and the tokens forwarded for it."""
        llm, model = self.llm, self.model
        ids = model._encode(prompt)
        common = common_prefix_length(self.prompt, ids)
        if len(ids) - common == 1 and common > 0:
            common -= 1
        llm.n_tokens = common
        llm.eval(ids[common:])
        self.prompt = ids
        forwarded = len(ids) - common
        tokens, text = [], b""
        while True:
            (token,) = draw_tokens(llm.scores[llm.n_tokens - 1][None, :], params, [rng])
            if model._is_end(token):
                break
            tokens.append(token)
            text += model._piece(token, special=False)
            if b"\n\n" in text or len(tokens) >= params.max_new_tokens:
                break
            llm.eval([token])
            forwarded += 1
        return tokens, forwarded


if __name__ == "__main__":
    main()
