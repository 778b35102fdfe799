"""Boundary extraction on a llama.cpp extractor: rows one at a time against all of a batch's rows together.

The extract stage sends the prompts of ``--batch`` documents (up to 3 insertion points each, as the
CPU recipe sets it) to the model in one `generate` call: each prompt is the kind's instruction and
two demonstrations, then the document's text up to the point; the rationale is greedy and stops at a
newline. Here the same documents go through the stage's own worker (`ExtractWorker`) on two models
loaded from the same GGUF, ``batch_size`` 1 (one row at a time by llama.cpp's one-row path) and
``batch_size`` = the prompts of a batch, each timed after its KV streams are open. A prompt starting
in a stream first copies the stream holding its longest prefix (the shared instruction, a document's
earlier point), so both sizes evaluate about the same prompt tokens; what batching saves is the
one-token decode passes. llama.cpp's kernels round by the number of rows, so some rationales differ
between the two: counted, not asserted.

Prints seconds, documents/min, tokens generated and forwarded for each, and ``ratio: X`` (batch_size 1
over the batched one).

    OMP_NUM_THREADS=2 python benchmarks/extract_batching.py --model builtin:qwen2.5-coder-1.5b --documents 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rationalyst.data.corpus import benchmark_documents
from rationalyst.lm import load_model
from rationalyst.stages.extract import ExtractConfig, ExtractWorker

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "gsm8k" / "train.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m", help="A GGUF builtin or path (llamacpp backend).")
    parser.add_argument("--data", default=str(GSM8K), help="GSM8K-format JSON Lines (question + worked solution).")
    parser.add_argument("--documents", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="Documents per generate call (extract.batch_size).")
    args = parser.parse_args()
    docs = []
    for doc in benchmark_documents("gsm8k", args.data):
        docs.append({"id": doc.id, "text": doc.text, "source": doc.source, "kind": "math"})
        if len(docs) == args.documents:
            break
    rows = 3 * args.batch
    config = ExtractConfig(
        input="-", output="-", model=f"llamacpp:{args.model}", mode="boundary", max_rationales_per_doc=3,
        max_new_tokens=48, batch_size=args.batch,
    )
    results = {}
    for size in (1, rows):
        model = load_model(f"llamacpp:{args.model}", batch_size=size, n_ctx=4096)
        worker = ExtractWorker(config, model)
        worker(docs[:1])  # open the KV streams (a context of `size` streams) before the clock starts
        model._decoder.forwarded = 0
        start = time.perf_counter()
        records = [r for i in range(0, len(docs), args.batch) for r in worker(docs[i : i + args.batch])]
        seconds = time.perf_counter() - start
        rationales = [r["rationale"] for r in records if "rationale" in r]
        generated = sum(r["_summary"]["generated_tokens"] for r in records if "_summary" in r)
        results[size] = (seconds, rationales, generated, model._decoder.forwarded)
        del worker, model

    print(f"model: {args.model}   {len(docs)} GSM8K documents, {args.batch} a call, up to 3 rationales each")
    for size, (seconds, rationales, generated, forwarded) in results.items():
        print(f"batch_size {size:<3}: {seconds:7.1f} s  {60 * len(docs) / seconds:6.1f} documents/min  "
              f"{len(rationales)} rationales, {generated} tokens generated, {forwarded} forwarded")
    differ = sum(a != b for a, b in zip(results[1][1], results[rows][1]))
    print(f"rationales that differ between the two: {differ} of {len(results[1][1])}")
    print(f"ratio: {results[1][0] / results[rows][0]:.2f}")


if __name__ == "__main__":
    main()
