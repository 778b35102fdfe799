"""Bad input for every command, as a user types it: one clear message naming what is wrong (the file,
the line, the field), exit code 2, never a traceback; inputs with nothing usable are said out loud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("rationalyst")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": str(SCRIPT.parent), "HOME": str(Path.home())}
    return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "question": "What is 2+2?"}\n')
    (tmp_path / "notkept.jsonl").write_text(
        '{"doc_id": "d", "preceding": "a", "rationale": "r", "following": " b", "kept": false}\n'
    )
    (tmp_path / "test.jsonl").write_text('{"id": "x", "question": "", "choices": null, "answer": "1"}\n')
    (tmp_path / "recipe.yaml").write_text("output: runs/x\nselect:\n  corpus: [c.jsonl]\n  benchmarks: [q.jsonl]\n"
                                          "  threshold: high\nextract: {}\nfilter: {}\ntrain: {}\n"
                                          "eval: {benchmarks: [gsm8k]}\n")
    (tmp_path / "eval.yaml").write_text("output: o\nbenchmarks:\n  - {name: gsm8k, source: test.jsonl, ids: [a, b, a]}\n")
    return tmp_path


CASES = [
    (["select", "--corpus", "missing.jsonl", "--benchmark", "q.jsonl", "--output", "o"], "missing.jsonl: no such file"),
    (["extract", "--input", "missing.jsonl", "--output", "o"], "input not found: missing.jsonl"),
    (["filter", "--input", "missing.jsonl", "--output", "o"], "input not found: missing.jsonl"),
    (["train", "--input", "notkept.jsonl", "--output", "o"], "notkept.jsonl: no kept records to train on"),
    (["eval", "-b", "gsm8k=test.jsonl", "--output", "o"], "nothing to evaluate, no usable problem in test.jsonl"),
    (["solve", "hi", "--method", "nope"], "field method: Value error, unknown method(s) ['nope']"),
    (["solve", "hi", "--family", "chemistry"], "field family: Input should be 'arithmetic', 'math', 'multiple_choice' or 'logic'"),
    (["solve", "Which animal barks?", "--choice", "cat", "--choice", "dog", "--answer", "dog"],
     "answer 'dog' is not one of the option letters AB"),
    (["eval", "--config", "eval.yaml"], "eval.yaml, line 3, field benchmarks.0.ids: Value error, each problem once; repeated: a"),
    (["run", "recipe.yaml"], "recipe.yaml, line 5, field select.threshold"),
    (["score", "--model", "builtin:nope", "--context", "a", "b"], "unknown builtin model 'nope'"),
    (["serve", "--model", "builtin:nope"], "unknown builtin model 'nope'"),
    (["view", "missing-dir", "--no-open"], "run directory not found: missing-dir"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[c[0][0] for c in CASES])
def test_each_command_names_the_problem_without_a_traceback(inputs, args, message):
    result = run(inputs, *args)
    assert result.returncode == 2, (args, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr[-2000:]


def test_inputs_with_nothing_usable_are_reported_by_name(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "question": "What is 2+2?"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text(
        '{not json\n{"doc_id": "d", "preceding": "a \\ud800", "rationale": "r", "following": " b"}\n'
    )
    result = run(tmp_path, "select", "--corpus", "empty.jsonl", "--benchmark", "q.jsonl", "--output", "s")
    assert result.returncode == 0 and "empty.jsonl: no documents in this corpus input" in " ".join(result.stderr.split())
    result = run(tmp_path, "filter", "--input", "bad.jsonl", "--output", "f")
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0 and "bad.jsonl: no record could be scored (2 skipped)" in text
    assert "malformed JSON: 1" in text and "invalid unicode (an unpaired surrogate escape): 1" in text


def test_a_lone_surrogate_anywhere_in_a_record_is_skipped_and_counted(tmp_path):
    """A JSON escape such as "\\ud800" parses, but cannot be written out as UTF-8: the record (text, id or
    a field kept in meta) is skipped and counted, the good ones are selected, and a rerun is a no-op."""
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "question": "What is 2+2?"}\n')
    (tmp_path / "c.jsonl").write_text(
        '{"id": "a", "text": "Two plus two is four."}\n'
        '{"id": "b", "text": "Bad \\ud800 text."}\n'
        '{"id": "c\\udc00", "text": "Fine text."}\n'
        '{"id": "d", "text": "Fine text.", "meta": {"tags": ["\\udbff"]}}\n'
        '{"id": "e", "text": "Three plus three is six."}\n'
    )
    args = ("select", "--corpus", "c.jsonl", "--benchmark", "q.jsonl", "--output", "s")
    result = run(tmp_path, *args)
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0 and "Traceback" not in text, text[-2000:]
    assert "select: 2 documents" in text and "skipped input: invalid_unicode: 3" in text
    shards = {p.name: p.read_bytes() for p in sorted((tmp_path / "s" / "shards").iterdir())}
    assert [json.loads(line)["id"] for data in shards.values() for line in data.splitlines()] == ["c.jsonl/a", "c.jsonl/e"]
    result = run(tmp_path, *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "s" / "shards").iterdir())} == shards


def test_a_corpus_file_whose_name_is_not_utf8_is_skipped_and_counted_on_every_run(tmp_path):
    """A file named with bytes that are not UTF-8 (b"bad\\xff.jsonl") in a corpus folder gives no id that can be
    written: it is skipped and counted (shown with its bytes escaped), the other file's documents are
    selected, the manifest is valid JSON, and a rerun of the finished run prints the same skips."""
    (tmp_path / "q.jsonl").write_text('{"id": "q1", "question": "What is 2+2?"}\n')
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "good.jsonl").write_text('{"id": "a", "text": "Two plus two is four."}\n')
    fd = os.open(os.path.join(os.fsencode(tmp_path / "c"), b"bad\xff.jsonl"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b'{"id": "b", "text": "Three plus three is six."}\n')
    os.close(fd)
    args = ("select", "--corpus", "c", "--benchmark", "q.jsonl", "--output", "s")
    for attempt in ("first run", "rerun"):
        result = run(tmp_path, *args)
        text = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 0 and "Traceback" not in text, (attempt, text[-2000:])
        assert "skipped input: invalid_unicode: 1" in text, (attempt, text[-2000:])
    ids = [json.loads(line)["id"] for p in sorted((tmp_path / "s" / "shards").iterdir()) for line in p.read_text().splitlines()]
    assert ids == ["good.jsonl/a"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_bytes().decode("utf-8"))
    assert manifest["counts"]["skipped"] == {"invalid_unicode": 1}
    assert [e["file"] for e in manifest["skipped_examples"]] == ["c/bad\\xff.jsonl"]


def test_a_finished_filter_run_opened_again_reports_the_skips_of_its_first_run(tmp_path):
    """Rerun, a finished filter run does nothing, and says the same as the first run: what it skipped, and
    that nothing could be scored of the 2 skipped records."""
    (tmp_path / "bad.jsonl").write_text(
        '{not json\n{"doc_id": "d", "preceding": "a \\ud800", "rationale": "r", "following": " b"}\n'
    )
    for attempt in ("first run", "rerun"):
        result = run(tmp_path, "filter", "--input", "bad.jsonl", "--output", "f")
        text = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 0 and "bad.jsonl: no record could be scored (2 skipped)" in text, (attempt, text[-2000:])
        assert "malformed JSON: 1" in text and "invalid unicode (an unpaired surrogate escape): 1" in text, (attempt, text[-2000:])
