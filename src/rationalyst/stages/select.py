"""Stage 1: select reasoning-rich documents from an unlabeled corpus.

As in the paper (METHOD.md, Stage 1): embed the target benchmarks' questions, average them into one
reference vector, and keep the documents whose cosine similarity to it is at least a threshold (0.3)
and whose length is at most a limit (2,000 characters). The paper's text normalization (lower-case,
no punctuation, no stopwords) before embedding is an option.

The corpus is streamed and embedded in batches, so its size does not matter. Every document read is
recorded: selected ones with their text, rejected ones as ``{id, similarity, selected: false}`` without
text, so a resumed run never embeds a finished document again and the similarity histogram covers
the whole corpus. The next stage reads only the selected records.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from rationalyst.config import StrictModel
from rationalyst.console import progress
from rationalyst.data import Document, read_corpus, read_questions
from rationalyst.data.corpus import benchmark_documents, default_sources
from rationalyst.errors import ConfigError, RationalystError
from rationalyst.executor import ExecutorConfig, map_batches, write_records
from rationalyst.lm import Embedder, load_embedder
from rationalyst.lm.builtin import DEFAULT_EMBEDDER
from rationalyst.lm.registry import ModelConfig
from rationalyst.plots import histogram
from rationalyst.runs import RunDir, read_records

log = logging.getLogger(__name__)


class CorpusInput(StrictModel):
    """One corpus input; in YAML a plain path is enough."""

    path: str = Field(description="File, folder, glob, or hf:<dataset name>.")
    source: str | None = Field(None, description="Label for its documents (default: the file's name).")
    text_field: str = Field("text", description="Field holding the document text.")
    id_field: str | None = Field("id", description="Field holding a document id (else file:line).")
    exclude_ids: list[str] = Field(
        default_factory=list, description="Document ids left out (e.g. benchmark problems held out for evaluation)."
    )
    benchmark: str | None = Field(
        None,
        description="Read the input as this benchmark's rows (any format its loader takes, or hf:); each document is "
        "the question with its options and the worked solution, one step per line, as the search shows a trajectory.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value):
        return {"path": value} if isinstance(value, str) else value


class SelectConfig(StrictModel):
    """`rationalyst select`: keep the corpus documents that resemble the target benchmarks."""

    corpus: list[CorpusInput] = Field(min_length=1, description="The unlabeled corpus inputs.")
    benchmarks: list[str] = Field(min_length=1, description="Benchmark files whose questions define the target.")
    output: Path = Field(description="Run directory to write the selection to.")
    embedder: ModelConfig = Field(default_factory=lambda: ModelConfig(spec=DEFAULT_EMBEDDER, batch_size=64))
    threshold: float = Field(0.3, ge=-1, le=1, description="Keep documents with cosine similarity >= this.")
    max_chars: int = Field(2000, ge=1, description="Skip documents longer than this (the paper: 2,000).")
    normalize: bool = Field(False, description="Lower-case, strip punctuation and stopwords before embedding.")
    max_questions: int | None = Field(None, ge=1, description="Use at most this many questions per benchmark file.")
    shard_size: int = Field(500, ge=1, description="Records per output shard.")
    overwrite: bool = Field(False, description="Start over instead of resuming an earlier run.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="local, or ray.")

    execution_fields = frozenset({"output", "shard_size", "overwrite", "executor"})

    @field_validator("corpus", "benchmarks", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """``corpus: docs.jsonl`` (one input, not in a list) reads as a list of one."""
        return [value] if isinstance(value, (str, dict)) else value


_PUNCTUATION = re.compile(r"[^\w\s]+")


def normalize_text(text: str) -> str:
    """The paper's normalization: lower-case, punctuation removed, English stopwords removed."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(w for w in words if w not in ENGLISH_STOP_WORDS)


@dataclass
class SelectSummary:
    read: int = 0
    selected: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    too_long: Counter = field(default_factory=Counter)
    similarities: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    histogram: Path | None = None


def reference_vector(embedder: Embedder, config: SelectConfig, run: RunDir) -> np.ndarray:
    """The unit-length mean of the benchmark questions' embeddings."""
    texts: list[str] = []
    for path in config.benchmarks:
        questions = read_questions(path, on_skip=lambda r, f, line, d: run.skip(r, file=f, line=line, detail=d))
        for i, doc in enumerate(questions):
            if config.max_questions is not None and i >= config.max_questions:
                break
            texts.append(normalize_text(doc.text) if config.normalize else doc.text)
    if not texts:
        raise RationalystError("no benchmark questions found in " + ", ".join(config.benchmarks))
    mean = embedder.embed(texts, batch_size=config.embedder.batch_size).mean(axis=0)
    log.info("reference vector from %d benchmark questions", len(texts))
    return mean / np.linalg.norm(mean)


def input_documents(item: CorpusInput, on_skip) -> Iterator[Document]:
    """The documents of one corpus input, as select reads them (benchmark documents, excluded ids left out)."""
    if item.benchmark is not None:
        docs = benchmark_documents(item.benchmark, item.path, source=item.source, on_skip=on_skip)
    else:
        docs = read_corpus(item.path, text_field=item.text_field, id_field=item.id_field, source=item.source, on_skip=on_skip)
    excluded = set(item.exclude_ids)
    return (doc for doc in docs if doc.id not in excluded)


