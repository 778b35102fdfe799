"""Benchmark loading (rationalyst.data.benchmarks): normalized and original formats, bad rows, data
folder discovery, the hub path, and generated gsm_symbolic problems.

The fixtures under tests/fixtures/benchmarks are real rows of /work/shared/benchmarks (normalized)
and the same items written in each benchmark's original format (tests/fixtures/benchmarks/original),
so the two readings of one item can be compared field by field. Tests at the end read the whole
shared data when it is there and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rationalyst.data import benchmarks as bm
from rationalyst.data.answers import extract_answer, is_correct
from rationalyst.data.benchmarks import (
    BENCHMARKS,
    FAMILIES,
    LETTERS,
    BenchmarkItem,
    gsm_symbolic_documents,
    load_benchmark,
    parse_hub_source,
)
from rationalyst.errors import InputError, RationalystError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
ORIGINAL = FIXTURES / "original"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def _load(name: str, source, **kw) -> tuple[list[BenchmarkItem], list[tuple]]:
    skips: list[tuple] = []
    items = load_benchmark(name, source, on_skip=lambda *a: skips.append(a), **kw)
    return items, skips


# ------------------------------------------------------------------------------------ normalized rows

FIXTURE_FILES = {
    "gsm8k": ("gsm8k.jsonl", 4),
    "math": ("math.jsonl", 4),
    "math500": ("math500.jsonl", 4),
    "ecqa": ("ecqa.jsonl", 5),
    "hellaswag": ("hellaswag.jsonl", 4),
    "proofwriter": ("proofwriter.jsonl", 3),
    "arc_challenge": ("arc_challenge.jsonl", 5),
    "mmlu_pro": ("mmlu_pro.jsonl", 4),
}


@pytest.mark.parametrize("name", sorted(FIXTURE_FILES))
def test_each_benchmark_loads_its_normalized_fixture(name):
    file, count = FIXTURE_FILES[name]
    items, skips = _load(name, FIXTURES / file)
    assert skips == []
    assert len(items) == count
    raw = [json.loads(line) for line in (FIXTURES / file).read_text().splitlines()]
    spec = BENCHMARKS[name]
    for item, row in zip(items, raw):
        assert item.benchmark == name and item.family == spec.family in FAMILIES
        assert (item.id, item.question, item.choices, item.answer, item.solution) == (
            row["id"], row["question"], row["choices"], row["answer"], row["solution"]
        )
        assert item.meta == row["meta"] and item.source == row["source"]
        if spec.family in ("multiple_choice", "logic"):
            assert item.letters == list("ABCDEFGHIJ"[: len(item.choices)])
            assert item.answer in item.letters
        else:
            assert item.choices is None
        # every gold answer checks as correct against itself (it parses)
        assert is_correct(item.answer, item)


def test_family_specific_fields():
    ecqa, _ = _load("ecqa", FIXTURES / "ecqa.jsonl")
    dup = next(i for i in ecqa if i.id == "bb7cba8495adeb89b611351214ebfca8")
    assert dup.choices[2] == dup.choices[4] == "possibility"
    assert dup.acceptable_answers == ("C", "E")
    assert is_correct("E", dup) and not is_correct("D", dup)

    arc, _ = _load("arc_challenge", FIXTURES / "arc_challenge.jsonl")
    numeric = next(i for i in arc if i.meta["original_labels"] == ["1", "2", "3", "4"])
    assert numeric.answer == "ABCD"[int(numeric.meta["original_answerKey"]) - 1]
    assert sorted(len(i.choices) for i in arc) == [3, 4, 4, 4, 5]

    logic, _ = _load("proofwriter", FIXTURES / "proofwriter.jsonl")
    assert all(i.family == "logic" and i.choices == ["True", "False", "Unknown"] for i in logic)
    assert [i.answer for i in logic] == ["A", "C", "B"]

    mmlu, _ = _load("mmlu_pro", FIXTURES / "mmlu_pro.jsonl")
    assert {len(i.choices) for i in mmlu} >= {3, 10}


def test_limit_takes_the_first_items():
    items, _ = _load("hellaswag", FIXTURES / "hellaswag.jsonl", limit=2)
    assert [i.id for i in items] == ["hellaswag-val-0", "hellaswag-val-1"]
    assert load_benchmark("hellaswag", FIXTURES / "hellaswag.jsonl", limit=0) == []


# ------------------------------------------------------------------------------------ original formats

AGREEMENT = [
    ("gsm8k", "original/gsm8k/train.jsonl", ("question", "answer", "solution")),
    ("math500", "original/math500_prm800k.jsonl", ("id", "question", "answer", "solution")),
    ("math500", "original/MATH", ("id", "question", "answer", "solution")),
    ("math500", "original/MATH/test", ("id", "question", "answer", "solution")),
    ("ecqa", "original/ecqa_val.csv", ("id", "question", "choices", "answer", "solution", "acceptable_answers")),
    ("ecqa", "original/commonsenseqa_dev.jsonl", ("id", "question", "choices", "answer", "acceptable_answers")),
    ("hellaswag", "original/hellaswag_val.jsonl", ("id", "question", "choices", "answer")),
    ("proofwriter", "original/proofwriter_logic_llm.json", ("id", "question", "choices", "answer")),
    ("arc_challenge", "original/arc_challenge_test.jsonl", ("id", "question", "choices", "answer")),
    ("arc_challenge", "original/arc_challenge_hub.jsonl", ("id", "question", "choices", "answer")),
    ("mmlu_pro", "original/mmlu_pro_test.jsonl", ("id", "question", "choices", "answer")),
]


@pytest.mark.parametrize(("name", "original", "fields"), AGREEMENT, ids=[a[1] for a in AGREEMENT])
def test_original_format_agrees_with_normalized(name, original, fields):
    normalized, _ = _load(name, FIXTURES / FIXTURE_FILES[name][0])
    items, skips = _load(name, FIXTURES / original)
    assert skips == []
    assert len(items) == len(normalized)
    if "id" in fields:
        by_id = {i.id: i for i in normalized}
        pairs = [(item, by_id[item.id]) for item in items]
    else:  # GSM8K has no ids: the files hold the same items in the same order
        pairs = list(zip(items, normalized))
    for item, ref in pairs:
        for field in fields:
            assert getattr(item, field) == getattr(ref, field), (item.id, field)
        assert item.family == ref.family


def test_original_formats_details():
    gsm, _ = _load("gsm8k", ORIGINAL / "gsm8k" / "train.jsonl")
    assert [i.id for i in gsm[:3]] == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-train-2"]
    comma = gsm[3]
    assert "," in comma.meta["answer_raw"] and comma.answer == comma.meta["answer_raw"].replace(",", "")

    math, _ = _load("math500", ORIGINAL / "MATH")
    assert [i.id for i in math][-1] == "test/precalculus/807.json"
    assert math[-1].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the last \boxed{} of the solution
    assert math[-1].meta["level"] == "Level 2"

    ecqa, _ = _load("ecqa", ORIGINAL / "ecqa_val.csv")
    assert ecqa[0].meta["positives"][0].startswith("Anxiety is the feeling of fear")
    assert ecqa[0].meta["answer_text"] == "anxiety and fear"

    hs, _ = _load("hellaswag", ORIGINAL / "hellaswag_val.jsonl")
    assert hs[2].meta["label"] == 1 or isinstance(hs[2].meta["label"], int)  # a string label "1" becomes 1

    mmlu, _ = _load("mmlu_pro", ORIGINAL / "mmlu_pro_test.jsonl")
    raw = json.loads((ORIGINAL / "mmlu_pro_test.jsonl").read_text().splitlines()[0])
    assert "N/A" in raw["options"] and "N/A" not in mmlu[0].choices  # the release's padding is dropped


def test_a_file_of_another_benchmark_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a gsm8k format"):
        load_benchmark("gsm8k", FIXTURES / "hellaswag.jsonl")
    with pytest.raises(InputError, match="not a gsm8k format"):
        load_benchmark("gsm8k", ORIGINAL / "MATH" / "test" / "algebra" / "101.json")
    with pytest.raises(InputError, match="unknown row format"):
        load_benchmark("gsm8k", _write(tmp_path / "x.jsonl", [json.dumps({"text": "hello"})]))


# ------------------------------------------------------------------------------------ bad rows


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _row(**fields) -> str:
    base = {"id": "x", "question": "Q?", "choices": ["a", "b", "c"], "answer": "A", "solution": None, "source": "s", "meta": {}}
    base.update(fields)
    return json.dumps(base)


def test_bad_rows_are_skipped_and_reported_with_file_and_line(tmp_path):
    path = _write(
        tmp_path / "mc.jsonl",
        [
            _row(id="ok1"),                                    # 1
            "{not json",                                       # 2
            _row(id="q-missing", question=None),               # 3
            _row(id="c-bad", choices="a, b, c"),               # 4
            _row(id="ans-bad", answer="D"),                    # 5
            "",                                                # 6 blank: not a row
            _row(id="ok1"),                                    # 7 repeated id
            "[1, 2]",                                          # 8
            _row(id="meta-bad", meta=[1]),                     # 9
            _row(id="ok2", choices=["a", "b", "c", "d"], answer="D"),  # 10
            "{oops",                                           # 11
        ],
    )
    items, skips = _load("arc_challenge", path)
    assert [i.id for i in items] == ["ok1", "ok2"]
    assert [(line, file) for _reason, file, line in skips] == [(n, str(path)) for n in (2, 3, 4, 5, 7, 8, 9, 11)]
    reasons = {line: reason for reason, _file, line in skips}
    assert "malformed JSON" in reasons[2]
    assert "question" in reasons[3]
    assert "choices" in reasons[4]
    assert "answer" in reasons[5] and "'D'" in reasons[5]
    assert "id" in reasons[7] and "repeats" in reasons[7]
    assert "meta" in reasons[9]
    # rows past the limit are not read, so their problems are not reported
    first, first_skips = _load("arc_challenge", path, limit=1)
    assert [i.id for i in first] == ["ok1"] and first_skips == []


def test_skips_around_the_read_ahead_stay_in_order(tmp_path):
    # the first 20 rows are read ahead to decide the format; skips before, at and after that point
    lines = [_row(id=f"r{n}") for n in range(1, 46)]
    for n in (1, 20, 21, 22, 45):
        lines[n - 1] = "{bad"
    items, skips = _load("arc_challenge", _write(tmp_path / "many.jsonl", lines))
    assert len(items) == 40
    assert [line for _r, _f, line in skips] == [1, 20, 21, 22, 45]


def test_a_bad_first_row_does_not_decide_the_format(tmp_path):
    first = json.loads(_row(id="no-choices"))
    del first["choices"]  # alone, this row looks like a GSM8K row (question, answer)
    path = _write(tmp_path / "mc.jsonl", [json.dumps(first), _row(id="a"), _row(id="b")])
    items, skips = _load("arc_challenge", path)
    assert [i.id for i in items] == ["a", "b"]
    assert [(line, "choices" in reason) for reason, _f, line in skips] == [(1, True)]


def test_without_a_callback_a_bad_row_raises_naming_file_line_and_field(tmp_path):
    path = _write(tmp_path / "g.jsonl", [json.dumps({"question": "Q?", "answer": "x\n#### 5"}), json.dumps({"question": "Q?"})])
    with pytest.raises(InputError) as err:
        load_benchmark("gsm8k", path)
    assert str(path) in str(err.value) and "line 2" in str(err.value) and "'answer'" in str(err.value)


def test_gsm8k_rows_without_a_final_number_are_skipped(tmp_path):
    path = _write(tmp_path / "train.jsonl", [
        json.dumps({"question": "Q1?", "answer": "so 2+2=4\n#### 4"}),
        json.dumps({"question": "Q2?", "answer": "no final line"}),
        json.dumps({"question": "Q3?", "answer": "#### four"}),
        json.dumps({"question": "Q4?", "answer": "#### -1,250"}),
    ])
    items, skips = _load("gsm8k", path)
    assert [(i.id, i.answer) for i in items] == [("gsm8k-train-0", "4"), ("gsm8k-train-3", "-1250")]
    assert [line for _r, _f, line in skips] == [2, 3]


def test_csv_and_json_bad_records(tmp_path):
    csv_text = (ORIGINAL / "ecqa_val.csv").read_text(encoding="utf-8")
    header, _, rest = csv_text.partition("\n")
    bad = 'x,badrow,concept,Where?,a,b,c,d,e,zzz,,,\n'  # q_ans is none of the options
    short = 'y,short,concept\n'
    path = tmp_path / "ecqa.csv"
    path.write_text(header + "\n" + bad + short + rest, encoding="utf-8")
    items, skips = _load("ecqa", path)
    assert len(items) == 5
    assert [(line, "q_ans" in reason or "fields" in reason) for reason, _f, line in skips] == [(2, True), (3, True)]

    data = json.loads((ORIGINAL / "proofwriter_logic_llm.json").read_text())
    data.insert(1, "not an object")
    data.append({**data[0], "id": "bad-answer", "answer": "D"})
    jpath = tmp_path / "pw.json"
    jpath.write_text(json.dumps(data))
    items, skips = _load("proofwriter", jpath)
    assert len(items) == 3
    assert [line for _r, _f, line in skips] == [2, 5]


def test_multi_line_csv_records_report_their_first_line(tmp_path):
    lines = (ORIGINAL / "ecqa_val.csv").read_text(encoding="utf-8")
    path = tmp_path / "e.csv"
    path.write_text(lines.replace("anxiety and fear,\"Anxiety", "not an option,\"Anxiety", 1), encoding="utf-8")
    _items, skips = _load("ecqa", path)
    assert [(line, "q_ans" in reason) for reason, _f, line in skips] == [(2, True)]
    row3 = lines.split("\n")
    # the next record starts after the multi-line quoted fields of the first
    start = next(i for i, text in enumerate(row3, 1) if text.startswith("1,2ac72eaf"))
    path.write_text(lines.replace("race track,\"Racers", "nowhere,\"Racers", 1), encoding="utf-8")
    _items, skips = _load("ecqa", path)
    assert [line for _r, _f, line in skips] == [start]


# ------------------------------------------------------------------------------------ where data is found


def test_missing_benchmarks_folder_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(bm.BENCHMARKS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RationalystError) as err:
        load_benchmark("gsm8k")
    message = str(err.value)
    assert bm.BENCHMARKS_ENV in message and "shared/benchmarks" in message and "source" in message

    monkeypatch.setenv(bm.BENCHMARKS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(RationalystError, match="nowhere"):
        load_benchmark("math500")


def test_benchmarks_folder_from_env_and_relative_sources(tmp_path, monkeypatch):
    root = tmp_path / "bench"
    (root / "gsm8k").mkdir(parents=True)
    shutil.copy(FIXTURES / "gsm8k.jsonl", root / "gsm8k" / "test.jsonl")
    shutil.copy(FIXTURES / "gsm8k.jsonl", root / "gsm8k" / "other.jsonl")
    monkeypatch.setenv(bm.BENCHMARKS_ENV, str(root))
    monkeypatch.chdir(tmp_path)
    assert len(load_benchmark("gsm8k")) == 4
    assert len(load_benchmark("gsm8k", "gsm8k/other.jsonl")) == 4  # relative to the benchmarks folder
    assert len(load_benchmark("gsm8k", root)) == 4  # a benchmarks folder as the source
    with pytest.raises(InputError, match="not found"):
        load_benchmark("gsm8k", "gsm8k/missing.jsonl")

    monkeypatch.delenv(bm.BENCHMARKS_ENV)
    (tmp_path / "work" / "main").mkdir(parents=True)
    shutil.copytree(root, tmp_path / "work" / "shared" / "benchmarks")
    monkeypatch.chdir(tmp_path / "work" / "main")  # ../shared/benchmarks, as for a checkout beside shared/
    assert len(load_benchmark("gsm8k")) == 4


def test_unknown_names_and_misused_options():
    with pytest.raises(RationalystError, match="unknown benchmark"):
        load_benchmark("gsm9k")
    with pytest.raises(RationalystError, match="seed"):
        load_benchmark("gsm8k", FIXTURES / "gsm8k.jsonl", seed=1)
    with pytest.raises(InputError, match="unknown benchmark file type"):
        load_benchmark("gsm8k", FIXTURES.parent / "corpus" / "texts" / os.listdir(FIXTURES.parent / "corpus" / "texts")[0])


# ------------------------------------------------------------------------------------ the hub


def test_hub_source_parsing():
    spec = BENCHMARKS["arc_challenge"]
    assert parse_hub_source(spec, "hf:") == spec.hf
    assert parse_hub_source(spec, "hf:@validation") == bm.HubSource("allenai/ai2_arc", "ARC-Challenge", "validation")
    assert parse_hub_source(spec, "hf:allenai/ai2_arc:ARC-Easy@train") == bm.HubSource("allenai/ai2_arc", "ARC-Easy", "train")
    assert parse_hub_source(spec, "hf:someone/arc") == bm.HubSource("someone/arc", None, "test")
    with pytest.raises(RationalystError, match="no hub copy"):
        parse_hub_source(BENCHMARKS["proofwriter"], "hf:")


def test_hub_unavailable_offline_is_a_clear_error(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub

    # As a process started with HF_HUB_OFFLINE=1 sees it: the libraries read the variable when imported,
    # and online they would try the hub (here unreachable: 20 s of retries) before failing.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RationalystError) as err:
        load_benchmark("gsm8k", "hf:")
    assert "hf:openai/gsm8k:main@test" in str(err.value) and "pass the file" in str(err.value)


def test_hub_rows_use_the_same_parsers(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (ORIGINAL / "arc_challenge_hub.jsonl").read_text().splitlines()]
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return rows

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # skips the reachability probe
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items, skips = _load("arc_challenge", "hf:", limit=3)
    assert calls == [("allenai/ai2_arc", "ARC-Challenge", "test")]
    assert skips == []
    normalized, _ = _load("arc_challenge", FIXTURES / "arc_challenge.jsonl", limit=3)
    assert [(i.id, i.choices, i.answer) for i in items] == [(i.id, i.choices, i.answer) for i in normalized]
    assert items[0].source == "hf:allenai/ai2_arc:ARC-Challenge@test"


# ------------------------------------------------------------------------------------ gsm_symbolic


def test_gsm_symbolic_is_deterministic_for_a_seed():
    pytest.importorskip("reasoning_gym")
    a = load_benchmark("gsm_symbolic", limit=12)
    b = load_benchmark("gsm_symbolic", limit=12, seed=0)
    c = load_benchmark("gsm_symbolic", "seed=0", limit=12)
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b] == [i.model_dump() for i in c]
    assert [i.id for i in a[:2]] == ["gsm_symbolic-s0-0", "gsm_symbolic-s0-1"]
    other = load_benchmark("gsm_symbolic", "seed=7", limit=12)
    assert [i.question for i in other] != [i.question for i in a]
    # a smaller set is a prefix of a larger one
    assert [i.question for i in load_benchmark("gsm_symbolic", limit=5)] == [i.question for i in a[:5]]
    for item in a:
        assert item.family == "arithmetic" and item.benchmark == "gsm_symbolic" and item.meta["seed"] == 0
        assert not item.question.endswith("Do not include units.")
        # the worked solution ends in "#### N": its stated answer is the gold answer
        assert is_correct(extract_answer(item.solution, item), item) and is_correct(item.answer, item)
    with pytest.raises(RationalystError, match="disagree"):
        load_benchmark("gsm_symbolic", "seed=1", seed=2)


def test_gsm_symbolic_documents():
    pytest.importorskip("reasoning_gym")
    docs = gsm_symbolic_documents(20, seed=5)
    assert docs == gsm_symbolic_documents(20, seed=5)
    assert len(docs) == 20 and len({d["id"] for d in docs}) == 20
    # Shaped as a search trajectory: the answer line reads as the agent's last step does.
    assert all(d["source"] == "gsm_symbolic" and "####" not in d["text"] for d in docs)
    items = load_benchmark("gsm_symbolic", "seed=5", limit=20)
    assert all(d["text"].splitlines()[-1].startswith("The answer is ") for d in docs)
    assert all(is_correct(d["text"].splitlines()[-1], i) for d, i in zip(docs, items))
    assert docs[0]["text"].startswith(items[0].question + "\n")
    # the default document seed keeps the corpus apart from evaluation sets of small seeds
    evaluation = {i.question for i in load_benchmark("gsm_symbolic", limit=50)}
    assert not any(d["text"].split("\n", 1)[0] in evaluation for d in gsm_symbolic_documents(50))


# ------------------------------------------------------------------------------------ other checks


def test_import_does_not_load_torch():
    code = (
        "import sys; import rationalyst.data.benchmarks, rationalyst.data.answers, rationalyst.data.solve_prompts; "
        "print(sorted(m for m in ('torch', 'datasets', 'reasoning_gym', 'math_verify') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_prm800k_fixture_rows():
    rows = [json.loads(line) for line in (FIXTURES / "prm800k.jsonl").read_text().splitlines()]
    assert 15 <= len(rows) <= 25
    assert len({r["question"] for r in rows}) == 3
    for r in rows:
        assert set(r) == {"id", "question", "choices", "answer", "solution", "source", "meta"}
        assert isinstance(r["meta"]["prefix_steps"], list) and isinstance(r["meta"]["step"], str)
        assert r["meta"]["rating"] in (1, 0, -1, None)


def test_item_validation():
    with pytest.raises(ValueError, match="family"):
        BenchmarkItem(id="a", benchmark="b", family="poetry", question="q", answer="1")
    with pytest.raises(ValueError, match="option letters"):
        BenchmarkItem(id="a", benchmark="b", family="multiple_choice", question="q", choices=["x", "y"], answer="C")
    item = BenchmarkItem(id="a", benchmark="b", family="multiple_choice", question="q", choices=["x", "y"], answer="B")
    with pytest.raises(ValueError):
        item.answer = "A"  # frozen
    assert item.to_record()["answer"] == "B"


# ------------------------------------------------------------------------------------ the shared data

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared benchmark data is not here")

SHARED_COUNTS = {
    "gsm8k": 7473, "math": 5000, "math500": 500, "ecqa": 1090, "hellaswag": 10042,
    "proofwriter": 600, "arc_challenge": 1172, "mmlu_pro": 12032,
}


@needs_shared
@pytest.mark.parametrize("name", sorted(SHARED_COUNTS))
def test_shared_benchmarks_load_whole(name):
    # GSM8K's evaluation split (test) is not in the shared data on purpose: its train file is read.
    items, skips = _load(name, SHARED / "gsm8k" / "train.jsonl" if name == "gsm8k" else SHARED)
    assert skips == []
    assert len(items) == SHARED_COUNTS[name]
    if BENCHMARKS[name].family in ("multiple_choice", "logic"):
        assert all(is_correct(i.answer, i) for i in items)
        assert not any(is_correct(next(x for x in i.letters if x not in i.acceptable_answers), i) for i in items)


@needs_shared
def test_shared_math500_golds_verify():
    items, _ = _load("math500", SHARED)
    # every gold parses and equals itself, and the gold solution's stated answer checks as correct
    assert all(is_correct(i.answer, i) for i in items)
    assert all(is_correct(extract_answer(i.solution, i), i) for i in items)


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("name", ["gsm8k", "math"])
def test_shared_golds_verify_slow(name):
    items, _ = _load(name, SHARED / "gsm8k" / "train.jsonl" if name == "gsm8k" else SHARED)
    assert all(is_correct(i.answer, i) for i in items)
    assert all(is_correct(extract_answer(i.solution, i), i) for i in items)


def test_word_problems_are_seeded_prefix_stable_and_self_consistent():
    items = bm.load_benchmark("word_problems", "seed=3", limit=40)
    assert [i.id for i in bm.load_benchmark("word_problems", seed=3, limit=10)] == [i.id for i in items[:10]]
    assert bm.load_benchmark("word_problems", seed=3, limit=5) == items[:5]
    assert bm.load_benchmark("word_problems", seed=4, limit=5) != items[:5]
    for item in items:
        assert item.family == "arithmetic"
        assert is_correct(extract_answer(item.solution, item), item)  # the worked solution reaches the answer
    docs = bm.generated_documents("word_problems", 3, seed=1_000_000)
    assert [d["source"] for d in docs] == ["word_problems"] * 3 and all("The answer is" in d["text"] for d in docs)


def test_mmlu_pro_answers_name_positions_in_the_released_option_list(tmp_path):
    """'answer' and 'answer_index' count the options as released, "N/A" included: an "N/A" before the
    gold moves the gold's letter, not the gold; a gold text written twice accepts both letters."""
    rows = [
        {"question_id": 1, "question": "Pick the prime.", "options": ["4", "N/A", "7", "9"], "answer": "C"},
        {"question_id": 2, "question": "Pick the prime.", "options": ["4", "N/A", "7", "9"], "answer_index": 2, "answer": "C"},
        {"question_id": 3, "question": "Pick the prime.", "options": ["4", "6", "7", "7"], "answer_index": 3, "answer": "D"},
        {"question_id": 4, "question": "Pick the prime.", "options": ["4", "N/A", "7", "9"], "answer": "B"},  # the N/A
    ]
    path = tmp_path / "mmlu_pro.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, skipped = _load("mmlu_pro", path)
    golds = {i.id: (i.choices[LETTERS.index(i.answer)], i.acceptable_answers) for i in items}
    assert golds == {"mmlu_pro-1": ("7", ("B",)), "mmlu_pro-2": ("7", ("B",)), "mmlu_pro-3": ("7", ("C", "D"))}
    assert len(skipped) == 1 and skipped[0][2] == 4  # the fourth row names the N/A
