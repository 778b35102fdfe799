"""Stage 2 (extract): rewrite parsing, boundary splitting, position mapping, runs, resume, counts."""

from __future__ import annotations

import errno
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from rationalyst import runs
from rationalyst.errors import PromptTooLongError
from rationalyst.lm import Completion, LanguageModel
from rationalyst.lm.openai_compat import ServerError
from rationalyst.runs import read_records, shard_paths
from rationalyst.stages import extract
from rationalyst.stages.extract import (
    KINDS,
    DocResult,
    Document,
    ExtractConfig,
    load_prompts,
    rewrite_document,
)
from rationalyst.data import extraction_text
from rationalyst.data.extraction_text import map_offsets, parse_rewrite, split_boundaries, spread

FIXTURE = Path(__file__).parent / "fixtures" / "extract" / "documents.jsonl"
FIXTURE_DOCS = {d["id"]: d for d in map(json.loads, FIXTURE.read_text().splitlines())}


class FakeModel(LanguageModel):
    """Answers every prompt with ``reply(prompt_index, prompt)``; records the prompts it saw."""

    name = "fake"

    def __init__(self, reply, finish="stop"):
        self.reply, self.finish, self.prompts, self.calls = reply, finish, [], 0

    def generate(self, prompts, params):
        self.calls += 1
        out = []
        for prompt in prompts:
            self.prompts.append(prompt)
            text = self.reply(len(self.prompts) - 1, prompt)
            out.append([Completion(text, list(range(len(text.split()))), [0.0] * len(text.split()), self.finish)])
        return out

    def score_many(self, requests):
        raise NotImplementedError


class NoModel(FakeModel):
    def __init__(self):
        super().__init__(None)

    def generate(self, prompts, params):
        raise AssertionError("the model must not be called")


def config(tmp_path: Path, **kw) -> ExtractConfig:
    base = dict(input=FIXTURE, output=tmp_path / "out", min_preceding_chars=20, max_new_tokens=24)
    return ExtractConfig(**{**base, **kw})


def check_invariants(records: list[dict], texts: dict[str, str]) -> None:
    assert len({r["id"] for r in records}) == len(records)
    by_doc: dict[str, list[dict]] = {}
    for r in records:
        assert set(r) == {"id", "doc_id", "source", "preceding", "rationale", "following", "position"}
        assert r["id"] == f"{r['doc_id']}:{r['position']}"
        assert texts[r["doc_id"]].startswith(r["preceding"] + r["following"])
        assert r["preceding"].strip() and r["following"].strip() and r["rationale"].strip()
        assert "<BOT>" not in r["rationale"].upper() and "<EOT>" not in r["rationale"].upper()
        assert "\n" not in r["rationale"]
        by_doc.setdefault(r["doc_id"], []).append(r)
    for doc_id, recs in by_doc.items():
        assert [r["position"] for r in recs] == list(range(len(recs)))
        offsets = [len(r["preceding"]) for r in recs]
        assert offsets == sorted(set(offsets))
        for a, b in zip(recs, recs[1:]):  # each following runs exactly to the next insertion point
            assert a["preceding"] + a["following"] == b["preceding"]
        last = recs[-1]
        assert last["preceding"] + last["following"] == texts[doc_id]


def check_counts(counts: dict) -> None:
    assert counts["rationales"] + counts["rationales_dropped_total"] == counts["candidates"]
    assert counts["records"] == counts["rationales"] == sum(s["rationales"] for s in counts["per_source"].values())
    assert sum(counts["documents_by_status"].values()) == counts["documents_extracted"]


# ============================================================================ rewrite parsing


def test_parse_balanced_markers():
    parsed = parse_rewrite(
        "Tom has 3 cats. <BOT>Each cat eats 2 cans.<EOT> He buys 6 cans. <BOT> So  he\nhas enough.<EOT> Done."
    )
    assert parsed.stripped == "Tom has 3 cats. He buys 6 cans. Done."
    assert parsed.rationales == [(15, "Each cat eats 2 cans."), (31, "So he has enough.")]
    assert not parsed.dropped


def test_parse_missing_eot_loses_only_its_line():
    parsed = parse_rewrite("A is 1. <BOT>never closed\nB is 2. <BOT>fine<EOT> C is 3. <BOT>open at the end")
    assert parsed.stripped == "A is 1.\nB is 2. C is 3."
    assert parsed.rationales == [(15, "fine")]
    assert parsed.dropped == {"unclosed_marker": 2}


