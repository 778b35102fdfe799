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
