"""The row formats: one parser per original benchmark format, and how a file's format is recognised.

Each parser turns one row (`Row`: the record and where it came from) into the fields of a
`BenchmarkItem`, or raises `BadRow` with a message naming the field. `FORMATS` maps a format's name
to the fields that identify it and its parser; `detect_format` recognises one row, `choose_format`
a whole file from its first rows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rationalyst.data.benchmarks.items import LETTERS, BenchmarkSpec
from rationalyst.data.latex import last_boxed
from rationalyst.errors import InputError

#: reasoning-gym appends this to every gsm_symbolic question; dropped, since the prompts ask for
#: "The answer is N." instead.
_GSM_SYMBOLIC_SUFFIX = " Give the result as your final answer. Do not include units."


class BadRow(Exception):
    """A row that cannot become an item; the message names the field."""


@dataclass(frozen=True)
class Row:
    """A row to parse, with where it came from."""

    data: Mapping[str, Any]
    file: str
    line: int | None
    index: int  # 0-based position of the record in its file or split
    part: str  # the file's stem or the hub split: ids derived from position use it ("gsm8k-train-0")


SourceRow = tuple[str, "int | None", int, str, Any]
"""``(file, line, index, part, record)``: a record as a source yields it, before it becomes a `Row`."""


def _field(row: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str, *, required: bool = True) -> Any:
    if name not in row or row[name] is None:
        if required:
            raise BadRow(f"missing field {name!r}")
        return None
    value = row[name]
    if kind is str and isinstance(value, str) and not value.strip() and required:
        raise BadRow(f"field {name!r} is empty")
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRow(f"field {name!r} is {json_type(value)}, expected {_kind_name(kind)}")
    return value


_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _string_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BadRow(f"field {name!r} is {json_type(value) if value is not None else 'missing'}, expected a non-empty list of strings")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise BadRow(f"field {name!r}: item {i} is {json_type(v)}, expected a string")
    return list(value)


def _id_value(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise BadRow(f"field {name!r} is {json_type(value)}, expected a non-empty string or an integer")
    return str(value)


def _letter_for(index: int, n: int, field: str) -> str:
    if not 0 <= index < n:
        raise BadRow(f"field {field!r}: option {index} does not exist ({n} options)")
    return LETTERS[index]


def _parse_normalized(row: Row) -> dict[str, Any]:
    d = row.data
    item_id = _id_value(d, "id")
    if item_id is None:
        raise BadRow("missing field 'id'")
    choices = d.get("choices")
    if choices is not None:
        choices = _string_list(choices, "choices")
    answer = d.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if answer is None:
        raise BadRow("missing field 'answer'")
    if not isinstance(answer, str):
        raise BadRow(f"field 'answer' is {json_type(answer)}, expected a string")
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


def _parse_gsm8k(row: Row) -> dict[str, Any]:
    d = row.data
    solution = _field(d, "answer")
    m = _GSM8K_FINAL.search(solution)
    if not m or not _PLAIN_NUMBER.fullmatch(m.group(1).strip().lstrip("$")):
        raise BadRow("field 'answer' does not end with a '#### <number>' line")
    raw = m.group(1).strip()
    return {
        "id": _id_value(d, "id") or f"gsm8k-{row.part}-{row.index}",
        "question": _field(d, "question"),
        "choices": None,
        "answer": raw.lstrip("$").replace(",", ""),
        "solution": solution,
        "meta": {"answer_raw": raw},
    }


def _parse_math(row: Row) -> dict[str, Any]:
    d = row.data
    solution = _field(d, "solution")
    answer = d.get("answer")
    if answer is not None and not isinstance(answer, str):
        answer = str(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else None
        if answer is None:
            raise BadRow(f"field 'answer' is {json_type(d.get('answer'))}, expected a string")
    if not answer or not answer.strip():
        answer = last_boxed(solution)
        if answer is None:
            raise BadRow("field 'solution' has no complete \\boxed{...} answer (and there is no 'answer' field)")
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


def _parse_csqa(row: Row) -> dict[str, Any]:
    """CommonsenseQA / ARC: nested ``question: {stem, choices: [{label, text}]}`` (the original jsonl)
    or flat ``question: str, choices: {label: [...], text: [...]}`` (their hub copies)."""
    d = row.data
    question = d.get("question")
    meta: dict[str, Any] = {}
    if isinstance(question, Mapping):
        stem = _field(question, "stem")
        raw_choices = question.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise BadRow("field 'question.choices' is missing or not a non-empty list")
        labels, texts = [], []
        for i, c in enumerate(raw_choices):
            if not isinstance(c, Mapping) or not isinstance(c.get("label"), str) or not isinstance(c.get("text"), str):
                raise BadRow(f"field 'question.choices': item {i} needs string 'label' and 'text'")
            labels.append(c["label"])
            texts.append(c["text"])
        if isinstance(question.get("question_concept"), str):
            meta["concept"] = question["question_concept"]
    elif isinstance(question, str) and question.strip():
        stem = question
        choices = d.get("choices")
        if not isinstance(choices, Mapping):
            raise BadRow("field 'choices' is missing or not an object with 'label' and 'text' lists")
        labels = _string_list(choices.get("label"), "choices.label")
        texts = _string_list(choices.get("text"), "choices.text")
        if len(labels) != len(texts):
            raise BadRow(f"field 'choices': {len(labels)} labels but {len(texts)} texts")
        if isinstance(d.get("question_concept"), str):
            meta["concept"] = d["question_concept"]
    else:
        raise BadRow("field 'question' is missing or neither an object nor a string")
    key = _field(d, "answerKey")
    if key not in labels:
        raise BadRow(f"field 'answerKey' {key!r} is not one of the labels {labels}")
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


def _parse_ecqa_csv(row: Row) -> dict[str, Any]:
    """ECQA's csv (and its hub copy): ``q_no, q_concept, q_text, q_op1..q_op5, q_ans, taskA_pos,
    taskA_neg, taskB``; the answer is given as option text, so duplicated options are all correct."""
    d = row.data
    options = [_field(d, f"q_op{i}") for i in range(1, 6)]
    answer_text = _field(d, "q_ans")
    acceptable = [LETTERS[i] for i, o in enumerate(options) if o.strip() == answer_text.strip()]
    if not acceptable:
        raise BadRow(f"field 'q_ans' {answer_text!r} is none of the options q_op1..q_op5")
    item_id = _id_value(d, "q_no")
    if item_id is None:
        raise BadRow("missing field 'q_no'")
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


def _parse_hellaswag(row: Row) -> dict[str, Any]:
    d = row.data
    ctx = _field(d, "ctx")
    endings = _string_list(d.get("endings"), "endings")
    label = d.get("label")
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if label is None or label == "":
        raise BadRow("missing field 'label' (the test split has no labels)")
    if not isinstance(label, int) or isinstance(label, bool):
        raise BadRow(f"field 'label' is {json_type(label)}, expected an integer")
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


def _parse_logic_llm(row: Row) -> dict[str, Any]:
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
            raise BadRow(f"field 'options': item {i} is labelled {m.group(1)!r}, expected {LETTERS[i]!r}")
        choices.append(option[m.end() :].strip() if m else option.strip())
    answer = _field(d, "answer").strip().strip("()").upper()
    if answer not in LETTERS[: len(choices)]:
        raise BadRow(f"field 'answer' {d['answer']!r} is not one of the option letters")
    item_id = _id_value(d, "id")
    return {
        "id": item_id or f"proofwriter-{row.part}-{row.index}",
        "question": f"{context.strip()}\n\n{query.strip()}",
        "choices": choices,
        "answer": answer,
        "solution": None,
        "meta": {"context": context, "query": query, "answer_text": choices[LETTERS.index(answer)]},
    }


def _parse_mmlu_pro(row: Row) -> dict[str, Any]:
    d = row.data
    options = _string_list(d.get("options"), "options")
    # The MMLU-Pro release pads some option lists with "N/A"; its own evaluation drops them. 'answer' and
    # 'answer_index' name positions in the list as released, so each is mapped to its place without them.
    kept = [i for i, o in enumerate(options) if o.strip() != "N/A"]
    place = {original: new for new, original in enumerate(kept)}
    choices = [options[i] for i in kept]
    index = d.get("answer_index")
    letter = d.get("answer")
    if isinstance(index, int) and not isinstance(index, bool):
        if index not in place:
            raise BadRow(f"field 'answer_index' {index} is not an option")
        if isinstance(letter, str) and letter.strip() and letter.strip().upper() != LETTERS[index]:
            raise BadRow(f"fields 'answer' {letter!r} and 'answer_index' {d['answer_index']} disagree")
    elif isinstance(letter, str) and letter.strip().upper() in LETTERS[: len(options)] and LETTERS.index(letter.strip().upper()) in place:
        index = LETTERS.index(letter.strip().upper())
    else:
        raise BadRow("fields 'answer' / 'answer_index' are missing or name no option")
    answer = LETTERS[place[index]]
    # The gold text written twice (options C and D both "7"): either letter is right.
    twins = [LETTERS[i] for i, choice in enumerate(choices) if choice.strip() == choices[place[index]].strip()]
    qid = _id_value(d, "question_id")
    cot = d.get("cot_content")
    meta = {"question_id": d.get("question_id"), "answer_index": LETTERS.index(answer)}
    meta.update({k: d[k] for k in ("category", "src") if k in d})
    if len(twins) > 1:
        meta["acceptable_answers"] = twins
    return {
        "id": _id_value(d, "id") or (f"mmlu_pro-{qid}" if qid is not None else f"mmlu_pro-{row.part}-{row.index}"),
        "question": _field(d, "question"),
        "choices": choices,
        "answer": answer,
        "solution": cot.strip() if isinstance(cot, str) and cot.strip() else None,
        "meta": meta,
    }


def _parse_reasoning_gym(row: Row) -> dict[str, Any]:
    """A reasoning-gym entry: ``question``, ``answer``, ``metadata`` (gsm_symbolic: ``answer_cot``)."""
    d = row.data
    metadata = _field(d, "metadata", dict)
    answer = d.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise BadRow("field 'answer' is missing or not a string")
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
FORMATS: dict[str, tuple[tuple[str, ...], Callable[[Row], dict[str, Any]]]] = {
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


def choose_format(spec: BenchmarkSpec, head: list[SourceRow]) -> str:
    """The row format of a file from its first rows (the most common format among them, so a bad first
    row does not decide how the whole file is read); raises `InputError` when it is not ``spec``'s."""
    file = head[0][0]
    found = [(detect_format(record), record) for _f, _l, _i, _p, record in head]
    counts = Counter(fmt for fmt, _record in found if fmt is not None)
    if not counts:
        fields = ", ".join(sorted(map(str, head[0][4])))
        raise InputError(f"{file}: unknown row format for {spec.name} (fields: {fields}); expected one of: {formats_help(spec)}")
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
            f"expected one of: {formats_help(spec)}"
        )
    return fmt


def formats_help(spec: BenchmarkSpec) -> str:
    return "; ".join(f"{f} ({', '.join(FORMATS[f][0])})" for f in spec.formats)