def test_parse_nested_and_duplicate_markers():
    nested = parse_rewrite("A. <BOT>outer <BOT>inner<EOT> tail<EOT> B.")
    assert nested.stripped == "A. B." and nested.rationales == [] and nested.dropped == {"nested_markers": 2}
    duplicate_open = parse_rewrite("A. <BOT><BOT>reason<EOT> B.")
    assert duplicate_open.stripped == "A. B." and duplicate_open.rationales == [(2, "reason")]
    assert duplicate_open.dropped == {"unclosed_marker": 1}
    duplicate_close = parse_rewrite("A. <BOT>reason<EOT><EOT> B. stray<EOT>")
    assert duplicate_close.rationales == [(3, "reason")] and duplicate_close.dropped == {"stray_marker": 2}
    assert duplicate_close.stripped.split() == ["A.", "B.", "stray"]


def test_parse_empty_rationale_and_marker_variants():
    parsed = parse_rewrite("A. <BOT>   <EOT> B. <bot>lower case</BOT> C.")
    assert parsed.stripped == "A. B. C." and parsed.rationales == [(5, "lower case")]
    assert parsed.dropped == {"empty": 1}
    plain = parse_rewrite("no markers at all")
    assert (plain.stripped, plain.rationales, plain.dropped) == ("no markers at all", [], {})


def _doc(text: str, source: str = "gsm8k") -> Document:
    return Document("d", text, source, "math")


DOC = "Tom has 3 cats. Each cat eats 2 cans a day. So he needs 6 cans a day. He buys 10 cans."


def test_fidelity_pass_and_position_mapping(tmp_path):
    # The model doubled a space, dropped the final period and added a word: still faithful.
    output = (
        "Tom has 3 cats.  <BOT>The cans depend on the number of cats.<EOT> Each cat eats 2 cans a day. "
        "So he needs 6 cans a day.<BOT>Compare the need with what he buys.<EOT> He buys 10 new cans"
    )
    result = DocResult(_doc(DOC))
    rewrite_document(result, output, config(tmp_path))
    assert result.status == "ok" and result.fidelity >= 0.9
    assert [offset for offset, _ in result.kept] == [DOC.index(" Each"), DOC.index(" He buys")]
    records = result.records()
    check_invariants(records, {"d": DOC})
    assert records[0]["preceding"] == "Tom has 3 cats."
    assert records[0]["following"] == " Each cat eats 2 cans a day. So he needs 6 cans a day."
    assert records[1]["following"] == " He buys 10 cans."


def test_fidelity_fail_drops_the_document(tmp_path):
    output = "Tom owns cats. <BOT>Cats eat.<EOT> They eat a lot of food every day. <BOT>More cats, more food.<EOT>"
    result = DocResult(_doc(DOC))
    rewrite_document(result, output, config(tmp_path))
    assert result.status == "fidelity_failed" and result.fidelity < 0.9
    assert result.kept == [] and result.dropped == {"fidelity": 2}
    strict = DocResult(_doc(DOC))
    rewrite_document(strict, DOC.replace("10", "12") + " <BOT>x<EOT>", config(tmp_path, fidelity_threshold=1.0))
    assert strict.status == "fidelity_failed"


def test_unmappable_and_edge_rationales(tmp_path):
    # A rationale inside text the model replaced has no place in the original; one at the very
    # start or end has nothing before or after it.
    output = (
        "<BOT>start<EOT>Tom has 3 cats. Each cat eats 2 t<BOT>mid<EOT>ins a day. "
        "So he needs 6 cans a day. He buys 10 cans.<BOT>end<EOT>"
    )
    result = DocResult(_doc(DOC))
    rewrite_document(result, output, config(tmp_path))
    assert result.fidelity >= 0.9 and result.kept == []
    assert result.dropped == {"unmappable": 1, "at_document_edge": 2}


def test_map_offsets_rules():
    assert map_offsets("abc def", "abc def", [0, 3, 7]) == [0, 3, 7]
    assert map_offsets("abc XY def", "abc def", [4, 5, 7]) == [4, 4, 4]  # inside added text: its place
    assert map_offsets("abc XY def", "abc QR def", [4, 5, 6]) == [4, None, 6]  # inside replaced text: none
    assert map_offsets("abc def", "abc QR def", [3, 4]) == [3, None]  # where the model dropped text: none


