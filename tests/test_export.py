"""`rationalyst export`: both corpora against hand-built references, all three formats, bad input, kill and resume."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rationalyst.cli import app
from rationalyst.errors import RationalystError
from rationalyst.stages import export
from rationalyst.stages.export import ExportConfig
from rationalyst.stages.train import rationalist_messages
from tests.killing import kill_when

DOCS = {  # doc id -> (source, text, rationale after each of the first sentences, kept?)
    "gsm8k/1": (
        "gsm8k",
        "Natalia sold 48 clips in April. In May she sold half as many. So in May she sold 24. The answer is 72.",
        [("Half of 48 is 24.", True), ("May is the second month.", False), ("Add both months.", True)],
    ),
    "wiki/1": (
        "wiki",
        "Water boils at 100 degrees at sea level.\nOn mountains the pressure is lower. It boils sooner there.",
        [("Boiling depends on pressure.", True), ("Lower pressure, lower boiling point.", True)],
    ),
    "wiki/2": (
        "wiki",
        "The sky looks blue. Short waves scatter more. That is all.",
        [("Light scatters in air.", False)],
    ),
}
# The pre-training texts, written out by hand: a rationale goes right after its preceding text (which
# extract ends at a sentence's end), after one space; the following text keeps its own whitespace.
EXPECTED_TEXT = {
    "gsm8k/1": "Natalia sold 48 clips in April. <BOT>Half of 48 is 24.<EOT> In May she sold half as many. So in May "
    "she sold 24. <BOT>Add both months.<EOT> The answer is 72.",
    "wiki/1": "Water boils at 100 degrees at sea level. <BOT>Boiling depends on pressure.<EOT>\nOn mountains the "
    "pressure is lower. <BOT>Lower pressure, lower boiling point.<EOT> It boils sooner there.",
}
INSTRUCTION = resources.files("rationalyst").joinpath("prompts", "train", "instruction.txt").read_text("utf-8").strip()


def _cuts(text: str) -> list[int]:
    return [i + 1 for i, ch in enumerate(text[:-1]) if ch == "." and text[i + 1] in " \n"]


def filter_records() -> list[dict]:
    records = []
    for doc_id, (source, text, rationales) in DOCS.items():
        cuts = _cuts(text)
        for k, (rationale, kept) in enumerate(rationales):
            end = cuts[k + 1] if k + 1 < len(cuts) else len(text)
            records.append({
                "id": f"{doc_id}:{k}", "doc_id": doc_id, "source": source, "position": k,
                "preceding": text[: cuts[k]], "rationale": rationale, "following": text[cuts[k] : end],
                "score_without": -10.0, "score_with": -9.0 if kept else -11.0, "delta": 1.0 if kept else -1.0,
                "tau": 0.5, "kept": kept, "following_tokens": 5,
            })
    return records


def _write_run(path: Path, stage: str, config: dict, shards: list[list]) -> Path:
    (path / "shards").mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"stage": stage, "config_hash": "x", "config": config}))
    for i, rows in enumerate(shards):
        text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
        (path / "shards" / f"part-{i:05d}.jsonl").write_text(text)
    (path / "manifest.json").write_text(json.dumps({"stage": stage, "status": "complete"}))
    return path


def make_pipeline_run(root: Path, extra_records: list | None = None) -> Path:
    """A pipeline output folder as the stages leave it: select/, extract/ (config only), filter/."""
    documents = [
        {"id": doc_id, "source": source, "similarity": 0.5, "selected": True, "text": text, "meta": {}}
        for doc_id, (source, text, _) in DOCS.items()
    ]
    documents.insert(1, {"id": "wiki/0", "source": "wiki", "similarity": 0.1, "selected": False})
    select = _write_run(root / "select", "select", {"threshold": 0.3, "embedder": {"spec": "builtin:all-minilm-l6-v2"}},
                        [documents])
    extract = _write_run(root / "extract", "extract", {"input": str(select), "model": {"spec": "builtin:smollm2-135m"},
                                                       "mode": "boundary"}, [])
    records = filter_records() + list(extra_records or [])
    _write_run(root / "filter", "filter", {"input": str(extract), "scorer": {"spec": "builtin:smollm2-135m"}, "gamma": 0.9,
                                           "tau": 0.5, "tau_by_source": {}}, [records[:4], records[4:]])
    return root


def _jsonl(folder: Path) -> list[dict]:
    return [json.loads(line) for shard in sorted(folder.glob("part-*.jsonl")) for line in shard.read_text().splitlines()]


def test_both_corpora_match_hand_built_references_in_every_format(tmp_path):
    datasets = pytest.importorskip("datasets")
    run = make_pipeline_run(tmp_path / "run")
    summary = export.run(ExportConfig(input=run, output=tmp_path / "out", shard_size=2))
    out = tmp_path / "out"

    kept = [r for r in filter_records() if r["kept"]]
    sft = _jsonl(out / "sft" / "shards")
    assert [row["id"] for row in sft] == [r["id"] for r in kept]  # filter order, each once
    for row, record in zip(sft, kept):
        user = INSTRUCTION + "\n\n" + record["preceding"]
        assert row["messages"] == [{"role": "user", "content": user}, {"role": "assistant", "content": record["rationale"]}]
        assert row["messages"][:1] == rationalist_messages(record["preceding"], INSTRUCTION)  # the train stage's prompt
        assert (row["doc_id"], row["source"], row["tau"]) == (record["doc_id"], record["source"], 0.5)

    pretrain = _jsonl(out / "pretrain" / "shards")
    assert {row["id"]: row["text"] for row in pretrain} == EXPECTED_TEXT  # wiki/2 has no kept rationale
    assert [row["rationales"] for row in pretrain] == [2, 2]
    for row in pretrain:  # removing the thoughts gives the document back (up to the space before <BOT>)
        stripped = row["text"]
        while "<BOT>" in stripped:
            start, end = stripped.index("<BOT>"), stripped.index("<EOT>") + len("<EOT>")
            stripped = stripped[: start - (stripped[start - 1] == " ")] + stripped[end:]
        assert stripped == DOCS[row["id"]][1]

    for kind, rows in (("sft", sft), ("pretrain", pretrain)):
        parquet = sorted((out / kind / "parquet").glob("*.parquet"))
        assert len(parquet) == len(list((out / kind / "shards").glob("*.jsonl")))
        assert [r for f in parquet for r in pq.read_table(f).to_pylist()] == rows
        assert datasets.load_from_disk(str(out / kind / "dataset")).to_list() == rows
    assert not list(out.glob(".export-index*")) and not (out / "sft" / ".hf-cache").exists()

    assert (summary.sft_examples, summary.documents, summary.inline_rationales) == (4, 2, 4)
    card = (out / "README.md").read_text()
    assert "| gsm8k | 2 | 1 | 1 | 0.5 | unknown |" in card and "| wiki | 2 | 1 | 1 | 0.5 | unknown |" in card
    assert "builtin:smollm2-135m" in card and "license: other" in card and "sft/parquet/*.parquet" in card


def test_bad_records_are_skipped_and_counted_with_file_and_line(tmp_path):
    good = filter_records()[0]
    extra = [
        "{not json",
        {**good, "id": "gsm8k/1:9", "rationale": None},
        {**good},  # a repeated id
        {**good, "id": "gone/1:0", "doc_id": "gone/1"},  # kept, but its document is not there
        {**good, "id": "gsm8k/1:8", "preceding": "Natalia sold 49 clips in April."},  # not the document's text
        {**good, "id": "gsm8k/1:7", "delta": "0.8"},  # a float64 column of the Parquet copy
        {**good, "id": "gsm8k/1:6", "tau": True},
    ]
    run = make_pipeline_run(tmp_path / "run", extra)
    summary = export.run(ExportConfig(input=run / "filter", output=tmp_path / "out", licenses={"gsm8k": "MIT"}))
    shard = str(run / "filter" / "shards" / "part-00001.jsonl")
    first = 1 + len(filter_records()) - 4  # the first extra line in the second shard
    sft_manifest = json.loads((tmp_path / "out" / "sft" / "manifest.json").read_text())
    assert sft_manifest["counts"]["skipped"] == {
        "malformed JSON": 1, "field 'rationale' missing or not a string": 1, "duplicate id": 1,
        "field 'delta' not a number": 1, "field 'tau' not a number": 1,
    }
    assert [(e["file"], e["line"]) for e in sft_manifest["skipped_examples"]] == [
        (shard, first), (shard, first + 1), (shard, first + 2), (shard, first + 5), (shard, first + 6),
    ]
    pre_manifest = json.loads((tmp_path / "out" / "pretrain" / "manifest.json").read_text())
    examples = {e["reason"]: (e["file"], e["line"]) for e in pre_manifest["skipped_examples"]}
    assert examples == {
        "rationale's preceding/following text is not its document's": (shard, first + 4),
        "kept rationale whose document is not among the documents": (shard, first + 3),
    }
    # Both kept extras are fine SFT examples; neither reaches the pre-training text.
    assert summary.sft_examples == 6
    assert {r["id"]: r["text"] for r in _jsonl(tmp_path / "out" / "pretrain" / "shards")} == EXPECTED_TEXT
    assert "| gsm8k | 4 | 1 | 1 | 0.5 | MIT |" in (tmp_path / "out" / "README.md").read_text()


def test_markers_and_plain_documents_are_options(tmp_path):
    run = make_pipeline_run(tmp_path / "run")
    config = ExportConfig(input=run, output=tmp_path / "out", bot="<thought>", eot="</thought>", all_documents=True)
    export.run(config)
    texts = {r["id"]: r["text"] for r in _jsonl(tmp_path / "out" / "pretrain" / "shards")}
    assert texts["wiki/2"] == DOCS["wiki/2"][1]
    assert texts["gsm8k/1"] == EXPECTED_TEXT["gsm8k/1"].replace("<BOT>", "<thought>").replace("<EOT>", "</thought>")
    # No space is added where the text before the rationale already ends in whitespace.
    assert export.inline_document("One.\nTwo.", [(5, " Why. ")], "<b>", "</b>") == "One.\n<b>Why.</b>Two."
    with pytest.raises(RationalystError, match="config changed"):
        export.run(config.model_copy(update={"bot": "[["}))


def test_missing_documents_are_a_clear_error(tmp_path):
    records = tmp_path / "filter.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in filter_records()))
    with pytest.raises(RationalystError, match="--documents"):
        export.run(ExportConfig(input=records, output=tmp_path / "out"))
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": k, "source": s, "text": t}) + "\n" for k, (s, t, _) in DOCS.items()))
    export.run(ExportConfig(input=records, output=tmp_path / "out", documents=docs))
    assert {r["id"]: r["text"] for r in _jsonl(tmp_path / "out" / "pretrain" / "shards")} == EXPECTED_TEXT


def test_an_export_with_no_usable_rationale_writes_empty_datasets(tmp_path):
    """Every record skipped (here a text delta): the corpora, Parquet copies and datasets are empty, not
    a crash on an empty table at the end of each rerun."""
    import datasets

    records = tmp_path / "filter.jsonl"
    records.write_text("".join(json.dumps({**r, "delta": "0.8"}) + "\n" for r in filter_records()))
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": k, "source": s, "text": t}) + "\n" for k, (s, t, _) in DOCS.items()))
    summary = export.run(ExportConfig(input=records, output=tmp_path / "out", documents=docs))
    assert summary.sft_examples == 0
    sft = datasets.load_from_disk(str(tmp_path / "out" / "sft" / "dataset"))
    assert sft.num_rows == 0 and set(sft.features) == {"id", "doc_id", "source", "delta", "tau", "messages"}


_CHILD = """
import sys, time
from pathlib import Path
from rationalyst.stages import export
_flush = export.JsonlShards.flush
def slow_flush(self):
    _flush(self)
    time.sleep(0.4)
