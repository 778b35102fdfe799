"""Benchmark questions for evaluation: one item type, one loader, every source format.

RATIONALYST is evaluated on seven reasoning benchmarks (GSM8K, MATH, ECQA, HellaSwag, ProofWriter,
ARC-Challenge, MMLU-Pro). They come in many shapes; this module turns each into `BenchmarkItem`s of
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
(`rationalyst.data.word_problems`) that a 135M model can sometimes solve. `generated_documents`
makes corpus documents from either.

Nothing here imports torch; ``datasets`` and ``reasoning_gym`` are imported only when used.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rationalyst.data.latex import last_boxed
from rationalyst.errors import InputError, RationalystError

FAMILIES = ("arithmetic", "math", "multiple_choice", "logic")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Environment variable naming the benchmarks folder.
BENCHMARKS_ENV = "RATIONALYST_BENCHMARKS"
#: Folders tried, in order, relative to the current directory when the variable is not set.
DEFAULT_BENCHMARK_DIRS = ("shared/benchmarks", "../shared/benchmarks")

OnSkip = Callable[[str, "str | None", "int | None"], None]
"""``on_skip(reason, file, line)``: called once for every skipped row (``line`` is 1-based: the line
of a JSON Lines file, the first line of a CSV record, the position in a JSON list or a dataset)."""


class BenchmarkItem(BaseModel):
    """One benchmark question with its gold answer.

    ``answer``: a number string (``arithmetic``), raw LaTeX (``math``) or an option letter
    (``multiple_choice``, ``logic``; ``choices`` then lists the options, ``A`` first). ``solution``:
    the gold worked solution or explanation where the benchmark has one. ``meta``: dataset extras
    (ECQA's ``acceptable_answers``, MATH's level and subject, ...). ``source``: where the row came from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    benchmark: str
    family: str
    question: str = Field(min_length=1)
    choices: list[str] | None = None
    answer: str = Field(min_length=1)
    solution: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None

    @model_validator(mode="after")
    def _check(self) -> BenchmarkItem:
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        if self.family in ("multiple_choice", "logic"):
            if not self.choices:
                raise ValueError(f"choices: a {self.family} item needs a non-empty list of options")
            if len(self.choices) > len(LETTERS):
                raise ValueError(f"choices: {len(self.choices)} options, at most {len(LETTERS)}")
            if self.answer not in self.letters:
                raise ValueError(f"answer {self.answer!r} is not one of the option letters {''.join(self.letters)}")
        elif self.choices is not None:
            raise ValueError(f"choices: a {self.family} item has no options")
        elif not self.answer.strip():
            raise ValueError("answer is blank")
        return self

    @property
    def letters(self) -> list[str]:
        """The option letters, ``A`` first (empty without choices)."""
        return list(LETTERS[: len(self.choices or [])])

    @property
    def acceptable_answers(self) -> tuple[str, ...]:
        """Every correct letter: ``meta["acceptable_answers"]`` (ECQA's duplicated options), else the answer."""
        extra = self.meta.get("acceptable_answers")
        if isinstance(extra, list) and extra and all(isinstance(x, str) and x in self.letters for x in extra):
            letters = list(extra)
            return tuple(letters if self.answer in letters else [self.answer, *letters])
        return (self.answer,)

    def to_record(self) -> dict[str, Any]:
        """The normalized row (``id, question, choices, answer, solution, source, meta``) plus ``benchmark``."""
        return {
            "id": self.id,
            "benchmark": self.benchmark,
            "question": self.question,
            "choices": self.choices,
            "answer": self.answer,
            "solution": self.solution,
            "source": self.source,
            "meta": self.meta,
        }