def test_a_rationale_where_the_model_dropped_closing_punctuation_goes_after_it(tmp_path):
    """The model turned a sentence's final punctuation into the space before its rationale, or deleted
    it: the rationale still belongs after that punctuation, so ``following`` never starts with it."""
    doc = "We count the apples?\nIt is five."
    for output in (
        "We count the apples <BOT>We need the total.<EOT> \nIt is five.",  # "?" replaced by a space
        "We count the apples <BOT>We need the total.<EOT>\nIt is five.",  # "?" deleted
    ):
        result = DocResult(_doc(doc))
        rewrite_document(result, output, config(tmp_path))
        assert result.kept == [(20, "We need the total.")]  # 20 = len("We count the apples?")
        (record,) = result.records()
        assert (record["preceding"], record["following"]) == ("We count the apples?", "\nIt is five.")
    period = DocResult(_doc(DOC))
    rewrite_document(period, DOC.replace("cats. Each", "cats <BOT>Cans per cat.<EOT> Each"), config(tmp_path))
    assert period.kept == [(15, "Cans per cat.")]  # 15 = len("Tom has 3 cats.")
    assert map_offsets("ab c", "ab? c", [2]) == [3]  # deleted
    assert map_offsets("ab  c", "ab?) c", [2]) == [4]  # "?)" replaced by a space
    assert map_offsets("ab c", "ab (c", [3]) == [None]  # an opening bracket belongs to what follows: no place


def test_difflib_fallback_maps_the_same(monkeypatch, tmp_path):
    output = DOC.replace("cats. Each", "cats. <BOT>Cans per cat.<EOT> Each")
    with_rapidfuzz = DocResult(_doc(DOC))
    rewrite_document(with_rapidfuzz, output, config(tmp_path))
    monkeypatch.setattr(extraction_text, "_Indel", None)
    fallback = DocResult(_doc(DOC))
    rewrite_document(fallback, output, config(tmp_path))
    assert fallback.kept == with_rapidfuzz.kept == [(15, "Cans per cat.")]
    assert fallback.fidelity == 1.0


def test_copies_of_the_text_are_dropped(tmp_path):
    output = (
        "Tom has 3 cats. <BOT>Each cat eats 2 cans a day.<EOT> Each cat eats 2 cans a day. "
        "<BOT>Each cat eats 2 cans a day.<EOT> So he needs 6 cans a day. He buys 10 cans."
    )
    result = DocResult(_doc(DOC))
    rewrite_document(result, output, config(tmp_path))
    assert result.dropped == {"copies_following": 1, "copies_preceding": 1}
    kept = DocResult(_doc(DOC))
    rewrite_document(kept, output, config(tmp_path, drop_copies=False))
    assert len(kept.kept) == 2


# ============================================================================ boundary splitting


def _pieces(text: str, points: list[int]) -> list[str]:
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


def test_split_sentences_not_decimals():
    text = "It costs 3.5 dollars. Then he left! Did he pay? Yes.  The end."
    assert _pieces(text, split_boundaries(text)) == [
        "It costs 3.5 dollars.", " Then he left!", " Did he pay?", " Yes.", "  The end."
    ]


def test_split_newlines_lists_abbreviations_quotes():
    text = 'Steps:\n1. Add 2 and 3.\n2. Double it, e.g. 5 * 2 = 10.\nHe said "done." Then he left\n\n  x = 4'
    assert _pieces(text, split_boundaries(text)) == [
        "Steps:",
        "\n1. Add 2 and 3.",
        "\n2. Double it, e.g. 5 * 2 = 10.",
        '\nHe said "done."',
        " Then he left",
        "\n\n  x = 4",
    ]


def test_split_code_lines_and_min_preceding_chars():
    code = "def f(x):\n    y = x + 1\n    return y\n"
    assert split_boundaries(code) == [9, 23]  # line ends; none at the trailing newline
    text = "Short. A longer second sentence here. Third one."
    assert split_boundaries(text) == [6, 37]
    assert split_boundaries(text, min_preceding_chars=7) == [37]
    assert split_boundaries(text, min_preceding_chars=100) == []
    assert split_boundaries("One sentence only.") == []


def test_spread_keeps_first_and_last():
    assert spread([1, 2, 3], 5) == [1, 2, 3]
    assert spread(list(range(10)), 3) == [0, 4, 9]
    assert spread(list(range(10)), 1) == [5]


# ============================================================================ prompts and kinds


