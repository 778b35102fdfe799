"""Filter throughput: Stage 3 scoring, the authors' way vs ours, side by side on one model.

Documents of ~500 tokens each carry 8 rationales (one after every few sentences). The naive way runs
two full forward passes per rationale, preceding + following with and without the rationale, as the
authors' code does. Ours (`rationalyst.stages.filter`) runs each document once and branches every
rationale off its cached prefix, several documents per batch. Both give the same deltas (checked here
to 1e-3).

    python benchmarks/filter_throughput.py [--model builtin:smollm2-135m] [--documents 4]

Prints rationales/s for both, tokens forwarded by each against the minimum (each document once plus
each rationale and its following segment once), and a line ``ratio: X``.
"""

from __future__ import annotations

import argparse
import time

import torch

from rationalyst.lm import DocumentScoreRequest, load_model
from rationalyst.data.rationale_text import scoring_texts

SENTENCES = [
    "A shop sells notebooks for 3 dollars each and pens for 1 dollar each.",
    "Maria buys 4 notebooks and 6 pens for the new school term.",
    "The notebooks cost her 4 times 3, which is 12 dollars.",
    "The pens cost her 6 times 1, which is 6 dollars.",
    "Together she spends 12 plus 6, or 18 dollars at the shop.",
    "She pays with a 20 dollar note and waits for her change.",
    "The cashier gives her 20 minus 18, which is 2 dollars back.",
    "On the way home she sees that the bakery has a sale on bread.",
]
RATIONALES = [
    "Each item has its own price, so the costs are computed separately.",
    "The total cost is the sum of the notebook cost and the pen cost.",
    "Multiplying the count by the unit price gives the cost of the notebooks.",
    "The change is what is left of the note after paying the total.",
]


def build_documents(model, n_docs: int, target_tokens: int, per_doc: int) -> list[tuple[str, list[dict]]]:
    """Documents of about ``target_tokens`` tokens with ``per_doc`` rationales after evenly spaced sentences."""
    docs = []
    for d in range(n_docs):
        sentences: list[str] = []
        k = d
        while len(model.tokenizer(" ".join(sentences))["input_ids"]) < target_tokens:
            sentences.append(SENTENCES[k % len(SENTENCES)])
            k += 1
        text = " ".join(sentences)
        ends = [sum(len(s) + 1 for s in sentences[: i + 1]) - 1 for i in range(len(sentences) - 1)]
        step = max(len(ends) // per_doc, 1)
        cuts = ends[step - 1 :: step][:per_doc]
        records = []
        for j, cut in enumerate(cuts):
            end = cuts[j + 1] if j + 1 < len(cuts) else len(text)
            records.append({"preceding": text[:cut], "rationale": RATIONALES[(d + j) % len(RATIONALES)], "following": text[cut:end]})
        docs.append((text, records))
    return docs


def naive(model, docs, gamma: float) -> list[float]:
    deltas = []
    for _, records in docs:
        for r in records:
            t = scoring_texts(r["preceding"], r["rationale"], r["following"])
            (without,) = model.score_full_passes(t.without, [t.following])
            (with_r,) = model.score_full_passes(t.with_rationale, [t.following])
            deltas.append(with_r.discounted(gamma) - without.discounted(gamma))
    return deltas


def ours(model, docs, gamma: float) -> list[float]:
    requests = [
        DocumentScoreRequest(
            text,
            [pair for t in (scoring_texts(r["preceding"], r["rationale"], r["following"]) for r in records)
             for pair in ((t.without, t.following), (t.with_rationale, t.following))],
        )
        for text, records in docs
    ]
    deltas = []
    for scores in model.score_in_documents(requests):
        deltas += [w.discounted(gamma) - wo.discounted(gamma) for wo, w in zip(scores[::2], scores[1::2])]
    return deltas


def measure(fn, model, docs, gamma):
    fn(model, docs[:1], gamma)  # warm-up
    before = model.forwarded_tokens
    start = time.perf_counter()
    deltas = fn(model, docs, gamma)
    return time.perf_counter() - start, model.forwarded_tokens - before, deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--documents", type=int, default=4)
    parser.add_argument("--doc-tokens", type=int, default=500)
    parser.add_argument("--rationales", type=int, default=8, help="rationales per document")
    parser.add_argument("--gamma", type=float, default=0.9)
    args = parser.parse_args()

    model = load_model(args.model, batch_size=8, prefix_cache=0)  # one call's sharing only, no reuse across repeats
    docs = build_documents(model, args.documents, args.doc_tokens, args.rationales)
    n = sum(len(records) for _, records in docs)
    n_tokens = lambda text: len(model.tokenizer(text)["input_ids"])  # noqa: E731
    minimum = sum(n_tokens(text) + sum(n_tokens(r["rationale"]) + n_tokens(r["following"]) for r in records) for text, records in docs)

    naive_s, naive_tokens, naive_deltas = measure(naive, model, docs, args.gamma)
    ours_s, ours_tokens, ours_deltas = measure(ours, model, docs, args.gamma)
    max_diff = max(abs(a - b) for a, b in zip(naive_deltas, ours_deltas))
    assert max_diff < 1e-3, f"deltas disagree by {max_diff}"

    avg = sum(n_tokens(t) for t, _ in docs) / len(docs)
    print(f"model: {args.model}  threads: {torch.get_num_threads()}  device: {model.device}")
    print(f"{len(docs)} documents of ~{avg:.0f} tokens, {n} rationales; minimum forward: {minimum} tokens")
    print(f"naive (2 full passes per rationale): {naive_s:7.2f} s  {n / naive_s:6.2f} rationales/s  forwarded {naive_tokens} tokens ({naive_tokens / minimum:.2f}x minimum)")
    print(f"ours (document pass + branches):     {ours_s:7.2f} s  {n / ours_s:6.2f} rationales/s  forwarded {ours_tokens} tokens ({ours_tokens / minimum:.2f}x minimum)")
    print(f"max |delta difference|: {max_diff:.2e}")
    print(f"ratio: {naive_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
