"""Stage 1 selection: similarities against a plain reference, length limit, skips, kill and resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from rationalyst.lm import load_embedder
from rationalyst.runs import read_records
from rationalyst.stages import select
from rationalyst.stages.select import SelectConfig, normalize_text
from tests.killing import kill_when

FIXTURES = Path(__file__).parent / "fixtures" / "select"
CORPUS, QUESTIONS = FIXTURES / "corpus.jsonl", FIXTURES / "questions.jsonl"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("builtin:minilm", device="cpu")


def config(tmp_path: Path, **kw) -> SelectConfig:
    return SelectConfig(corpus=[str(CORPUS)], benchmarks=[str(QUESTIONS)], output=tmp_path / "out", **kw)


def test_similarity_is_cosine_to_the_mean_question_and_threshold_selects(embedder, tmp_path):
    summary = select.run(config(tmp_path, threshold=0.2, max_chars=2000), embedder=embedder)
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    # The plain computation: embed everything, average the questions, cosine.
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    reference = embedder.embed(questions).mean(axis=0)
    texts = {json.loads(line)["id"]: json.loads(line)["text"] for line in CORPUS.read_text().splitlines()[:5]}
    for doc_id, text in texts.items():
        record = records[f"corpus.jsonl/{doc_id}"]
        want = float(embedder.embed([text])[0] @ reference / np.linalg.norm(reference))
        assert math.isclose(record["similarity"], want, abs_tol=1e-5)
        assert record["selected"] == (want >= 0.2)
        assert ("text" in record) == record["selected"]
    chosen = {r["id"].split("/")[1] for r in records.values() if r["selected"]}
    assert {"m1", "m2", "m3"} <= chosen and not {"w1", "w2", "w3"} & chosen  # arithmetic vs history and biology
    assert records["corpus.jsonl/long"]["too_long"] and not records["corpus.jsonl/long"]["selected"]
    assert summary.histogram and summary.histogram.exists()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == 7 and manifest["counts"]["too_long"] == 1
    skipped = manifest["counts"]["skipped"]
    assert skipped["duplicate id"] == 1 and sum(skipped.values()) == 3
    assert {e["line"] for e in manifest["skipped_examples"]} == {6, 8, 9}
    assert [r["id"] for r in select.selected_documents(tmp_path / "out")] == [
        f"corpus.jsonl/{i}" for i in ("m1", "m2", "m3")
    ]


def test_two_inputs_with_the_same_file_name_are_refused_before_any_embedding(tmp_path):
    """a/train.jsonl and b/train.jsonl would both label their documents train.jsonl and share ids: the
    second's documents would be dropped as repeats. Refused in seconds; each its own source: works."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "train.jsonl").write_text(CORPUS.read_text())
    inputs = [str(tmp_path / "a" / "train.jsonl"), str(tmp_path / "b" / "train.jsonl")]
    clash = SelectConfig(corpus=inputs, benchmarks=[str(QUESTIONS)], output=tmp_path / "out")
    with pytest.raises(select.ConfigError, match=r"both label their documents 'train.jsonl'.*own source: label"):
        select.run(clash, embedder=None)  # no embedder is loaded first
    apart = [{"path": inputs[0], "source": "a"}, {"path": inputs[1], "source": "b"}]
    labelled = SelectConfig(corpus=apart, benchmarks=[str(QUESTIONS)], output=tmp_path / "out2")
    select.check_sources_apart(labelled)  # the fix the message names passes


def test_paper_normalization():
    assert normalize_text("The Answer, of course, is: 42!") == "answer course 42"


_CHILD = """
from rationalyst.stages import select
select.run(select.SelectConfig(corpus=[sys.argv[1]], benchmarks=[sys.argv[2]], output=sys.argv[3],
                               shard_size=1, embedder={"spec": "builtin:minilm", "batch_size": 2}))
"""