def test_prompt_files_load_for_every_kind():
    for kind in KINDS:
        prompts = load_prompts(kind)
        assert len(prompts.demos) >= 2
        messages = prompts.boundary_messages("Some text {with braces}.", num_demos=2)
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert messages[-1]["content"].endswith("Some text {with braces}.")
        assert all("<BOT>" not in m["content"] for m in messages)
        rewrite = prompts.rewrite_messages("Doc.", num_demos=1)
        assert "<BOT>" in rewrite[2]["content"] and "<BOT>" not in rewrite[1]["content"]


def test_kind_for_source():
    c = ExtractConfig(input="x", output="y")
    assert c.kind_for("gsm8k") == "math"
    assert c.kind_for("PyPI mathematics_dataset==1.0.1") == "math"
    assert c.kind_for("dixrow/Autonomous-learning-agents@ab3897b4:data/cqa_data_val.csv") == "multiple_choice"
    assert c.kind_for("pile/Github") == "code"
    assert c.kind_for("pytorch/examples@77f55b91:wikitext-2/test.txt") == "web"
    assert ExtractConfig(input="x", output="y", source_kinds={"wiki": "code"}).kind_for("wikitext") == "code"


# ============================================================================ runs with a scripted model


def test_bad_inputs_are_skipped_and_counted(tmp_path):
    data = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "First sentence is here. Second sentence is here.", "source": "web"}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"text": "no id. At all here."}),
        json.dumps({"id": "b", "text": "   \n "}),
        json.dumps({"id": "a", "text": "Repeated id. Repeated id again."}),
        json.dumps({"id": 7, "text": "Integer ids work fine. And it has two sentences.", "source": "gsm8k"}),
    ]
    data.write_text("\n".join(lines) + "\n")
    model = FakeModel(lambda i, p: f"Reason number {i}.")
    counts = extract.run(config(tmp_path, input=data, batch_size=4), model=model)
    assert counts["skipped"] == {
        "malformed JSON": 1, "record is not a JSON object": 1, "missing or invalid id": 1,
        "empty text": 1, "repeated document id": 1,
    }
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {"reason": "malformed JSON", "file": str(data), "line": 2} in manifest["skipped_examples"]
    assert counts["documents_read"] == 2 and counts["rationales"] == 2 and model.calls == 1
    assert [r["id"] for r in read_records(tmp_path / "out")] == ["a:0", "7:0"]
    check_counts(counts)


def test_a_document_budget_extracts_a_seeded_sample_that_grows_by_superset(tmp_path):
    import hashlib

    data = tmp_path / "docs.jsonl"
    ids = [f"doc-{i}" for i in range(30)]
    rows = [{"id": d, "text": f"{d} starts here, with a first sentence. Then it ends.", "source": "web"} for d in ids]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def expected(size, seed):  # the lowest sha256("seed\0id") values, computed without the stage's code
        rank = {d: hashlib.sha256(f"{seed}\x00{d}".encode()).hexdigest()[:16] for d in ids}
        return sorted(ids, key=rank.__getitem__)[:size]

    extracted = {}
    for size, seed in [(5, 0), (12, 0), (5, 1)]:
        model = FakeModel(lambda i, p: "A reason.")
        out = tmp_path / f"out-{size}-{seed}"
        counts = extract.run(config(tmp_path, input=data, output=out, sample_documents=size, sample_seed=seed),
                             model=model)
        extracted[size, seed] = [r["doc_id"] for r in read_records(out)]
        assert extracted[size, seed] == expected(size, seed)
        assert counts["documents_read"] == counts["documents_extracted"] == size
    assert set(extracted[5, 0]) < set(extracted[12, 0]) and extracted[5, 0] != extracted[5, 1]


def test_long_preceding_is_truncated_for_the_prompt(tmp_path):
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"id": "long", "text": text, "source": "web"}) + "\n")
    model = FakeModel(lambda i, p: "A reason.")
    counts = extract.run(config(tmp_path, input=data, max_preceding_chars=200, max_rationales_per_doc=3), model=model)
    assert counts["prompts_truncated"] == 2  # the first point has under 200 characters before it
    last_prompt = model.prompts[-1][-1]["content"]
    assert last_prompt.startswith("… ") and len(last_prompt) <= 203
    records = list(read_records(tmp_path / "out"))
    assert len(records[-1]["preceding"]) > 1000  # the record keeps the whole preceding text
    assert counts["rationales"] == 3 and counts["rationales_dropped"] == {}