def check_sources_apart(config: SelectConfig) -> None:
    """Refuse two corpus inputs whose documents would carry the same default source label (``a/train.jsonl``
    and ``b/train.jsonl`` are both ``train.jsonl``): a document's id is its label and its id in the
    file, so the second input's documents would be dropped as repeats of the first's."""
    owners: dict[str, str] = {}
    for item in config.corpus:
        if item.source is not None or item.benchmark is not None:
            continue
        for label in sorted(default_sources(item.path)):
            if label in owners and owners[label] != item.path:
                raise ConfigError(
                    f"select.corpus: {owners[label]} and {item.path} both label their documents {label!r} "
                    "(the file's name), so their ids would collide; give each input its own source: label"
                )
            owners[label] = item.path


def _documents(config: SelectConfig, run: RunDir) -> Iterator[Document]:
    def on_skip(reason, file, line, detail):
        run.skip(reason, file=file, line=line, detail=detail)

    for item in config.corpus:
        count = 0
        for count, doc in enumerate(input_documents(item, on_skip), 1):
            yield doc
        if count == 0:
            log.warning("%s: no documents in this corpus input (empty, or every record skipped)", item.path)


def _unique(docs: Iterator[Document], run: RunDir) -> Iterator[Document]:
    """Drop (and count) documents whose id repeats an earlier one of this pass."""
    seen: set[str] = set()
    for doc in docs:
        key = _record_id(doc)
        if key in seen:
            run.skip("duplicate id", file=doc.meta.get("file"), line=doc.meta.get("line"), id=key)
            continue
        seen.add(key)
        yield doc


def _record_id(doc: Document) -> str:
    # Ids are unique within one input; the source label keeps them apart across inputs.
    return f"{doc.source}/{doc.id}"


def run(config: SelectConfig, embedder: Embedder | None = None) -> SelectSummary:
    """Embed and select; resumes an interrupted run; returns counts and all similarities."""
    run_dir = RunDir(config.output, config, stage="select", mode="overwrite" if config.overwrite else "resume")
    summary = SelectSummary()
    if not run_dir.is_complete():
        check_sources_apart(config)
        local = embedder or load_embedder(config.embedder)
        reference = reference_vector(local, config, run_dir)
        pending = run_dir.pending(_unique(_documents(config, run_dir), run_dir), key=_record_id)
        items = (doc.to_record() for doc in progress(pending, description="selecting"))
        ray = config.executor.kind == "ray"
        factory = partial(SelectWorker, config, reference.tolist(), None if ray else local)
        with run_dir.writer(shard_size=config.shard_size) as writer:
            write_records(map_batches(items, factory, config.embedder.batch_size, config.executor), writer, run_dir)
    for record in read_records(run_dir.path):
        summary.read += 1
        source = record["source"]
        if record.get("too_long"):
            summary.too_long[source] += 1
            continue
        summary.similarities.append(record["similarity"])
        (summary.selected if record["selected"] else summary.rejected)[source] += 1
    # A finished run opened again skips nothing this time: its skips are those its manifest counted.
    complete = run_dir.manifest() if run_dir.is_complete() else None
    summary.skipped = complete["counts"].get("skipped", {}) if complete else run_dir.skipped
    summary.histogram = plot_similarities(summary.similarities, config.threshold, run_dir.path / "similarity.png")
    if not run_dir.is_complete():
        run_dir.finish(
            counts={
                "documents": summary.read,
                "selected": sum(summary.selected.values()),
                "rejected": sum(summary.rejected.values()),
                "too_long": sum(summary.too_long.values()),
                "selected_by_source": dict(summary.selected),
            }
        )
    return summary


class SelectWorker:
    """Embeds a batch of documents and decides each one; holds one embedder (one per Ray worker)."""

    def __init__(self, config: SelectConfig, reference: list[float], embedder: Embedder | None = None) -> None:
        self.config = config
        self.reference = np.asarray(reference, dtype=np.float32)
        self.embedder = embedder or load_embedder(config.embedder)

    def __call__(self, items: list[dict]) -> list[dict]:
        return _select_batch([Document(**item) for item in items], self.embedder, self.reference, self.config)


def _select_batch(batch: list[Document], embedder: Embedder, reference: np.ndarray, config: SelectConfig) -> list[dict]:
    records: list[dict] = []
    fitting = [i for i, doc in enumerate(batch) if len(doc.text) <= config.max_chars]
    texts = [normalize_text(batch[i].text) if config.normalize else batch[i].text for i in fitting]
    similarities = embedder.embed(texts, batch_size=config.embedder.batch_size) @ reference if texts else []
    by_index = {i: float(s) for i, s in zip(fitting, similarities)}
    for i, doc in enumerate(batch):  # in input order
        base = {"id": _record_id(doc), "source": doc.source}
        if i not in by_index:
            records.append({**base, "too_long": True, "chars": len(doc.text), "selected": False})
            continue
        similarity = by_index[i]
        if similarity >= config.threshold:
            records.append({**base, "similarity": similarity, "selected": True, "text": doc.text, "meta": doc.meta})
        else:
            records.append({**base, "similarity": similarity, "selected": False})
    return records


def selected_documents(run_path: Path) -> Iterator[dict]:
    """The selected documents of a select run, for the extract stage."""
    return (r for r in read_records(run_path) if r.get("selected"))


def plot_similarities(similarities: list[float], threshold: float, path: Path) -> Path | None:
    """Histogram of cosine similarities with the threshold marked."""
    kept = sum(s >= threshold for s in similarities)
    return histogram(
        similarities, path,
        title=f"{kept} of {len(similarities)} documents selected",
        xlabel="cosine similarity to the benchmark questions",
        ylabel="documents",
        markers=[(threshold, f"threshold = {threshold:g}")],
    )
