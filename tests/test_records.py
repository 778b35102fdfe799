"""The records reader: every line it cannot use is skipped and reported with its file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rationalyst.data.records import MAX_DEPTH, lone_surrogate_at, non_finite_at
from rationalyst.lm import Completion, ContinuationScore, LanguageModel
from rationalyst.runs import RunDir, read_json_lines, read_records
from rationalyst.stages import extract, filter as filter_stage
from rationalyst.stages.train import read_kept_records

SURROGATE_SKIP = "invalid unicode (an unpaired surrogate escape)"


def _nested(depth: int) -> dict:
    value: object = "leaf"
    for _ in range(depth - 1):
        value = {"k": [value]} if isinstance(value, dict) else {"k": value}
    return {"doc_id": "deep", "x": value}


def test_deeply_nested_json_is_a_malformed_line_not_a_crash(tmp_path):
    good = {"doc_id": "d1", "preceding": "a", "rationale": "r", "kept": True}
    lines = [
        json.dumps(good),
        "[" * 100_000 + "]" * 100_000,  # json.loads raises RecursionError on this
        '{"a": ' * 50_000 + "1" + "}" * 50_000,
        json.dumps(_nested(MAX_DEPTH + 20)),  # parses, but deeper than any record of ours
        json.dumps(_nested(20)),
        "{not json",
        json.dumps(good | {"doc_id": "d2"}),
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    skipped = []
    got = list(read_json_lines(path, lambda reason, file, line: skipped.append((reason, file, line)), stage="filter"))
    assert [(line, record["doc_id"]) for _, line, record in got] == [(1, "d1"), (5, "deep"), (7, "d2")]
    assert skipped == [
        ("malformed JSON (nested too deeply)", path, 2),
        ("malformed JSON (nested too deeply)", path, 3),
        ("malformed JSON (nested too deeply)", path, 4),
        ("malformed JSON", path, 6),
    ]
    # The train stage's reader counts them as invalid lines and trains on the rest.
    kept, counts = read_kept_records(path)
    assert [r["doc_id"] for r in kept] == ["d1", "d2"] and counts == {"not_kept": 0, "invalid": 5, "below_min_delta": 0}


def test_a_byte_order_mark_at_the_start_of_a_file_loses_no_record(tmp_path):
    """Some editors write a UTF-8 BOM first; the first record is read, as `read_corpus` reads it."""
    from rationalyst.data.records import json_objects

    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"id": "a"}\n{"id": "b"}\n')
    skipped = []
    assert [r["id"] for _, _, r in json_objects(path, lambda *a: skipped.append(a))] == ["a", "b"] and not skipped


def test_a_record_holding_an_unpaired_surrogate_is_skipped_with_its_line(tmp_path):
    """Extract and filter read their input here: "\\ud800" anywhere (a value, a key, nested) is skipped
    and reported; an escaped pair is one character and an escaped backslash is no surrogate."""
    lines = [
        '{"doc_id": "good", "text": "fine"}',
        '{"doc_id": "lone", "text": "bad \\ud800"}',
        '{"doc_id": "key", "meta": {"\\udfff": 1}}',
        '{"doc_id": "nested", "meta": {"tags": ["x", "\\uDC80"]}}',
        '{"doc_id": "pair", "text": "\\ud83d\\ude00"}',
        '{"doc_id": "text", "text": "a literal \\\\ud800"}',
    ]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    skipped = []
    got = list(read_json_lines(path, lambda reason, file, line: skipped.append((reason, line)), stage="extract"))
    assert [(line, r["doc_id"]) for _, line, r in got] == [(1, "good"), (5, "pair"), (6, "text")]
    assert got[1][2]["text"] == "\U0001F600" and got[2][2]["text"] == "a literal \\ud800"
    assert skipped == [("invalid unicode (an unpaired surrogate escape)", n) for n in (2, 3, 4)]


def test_a_record_holding_a_number_json_cannot_hold_is_skipped_with_its_line(tmp_path):
    """Python's reader takes NaN, Infinity and 1e999 (infinite), which no JSON writer may write back: such
    a record is skipped and reported; the same spellings inside strings, and large finite numbers, are fine."""
    lines = [
        '{"doc_id": "good", "score": 1e308}',
        '{"doc_id": "nan", "score": NaN}',
        '{"doc_id": "inf", "meta": {"scores": [1, -Infinity]}}',
        '{"doc_id": "big", "score": 1e999}',
        '{"doc_id": "text", "text": "NaN and Infinity and 1e999 as words", "n": 2.5E+300}',
    ]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    skipped = []
    got = list(read_json_lines(path, lambda reason, file, line: skipped.append((reason, line)), stage="filter"))
    assert [(line, r["doc_id"]) for _, line, r in got] == [(1, "good"), (5, "text")]
    assert skipped == [("a number JSON cannot hold (NaN or infinite)", n) for n in (2, 3, 4)]
    assert non_finite_at({"a": [1.0, {"b": float("inf")}]}) == "a[1].b" and non_finite_at({"a": 1e308}) is None


def test_lone_surrogate_at_names_the_field_that_holds_one():
    """The one check every reader uses: any string, keys included, at any depth; a pair is one character."""
    assert lone_surrogate_at({"id": "a", "text": "fine \U0001F600", "meta": {"n": [1, None, {"k": "v"}]}}) is None
    assert lone_surrogate_at({"id": "a", "text": "bad \udc80"}) == "text"
    assert lone_surrogate_at({"id": "c\ud800", "text": "fine"}) == "id"
    assert lone_surrogate_at({"meta": {"tags": ["x", "\udbff"]}}) == "meta.tags[1]"
    assert lone_surrogate_at({"meta": {"\udfff": 1}}) == "meta.\\udfff"  # the key, its surrogate escaped
    assert lone_surrogate_at("\ud800") == ""
    assert lone_surrogate_at({"text": "\ud83d\ude00"}) == "text"  # two lone halves in a Python str are no pair


def _rationale(doc_id: str, **fields) -> dict:
    return {"id": f"{doc_id}:0", "doc_id": doc_id, "source": "s", "position": 0, "preceding": "A is 2.",
            "rationale": "Because B is next.", "following": " B is 3.", **fields}


# Filter input: good records around bad ones, a lone surrogate in the text (line 2), the id (line 4) and a
# meta field (line 5); json.dumps writes each as a JSON escape ("\\ud800"), as a foreign tool would.
FILTER_RECORDS = [
    _rationale("g1"),
    _rationale("t", preceding="A is \ud800 2."),
    _rationale("g2"),
    _rationale("i") | {"id": "i\udc00:0"},
    _rationale("m", meta={"tags": ["ok", "\udbff"]}),
    _rationale("g3"),
]


class _Scorer(LanguageModel):
    """A pure-Python scorer: every continuation character is a token of log-prob -1."""

    name = "fake-scorer"

    def generate(self, prompts, params):
        raise NotImplementedError

    def score_many(self, requests):
        return [[ContinuationScore(list(range(len(c))), [-1.0] * len(c)) for c in r.continuations] for r in requests]


class _NoModel(_Scorer):
    def score_many(self, requests):
        raise AssertionError("a finished run must not score again")

    def generate(self, prompts, params):
        raise AssertionError("a finished run must not generate again")


def test_filter_skips_and_counts_records_holding_an_unpaired_surrogate(tmp_path):
    """The filter's reader skips them with file and line, scores and writes every good record, and a
    rerun of the finished run does nothing (before, the first shard's flush died, on every rerun)."""
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FILTER_RECORDS), encoding="ascii")
    run = RunDir(tmp_path / "read", filter_stage.FilterConfig(input=path, output=tmp_path / "read"), stage="filter")
    assert [r["id"] for r in filter_stage.read_rationale_records(path, run)] == ["g1:0", "g2:0", "g3:0"]
    assert run.skipped == {SURROGATE_SKIP: 3}

    config = filter_stage.FilterConfig(input=path, output=tmp_path / "out")
    summary = filter_stage.run(config, model=_Scorer())
    assert sorted(r["id"] for r in read_records(config.output)) == ["g1:0", "g2:0", "g3:0"]
    assert summary.skipped == {SURROGATE_SKIP: 3}
    manifest = json.loads((config.output / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {SURROGATE_SKIP: 3}
    assert [(e["file"], e["line"]) for e in manifest["skipped_examples"]] == [(str(path), n) for n in (2, 4, 5)]
    shards = sorted(p.name for p in (config.output / "shards").iterdir())
    filter_stage.run(config, model=_NoModel())
    assert sorted(p.name for p in (config.output / "shards").iterdir()) == shards
    assert sorted(r["id"] for r in read_records(config.output)) == ["g1:0", "g2:0", "g3:0"]


class _Generator(_Scorer):
    """Answers every extraction prompt with one short rationale."""

    def generate(self, prompts, params):
        text = "Because the numbers add up."
        return [[Completion(text, [1, 2, 3, 4, 5], [0.0] * 5, "stop")] for _ in prompts]


def test_extract_skips_and_counts_documents_holding_an_unpaired_surrogate(tmp_path):
    """The extract stage's reader skips them with file and line; every good document is extracted and
    a rerun of the finished run does nothing."""
    text = "Tom has 3 apples and buys 2 more. So he has 5 apples now. He eats one of them later."
    docs = [
        {"id": "g1", "text": text, "source": "gsm8k"},
        {"id": "t", "text": text.replace("2 more", "2 \ud800 more"), "source": "gsm8k"},
        {"id": "g2", "text": text, "source": "web"},
        {"id": "i\udc00", "text": text, "source": "gsm8k"},
        {"id": "m", "text": text, "source": "gsm8k", "meta": {"fields": {"title": "\udbff"}}},
        {"id": "g3", "text": text, "source": "gsm8k"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="ascii")  # lines 2, 4, 5: "\\ud800"
    config = extract.ExtractConfig(input=path, output=tmp_path / "out", min_preceding_chars=20, max_new_tokens=24)
    run = RunDir(tmp_path / "read", config, stage="extract")
    assert [d.id for d in extract.read_documents(path, run, config)] == ["g1", "g2", "g3"]
    assert run.skipped == {SURROGATE_SKIP: 3}

    counts = extract.run(config, model=_Generator())
    assert counts["documents_extracted"] == 3 and counts["skipped"] == {SURROGATE_SKIP: 3}
    assert sorted(r["id"] for r in read_records(Path(config.output) / extract.DOCUMENTS_DIR)) == ["g1", "g2", "g3"]
    assert {r["doc_id"] for r in read_records(config.output)} == {"g1", "g2", "g3"}
    manifest = json.loads((config.output / "manifest.json").read_text())
    assert [(e["file"], e["line"]) for e in manifest["skipped_examples"]] == [(str(path), n) for n in (2, 4, 5)]
    written = sorted(r["id"] for r in read_records(config.output))
    assert extract.run(config, model=_NoModel()) == counts
    assert sorted(r["id"] for r in read_records(config.output)) == written