def test_unfinished_and_empty_generations_are_dropped(tmp_path):
    cut_model = FakeModel(lambda i, p: "A reason that", "length")
    cut = extract.run(config(tmp_path, output=tmp_path / "cut"), model=cut_model)
    assert cut["rationales"] == 0 and cut["rationales_dropped"] == {"unfinished": cut["candidates"]}
    assert cut["generations_cut_by_length"] == cut["candidates"] > 0
    empty = extract.run(config(tmp_path, output=tmp_path / "empty"), model=FakeModel(lambda i, p: " <EOT>"))
    assert empty["rationales"] == 0 and empty["rationales_dropped"] == {"empty": empty["candidates"]}
    check_counts(cut), check_counts(empty)


def test_rewrite_mode_run_with_scripted_model(tmp_path):
    def reply(i, messages):
        document = messages[-1]["content"]
        first = split_boundaries(document)[0]
        return document[:first] + " <BOT>A scripted reason.<EOT>" + document[first:]

    counts = extract.run(config(tmp_path, mode="rewrite"), model=FakeModel(reply))
    records = list(read_records(tmp_path / "out"))
    check_invariants(records, {k: d["text"] for k, d in FIXTURE_DOCS.items()})
    assert counts["rationales"] == 3 and counts["documents_by_status"] == {"ok": 3}
    check_counts(counts)
    summaries = {s["id"]: s for s in read_records(tmp_path / "out" / "documents")}
    assert {s["fidelity"] for s in summaries.values()} == {1.0}


class BudgetedRewriter(LanguageModel):
    """Copies a document with a 12-word rationale after every sentence and stops at its token budget
    (a word a token), as a real model stops at max_new_tokens: what it returns depends on the budget."""

    name = "budgeted"

    def __init__(self):
        self.budgets: dict[str, int] = {}  # document → the budget its prompt got

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            document = prompt[-1]["content"]
            self.budgets[document] = params.max_new_tokens
            text = document.replace(". ", ". <BOT>This step follows from the one before it, so we go on.<EOT> ")
            word_ends = [m.end() for m in re.finditer(r"\S+", text)]
            cut = len(word_ends) > params.max_new_tokens
            text = text[: word_ends[params.max_new_tokens - 1]] if cut else text
            n = min(len(word_ends), params.max_new_tokens)
            out.append([Completion(text, list(range(n)), [0.0] * n, "length" if cut else "stop")])
        return out

    def score_many(self, requests):
        raise NotImplementedError


