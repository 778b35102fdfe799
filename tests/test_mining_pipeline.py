"""Stages 1-3 end to end on the default models, through the CLI, plus SIGKILL-and-resume for extract.

Small models write poor rationales: these tests check the mechanics and the exact scores, not prose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rationalyst.cli import app
from rationalyst.runs import read_records
from rationalyst.stages import extract
from tests.references import rationale_insertion
from tests.killing import kill_when

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS, QUESTIONS = FIXTURES / "select" / "corpus.jsonl", FIXTURES / "select" / "questions.jsonl"
DOCUMENTS = FIXTURES / "extract" / "documents.jsonl"


def test_select_extract_filter_through_the_cli(default_model, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["select", "--corpus", str(CORPUS), "--benchmark", str(QUESTIONS),
                                 "--output", str(tmp_path / "select"), "--threshold", "0.2"])
    assert result.exit_code == 0, result.output
    selected = [r for r in read_records(tmp_path / "select") if r["selected"]]
    assert len(selected) == 3

    result = runner.invoke(app, ["extract", "--input", str(tmp_path / "select"), "--output", str(tmp_path / "extract"),
                                 "--set", "max_rationales_per_doc=2", "--set", "max_new_tokens=24", "--set", "min_preceding_chars=20"])
    assert result.exit_code == 0, result.output
    rationales = list(read_records(tmp_path / "extract"))
    texts = {r["id"]: r["text"] for r in selected}
    assert rationales and {r["doc_id"] for r in rationales} <= set(texts)
    for r in rationales:
        assert texts[r["doc_id"]].startswith(r["preceding"] + r["following"])
        assert r["rationale"].strip() and "<BOT>" not in r["rationale"]

    result = runner.invoke(app, ["filter", "--input", str(tmp_path / "extract"), "--output", str(tmp_path / "filter")])
    assert result.exit_code == 0, result.output
    scored = list(read_records(tmp_path / "filter"))
    assert [r["id"] for r in scored] == [r["id"] for r in rationales]
    for record in scored:  # the exact method, recomputed the plain way
        without_context, with_context, scored = rationale_insertion(record["preceding"], record["rationale"], record["following"])
        (without,) = default_model.score_full_passes(without_context, [scored])
        (with_r,) = default_model.score_full_passes(with_context, [scored])
        assert record["same_tokens"] and without.token_ids == with_r.token_ids
        assert math.isclose(record["delta"], with_r.discounted(0.9) - without.discounted(0.9), abs_tol=1e-4)
        assert record["kept"] == (record["delta"] >= 0)
    assert "kept" in result.output and (tmp_path / "filter" / "deltas.png").exists()


_CHILD = """
from rationalyst.stages import extract
extract.run(extract.ExtractConfig(input=sys.argv[1], output=sys.argv[2], batch_size=1, shard_size=1,
                                  max_rationales_per_doc=2, max_new_tokens=48))
"""


@pytest.mark.slow
def test_extract_killed_with_sigkill_resumes_to_the_uninterrupted_records(default_model, tmp_path):
    out = tmp_path / "killed"
    # Kill once the first document is finished (its summary shard exists), mid-run.
    kill_when(_CHILD, [str(DOCUMENTS), str(out)], out / "documents" / "shards", write_delay=0.5)
    assert not (out / "manifest.json").exists()
    common = dict(input=DOCUMENTS, batch_size=1, max_rationales_per_doc=2, max_new_tokens=48)
    extract.run(extract.ExtractConfig(output=out, **common), model=default_model)
    extract.run(extract.ExtractConfig(output=tmp_path / "straight", **common), model=default_model)
    resumed = sorted(read_records(out), key=lambda r: r["id"])
    straight = sorted(read_records(tmp_path / "straight"), key=lambda r: r["id"])
    assert resumed == straight and resumed  # nothing lost, nothing twice, same text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rationales"] == len(straight)