export.JsonlShards.flush = slow_flush
export.run(export.ExportConfig(input=Path(sys.argv[1]), output=Path(sys.argv[2]), shard_size=1))
"""


@pytest.mark.parametrize("kind, count, total", [("sft", 2, 4), ("pretrain", 1, 2)])
def test_a_killed_export_resumes_with_nothing_lost_or_twice(tmp_path, kind, count, total):
    run = make_pipeline_run(tmp_path / "run")
    out = tmp_path / "killed"
    kill_when(_CHILD, [str(run), str(out)], out / kind / "shards", count=count)
    assert count <= len(_jsonl(out / kind / "shards")) < total and not (out / kind / "manifest.json").exists()
    export.run(ExportConfig(input=run, output=out, shard_size=1))
    export.run(ExportConfig(input=run, output=tmp_path / "straight", shard_size=1))
    for kind in ("sft", "pretrain"):
        assert _jsonl(out / kind / "shards") == _jsonl(tmp_path / "straight" / kind / "shards")
        got = [r for f in sorted((out / kind / "parquet").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
        assert got == _jsonl(out / kind / "shards")
    assert not list(out.glob(".export-index*"))


def test_cli_export_prints_counts(tmp_path):
    run = make_pipeline_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["export", "--input", str(run), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "4 SFT examples, 2 documents with 4 inline rationales" in result.output
    assert (tmp_path / "out" / "README.md").exists()
