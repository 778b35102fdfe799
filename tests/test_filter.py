"""Stage 3 filtering: exact scores against a plain reference, bad input counted, kill and resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from rationalyst.errors import RationalystError
from rationalyst.runs import read_records
from rationalyst.stages import filter as filter_stage
from rationalyst.stages.filter import FilterConfig
from tests.killing import kill_when
from tests.references import rationale_insertion

DOCUMENTS = {
    "gsm8k-1": (
        "gsm8k",
        "Natalia sold clips to 48 of her friends in April. In May she sold half as many clips as in April. "
        "So in May she sold 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips. The answer is 72.",
        ["Half of 48 is what she sold in May.", "We need the sum of both months.", "That sum is the final answer."],
    ),
    "wiki-1": (
        "wikitext",
        "Water boils at 100 degrees Celsius at sea level. On high mountains the air pressure is lower. "
        "Because of that, water boils at a lower temperature there, about 70 degrees on Everest.",
        ["Boiling depends on the air pressure.", "Lower pressure lowers the boiling point."],
    ),
    "gsm8k-2": (
        "gsm8k",
        "A train travels 60 km in one hour. How far does it go in 3 hours? It goes 60 * 3 = 180 km. "
        "The answer is 180.",
        ["Distance is speed times time.", "Multiply the speed by three hours."],
    ),
}


def make_records() -> list[dict]:
    """Extract-stage records: a rationale after each sentence, following = up to the next one."""
    records = []
    for doc_id, (source, text, rationales) in DOCUMENTS.items():
        cuts = [i + 1 for i, ch in enumerate(text[:-1]) if ch in ".?" and text[i + 1] == " "][: len(rationales)]
        for k, (cut, rationale) in enumerate(zip(cuts, rationales)):
            end = cuts[k + 1] if k + 1 < len(cuts) else len(text)
            records.append(
                {"id": f"{doc_id}:{k}", "doc_id": doc_id, "source": source, "position": k,
                 "preceding": text[:cut], "rationale": rationale, "following": text[cut:end]}
            )
    return records


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def reference_delta(model, record: dict, gamma: float) -> float:
    """The method computed the plain way: two full forward passes, discount summed here."""
    without_context, with_context, scored = rationale_insertion(record["preceding"], record["rationale"], record["following"])
    (without,) = model.score_full_passes(without_context, [scored])
    (with_r,) = model.score_full_passes(with_context, [scored])
    discounted = lambda s: sum(gamma**i * lp for i, lp in enumerate(s.logprobs))  # noqa: E731
    return discounted(with_r) - discounted(without)


def test_deltas_equal_the_plain_computation_and_tau_applies_per_source(default_model, tmp_path):
    records = make_records()
    source = write_jsonl(tmp_path / "rationales.jsonl", records)
    config = FilterConfig(input=source, output=tmp_path / "out", gamma=0.9, tau=0.0, tau_by_source={"gsm8k": 1.2}, documents_per_batch=2)
    summary = filter_stage.run(config, model=default_model)
    out = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert set(out) == {r["id"] for r in records}
    for record in records:
        got = out[record["id"]]
        assert math.isclose(got["delta"], reference_delta(default_model, record, 0.9), abs_tol=1e-4)
        assert math.isclose(got["delta"], got["score_with"] - got["score_without"], abs_tol=1e-9)
        assert got["tau"] == (1.2 if record["source"] == "gsm8k" else 0.0)
        assert got["kept"] == (got["delta"] >= got["tau"])
    assert sum(summary.kept.values()) + sum(summary.dropped.values()) == len(records)
    assert summary.histogram and summary.histogram.stat().st_size > 1000
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == sum(r["kept"] for r in out.values())


def test_bad_records_are_skipped_and_counted_with_file_and_line(default_model, tmp_path):
    good = make_records()[:2]
    rows = [good[0], "{not json", {"doc_id": "x", "preceding": "a", "rationale": "b", "position": 0},
            {**good[1], "following": "   "}, [1, 2], {**good[1], "id": "other", "position": "one"}, good[1]]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with open(source, "ab") as f:
        f.write(b'{"doc_id": "\xff\xfe"}\n')
    summary = filter_stage.run(FilterConfig(input=source, output=tmp_path / "out"), model=default_model)
    assert sum(summary.kept.values()) + sum(summary.dropped.values()) == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    skipped = manifest["counts"]["skipped"]
    assert skipped["malformed JSON"] == 1 and skipped["invalid UTF-8"] == 1
    assert skipped["field 'following' missing or not a string"] == 1
    assert skipped["field 'following' is empty"] == 1
    assert skipped["record is not a JSON object"] == 1
    assert skipped["field 'position' missing or not an integer"] == 1
    lines = sorted(e["line"] for e in manifest["skipped_examples"])
    assert lines == [2, 3, 4, 5, 6, 8] and all(e["file"].endswith("in.jsonl") for e in manifest["skipped_examples"])


def test_repeated_and_non_string_ids_are_skipped_and_a_null_source_counts_as_unknown(default_model, tmp_path):
    first, second, third = make_records()[:3]
    rows = [first, first, {**second, "id": 5}, {**third, "source": None}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = filter_stage.run(FilterConfig(input=source, output=tmp_path / "out"), model=default_model)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"repeated record id": 1, "field 'id' not a non-empty string": 1}
    assert {e["reason"]: e["line"] for e in manifest["skipped_examples"]} == {
        "repeated record id": 2, "field 'id' not a non-empty string": 3,
    }
    by_source = {k: summary.kept.get(k, 0) + summary.dropped.get(k, 0) for k in set(summary.kept) | set(summary.dropped)}
    assert by_source == {"gsm8k": 1, "unknown": 1}
    assert sorted(r["id"] for r in read_records(tmp_path / "out")) == [first["id"], third["id"]]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(RationalystError, match="input not found"):
        filter_stage.run(FilterConfig(input=tmp_path / "nope.jsonl", output=tmp_path / "out"))


_CHILD = """
from rationalyst.stages import filter as f
f.run(f.FilterConfig(input=sys.argv[1], output=sys.argv[2], shard_size=1, documents_per_batch=1))
"""


def test_killed_run_resumes_to_exactly_the_uninterrupted_records(default_model, tmp_path):
    records = make_records()
    source = write_jsonl(tmp_path / "rationales.jsonl", records)
    out = tmp_path / "killed"
    kill_when(_CHILD, [str(source), str(out)], out / "shards", count=2)
    partial = list(read_records(out))
    assert 2 <= len(partial) < len(records) and not (out / "manifest.json").exists()
    filter_stage.run(FilterConfig(input=source, output=out, shard_size=1), model=default_model)
    filter_stage.run(FilterConfig(input=source, output=tmp_path / "straight"), model=default_model)
    resumed = list(read_records(out))
    straight = {r["id"]: r for r in read_records(tmp_path / "straight")}
    assert sorted(r["id"] for r in resumed) == sorted(straight)  # nothing lost, nothing twice
    for record in resumed:
        want = straight[record["id"]]
        assert {k: v for k, v in record.items() if not isinstance(v, float)} == {
            k: v for k, v in want.items() if not isinstance(v, float)
        }
        assert all(math.isclose(record[k], want[k], abs_tol=1e-4) for k in ("score_with", "score_without", "delta"))


class FailsOnWater:
    """The default model, except that scoring a request about boiling water raises ``error``."""

    def __init__(self, model, error: Exception):
        self.model, self.error = model, error

    def __getattr__(self, name):
        return getattr(self.model, name)

    def score_in_documents(self, requests):
        if any("boils" in r.document for r in requests):
            raise self.error
        return self.model.score_in_documents(requests)


def test_a_document_too_long_for_the_scorer_is_skipped_and_the_rest_scored(default_model, tmp_path):
    from rationalyst.errors import PromptTooLongError

    source = write_jsonl(tmp_path / "rationales.jsonl", make_records())
    model = FailsOnWater(default_model, PromptTooLongError("prompt of 9000 tokens is over the model's limit"))
    summary = filter_stage.run(FilterConfig(input=source, output=tmp_path / "out"), model=model)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"too long for the scorer": 2}  # wiki-1's two records
    assert sum(summary.kept.values()) + sum(summary.dropped.values()) == len(make_records()) - 2


class OverflowsOnWater(FailsOnWater):
    """The default model, except that the with-rationale scores of the boiling-water document have the
    log-probabilities ``logprobs`` (NaN or infinite: a float16 scorer overflowing)."""

    def __init__(self, model, logprobs):
        super().__init__(model, None)
        self.logprobs = logprobs

    def score_in_documents(self, requests):
        results = self.model.score_in_documents(requests)
        return [[dataclasses.replace(score, logprobs=list(self.logprobs)) if "boils" in r.document and i % 2 else score
                 for i, score in enumerate(scores)] for r, scores in zip(requests, results)]


@pytest.mark.parametrize("logprobs", [[math.nan, -1.0], [-math.inf, -1.0], [math.inf, -math.inf]], ids=["nan", "-inf", "+inf-inf"])
def test_a_record_whose_score_is_not_finite_is_skipped_and_a_rerun_reports_the_same_skips(default_model, tmp_path, logprobs):
    """NaN or infinity is no delta to keep or drop by (and not JSON): those records are skipped and counted,
    the others scored; the finished run opened again reports the skips of its manifest."""
    source = write_jsonl(tmp_path / "rationales.jsonl", make_records())
    config = FilterConfig(input=source, output=tmp_path / "out")
    summary = filter_stage.run(config, model=OverflowsOnWater(default_model, logprobs))
    assert summary.skipped == {"score not finite": 2}  # wiki-1's two records
    written = list(read_records(tmp_path / "out"))
    assert sorted(r["id"] for r in written) == sorted(r["id"] for r in make_records() if r["doc_id"] != "wiki-1")
    assert all(math.isfinite(r["delta"]) for r in written)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"score not finite": 2}
    assert {e["doc_id"] for e in manifest["skipped_examples"]} == {"wiki-1"}
    assert filter_stage.run(config, model=default_model).skipped == {"score not finite": 2}


def test_a_server_down_stops_the_filter_and_a_rerun_scores_the_rest(default_model, tmp_path):
    """A scorer that fails for any reason but a prompt too long stops the run: nothing is skipped as
    too long, the documents scored before are kept, and a rerun scores exactly the rest."""
    from rationalyst.lm.openai_compat import ServerError

    source = write_jsonl(tmp_path / "rationales.jsonl", make_records())
    out = tmp_path / "out"
    down = FailsOnWater(default_model, ServerError("cannot reach http://localhost:8000/v1 (after 4 tries)"))
    config = FilterConfig(input=source, output=out, shard_size=1, documents_per_batch=1)
    with pytest.raises(ServerError):
        filter_stage.run(config, model=down)
    assert sorted(r["id"] for r in read_records(out)) == ["gsm8k-1:0", "gsm8k-1:1", "gsm8k-1:2"]
    filter_stage.run(config, model=default_model)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["counts"].get("skipped")
    assert sorted(r["id"] for r in read_records(out)) == sorted(r["id"] for r in make_records())