def test_a_rewrite_budget_does_not_depend_on_the_batch(tmp_path):
    """Each document's token budget is its own (chars / 2 + max_rationales_per_doc * max_new_tokens):
    extracting at batch_size 1 or 2 gives the same records and summaries."""
    short = "Tom has 3 apples. He buys 2 more. Now he has 5 apples. The answer is 5."  # 71 chars
    long = " ".join(f"Step {i:02d} adds one more item to the pile." for i in range(15))  # 15 * 40 - 1 chars
    data = tmp_path / "docs.jsonl"
    documents = {"short": short, "long": long}
    data.write_text("".join(json.dumps({"id": k, "text": t, "source": "gsm8k"}) + "\n" for k, t in documents.items()))
    outputs = {}
    for batch_size in (1, 2):
        model = BudgetedRewriter()
        cfg = config(tmp_path, input=data, output=tmp_path / f"bs{batch_size}", mode="rewrite", batch_size=batch_size,
                     max_new_tokens=4, max_rationales_per_doc=2)
        extract.run(cfg, model=model)
        # short: 43 tokens, too few for its 16 words and 3 rationales of 12 words; long: 307, enough for 303.
        assert model.budgets == {short: 71 // 2 + 2 * 4, long: 599 // 2 + 2 * 4}
        summaries = sorted(read_records(cfg.output / "documents"), key=lambda s: s["id"])
        outputs[batch_size] = list(read_records(cfg.output)), summaries
    assert outputs[1] == outputs[2]
    records, summaries = outputs[1]
    assert {r["doc_id"] for r in records} == {"long"}
    assert [(s["id"], s["status"], s["cut_by_length"]) for s in summaries] == [
        ("long", "ok", 0), ("short", "fidelity_failed", 1)
    ]


class SeedPerRow(LanguageModel):
    """Samples row i of a call with ``seed + i``, as the engines do: its rationale names the seed it got."""

    name = "seed-per-row"

    def generate(self, prompts, params):
        assert params.temperature > 0 and params.seed is not None
        texts = [f"Because draw {params.seed + i} says so." for i in range(len(prompts))]
        return [[Completion(t, [0] * 5, [0.0] * 5, "stop")] for t in texts]

    def score_many(self, requests):
        raise NotImplementedError


def test_a_sampled_prompt_draws_alike_in_any_batch(tmp_path):
    """Sampled extraction: each prompt's seed is its own (the config's seed, the document, the point), so
    batch_size 1 and 3 write the same rationales, and no two prompts share a draw (rewrite mode seeds
    each document the same way)."""
    runs = []
    for batch_size in (1, 3):
        cfg = config(tmp_path, output=tmp_path / f"bs{batch_size}", batch_size=batch_size, temperature=0.7, seed=5)
        extract.run(cfg, model=SeedPerRow())
        runs.append(sorted((r["id"], r["rationale"]) for r in read_records(cfg.output)))
    assert runs[0] == runs[1] and len(runs[0]) >= 4
    assert len({rationale for _, rationale in runs[0]}) == len(runs[0])


def test_complete_run_is_not_redone_and_config_change_is_refused(tmp_path):
    first = extract.run(config(tmp_path), model=FakeModel(lambda i, p: "Some reason."))
    again = extract.run(config(tmp_path), model=NoModel())
    assert again == first
    with pytest.raises(extract.RationalystError, match="config changed"):
        extract.run(config(tmp_path, max_rationales_per_doc=1), model=NoModel())
    other = FakeModel(lambda i, p: "Other.")
    redone = extract.run(config(tmp_path, max_rationales_per_doc=1, overwrite=True), model=other)
    assert redone["rationales"] == 3


def test_an_edited_prompt_file_is_refused_on_resume(tmp_path):
    """The config names the prompts by their folder: an edit of a file (its digest is kept at the start)
    is a change of the run, as a config change is; an unchanged folder resumes, --overwrite starts over."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    packaged = Path(extract.__file__).parent.parent / "prompts" / "extract"
    for kind in extract.KINDS:
        (prompts / f"{kind}.yaml").write_text((packaged / f"{kind}.yaml").read_text())
    first = extract.run(config(tmp_path, prompts_dir=prompts), model=FakeModel(lambda i, p: "Some reason."))
    assert extract.run(config(tmp_path, prompts_dir=prompts), model=NoModel()) == first
    web = prompts / "web.yaml"
    web.write_text(web.read_text() + "\n# edited\n")
    with pytest.raises(extract.RationalystError, match="the extraction prompt web.yaml changed since the run"):
        extract.run(config(tmp_path, prompts_dir=prompts), model=NoModel())
    redone = extract.run(config(tmp_path, prompts_dir=prompts, overwrite=True), model=FakeModel(lambda i, p: "Other."))
    assert redone["rationales"] == first["rationales"]
    assert {r["rationale"] for r in read_records(tmp_path / "out")} == {"Other."}


class FailsOn(FakeModel):
    """Raises ``error`` for any prompt holding ``marker``; answers the others."""

    def __init__(self, marker: str, error: Exception):
        super().__init__(lambda i, p: "Some reason.")
        self.marker, self.error = marker, error

    def generate(self, prompts, params):
        if any(self.marker in json.dumps(p) for p in prompts):
            raise self.error
        return super().generate(prompts, params)


def test_a_document_over_the_context_is_marked_and_the_rest_go_on(tmp_path):
    marker = FIXTURE_DOCS["web-1"]["text"][:30]
    model = FailsOn(marker, PromptTooLongError("prompt of 9000 tokens is over n_ctx=4096"))
    counts = extract.run(config(tmp_path, batch_size=3), model=model)
    summaries = {d["id"]: d["status"] for d in read_records(tmp_path / "out" / extract.DOCUMENTS_DIR)}
    assert summaries["web-1"] == "too_long_for_model"
    assert {summaries["gsm-1"], summaries["code-1"]} == {"ok"}
    assert counts["documents_by_status"]["too_long_for_model"] == 1


@pytest.mark.parametrize("scheme, window", [("", "max_model_len"), ("llamacpp:", "n_ctx")])
def test_a_document_refused_as_too_long_is_tried_again_once_the_window_is_raised(tmp_path, scheme, window):
    """Refused under the default window: a rerun with the same config has nothing to do (the model is
    not called); with vllm's max_model_len or llama.cpp's n_ctx raised (not in the config hash, so the
    run resumes) only that document is extracted again, and the counts hold it as extracted, once."""
    marker = FIXTURE_DOCS["web-1"]["text"][:30]
    spec = scheme + config(tmp_path).model.spec
    refused = FailsOn(marker, PromptTooLongError(f"prompt of 9000 tokens is over {window}=4096"))
    first = extract.run(config(tmp_path, batch_size=3, model={"spec": spec}), model=refused)
    assert first["documents_by_status"]["too_long_for_model"] == 1
    assert extract.run(config(tmp_path, batch_size=3, model={"spec": spec}), model=NoModel()) == first
    before = list(read_records(tmp_path / "out"))
    others = FailsOn(FIXTURE_DOCS["gsm-1"]["text"][:30], AssertionError("only web-1 is tried again"))
    raised = config(tmp_path, batch_size=3, model={"spec": spec, window: 16384})
    counts = extract.run(raised, model=others)
    summaries = list(read_records(tmp_path / "out" / extract.DOCUMENTS_DIR))
    assert sorted(d["id"] for d in summaries) == sorted(FIXTURE_DOCS)  # each document once
    assert {d["id"]: d["status"] for d in summaries}["web-1"] == "ok"
    assert "too_long_for_model" not in counts["documents_by_status"]
    after = list(read_records(tmp_path / "out"))
    assert after[: len(before)] == before and {r["doc_id"] for r in after[len(before):]} == {"web-1"}
    assert counts["rationales"] == len(after)
    # Refused again in that window: a rerun with it does not try again.
    assert extract.run(raised, model=NoModel()) == counts


def test_a_server_down_stops_the_run_and_a_rerun_finishes_what_is_left(tmp_path):
    """Only a prompt too long is the document's fault: any other model error (a server down, a missing
    model) stops the run, no document is marked, and a rerun extracts the rest."""
    reference = extract.run(config(tmp_path / "ref", batch_size=1), model=FakeModel(lambda i, p: "Some reason."))
    marker = FIXTURE_DOCS["web-1"]["text"][:30]
    down = FailsOn(marker, ServerError("cannot reach http://localhost:8000/v1/completions (after 4 tries)"))
    with pytest.raises(ServerError):
        extract.run(config(tmp_path, batch_size=1), model=down)
    written = {d["id"] for d in read_records(tmp_path / "out" / extract.DOCUMENTS_DIR)}
    assert written == {"gsm-1"}  # the document before the outage is kept; the one it hit is not marked
    counts = extract.run(config(tmp_path, batch_size=1), model=FakeModel(lambda i, p: "Some reason."))
    assert counts["documents_by_status"] == reference["documents_by_status"] == {"ok": 3}
    assert counts["rationales"] == reference["rationales"]
    ref_records = sorted(r["id"] for r in read_records(tmp_path / "ref" / "out"))
    assert sorted(r["id"] for r in read_records(tmp_path / "out")) == ref_records


@pytest.mark.parametrize(
    "shard_size, failing",  # failing: which rationale shard writes of the first session fail (0 = the first)
    [(500, range(1)), (1, range(1, 10**6)), (1, range(10**6))],
    ids=["the-only-write-fails-once", "the-writes-fail-from-the-second-on", "every-write-fails"],
)
def test_a_failed_rationale_write_loses_and_repeats_no_rationale(tmp_path, monkeypatch, shard_size, failing):
    """A rationale shard that cannot be written (disk full) must not leave its documents counted done:
    after a resume on a working disk, every document's rationales are on disk exactly once."""
    cfg = config(tmp_path, shard_size=shard_size)
    real_write, attempts = runs.atomic_write, []

    def disk_full_for_rationales(path, data):  # the summaries' shards (documents/shards) are written fine
        if path.parent == cfg.output / "shards":
            attempts.append(path)
            if len(attempts) - 1 in failing:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(runs, "atomic_write", disk_full_for_rationales)
    with pytest.raises(extract.RationalystError, match="No space left"):
        extract.run(cfg, model=FakeModel(lambda i, p: "Some reason."))
    monkeypatch.setattr(runs, "atomic_write", real_write)
    counts = extract.run(cfg, model=FakeModel(lambda i, p: "Some reason."))

    # The model answers every insertion point with a keepable rationale: one record per point.
    points = {k: spread(split_boundaries(d["text"], cfg.min_preceding_chars), cfg.max_rationales_per_doc)
              for k, d in FIXTURE_DOCS.items()}
    expected = Counter(f"{k}:{n}" for k, p in points.items() for n in range(len(p)))
    records = list(read_records(cfg.output))
    assert Counter(r["id"] for r in records) == expected and len(expected) > len(FIXTURE_DOCS)
    check_invariants(records, {k: d["text"] for k, d in FIXTURE_DOCS.items()})
    check_counts(counts)
    assert counts["documents_extracted"] == len(FIXTURE_DOCS)


