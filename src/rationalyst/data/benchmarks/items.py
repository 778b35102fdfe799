"""The benchmark item type and the registry of benchmarks.

`BenchmarkItem` is one question with its gold answer, of one of four answer families (`FAMILIES`),
which decide how a final answer is stated, extracted and checked (`rationalyst.data.answers`).
`BENCHMARKS` says, per benchmark, its family, default files, accepted row formats and hub copy
(`BenchmarkSpec`); `GENERATED` names the benchmarks made from a seed instead of read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rationalyst.data.hub import HubSource
from rationalyst.errors import InputError

#: How a final answer is stated, extracted and checked (a config field of this type refuses a typo).
Family = Literal["arithmetic", "math", "multiple_choice", "logic"]
FAMILIES: tuple[str, ...] = get_args(Family)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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


def unlabeled_item(
    family: str, question: str, choices: list[str] | None = None, answer: str = "", *, id: str = "question",
    benchmark: str = "question",
) -> BenchmarkItem:
    """An item outside any benchmark (a user's question, a solution to verify), its gold answer optional.

    Without ``answer`` a placeholder that the family accepts stands in (the first option letter, or
    "?"); the caller reports no correctness for it. Raises `InputError` naming the field at fault.
    """
    placeholder = "A" if choices else "?"
    try:
        return BenchmarkItem(
            id=id, benchmark=benchmark, family=family, question=question, choices=choices,
            answer=answer or placeholder, solution=None, meta={},
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")  # the item's own checks name their field
        raise InputError(f"{'.'.join(map(str, error['loc']))}: {message}" if error["loc"] else message) from None


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
            "short one- and two-step word problems generated from a seed (rationalyst.data.benchmarks.word_problems)",
        ),
    )
}

#: Benchmarks generated from a seed rather than read from a file.
GENERATED = ("gsm_symbolic", "word_problems")