@dataclass(frozen=True)
class HubSource:
    """A copy of a benchmark on the Hugging Face hub: ``load_dataset(name, config, split=split)``."""

    name: str
    config: str | None
    split: str

    def spec(self) -> str:
        return f"hf:{self.name}" + (f":{self.config}" if self.config else "") + f"@{self.split}"


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the loader knows about one benchmark.

    ``default_file``: the evaluation split's file under the benchmarks folder, read when no source is
    given. ``formats``: the row formats accepted (see `FORMATS`). ``hf``: the hub copy of the evaluation
    split used for ``hf:`` (its rows are read with the same format parsers: the field mapping is the
    format's). ``train_file``: the training split's file under the benchmarks folder (mining, few-shot
    demos), where it has one. ``missing_hint``: what to do when ``default_file`` is not there.
    """

    name: str
    family: str
    default_file: str | None
    formats: tuple[str, ...]
    hf: HubSource | None
    description: str
    train_file: str | None = None
    missing_hint: str | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "gsm8k", "arithmetic", "gsm8k/test.jsonl", ("normalized", "gsm8k"),
            HubSource("openai/gsm8k", "main", "test"),
            "GSM8K grade-school word problems, the 1,319-problem test split",
            train_file="gsm8k/train.jsonl",
            missing_hint="GSM8K's test split: source: hf:openai/gsm8k (config main, split test) or a local copy of "
            "test.jsonl; held-out train problems need source: gsm8k/train.jsonl and allow_train_split: true",
        ),
        BenchmarkSpec(
            "math", "math", "math/test.jsonl", ("normalized", "math"),
            HubSource("DigitalLearningGmbH/MATH-lighteval", "default", "test"),
            "MATH competition problems, the 5,000-problem test split",
        ),
        BenchmarkSpec(
            "math500", "math", "math/test500.jsonl", ("normalized", "math"),
            HubSource("HuggingFaceH4/MATH-500", None, "test"),
            "MATH-500, the 500-problem subset of the MATH test split used by PRM800K",
        ),
        BenchmarkSpec(
            "ecqa", "multiple_choice", "ecqa/val.jsonl", ("normalized", "ecqa_csv", "csqa"),
            HubSource("tasksource/ecqa", None, "validation"),
            "ECQA: CommonsenseQA with explanations (5 options; validation = CommonsenseQA dev)",
            train_file="ecqa/train.jsonl",
        ),
        BenchmarkSpec(
            "hellaswag", "multiple_choice", "hellaswag/val.jsonl", ("normalized", "hellaswag"),
            HubSource("Rowan/hellaswag", None, "validation"),
            "HellaSwag sentence completion (4 endings), validation split",
        ),
        BenchmarkSpec(
            "proofwriter", "logic", "proofwriter/test.jsonl", ("normalized", "logic_llm"),
            None,
            "ProofWriter open-world depth-5 as in Logic-LLM (A/B/C = True/False/Unknown), test split",
            train_file="proofwriter/train.jsonl",
        ),
        BenchmarkSpec(
            "arc_challenge", "multiple_choice", "arc_challenge/test.jsonl", ("normalized", "csqa"),
            HubSource("allenai/ai2_arc", "ARC-Challenge", "test"),
            "ARC-Challenge grade-school science (3-5 options), test split",
            train_file="arc_challenge/train.jsonl",
        ),
        BenchmarkSpec(
            "mmlu_pro", "multiple_choice", "mmlu_pro/test.jsonl", ("normalized", "mmlu_pro"),
            HubSource("TIGER-Lab/MMLU-Pro", None, "test"),
            "MMLU-Pro (up to 10 options), test split",
        ),
        BenchmarkSpec(
            "gsm_symbolic", "arithmetic", None, ("normalized", "reasoning_gym"),
            None,
            "GSM8K-style problems generated offline by reasoning-gym's gsm_symbolic (seeded)",
        ),
        BenchmarkSpec(
            "word_problems", "arithmetic", None, ("normalized",),
            None,
            "short one- and two-step word problems generated from a seed (rationalyst.data.word_problems)",
        ),
    )
}

#: Benchmarks generated from a seed rather than read from a file.
GENERATED = ("gsm_symbolic", "word_problems")

#: Problems generated by ``load_benchmark("gsm_symbolic")`` when no limit is given.
GSM_SYMBOLIC_DEFAULT_SIZE = 100
#: Default seed of `gsm_symbolic_documents`: far from small evaluation seeds (see its docstring).
GSM_SYMBOLIC_DOCUMENT_SEED = 1_000_000
#: reasoning-gym appends this to every gsm_symbolic question; dropped, since the prompts ask for
#: "The answer is N." instead.
_GSM_SYMBOLIC_SUFFIX = " Give the result as your final answer. Do not include units."


# ============================================================================ row formats


class _BadRow(Exception):
    """A row that cannot become an item; the message names the field."""


@dataclass(frozen=True)
class _Row:
    """A row to parse, with where it came from."""

    data: Mapping[str, Any]
    file: str
    line: int | None
    index: int  # 0-based position of the record in its file or split
    part: str  # the file's stem or the hub split: ids derived from position use it ("gsm8k-train-0")


def _field(row: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str, *, required: bool = True) -> Any:
    if name not in row or row[name] is None:
        if required:
            raise _BadRow(f"missing field {name!r}")
        return None
    value = row[name]
    if kind is str and isinstance(value, str) and not value.strip() and required:
        raise _BadRow(f"field {name!r} is empty")
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _BadRow(f"field {name!r} is {_json_type(value)}, expected {_kind_name(kind)}")
    return value


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def _json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _BadRow(f"field {name!r} is {_json_type(value) if value is not None else 'missing'}, expected a non-empty list of strings")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise _BadRow(f"field {name!r}: item {i} is {_json_type(v)}, expected a string")
    return list(value)


def _id_value(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise _BadRow(f"field {name!r} is {_json_type(value)}, expected a non-empty string or an integer")
    return str(value)


def _letter_for(index: int, n: int, field: str) -> str:
    if not 0 <= index < n:
        raise _BadRow(f"field {field!r}: option {index} does not exist ({n} options)")
    return LETTERS[index]


def _parse_normalized(row: _Row) -> dict[str, Any]:
    d = row.data
    item_id = _id_value(d, "id")
    if item_id is None:
        raise _BadRow("missing field 'id'")
    choices = d.get("choices")
    if choices is not None:
        choices = _string_list(choices, "choices")
    answer = d.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if answer is None:
        raise _BadRow("missing field 'answer'")
    if not isinstance(answer, str):
        raise _BadRow(f"field 'answer' is {_json_type(answer)}, expected a string")
    meta = _field(d, "meta", dict, required=False) or {}
    return {
        "id": item_id,
        "question": _field(d, "question"),
        "choices": choices,
        "answer": answer,
        "solution": _field(d, "solution", required=False),
        "meta": meta,
        "source": _field(d, "source", required=False),
    }


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)
_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def _parse_gsm8k(row: _Row) -> dict[str, Any]:
    d = row.data
    solution = _field(d, "answer")
    m = _GSM8K_FINAL.search(solution)
    if not m or not _PLAIN_NUMBER.fullmatch(m.group(1).strip().lstrip("$")):
        raise _BadRow("field 'answer' does not end with a '#### <number>' line")
    raw = m.group(1).strip()
    return {
        "id": _id_value(d, "id") or f"gsm8k-{row.part}-{row.index}",
        "question": _field(d, "question"),
        "choices": None,
        "answer": raw.lstrip("$").replace(",", ""),
        "solution": solution,
        "meta": {"answer_raw": raw},
    }


def _parse_math(row: _Row) -> dict[str, Any]:
    d = row.data
    solution = _field(d, "solution")
    answer = d.get("answer")
    if answer is not None and not isinstance(answer, str):
        answer = str(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else None
        if answer is None:
            raise _BadRow(f"field 'answer' is {_json_type(d.get('answer'))}, expected a string")
    if not answer or not answer.strip():
        answer = last_boxed(solution)
        if answer is None:
            raise _BadRow("field 'solution' has no complete \\boxed{...} answer (and there is no 'answer' field)")
    item_id = _id_value(d, "unique_id") or _id_value(d, "id")
    if item_id is None:
        idx = _id_value(d, "idx")
        item_id = f"math-{row.part}-{idx if idx is not None else row.index}"
    meta = {k: v for k, v in d.items() if k not in ("problem", "solution", "answer", "id") and v is not None}
    return {
        "id": item_id,
        "question": _field(d, "problem"),
        "choices": None,
        "answer": answer.strip(),
        "solution": solution,
        "meta": meta,
    }


def _parse_csqa(row: _Row) -> dict[str, Any]:
    """CommonsenseQA / ARC: nested ``question: {stem, choices: [{label, text}]}`` (the original jsonl)
    or flat ``question: str, choices: {label: [...], text: [...]}`` (their hub copies)."""
    d = row.data
    question = d.get("question")
    meta: dict[str, Any] = {}
    if isinstance(question, Mapping):
        stem = _field(question, "stem")
        raw_choices = question.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise _BadRow("field 'question.choices' is missing or not a non-empty list")
        labels, texts = [], []
        for i, c in enumerate(raw_choices):
            if not isinstance(c, Mapping) or not isinstance(c.get("label"), str) or not isinstance(c.get("text"), str):
                raise _BadRow(f"field 'question.choices': item {i} needs string 'label' and 'text'")
            labels.append(c["label"])
            texts.append(c["text"])
        if isinstance(question.get("question_concept"), str):
            meta["concept"] = question["question_concept"]
    elif isinstance(question, str) and question.strip():
        stem = question
        choices = d.get("choices")
        if not isinstance(choices, Mapping):
            raise _BadRow("field 'choices' is missing or not an object with 'label' and 'text' lists")
        labels = _string_list(choices.get("label"), "choices.label")
        texts = _string_list(choices.get("text"), "choices.text")
        if len(labels) != len(texts):
            raise _BadRow(f"field 'choices': {len(labels)} labels but {len(texts)} texts")
        if isinstance(d.get("question_concept"), str):
            meta["concept"] = d["question_concept"]
    else:
        raise _BadRow("field 'question' is missing or neither an object nor a string")
    key = _field(d, "answerKey")
    if key not in labels:
        raise _BadRow(f"field 'answerKey' {key!r} is not one of the labels {labels}")
    answer = _letter_for(labels.index(key), len(labels), "answerKey")
    meta.update({"original_labels": labels, "original_answerKey": key})
    same = [LETTERS[i] for i, t in enumerate(texts) if t == texts[labels.index(key)]]
    if len(same) > 1:
        meta["acceptable_answers"] = same
    item_id = _id_value(d, "id")
    return {
        "id": item_id or f"{row.part}-{row.index}",
        "question": stem,
        "choices": texts,
        "answer": answer,
        "solution": None,
        "meta": meta,
    }


def _lines(value: Any) -> list[str]:
    return [s.strip() for s in value.splitlines() if s.strip()] if isinstance(value, str) else []


def _parse_ecqa_csv(row: _Row) -> dict[str, Any]:
    """ECQA's csv (and its hub copy): ``q_no, q_concept, q_text, q_op1..q_op5, q_ans, taskA_pos,
    taskA_neg, taskB``; the answer is given as option text, so duplicated options are all correct."""
    d = row.data
    options = [_field(d, f"q_op{i}") for i in range(1, 6)]
    answer_text = _field(d, "q_ans")
    acceptable = [LETTERS[i] for i, o in enumerate(options) if o.strip() == answer_text.strip()]
    if not acceptable:
        raise _BadRow(f"field 'q_ans' {answer_text!r} is none of the options q_op1..q_op5")
    item_id = _id_value(d, "q_no")
    if item_id is None:
        raise _BadRow("missing field 'q_no'")
    solution = d.get("taskB")
    return {
        "id": item_id,
        "question": _field(d, "q_text"),
        "choices": options,
        "answer": acceptable[0],
        "solution": solution.strip() if isinstance(solution, str) and solution.strip() else None,
        "meta": {
            "answer_text": answer_text,
            "concept": d.get("q_concept"),
            "acceptable_answers": acceptable,
            "positives": _lines(d.get("taskA_pos")),
            "negatives": _lines(d.get("taskA_neg")),
        },
    }


def _parse_hellaswag(row: _Row) -> dict[str, Any]:
    d = row.data
    ctx = _field(d, "ctx")
    endings = _string_list(d.get("endings"), "endings")
    label = d.get("label")
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if label is None or label == "":
        raise _BadRow("missing field 'label' (the test split has no labels)")
    if not isinstance(label, int) or isinstance(label, bool):
        raise _BadRow(f"field 'label' is {_json_type(label)}, expected an integer")
    activity = d.get("activity_label")
    activity = activity.strip() if isinstance(activity, str) else ""
    split = d.get("split") if isinstance(d.get("split"), str) else row.part
    meta = {"label": label, "activity_label": activity, "ctx": ctx}
    meta.update({k: d[k] for k in ("ind", "source_id", "split_type") if k in d})
    return {
        "id": _id_value(d, "id") or f"hellaswag-{split}-{row.index}",
        "question": f"{activity}: {ctx}" if activity else ctx,
        "choices": endings,
        "answer": _letter_for(label, len(endings), "label"),
        "solution": None,
        "meta": meta,
    }


_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Za-z])[).:]\s*")


def _parse_logic_llm(row: _Row) -> dict[str, Any]:
    """Logic-LLM's ProofWriter (and FOLIO, ...) layout: ``context``, ``question``, ``options`` like
    ``"A) True"``, ``answer`` a letter."""
    d = row.data
    context = _field(d, "context")
    query = _field(d, "question")
    options = _string_list(d.get("options"), "options")
    choices = []
    for i, option in enumerate(options):
        m = _OPTION_PREFIX.match(option)
        if m and m.group(1).upper() != LETTERS[i]:
            raise _BadRow(f"field 'options': item {i} is labelled {m.group(1)!r}, expected {LETTERS[i]!r}")
        choices.append(option[m.end() :].strip() if m else option.strip())
    answer = _field(d, "answer").strip().strip("()").upper()
    if answer not in LETTERS[: len(choices)]:
        raise _BadRow(f"field 'answer' {d['answer']!r} is not one of the option letters")
    item_id = _id_value(d, "id")
    return {
        "id": item_id or f"proofwriter-{row.part}-{row.index}",
        "question": f"{context.strip()}\n\n{query.strip()}",
        "choices": choices,
        "answer": answer,
        "solution": None,
        "meta": {"context": context, "query": query, "answer_text": choices[LETTERS.index(answer)]},
    }


def _parse_mmlu_pro(row: _Row) -> dict[str, Any]:
    d = row.data
    options = _string_list(d.get("options"), "options")
    # The MMLU-Pro release pads some option lists with "N/A" at the end; its own evaluation drops them.
    choices = [o for o in options if o.strip() != "N/A"]
    index = d.get("answer_index")
    letter = d.get("answer")
    if isinstance(index, int) and not isinstance(index, bool):
        if not 0 <= index < len(options) or options[index].strip() == "N/A":
            raise _BadRow(f"field 'answer_index' {index} is not an option")
        index = choices.index(options[index])
        answer = LETTERS[index]
        if isinstance(letter, str) and letter.strip() and letter.strip().upper() != answer:
            raise _BadRow(f"fields 'answer' {letter!r} and 'answer_index' {d['answer_index']} disagree")
    elif isinstance(letter, str) and letter.strip().upper() in LETTERS[: len(choices)]:
        answer = letter.strip().upper()
    else:
        raise _BadRow("fields 'answer' / 'answer_index' are missing or name no option")
    qid = _id_value(d, "question_id")
    cot = d.get("cot_content")
    meta = {"question_id": d.get("question_id"), "answer_index": LETTERS.index(answer)}
    meta.update({k: d[k] for k in ("category", "src") if k in d})
    return {
        "id": _id_value(d, "id") or (f"mmlu_pro-{qid}" if qid is not None else f"mmlu_pro-{row.part}-{row.index}"),
        "question": _field(d, "question"),
        "choices": choices,
        "answer": answer,
        "solution": cot.strip() if isinstance(cot, str) and cot.strip() else None,
        "meta": meta,
    }


def _parse_reasoning_gym(row: _Row) -> dict[str, Any]:
    """A reasoning-gym entry: ``question``, ``answer``, ``metadata`` (gsm_symbolic: ``answer_cot``)."""
    d = row.data
    metadata = _field(d, "metadata", dict)
    answer = d.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise _BadRow("field 'answer' is missing or not a string")
    question = _field(d, "question")
    if question.endswith(_GSM_SYMBOLIC_SUFFIX):
        question = question[: -len(_GSM_SYMBOLIC_SUFFIX)]
    cot = metadata.get("answer_cot")
    meta = {k: metadata[k] for k in ("source_dataset", "source_index", "difficulty") if k in metadata}
    return {
        "id": _id_value(d, "id") or f"{metadata.get('source_dataset', 'reasoning_gym')}-{row.part}-{row.index}",
        "question": question,
        "choices": None,
        "answer": answer.strip(),
        "solution": cot if isinstance(cot, str) and cot.strip() else None,
        "meta": meta,
    }


#: Row formats: name -> (fields that identify it, parser). Detection tries them in this order.
FORMATS: dict[str, tuple[tuple[str, ...], Callable[[_Row], dict[str, Any]]]] = {
    "normalized": (("id", "question", "choices", "answer"), _parse_normalized),
    "ecqa_csv": (("q_text", "q_ans"), _parse_ecqa_csv),
    "csqa": (("question", "answerKey"), _parse_csqa),
    "hellaswag": (("ctx", "endings"), _parse_hellaswag),
    "logic_llm": (("context", "question", "options"), _parse_logic_llm),
    "mmlu_pro": (("question", "options"), _parse_mmlu_pro),
    "math": (("problem", "solution"), _parse_math),
    "reasoning_gym": (("question", "answer", "metadata"), _parse_reasoning_gym),
    "gsm8k": (("question", "answer"), _parse_gsm8k),
}


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The name of the first format in `FORMATS` whose identifying fields ``row`` has, or None."""
    for name, (keys, _parser) in FORMATS.items():
        if all(k in row for k in keys):
            return name
    return None


# ============================================================================ reading sources


class _Reporter:
    """Forwards skips to ``on_skip``; without one, the first bad row raises `InputError`.

    While the first rows are read ahead to decide the format, skips are held back (`defer`) and
    released in their place among the rows (`release`), so they are reported in file order.
    """

    def __init__(self, on_skip: OnSkip | None) -> None:
        self.on_skip = on_skip
        self._held: list[tuple[int, str, str | None, int | None]] | None = None
        self.rows_read = 0

    def __call__(self, reason: str, file: str | Path | None, line: int | None) -> None:
        file_s = str(file) if file is not None else None
        if self._held is not None:
            self._held.append((self.rows_read, reason, file_s, line))
            return
        self.send(reason, file_s, line)

    def send(self, reason: str, file: str | None, line: int | None) -> None:
        """Report a skip now (row-level problems found while parsing are never held)."""
        if self.on_skip is None:
            where = file or "input"
            if line is not None:
                where += f", line {line}"
            raise InputError(f"{where}: {reason}")
        self.on_skip(reason, file, line)

    def defer(self) -> None:
        self._held = []
        self.rows_read = 0

    def discard(self) -> None:
        self._held = None

    def release(self, up_to: int | None = None) -> None:
        """Report the held skips that came before row ``up_to`` (all of them, and stop holding, if None)."""
        held = self._held or []
        keep = [h for h in held if up_to is not None and h[0] > up_to]
        self._held = keep if up_to is not None else None
        for _pos, reason, file, line in held:
            if up_to is None or _pos <= up_to:
                self.send(reason, file, line)


def _jsonl_rows(path: Path, report: _Reporter) -> Iterator[tuple[int, int, Any]]:
    from rationalyst.data.records import read_json_lines

    for _file, line, record in read_json_lines(path, report, "benchmark"):
        yield line, line - 1, record


def _json_rows(path: Path, report: _Reporter) -> Iterator[tuple[int, int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a valid JSON file ({e})") from None
    if isinstance(data, Mapping) and not detect_format(data):
        # {"id": {...}, ...}: an object of records keyed by id
        if data and all(isinstance(v, Mapping) for v in data.values()):
            data = [{"id": k, **v} if "id" not in v else dict(v) for k, v in data.items()]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records or one record object")
    for i, record in enumerate(data):
        if not isinstance(record, Mapping):
            report(f"record {i + 1} is {_json_type(record)}, not a JSON object", path, i + 1)
            continue
        yield i + 1, i, record


def _csv_rows(path: Path, report: _Reporter) -> Iterator[tuple[int, int, Any]]:
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read the CSV header: {e}") from None
        index = 0
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                report(f"unreadable CSV record ({e})", path, start)
                return
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                report(f"CSV record has {len(values)} fields, the header {len(header)}", path, start)
                index += 1
                continue
            yield start, index, dict(zip(header, values))
            index += 1


def _parquet_rows(path: Path, report: _Reporter) -> Iterator[tuple[int, int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds
        raise InputError(f"{path}: cannot read as Parquet: {e}") from None
    for i, record in enumerate(table.to_pylist()):
        yield i + 1, i, record


def _file_rows(path: Path, report: _Reporter) -> Iterator[tuple[int, int, Any]]:
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return _jsonl_rows(path, report)
    if name.endswith(".json"):
        return _json_rows(path, report)
    if name.endswith(".csv"):
        return _csv_rows(path, report)
    if name.endswith(".parquet"):
        return _parquet_rows(path, report)
    raise InputError(f"{path}: unknown benchmark file type (expected .jsonl, .json, .csv or .parquet)")


def _math_folder_rows(folder: Path, report: _Reporter) -> Iterator[tuple[str, int, int, Any]]:
    """The original MATH layout: one problem per ``.json`` file. Ids are paths relative to the folder
    given, led by the split folder's name when that is the folder given: ``MATH/`` and ``MATH/test/``
    both give ``test/algebra/1.json``, the form of MATH-500's ``unique_id``."""
    files = sorted(folder.rglob("*.json"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])
    for index, path in enumerate(files):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            report(f"not a valid JSON file ({e})", path, None)
            continue
        if not isinstance(record, Mapping):
            report("the file is not a JSON object", path, None)
            continue
        rel = path.relative_to(folder).as_posix()
        if folder.name in ("train", "test"):
            rel = f"{folder.name}/{rel}"
        yield str(path), 1, index, {"unique_id": rel, **record}


def benchmarks_dir() -> Path | None:
    """The benchmarks folder: ``$RATIONALYST_BENCHMARKS`` if set, else the first existing of
    `DEFAULT_BENCHMARK_DIRS` (relative to the current directory), else None."""
    env = os.environ.get(BENCHMARKS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    for candidate in DEFAULT_BENCHMARK_DIRS:
        path = Path(candidate)
        if path.is_dir():
            return path
    return None


def _places_looked() -> str:
    env = os.environ.get(BENCHMARKS_ENV, "").strip()
    if env:
        return f"${BENCHMARKS_ENV}={env}"
    cwd = Path.cwd()
    return f"${BENCHMARKS_ENV} (not set), " + ", ".join(str((cwd / c).resolve()) for c in DEFAULT_BENCHMARK_DIRS)


def _default_path(spec: BenchmarkSpec) -> Path:
    how = (
        f"set ${BENCHMARKS_ENV} to the benchmarks folder, or pass a file, a folder or hf:<dataset> "
        f"as the source (see rationalyst.data.benchmarks)"
    )
    assert spec.default_file is not None
    folder = benchmarks_dir()
    if folder is None:
        raise RationalystError(f"{spec.name}: no benchmarks folder found (looked at {_places_looked()}); {how}")
    path = folder / spec.default_file
    if not path.is_file():
        if spec.missing_hint:
            how = f"for {spec.missing_hint}"
        raise RationalystError(f"{spec.name}: {path} not found (benchmarks folder from {_places_looked()}); {how}")
    return path


def benchmark_split(name: str, source: str | os.PathLike[str] | None = None) -> str | None:
    """The split a benchmark source holds, by its name (``train``, ``test``, ``val``...): the file's
    name up to its first dot, the folder's name, or the hub split; None for generated benchmarks."""
    spec = BENCHMARKS.get(name)
    if spec is None or (name in GENERATED and (source is None or str(source).strip().startswith("seed"))):
        return None
    src = os.fspath(source) if source is not None else None
    if src is not None and src.startswith("hf:"):
        return parse_hub_source(spec, src).split
    path = Path(src if src is not None else (spec.default_file or ""))
    return path.name.split(".")[0] or None


def _resolve_path(spec: BenchmarkSpec, source: Path) -> Path:
    if source.exists():
        return source
    if not source.is_absolute():
        folder = benchmarks_dir()
        if folder is not None and (folder / source).exists():
            return folder / source
        also = f" nor in the benchmarks folder {folder}" if folder is not None else ""
        raise InputError(f"{spec.name}: {source} not found (relative to {Path.cwd()}{also})")
    raise InputError(f"{spec.name}: {source} not found")


def parse_hub_source(spec: BenchmarkSpec, source: str) -> HubSource:
    """``hf:<dataset>[:<config>][@<split>]`` -> `HubSource`; ``hf:`` alone is the spec's hub copy,
    and parts left out (config, split) default to it when the dataset is the spec's."""
    body = source[len("hf:") :].strip()
    default = spec.hf
    if not body:
        if default is None:
            raise RationalystError(f"{spec.name}: no hub copy is known; pass hf:<dataset>[:<config>][@<split>] or a file")
        return default
    name_config, _, split = body.partition("@")
    name, _, config = name_config.partition(":")
    name = name.strip() or (default.name if default else "")
    if not name:
        raise RationalystError(f"{source!r}: expected hf:<dataset>[:<config>][@<split>]")
    same = default is not None and default.name == name
    return HubSource(
        name=name,
        config=config.strip() or (default.config if same else None),
        split=split.strip() or (default.split if same else "test"),
    )


def _hub_rows(spec: BenchmarkSpec, source: str) -> tuple[str, str, Iterator[tuple[int, int, Any]]]:
    """(label, split, rows) of a hub dataset, or a clear `RationalystError` when it cannot be had."""
    from rationalyst.data.corpus import _hf_offline, _hub_reachable

    hub = parse_hub_source(spec, source)
    label = hub.spec()
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise RationalystError(f"{label}: reading hub datasets needs the `datasets` package") from e
    how = (
        "download it where the hub is reachable (or copy the file) and pass the file as the source; "
        "with a copy in the local datasets cache, set HF_HUB_OFFLINE=1"
    )
    offline = _hf_offline(datasets)
    proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))
    if not offline and not proxied:
        ok, where = _hub_reachable()
        if not ok:
            raise RationalystError(f"{label}: the Hugging Face hub cannot be reached at {where}; {how}")
    try:
        ds = datasets.load_dataset(hub.name, hub.config, split=hub.split)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds
        state = "offline mode is set and no cached copy was found" if offline else "loading failed"
        raise RationalystError(f"{label}: cannot load the Hugging Face dataset: {state}: {e}. {how}") from e

    def rows() -> Iterator[tuple[int, int, Any]]:
        for i, record in enumerate(ds):
            yield i + 1, i, record

    return label, hub.split, rows()


#: Rows looked at to decide a file's format (the most common format among them wins, so a bad first
#: row does not decide how the whole file is read).
_DETECT_ROWS = 20


def _choose_format(spec: BenchmarkSpec, head: list[tuple[str, int | None, int, str, Any]]) -> str:
    """The row format of a file from its first rows; raises `InputError` when it is not ``spec``'s."""
    file = head[0][0]
    found = [(detect_format(record), record) for _f, _l, _i, _p, record in head]
    counts = Counter(fmt for fmt, _record in found if fmt is not None)
    if not counts:
        fields = ", ".join(sorted(map(str, head[0][4])))
        raise InputError(f"{file}: unknown row format for {spec.name} (fields: {fields}); expected one of: {_formats_help(spec)}")
    fmt = max(counts, key=lambda f: (counts[f], f in spec.formats))
    record = next(r for f, r in found if f == fmt)
    if fmt == "normalized" and (record.get("choices") is not None) != (spec.family in ("multiple_choice", "logic")):
        kind = "with options (choices)" if record.get("choices") is not None else "without options"
        raise InputError(
            f"{file}: the rows are questions {kind}, which is not a {spec.name} format ({spec.name} is a {spec.family} benchmark)"
        )
    if fmt not in spec.formats:
        fields = ", ".join(sorted(map(str, record)))
        raise InputError(
            f"{file}: rows look like the {fmt!r} format (fields: {fields}), which is not a {spec.name} format; "
            f"expected one of: {_formats_help(spec)}"
        )
    return fmt


def _items(
    spec: BenchmarkSpec,
    rows: Iterable[tuple[str, int | None, int, str, Any]],
    report: _Reporter,
    limit: int | None,
    default_source: str | None,
) -> list[BenchmarkItem]:
    """Parse rows (file, line, index, part, record), all with the format `_choose_format` picks."""
    rows = iter(rows)
    head: list[tuple[str, int | None, int, str, Any]] = []
    report.defer()
    for row in rows:
        head.append(row)
        report.rows_read = len(head)
        if len(head) >= _DETECT_ROWS:
            break
    if not head:
        report.release()
        return []
    fmt = _choose_format(spec, head)
    parse = FORMATS[fmt][1]
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for n, (file, line, index, part, record) in enumerate(chain(head, rows)):
        if limit is not None and len(items) >= limit:
            break
        if n < len(head):
            report.release(up_to=n)
        elif n == len(head):
            report.release()
        try:
            fields = parse(_Row(record, file, line, index, part))
            fields["source"] = fields.get("source") or default_source
            item = BenchmarkItem(benchmark=spec.name, family=spec.family, **fields)
        except _BadRow as e:
            report.send(str(e), file, line)
            continue
        except ValidationError as e:
            report.send(_validation_reason(e), file, line)
            continue
        if item.id in seen:
            report.send(f"field 'id': {item.id!r} repeats an earlier row's id", file, line)
            continue
        seen.add(item.id)
        items.append(item)
    else:
        report.release()  # skips after the last row
    report.discard()  # rows read ahead past the limit are not reported
    return items


def _validation_reason(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    msg = first.get("msg", str(error)).removeprefix("Value error, ")
    return f"field {loc!r}: {msg}" if loc else msg


def _formats_help(spec: BenchmarkSpec) -> str:
    return "; ".join(f"{f} ({', '.join(FORMATS[f][0])})" for f in spec.formats)


def load_benchmark(
    name: str,
    source: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    on_skip: OnSkip | None = None,
    seed: int | None = None,
) -> list[BenchmarkItem]:
    """The items of benchmark ``name`` (a key of `BENCHMARKS`) read from ``source``, in file order.

    ``source``: see the module docstring (None: the default file of the benchmarks folder).
    ``limit``: at most this many items (the first ones); for ``gsm_symbolic`` the number generated
    (default `GSM_SYMBOLIC_DEFAULT_SIZE`). ``on_skip(reason, file, line)``: called for each bad row;
    without it a bad row raises `InputError`. ``seed``: for ``gsm_symbolic`` only (default 0; also
    ``source="seed=N"``).
    """
    spec = BENCHMARKS.get(name)
    if spec is None:
        raise RationalystError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    if limit is not None and limit < 0:
        raise RationalystError(f"{name}: limit must be >= 0, got {limit}")
    report = _Reporter(on_skip)
    src = os.fspath(source) if source is not None else None
    if name in GENERATED:
        m = re.fullmatch(r"\s*seed\s*=\s*(-?\d+)\s*", src) if src is not None else None
        if src is None or m:
            from_source = int(m.group(1)) if m else None
            if from_source is not None and seed is not None and from_source != seed:
                raise RationalystError(f"{name}: source {src!r} and seed={seed} disagree")
            chosen = seed if seed is not None else (from_source if from_source is not None else 0)
            size = GSM_SYMBOLIC_DEFAULT_SIZE if limit is None else limit
            if name == "word_problems":
                return _word_problem_items(spec, size, chosen, report)
            return _gsm_symbolic_items(spec, size, chosen, report)
    elif seed is not None:
        raise RationalystError(f"{name}: seed applies to generated benchmarks ({', '.join(GENERATED)}) only")
    if src is None and spec.default_file is None:  # pragma: no cover - every file benchmark has one
        raise RationalystError(f"{name}: no default file; pass a source")

    rows: Iterable[tuple[str, int | None, int, str, Any]]
    if src is not None and src.startswith("hf:"):
        label, split, hub_rows = _hub_rows(spec, src)
        rows = ((label, line, index, split, record) for line, index, record in hub_rows)
        return _items(spec, rows, report, limit, label)
    path = _default_path(spec) if src is None else _resolve_path(spec, Path(src))
    if path.is_dir():
        inner = path / spec.default_file if spec.default_file else None
        if inner is not None and inner.is_file():
            path = inner
        elif spec.family == "math" and any(path.rglob("*.json")):
            folder_rows = ((f, line, index, "test", record) for f, line, index, record in _math_folder_rows(path, report))
            return _items(spec, folder_rows, report, limit, str(path))
        else:
            raise InputError(f"{name}: {path} is a folder without {spec.default_file}; pass the file itself")
    part = path.name.split(".")[0]
    file_rows = ((str(path), line, index, part, record) for line, index, record in _file_rows(path, report))
    return _items(spec, file_rows, report, limit, str(path))


# ============================================================================ generated: gsm_symbolic


def _reasoning_gym() -> Any:
    try:
        import reasoning_gym
    except ImportError as e:
        raise RationalystError(
            "gsm_symbolic needs the `reasoning-gym` package: pip install reasoning-gym==0.1.25"
        ) from e
    return reasoning_gym


def _gsm_symbolic_entries(count: int, seed: int) -> list[dict[str, Any]]:
    """reasoning-gym's gsm_symbolic entries 0..count-1 for ``seed`` (entry i is made from
    ``Random(seed + i)`` and a template drawn from ``Random(seed)``, so a larger count keeps the
    smaller count's entries as its prefix)."""
    if count <= 0:
        return []
    rg = _reasoning_gym()
    dataset = rg.create_dataset("gsm_symbolic", size=count, seed=seed)
    return [dataset[i] for i in range(count)]


def _gsm_symbolic_items(spec: BenchmarkSpec, count: int, seed: int, report: _Reporter) -> list[BenchmarkItem]:
    from importlib import metadata

    version = metadata.version("reasoning-gym")
    rows = (
        (f"reasoning-gym:gsm_symbolic@seed={seed}", i + 1, i, f"s{seed}", {"id": f"gsm_symbolic-s{seed}-{i}", **entry})
        for i, entry in enumerate(_gsm_symbolic_entries(count, seed))
    )
    items = _items(spec, rows, report, None, f"reasoning-gym=={version}:gsm_symbolic@seed={seed}")
    return [item.model_copy(update={"meta": {**item.meta, "seed": seed}}) for item in items]


def _word_problem_items(spec: BenchmarkSpec, count: int, seed: int, report: _Reporter) -> list[BenchmarkItem]:
    from rationalyst.data.word_problems import word_problems

    rows = (
        (f"word_problems@seed={seed}", i + 1, i, f"s{seed}", {
            "id": f"word_problems-s{seed}-{i}", "question": p["question"], "choices": None,
            "answer": str(p["answer"]), "solution": "\n".join(p["steps"]), "meta": {"seed": seed},
        })
        for i, p in enumerate(word_problems(count, seed))
    )
    return _items(spec, rows, report, None, f"word_problems@seed={seed}")


def generated_documents(name: str, count: int, seed: int = GSM_SYMBOLIC_DOCUMENT_SEED) -> list[dict[str, str]]:
    """``count`` corpus documents (a problem and its worked solution) from a generated benchmark."""
    if name == "gsm_symbolic":
        return gsm_symbolic_documents(count, seed)
    if name == "word_problems":
        from rationalyst.data.word_problems import word_problems

        return [
            {"id": f"word_problems-doc-s{seed}-{i}", "text": p["question"] + "\n" + "\n".join(p["steps"]), "source": name}
            for i, p in enumerate(word_problems(count, seed))
        ]
    raise RationalystError(f"no generator {name!r} (known: {', '.join(GENERATED)})")


def gsm_symbolic_documents(count: int, seed: int = GSM_SYMBOLIC_DOCUMENT_SEED) -> list[dict[str, str]]:
    """``count`` corpus documents ``{id, text, source: "gsm_symbolic"}``: a generated problem followed
    by its worked solution in the shape of a search trajectory (`rationale_text.document_text`: one
    step per line, ending "The answer is N."), e.g. for a demo corpus to mine rationales from.

    Entry i of seed s is generated from ``Random(s + i)``, so documents of seed s and evaluation items
    of seed e can coincide only where the ranges ``s..s+count`` and ``e..e+size`` overlap: the default
    seed (1,000,000) keeps documents apart from evaluation sets with small seeds.
    """
    from rationalyst.data.rationale_text import document_text

    items = load_benchmark("gsm_symbolic", seed=seed, limit=count)
    return [
        {"id": f"gsm_symbolic-doc-s{seed}-{i}", "text": document_text(item), "source": "gsm_symbolic"}
        for i, item in enumerate(items)
        if item.solution
    ]
