"""The records reader: every line it cannot use is skipped and reported with its file and line."""

from __future__ import annotations

import json

from rationalyst.data.records import MAX_DEPTH
from rationalyst.runs import read_json_lines
from rationalyst.stages.train import read_kept_records


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


def test_the_shard_writer_refuses_an_unwritable_record_and_keeps_the_others(tmp_path):
    """An unencodable record fails at its own write, with its id; the records before it still reach disk."""
    import pytest

    from rationalyst.config import StrictModel
    from rationalyst.runs import RunDir, read_records

    class Config(StrictModel):
        seed: int = 1

    run = RunDir(tmp_path / "run", Config(), stage="test")
    with run.writer() as writer:
        writer.write({"id": "a", "text": "fine"})
        with pytest.raises(ValueError, match="'b'.*surrogate"):
            writer.write({"id": "b", "text": "bad \ud800"})
        writer.write({"id": "c", "text": "fine too"})
    assert [r["id"] for r in read_records(tmp_path / "run")] == ["a", "c"]