def test_bad_prompts_dir_stops_the_run_instead_of_failing_every_document(tmp_path):
    with pytest.raises(extract.RationalystError, match="missing"):
        extract.run(config(tmp_path, prompts_dir=tmp_path / "missing"), model=FakeModel(lambda i, p: "x"))
    assert not list(read_records(tmp_path / "out" / extract.DOCUMENTS_DIR))


# ============================================================================ the real default model


@pytest.fixture(scope="module")
def boundary_run(default_model, tmp_path_factory):
    """One uninterrupted boundary run on the fixture: 2 documents per generate call, a shard per batch."""
    tmp = tmp_path_factory.mktemp("extract")
    cfg = config(tmp, batch_size=2, max_rationales_per_doc=2, shard_size=1)
    counts = extract.run(cfg, model=default_model)
    return cfg, counts, list(read_records(cfg.output))


def test_boundary_mode_on_the_default_model(boundary_run):
    cfg, counts, records = boundary_run
    check_invariants(records, {k: d["text"] for k, d in FIXTURE_DOCS.items()})
    check_counts(counts)
    assert counts["documents_extracted"] == counts["documents_read"] == 3
    assert counts["candidates"] == 6  # 2 insertion points in each document
    assert counts["generated_tokens"] > 0
    summaries = list(read_records(cfg.output / "documents"))
    assert sorted(s["id"] for s in summaries) == sorted(FIXTURE_DOCS)