def test_killed_run_resumes_to_exactly_the_uninterrupted_records(embedder, tmp_path):
    out = tmp_path / "killed"
    kill_when(_CHILD, [str(CORPUS), str(QUESTIONS), str(out)], out / "shards", count=2, write_delay=0.3)
    assert 2 <= len(list(read_records(out))) < 7
    select.run(SelectConfig(corpus=[str(CORPUS)], benchmarks=[str(QUESTIONS)], output=out), embedder=embedder)
    select.run(config(tmp_path), embedder=embedder)
    resumed = sorted(read_records(out), key=lambda r: r["id"])
    straight = sorted(read_records(tmp_path / "out"), key=lambda r: r["id"])
    assert [r["id"] for r in resumed] == [r["id"] for r in straight]
    for a, b in zip(resumed, straight):
        assert a.keys() == b.keys() and a["selected"] == b["selected"]
        assert math.isclose(a.get("similarity", 0), b.get("similarity", 0), abs_tol=1e-5)


class _Constant:
    """An embedder that puts every text at one point (similarity 1): selection keeps every document."""

    name = "constant"

    def embed(self, texts, batch_size=64):
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0


def test_a_record_with_an_unpaired_surrogate_anywhere_is_skipped_and_the_run_finishes(tmp_path):
    """A JSON escape "\\ud800" parses into a string that cannot be written as UTF-8: in the text, the id
    or a field kept in meta, the record is skipped and counted; the good ones are all written, and a
    rerun is a no-op (it used to die at the shard's flush, every time, losing the shard)."""
    (tmp_path / "bench.jsonl").write_text(json.dumps({"id": "q1", "question": "What is 2+2?", "answer": "4"}) + "\n")
    rows = [
        json.dumps({"id": "a", "text": "A reasoning document about sums.", "title": "ok"}),
        '{"id": "b", "text": "Another document, fine text.", "title": "bad \\udc80 title"}',
        '{"id": "c\\ud800", "text": "Third document, fine text."}',
        '{"id": "d", "text": "Its text \\ud83d breaks."}',
        '{"id": "e", "text": "A pair \\ud83d\\ude00 is one character: kept."}',
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(rows) + "\n")
    cfg = SelectConfig(corpus=[str(tmp_path / "corpus.jsonl")], benchmarks=[str(tmp_path / "bench.jsonl")],
                       output=tmp_path / "out", threshold=0.0)
    summary = select.run(cfg, embedder=_Constant())
    assert sorted(r["id"].rsplit("/", 1)[-1] for r in read_records(tmp_path / "out")) == ["a", "e"]
    assert summary.skipped == {"invalid_unicode": 3}
    select.run(cfg, embedder=None)  # finished: nothing redone, no model needed
    assert sorted(r["id"].rsplit("/", 1)[-1] for r in read_records(tmp_path / "out")) == ["a", "e"]


def test_a_corpus_file_whose_name_is_not_utf8_is_skipped_and_a_rerun_reports_the_same_skips(tmp_path):
    """A file name with bytes that are not UTF-8 gives no id that can be written: that file is skipped and
    counted, shown with its bytes escaped in the manifest (valid JSON), the other files' documents are
    selected; the finished run opened again reports the skips its manifest counted."""
    (tmp_path / "bench.jsonl").write_text(json.dumps({"id": "q1", "question": "What is 2+2?", "answer": "4"}) + "\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.jsonl").write_text(json.dumps({"id": "a", "text": "A reasoning document about sums."}) + "\n")
    bad = os.path.join(os.fsencode(corpus), b"bad\xff.jsonl")
    with open(bad, "wb") as f:
        f.write(json.dumps({"id": "b", "text": "A document in a badly named file."}).encode() + b"\n")
    cfg = SelectConfig(corpus=[str(corpus)], benchmarks=[str(tmp_path / "bench.jsonl")], output=tmp_path / "out", threshold=0.0)
    summary = select.run(cfg, embedder=_Constant())
    assert [r["id"].rsplit("/", 1)[-1] for r in read_records(tmp_path / "out")] == ["a"]
    assert summary.skipped == {"invalid_unicode": 1}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    [example] = manifest["skipped_examples"]
    assert example["file"] == str(corpus) + "/bad\\xff.jsonl"
    assert select.run(cfg, embedder=None).skipped == {"invalid_unicode": 1}
