"""Benchmark questions for evaluation: one item type, one loader, every source format.

RATIONALYST is evaluated on seven reasoning benchmarks (GSM8K, MATH, ECQA, HellaSwag, ProofWriter,
ARC-Challenge, MMLU-Pro). They come in many shapes; this package turns each into `BenchmarkItem`s of
one of four answer families (`FAMILIES`), which decide how a final answer is stated, extracted and
checked (`rationalyst.data.answers`):

* ``arithmetic`` — a number ("The answer is 72."): GSM8K, generated GSM-Symbolic problems;
* ``math`` — a LaTeX expression in ``\\boxed{}``: MATH, MATH-500;
* ``multiple_choice`` — an option letter: ECQA (CommonsenseQA), HellaSwag, ARC-Challenge, MMLU-Pro;
* ``logic`` — ProofWriter, a multiple choice over A) True, B) False, C) Unknown.

`load_benchmark(name, source)` reads, from ``source``:

* ``None``: the benchmark's default file (`BenchmarkSpec.default_file`) in the benchmarks folder.
  That folder is ``$RATIONALYST_BENCHMARKS`` when set, else the first of ``./shared/benchmarks`` and
  ``../shared/benchmarks`` (relative to the current directory) that exists;
* a folder: the default file inside it (a benchmarks folder), or for MATH a folder of the original
  one-problem ``.json`` files (``test/algebra/1.json``, ...);
* a file — the normalized JSON Lines of ``shared/benchmarks`` (rows ``id, question, choices, answer,
  solution, source, meta``) or the benchmark's original format, recognised by its fields:
  GSM8K jsonl (``question``, ``answer`` ending in ``#### N``); MATH jsonl/json (``problem``,
  ``solution`` [, ``answer``], the answer otherwise the last ``\\boxed{}``); ECQA csv (``q_text``,
  ``q_op1``..``q_op5``, ``q_ans``, ``taskB``) or CommonsenseQA jsonl (``question.stem``,
  ``question.choices``, ``answerKey``); HellaSwag jsonl (``ctx``, ``endings``, ``label``); ProofWriter
  as in Logic-LLM (a JSON list of ``context``, ``question``, ``options``, ``answer``); ARC jsonl
  (like CommonsenseQA; labels ``1``-``4`` become letters by position); MMLU-Pro (``question``,
  ``options``, ``answer`` / ``answer_index``). Files may be ``.jsonl``, ``.json`` (a list, or one
  object), ``.csv`` or ``.parquet``. A relative path that does not exist is also looked for in the
  benchmarks folder (``load_benchmark("gsm8k", "gsm8k/test.jsonl")``);
* ``hf:<dataset>[:<config>][@<split>]``: a Hugging Face hub dataset through ``datasets.load_dataset``
  (``hf:`` alone: the benchmark's usual hub copy, `BenchmarkSpec.hf`), with the hub's field layout.

Bad rows (invalid JSON, missing or ill-typed fields, an answer that is not one of the options, a
repeated id) are skipped and reported to ``on_skip(reason, file, line)``, the reason naming the field;
without ``on_skip`` the first bad row raises `InputError` naming file, line and field. Problems with
the input as a whole (nothing found, an unknown format, the hub unreachable) raise `RationalystError`.

``gsm_symbolic`` and ``word_problems`` are generated, not read, deterministic for a seed
(``load_benchmark("gsm_symbolic", limit=30, seed=0)``, or ``source="seed=0"``): GSM8K-style problems
with worked solutions from the ``reasoning-gym`` package, and short one- and two-step word problems
(`rationalyst.data.benchmarks.word_problems`) that a 135M model can sometimes solve. `generated_documents`
makes corpus documents from either.

Nothing here imports torch; ``datasets`` and ``reasoning_gym`` are imported only when used.

The modules, one job each (everything public is re-exported here):

* `items` — `BenchmarkItem`, the answer `FAMILIES`, `LETTERS`, `BenchmarkSpec` and the `BENCHMARKS` registry;
* `formats` — the row parser of each original format, `FORMATS`, `detect_format`, choosing a file's format;
* `rows` — rows to items: the parse loop every source goes through and the reporting of skipped rows;
* `sources` — file, folder and hub row readers, the benchmarks folder, `benchmark_split`, `parse_hub_source`;
* `load` — `load_benchmark`, the one entry point;
* `generated` — gsm_symbolic and word_problems items and documents, `write_generated_corpus`;
* `word_problems` — the word-problem generator.

``hf:`` specs, offline mode and the hub probe are `rationalyst.data.hub`'s (shared with the corpus reader).
"""

from rationalyst.data.benchmarks.formats import FORMATS, detect_format
from rationalyst.data.benchmarks.generated import (
    GSM_SYMBOLIC_DEFAULT_SIZE,
    GSM_SYMBOLIC_DOCUMENT_SEED,
    generated_documents,
    gsm_symbolic_documents,
    write_generated_corpus,
)
from rationalyst.data.benchmarks.items import (
    BENCHMARKS,
    FAMILIES,
    GENERATED,
    LETTERS,
    BenchmarkItem,
    BenchmarkSpec,
    Family,
    unlabeled_item,
)
from rationalyst.data.benchmarks.load import load_benchmark
from rationalyst.data.benchmarks.rows import OnSkip
from rationalyst.data.benchmarks.sources import (
    BENCHMARKS_ENV,
    DEFAULT_BENCHMARK_DIRS,
    benchmark_split,
    benchmarks_dir,
    parse_hub_source,
)
from rationalyst.data.hub import HubSource

__all__ = [
    "BENCHMARKS",
    "BENCHMARKS_ENV",
    "DEFAULT_BENCHMARK_DIRS",
    "FAMILIES",
    "FORMATS",
    "GENERATED",
    "GSM_SYMBOLIC_DEFAULT_SIZE",
    "GSM_SYMBOLIC_DOCUMENT_SEED",
    "LETTERS",
    "BenchmarkItem",
    "BenchmarkSpec",
    "Family",
    "HubSource",
    "OnSkip",
    "benchmark_split",
    "benchmarks_dir",
    "detect_format",
    "generated_documents",
    "gsm_symbolic_documents",
    "load_benchmark",
    "parse_hub_source",
    "unlabeled_item",
    "write_generated_corpus",
]