def test_resume_after_interruption_gives_identical_records(boundary_run, default_model, tmp_path):
    cfg, counts, records = boundary_run
    resumed = tmp_path / "resumed"
    shutil.copytree(cfg.output, resumed)
    # Simulate a kill before the last batch (code-1) was written: its shards and the manifests never appeared.
    for run_dir in (resumed, resumed / "documents"):
        (run_dir / "manifest.json").unlink()
        for shard in shard_paths(run_dir):
            if '"code-1' in shard.read_text():
                shard.unlink()
    again = extract.run(cfg.model_copy(update={"output": resumed}), model=default_model)
    assert list(read_records(resumed)) == records
    assert again["documents_resumed"] == 2 and again["documents_this_session"] == 1
    session_only = {"documents_resumed", "documents_this_session", "documents_recovered"}
    assert {k: v for k, v in again.items() if k not in session_only} == {
        k: v for k, v in counts.items() if k not in session_only
    }


def test_resume_repairs_a_kill_between_records_and_summaries(boundary_run, tmp_path):
    cfg, counts, records = boundary_run
    resumed = tmp_path / "resumed"
    shutil.copytree(cfg.output, resumed)
    # The rationale shard of the last batch was written, its summary shard was not.
    (resumed / "manifest.json").unlink()
    (resumed / "documents" / "manifest.json").unlink()
    (last_summaries,) = [s for s in shard_paths(resumed / "documents") if '"code-1"' in s.read_text()]
    last_summaries.unlink()
    again = extract.run(cfg.model_copy(update={"output": resumed}), model=NoModel())
    assert list(read_records(resumed)) == records
    # The fixture's last batch ends with code-1, which the boundary run gives rationales: one document
    # whose summary was lost is recovered from its rationale shard.
    assert any(r["doc_id"] == "code-1" for r in records)
    assert again["documents_recovered"] == 1
    assert again["rationales"] == counts["rationales"]


def test_rewrite_mode_on_the_default_model(default_model, tmp_path):
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps(FIXTURE_DOCS["gsm-1"]) + "\n")
    cfg = config(tmp_path, input=data, mode="rewrite", max_rationales_per_doc=2, num_demos=1)
    counts = extract.run(cfg, model=default_model)
    check_counts(counts)
    assert counts["documents_extracted"] == 1 and counts["generated_tokens"] > 0
    (summary,) = read_records(cfg.output / "documents")
    # The status follows from the fidelity and what was kept, whatever the small model wrote.
    records = list(read_records(cfg.output))
    if summary["fidelity"] < cfg.fidelity_threshold:
        assert summary["status"] == "fidelity_failed" and records == []
    else:
        assert summary["status"] == ("ok" if records else "no_rationales")
    check_invariants(list(read_records(cfg.output)), {"gsm-1": FIXTURE_DOCS["gsm-1"]["text"]})
