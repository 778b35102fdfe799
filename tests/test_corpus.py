"""Streaming corpus readers (rationalyst.data.corpus): formats, stable ids, skip reporting, streaming."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
import os
import shutil
from pathlib import Path

import pytest

from rationalyst.data import Document, parse_hf_spec, read_corpus, read_questions
from rationalyst.data import corpus as corpus_mod
from rationalyst.errors import InputError, RationalystError

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
DOCS = FIXTURES / "docs.jsonl"
TEXTS = FIXTURES / "texts"
QUESTIONS = FIXTURES / "questions.jsonl"
GSM8K_TRAIN = Path("/work/shared/benchmarks/gsm8k/train.jsonl")

# What docs.jsonl holds: (id, line, text) of the good records ...
GOOD = [
    ("doc-1", 1, "Alice has 3 apples and buys 2 more, so she has 5."),
    ("docs.jsonl:2", 2, "No id here: the id is derived from the file name and the line number."),
    ("10", 10, "Integer ids are read as strings."),
    ("doc-14", 14, "The last good line.\nIt spans two lines of text."),
]
# ... and (reason, line, a word the detail must contain) of the bad ones (line 9 is blank: not a record).
BAD = [
    ("invalid_json", 3, "JSON"),
    ("not_an_object", 4, "array"),
    ("missing_text", 5, "'text'"),
    ("text_not_string", 6, "'text'"),
    ("empty_text", 7, "'text'"),
    ("invalid_utf8", 8, "UTF-8"),
    ("missing_text", 11, "'text'"),
    ("bad_id", 12, "'id'"),
    ("invalid_unicode", 13, "surrogate"),
]


class Skips(list):
    """An on_skip callback that records its calls."""

    def __call__(self, reason, file, line, detail):
        assert isinstance(reason, str) and isinstance(file, str) and isinstance(detail, str) and detail
        assert line is None or (isinstance(line, int) and line >= 1)
        self.append((reason, file, line, detail))

    def brief(self):
        return [(reason, Path(file).name, line) for reason, file, line, _ in self]


def read(spec, **kwargs):
    skips = Skips()
    docs = list(read_corpus(spec, on_skip=skips, **kwargs))
    return docs, skips


# ---------------------------------------------------------------------------------------------- JSONL


def test_jsonl_reads_exact_documents_and_reports_each_bad_line():
    docs, skips = read(DOCS)
    assert [(d.id, d.meta["line"], d.text) for d in docs] == GOOD
    assert all(isinstance(d, Document) for d in docs)
    assert {d.source for d in docs} == {"docs.jsonl"}
    assert docs[0].meta == {"file": "docs.jsonl", "line": 1, "fields": {"meta": {"pile_set_name": "Pile-CC"}}}
    assert docs[3].meta["fields"] == {"lang": "en"}
    assert [(r, line) for r, _, line, _ in skips] == [(r, line) for r, line, _ in BAD]
    for (reason, file, line, detail), (_, _, word) in zip(skips, BAD):
        assert file == str(DOCS)
        assert word in detail, (reason, detail)


def test_ids_are_identical_across_reads_and_independent_of_other_files(tmp_path):
    first, _ = read(DOCS)
    second, _ = read(DOCS)
    assert first == second
    # The same file read as part of a folder with other files before it gets the same ids.
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(DOCS, folder / "docs.jsonl")
    (folder / "aaa.jsonl").write_text('{"text": "a file read before docs.jsonl"}\n', encoding="utf-8")
    in_folder, _ = read(folder)
    by_file = [(d.id, d.text) for d in in_folder if d.meta["file"] == "docs.jsonl"]
    assert by_file == [(d.id, d.text) for d in first]
    assert in_folder[0].id == "aaa.jsonl:1"


def test_source_label_and_id_field_options(tmp_path):
    docs, _ = read(DOCS, source="pile-sample", id_field=None)
    # without an id field, line 12 (whose id is bad) is a good record
    assert [d.id for d in docs] == ["docs.jsonl:1", "docs.jsonl:2", "docs.jsonl:10", "docs.jsonl:12", "docs.jsonl:14"]
    assert {d.source for d in docs} == {"pile-sample"}
    # with id_field=None the id stays among the other fields
    assert docs[0].meta["fields"]["id"] == "doc-1"
    other = tmp_path / "other.jsonl"
    other.write_text('{"key": "k1", "body": "text in another field"}\n{"key": "k2", "body": 5}\n', encoding="utf-8")
    docs, skips = read(other, text_field="body", id_field="key")
    assert [(d.id, d.text, d.meta["fields"]) for d in docs] == [("k1", "text in another field", {})]
    assert skips.brief() == [("text_not_string", "other.jsonl", 2)]
    assert "'body'" in skips[0][3]


def test_an_unpaired_surrogate_in_the_id_or_a_meta_field_is_skipped_naming_the_field(tmp_path):
    """Every string of a record is written out (the id, ``meta["fields"]``), so a lone surrogate (a JSON
    escape) anywhere skips the record, not only in the text; the detail names the field."""
    rows = [
        {"id": "a", "text": "Good one."},
        {"id": "b\ud800", "text": "Fine text."},
        {"id": "c", "text": "Fine text.", "meta": {"tags": ["x", "\udfff"]}},
        {"id": "d", "text": "Fine text.", "\udc80": 1},
        {"id": "e", "text": "An escaped pair \U0001F600 is one character."},
        {"text": "No id: the id is derived.", "title": "\udbff"},
        {"text": "No id, nothing wrong."},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")  # "\\ud800" escapes
    docs, skips = read(path)
    assert [(d.id, d.text) for d in docs] == [("a", "Good one."), ("e", rows[4]["text"]), ("c.jsonl:7", rows[6]["text"])]
    assert [(reason, line, detail.split(" holds")[0]) for reason, _, line, detail in skips] == [
        ("invalid_unicode", 2, "field 'id'"),
        ("invalid_unicode", 3, "field 'meta.tags[1]'"),
        ("invalid_unicode", 4, "field '\\udc80'"),
        ("invalid_unicode", 6, "field 'title'"),
    ]
    assert all(json.dumps(d.to_record(), ensure_ascii=False).encode("utf-8") for d in docs)


def test_byte_order_mark_and_crlf_lines(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "first"}\r\n{"text": "second"}\r\n')
    docs, skips = read(path)
    assert [d.text for d in docs] == ["first", "second"] and not skips


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "gz":
        return gzip.compress(data)
    if kind == "zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    return lzma.compress(data)


@pytest.mark.parametrize("kind", ["gz", "zst", "bz2", "xz"])
def test_compressed_jsonl_reads_like_plain(tmp_path, kind):
    path = tmp_path / f"docs.jsonl.{kind}"
    path.write_bytes(_compress(kind, DOCS.read_bytes()))
    docs, skips = read(path)
    plain, plain_skips = read(DOCS)
    assert [(d.text, d.meta["line"]) for d in docs] == [(d.text, d.meta["line"]) for d in plain]
    assert [d.id for d in docs] == ["doc-1", f"docs.jsonl.{kind}:2", "10", "doc-14"]
    assert [(r, line) for r, _, line, _ in skips] == [(r, line) for r, _, line, _ in plain_skips]
    assert {file for _, file, _, _ in skips} == {str(path)}


def test_multi_frame_zstd(tmp_path):
    import zstandard

    cctx = zstandard.ZstdCompressor()
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(cctx.compress(b'{"text": "frame one"}\n') + cctx.compress(b'{"text": "frame two"}\n'))
    docs, skips = read(path)
    assert [d.text for d in docs] == ["frame one", "frame two"] and not skips


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_truncated_compressed_file_keeps_what_was_read_and_reports_the_rest(tmp_path, kind):
    import random

    rng = random.Random(0)
    texts = [f"record {i} {rng.randbytes(100).hex()}" for i in range(20_000)]  # ~4 MB
    data = _compress(kind, b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts))
    path = tmp_path / f"cut.jsonl.{kind}"
    path.write_bytes(data[: len(data) * 2 // 3])
    docs, skips = read(path)
    assert 10_000 < len(docs) < 20_000  # about two thirds are read; little is lost before the damage
    assert [d.text for d in docs] == texts[: len(docs)]
    assert [(r, Path(f).name) for r, f, _, _ in skips] == [("read_error", path.name)]
    assert skips[0][2] is not None and skips[0][2] > len(docs)


def test_corrupt_compressed_file_is_reported_not_raised(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(b"this is not gzip data at all")
    docs, skips = read(path)
    assert docs == [] and skips.brief() == [("read_error", "bad.jsonl.gz", 1)]


# ---------------------------------------------------------------------------------------------- Parquet


def _write_parquet(path, columns, row_group_size=2):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)


def test_parquet_rows(tmp_path):
    path = tmp_path / "part.parquet"
    _write_parquet(
        path,
        {
            "id": ["p1", None, "p3", "p4", "p5"],
            "text": ["first row", "no id: derived", None, "  ", "last row"],
            "subset": ["Wikipedia", "GitHub", "GitHub", "PubMed", "ArXiv"],
        },
    )
    docs, skips = read(path)
    assert [(d.id, d.text, d.meta) for d in docs] == [
        ("p1", "first row", {"file": "part.parquet", "row": 1, "fields": {"subset": "Wikipedia"}}),
        ("part.parquet:2", "no id: derived", {"file": "part.parquet", "row": 2, "fields": {"subset": "GitHub"}}),
        ("p5", "last row", {"file": "part.parquet", "row": 5, "fields": {"subset": "ArXiv"}}),
    ]
    assert skips.brief() == [("missing_text", "part.parquet", 3), ("empty_text", "part.parquet", 4)]
    assert read(path)[0] == docs


def test_parquet_without_the_text_column_is_reported_once(tmp_path):
    path = tmp_path / "wrong.parquet"
    _write_parquet(path, {"content": ["a", "b"]})
    docs, skips = read(path)
    assert docs == [] and skips.brief() == [("missing_text", "wrong.parquet", None)]
    assert "'text'" in skips[0][3] and "content" in skips[0][3]


def test_parquet_non_string_column(tmp_path):
    path = tmp_path / "numbers.parquet"
    _write_parquet(path, {"text": [1, 2]})
    docs, skips = read(path)
    assert docs == [] and [r for r, *_ in skips] == ["text_not_string", "text_not_string"]


def test_corrupt_parquet_is_reported(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 but not really")
    docs, skips = read(path)
    assert docs == [] and skips.brief() == [("read_error", "broken.parquet", None)]


# ---------------------------------------------------------------------------------------------- text files and folders


def test_folder_of_text_files():
    docs, skips = read(TEXTS)
    assert [d.id for d in docs] == ["a.txt", "b.md", "sub/c.txt"]
    assert docs[0].text == "Why does ice float? Because it is less dense than water.\n"
    assert docs[2].text.startswith("If it rains")
    assert docs[1].meta == {"file": "b.md", "fields": {}} and docs[1].source == "b.md"
    assert not skips


def test_bad_text_files_are_reported(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes(b"line one\nline two\ncaf\xe9\n")
    (tmp_path / "ok.md").write_text("fine", encoding="utf-8")
    docs, skips = read(tmp_path)
    assert [d.id for d in docs] == ["ok.md"]
    assert skips.brief() == [("empty_text", "empty.txt", None), ("invalid_utf8", "latin1.txt", 3)]


def _saved_dataset(path: Path, dict_splits: bool = False) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"id": ["h1", "h2", None], "text": ["hf one", None, "hf three"]})
    if dict_splits:
        datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(path))
    else:
        ds.save_to_disk(str(path))


def test_mixed_folder_sorted_recursive(tmp_path):
    root = tmp_path / "mix"
    (root / "b_texts").mkdir(parents=True)
    shutil.copy(DOCS, root / "a.jsonl")
    for name in ("a.txt", "b.md"):
        shutil.copy(TEXTS / name, root / "b_texts" / name)
    (root / "c.jsonl.gz").write_bytes(gzip.compress(b'{"text": "gzipped"}\n'))
    _write_parquet(root / "d.parquet", {"text": ["from parquet"]})
    _saved_dataset(root / "e_saved")
    (root / "f.csv").write_text("text\nnot read\n", encoding="utf-8")
    (root / ".hidden.jsonl").write_text('{"text": "hidden files are ignored"}\n', encoding="utf-8")
    (root / "_SUCCESS").write_text("", encoding="utf-8")
    docs, skips = read(root)
    assert [d.id for d in docs] == [
        "doc-1", "a.jsonl:2", "10", "doc-14",
        "b_texts/a.txt", "b_texts/b.md",
        "c.jsonl.gz:1",
        "d.parquet:1",
        "h1", "e_saved:3",
    ]  # fmt: skip
    assert docs[-1].meta == {"file": "e_saved", "row": 3, "fields": {}}
    assert [r for r, *_ in skips] == [r for r, _, _ in BAD] + ["missing_text", "unsupported_file"]
    assert skips.brief()[-2:] == [("missing_text", "e_saved", 2), ("unsupported_file", "f.csv", None)]
    assert read(root)[0] == docs


def test_saved_dataset_dict_and_split(tmp_path):
    path = tmp_path / "dd"
    _saved_dataset(path, dict_splits=True)
    docs, skips = read(path)
    assert [(d.id, d.meta["split"]) for d in docs] == [("h1", "test"), ("h1", "train"), ("dd/train:3", "train")]
    assert skips.brief() == [("missing_text", "train", 2)]
    docs, _ = read(path, split="test", id_field=None)
    assert [d.id for d in docs] == ["dd/test:1"]
    with pytest.raises(InputError, match="no split 'nope'"):
        list(read_corpus(path, split="nope", on_skip=Skips()))


def test_glob_pattern(tmp_path):
    for rel in ("x/one.jsonl", "x/sub/two.jsonl", "y/three.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({"text": rel}) + "\n", encoding="utf-8")
    docs, skips = read(str(tmp_path / "x" / "**" / "*.jsonl"))
    assert [d.id for d in docs] == ["one.jsonl:1", "sub/two.jsonl:1"] and not skips
    # a pattern matching folders and the files inside them reads each file once
    docs, skips = read(str(tmp_path / "**"))
    assert [d.id for d in docs] == ["x/one.jsonl:1", "x/sub/two.jsonl:1", "y/three.jsonl:1"] and not skips


# ---------------------------------------------------------------------------------------------- errors about the input


def test_missing_path_unknown_format_and_empty_glob_raise_at_call_time(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        read_corpus(missing)  # raised before iterating
    unknown = tmp_path / "data.csv"
    unknown.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"data\.csv: unknown corpus format"):
        read_corpus(unknown)
    with pytest.raises(InputError, match="matches no file"):
        read_corpus(str(tmp_path / "*.parquet"))
    assert issubclass(InputError, RationalystError)


def test_hf_spec_parsing():
    assert parse_hf_spec("hf:EleutherAI/pile") == ("EleutherAI/pile", None, "train")
    assert parse_hf_spec("hf:wikitext?config=wikitext-2-raw-v1&split=test") == ("wikitext", "wikitext-2-raw-v1", "test")
    for bad in ("hf:", "hf:name?colour=red"):
        with pytest.raises(RationalystError):
            parse_hf_spec(bad)


def test_hf_hub_name_fails_clearly_offline(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(corpus_mod, "_hub_reachable", lambda *a, **k: pytest.fail("no network probe offline"))
    with pytest.raises(RationalystError) as err:
        read_corpus("hf:rationalyst-tests/no-such-dataset")
    message = str(err.value)
    assert "hf:rationalyst-tests/no-such-dataset" in message
    assert "offline" in message.lower() and "save_to_disk" in message


def test_hf_hub_unreachable_fails_fast(monkeypatch):
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(corpus_mod, "_hub_reachable", lambda *a, **k: (False, "https://huggingface.co (no route)"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try to download"))
    with pytest.raises(RationalystError, match="cannot be reached"):
        read_corpus("hf:some/dataset")


def test_hf_hub_stream_where_reachable(monkeypatch):
    """The hub path with a stand-in for `datasets.load_dataset` (no network in tests)."""
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(corpus_mod, "_hub_reachable", lambda *a, **k: (True, "https://huggingface.co"))
    calls = []

    def fake_load_dataset(name, config=None, *, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"text": "streamed one", "meta": {"pile_set_name": "Wikipedia"}}, {"text": None}, {"text": "three"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs, skips = read("hf:org/corpus?config=en")
    assert calls == [("org/corpus", "en", "train", True)]
    assert [(d.id, d.text, d.source) for d in docs] == [
        ("hf:org/corpus:en/train:1", "streamed one", "hf:org/corpus"),
        ("hf:org/corpus:en/train:3", "three", "hf:org/corpus"),
    ]
    assert docs[0].meta == {"file": "hf:org/corpus:en/train", "row": 1, "split": "train", "fields": {"meta": {"pile_set_name": "Wikipedia"}}}
    assert [(r, f, line) for r, f, line, _ in skips] == [("missing_text", "hf:org/corpus?config=en", 2)]

    def broken_stream():
        yield {"text": "first"}
        raise ConnectionError("connection reset")

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: broken_stream())
    docs = read_corpus("hf:org/corpus", split="validation", on_skip=Skips())
    assert next(docs).id == "hf:org/corpus/validation:1"
    with pytest.raises(RationalystError, match="streaming stopped after row 1"):
        next(docs)


# ---------------------------------------------------------------------------------------------- streaming


def _track_opens(monkeypatch):
    handles = []
    real_open = open

    def tracking_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        handles.append(handle)
        return handle

    monkeypatch.setattr(corpus_mod, "open", tracking_open, raising=False)
    return handles


@pytest.mark.parametrize("kind", ["plain", "zst"])
def test_reading_the_first_document_does_not_read_the_whole_file(tmp_path, monkeypatch, kind):
    import random

    rng = random.Random(0)
    path = tmp_path / ("big.jsonl" if kind == "plain" else "big.jsonl.zst")
    # ~16 MB of random hex text, which compresses to no less than half
    rows = b"".join(b'{"text": "%s"}\n' % rng.randbytes(200).hex().encode() for _ in range(40_000))
    path.write_bytes(rows if kind == "plain" else _compress("zst", rows))
    size = path.stat().st_size
    handles = _track_opens(monkeypatch)
    docs = read_corpus(path, on_skip=Skips())
    assert handles == []  # nothing is opened before the first document is asked for
    first = next(docs)
    assert first.id == "big.jsonl:1" if kind == "plain" else "big.jsonl.zst:1"
    (handle,) = handles
    position = os.lseek(handle.fileno(), 0, os.SEEK_CUR)
    assert position <= 4 * corpus_mod._READ_BUFFER < size / 2
    docs.close()
    assert handle.closed  # closing the iterator closes the file


def test_parquet_is_read_one_batch_at_a_time(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = tmp_path / "many.parquet"
    _write_parquet(path, {"text": [f"row {i}" for i in range(5000)]}, row_group_size=500)
    pulled = []
    real_iter_batches = pq.ParquetFile.iter_batches

    def counting_iter_batches(self, *args, **kwargs):
        for batch in real_iter_batches(self, *args, **kwargs):
            pulled.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting_iter_batches)
    docs = read_corpus(path, on_skip=Skips())
    assert next(docs).text == "row 0"
    assert pulled == [corpus_mod._BATCH_ROWS]
    assert sum(1 for _ in docs) == 4999


# ---------------------------------------------------------------------------------------------- questions


def test_read_questions_fixture():
    skips = Skips()
    questions = list(read_questions(QUESTIONS, on_skip=skips))
    assert [(q.id, q.text) for q in questions] == [
        ("q-1", "Natalia sold 48 clips in April and half as many in May. How many clips did she sell altogether?"),
        ("q-2", "Where would you put a plate after washing it?\ncupboard\ntable\nfloor"),
        ("q-3", "What is 7 times 6?\n40\n42\nnone of these"),
    ]
    assert questions[1].meta["fields"]["answer"] == "A" and "question" not in questions[1].meta["fields"]
    assert not skips
    plain = list(read_questions(QUESTIONS, include_choices=False))
    assert plain[1].text == "Where would you put a plate after washing it?"


def test_read_questions_reports_bad_rows(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(
        '{"id": "a", "question": "ok?", "choices": "not a list"}\n{"id": "b", "question": ""}\n{"id": "c", "text": "no question"}\n',
        encoding="utf-8",
    )
    skips = Skips()
    assert list(read_questions(path, on_skip=skips)) == []
    assert skips.brief() == [("bad_choices", "bench.jsonl", 1), ("empty_text", "bench.jsonl", 2), ("missing_text", "bench.jsonl", 3)]
    assert "'question'" in skips[2][3]


@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason="the shared GSM8K train split is not available")
def test_read_questions_gsm8k_train():
    skips = Skips()
    questions = read_questions(GSM8K_TRAIN, on_skip=skips)
    first_row = json.loads(GSM8K_TRAIN.open(encoding="utf-8").readline())
    first = next(questions)
    assert first.id == first_row["id"] and first.text == first_row["question"]
    rest = sum(1 for _ in questions)
    assert 1 + rest == 7473 and not skips


# ---------------------------------------------------------------------------------------------- misc


def test_default_skip_handler_logs(caplog):
    with caplog.at_level(logging.WARNING, logger="rationalyst.data.corpus"):
        docs = list(read_corpus(DOCS))
    assert len(docs) == len(GOOD)
    assert sum("skipped" in r.getMessage() for r in caplog.records) == len(BAD)
    assert any("docs.jsonl:3 (invalid_json)" in r.getMessage() for r in caplog.records)


def test_document_to_record_is_json():
    docs, _ = read(DOCS)
    record = json.loads(json.dumps(docs[0].to_record()))
    assert record == {"id": "doc-1", "text": GOOD[0][2], "source": "docs.jsonl", "meta": docs[0].meta}


# ------------------------------------------------------------------------------- names not UTF-8


def _write_bytes_path(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.mark.parametrize("as_glob", [False, True], ids=["folder", "glob"])
def test_a_file_or_folder_whose_name_is_not_utf8_is_skipped_and_reported_with_its_bytes_escaped(tmp_path, as_glob):
    """No id, source label or record can be written with such a name (Python holds the bytes as lone
    surrogates): the file, or the folder with what is in it, is reported once per name under
    invalid_unicode, shown with the bytes as backslash escapes; the other files read as usual."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "good.jsonl").write_text('{"id": "a", "text": "Fine."}\n')
    _write_bytes_path(os.fsencode(root) + b"/bad\xff.jsonl", b'{"id": "b", "text": "Lost."}\n')
    os.mkdir(os.fsencode(root) + b"/sub\xfe")
    _write_bytes_path(os.fsencode(root) + b"/sub\xfe/x.jsonl", b'{"id": "c", "text": "Lost too."}\n')
    docs, skips = read(f"{root}/**/*.jsonl" if as_glob else root)
    assert [(d.source, d.id, d.text) for d in docs] == [("good.jsonl", "a", "Fine.")]
    shown = [str(root) + "/bad\\xff.jsonl", str(root) + ("/sub\\xfe/x.jsonl" if as_glob else "/sub\\xfe")]
    assert sorted((reason, file) for reason, file, _, _ in skips) == [("invalid_unicode", name) for name in sorted(shown)]
    json.dumps(skips, ensure_ascii=False).encode("utf-8")  # every report can be written
