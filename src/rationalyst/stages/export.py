"""Export the mined rationales as training corpora other tools read.

From a filter run (the scored rationale records) and the documents they came from, `run` writes::

    <output>/sft/shards/part-*.jsonl      (a) the kept rationales as chat SFT examples, TRL's format:
                                              {"id", "doc_id", "source", "delta", "tau",
                                               "messages": [{"role": "user", ...}, {"role": "assistant", ...}]}
    <output>/sft/parquet/part-*.parquet       the same rows as Parquet, one file per JSONL shard
    <output>/sft/dataset/                     the same rows as a `datasets` folder (``save_to_disk``)
    <output>/pretrain/shards/part-*.jsonl (b) each source document with its kept rationales inserted
                                              inline between markers: {"id", "source", "rationales", "text"}
    <output>/pretrain/parquet/, <output>/pretrain/dataset/   as for sft
    <output>/README.md                        the dataset card: counts, sources, tau, models, licences

The user turn of an SFT example is exactly the train stage's (`rationalist_messages`, imported from
`rationalyst.stages.train`: the instruction, a blank line, the preceding text without trailing
whitespace; with ``rationalist_format: paper-release`` the text alone), so a model trained on the export with any trainer
sees what `rationalyst train` would show it. In the pre-training text a rationale sits where the
filter stage scored it: right after its ``preceding`` text, after one space unless that text ends in
whitespace (the paper's rewrite format, ``... full. <BOT>First find ...<EOT> The tank ...``).

Streaming with bounded memory: records are read line by line; the kept rationales are indexed by
document in a temporary SQLite file on disk (not in memory), so the documents can be streamed in
their own order and each one meets its rationales however the filter records were ordered.

Resumable: both JSONL outputs are `RunDir` runs whose shards are written atomically. Their content is
a deterministic function of the inputs, in input order, so a resumed export counts the records already
in the shards, passes over that many, checks that the last one written is the one it would write
there (else the input changed: start over with ``--overwrite``), and goes on. Parquet files and the
``datasets`` folder are built from complete JSONL shards, each into a temporary name renamed into
place, so a kill at any moment loses nothing and duplicates nothing.

Bad input is skipped and counted in the manifests with file and line: unreadable lines, records
missing a field, repeated ids, documents without text, rationales whose ``preceding`` and
``following`` text is not the start of their document, kept rationales whose document is missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.errors import InputError, RationalystError
from rationalyst.runs import CONFIG_FILE, RunDir, atomic_write, read_json_lines, shard_paths
# The train stage's own prompt rules (defined in rationalyst.data.rationale_text, used by train).
from rationalyst.stages.train import RationalistFormat, instruction_for, load_instruction, rationalist_messages

log = logging.getLogger(__name__)

SFT_DIR, PRETRAIN_DIR = "sft", "pretrain"
PARQUET_DIR, DATASET_DIR = "parquet", "dataset"
CARD_FILE = "README.md"
FLUSH_SECONDS = 30.0
PARQUET_BATCH = 1000  # rows per Parquet row group
_INDEX_PREFIX = ".export-index"

#: Licences of the sources this project generates itself (`rationalyst run` with generate_corpus):
#: reasoning-gym's gsm_symbolic (Apache-2.0), and rationalyst's own word problems and packaged general
#: text (Apache-2.0, this project's licence). Other sources: `licenses` or the document's meta.
KNOWN_LICENSES = {"gsm_symbolic": "apache-2.0", "word_problems": "apache-2.0", "general": "apache-2.0"}


class ExportConfig(StrictModel):
    """`rationalyst export`: the kept rationales as an SFT dataset and a thought-augmented corpus."""

    input: Path = Field(
        description="The filter stage's run directory (or a JSONL file of its records, or a pipeline "
        "output folder holding filter/)."
    )
    output: Path = Field(description="Output folder for both corpora and the dataset card.")
    documents: Path | None = Field(
        None,
        description="The select stage's run directory or a JSONL file of documents {id, text, source}; "
        "default: the one the filter run's extract input read.",
    )
    instruction_file: Path | None = Field(
        None, description="The user-turn instruction (default: the packaged one, as the train stage)."
    )
    rationalist_format: RationalistFormat = Field(
        "rationalyst",
        description="The user turn, as the train stage's option of that name: 'rationalyst' (instruction, blank "
        "line, preceding text) or 'paper-release' (the preceding text alone).",
    )
    max_preceding_chars: int | None = Field(
        None, ge=1, description="Cut an SFT example's preceding text to this many characters, from the left."
    )
    bot: str = Field("<BOT>", min_length=1, description="Marker written before an inline rationale.")
    eot: str = Field("<EOT>", min_length=1, description="Marker written after an inline rationale.")
    all_documents: bool = Field(
        False, description="Also write documents with no kept rationale (as plain text) to the pre-training corpus."
    )
    licenses: dict[str, str] = Field(
        default_factory=dict, description="Licence of each source, for the dataset card (source -> licence)."
    )
    shard_size: int = Field(10_000, ge=1, description="Records per JSONL shard (and Parquet file).")
    overwrite: bool = Field(False, description="Start over instead of resuming an earlier export.")

    execution_fields = frozenset({"output", "shard_size", "overwrite"})


@dataclass
class ExportSummary:
    """What an export wrote: counts per source, skipped inputs, and where everything is."""

    output: Path
    sft_examples: int = 0
    documents: int = 0
    inline_rationales: int = 0
    kept_by_source: dict[str, int] = field(default_factory=dict)
    documents_by_source: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    card: Path | None = None


# ============================================================================ text


def inline_document(text: str, rationales: list[tuple[int, str]], bot: str = "<BOT>", eot: str = "<EOT>") -> str:
    """``text`` with each ``(offset, rationale)`` inserted at its character offset between the markers.

    One space goes before the opening marker unless the text before it ends in whitespace (or is
    empty); nothing after the closing one (the following text starts with its own whitespace).
    """
    parts, last = [], 0
    for offset, rationale in sorted(rationales, key=lambda r: r[0]):
        parts.append(text[last:offset])
        sep = "" if offset == 0 or text[offset - 1].isspace() else " "
        parts.append(f"{sep}{bot}{rationale.strip()}{eot}")
        last = offset
    parts.append(text[last:])
    return "".join(parts)


def sft_messages(instruction: str | None, preceding: str, rationale: str) -> list[dict[str, str]]:
    """The chat turns of one SFT example: the train stage's user turn, the rationale as the answer."""
    return [*rationalist_messages(preceding, instruction), {"role": "assistant", "content": rationale.strip()}]


def export_instruction(config: ExportConfig) -> str | None:
    """The user turn's instruction, chosen as the train stage chooses it (None: the text alone)."""
    return instruction_for(
        config.rationalist_format, load_instruction(config.instruction_file) if config.instruction_file else None
    )


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


# ============================================================================ resumable JSONL shards


class JsonlShards:
    """Appends records to a `RunDir`'s shards in a deterministic order, resuming by count.

    Unlike `rationalyst.runs.ShardWriter` it keeps no set of written ids (memory stays bounded on
    millions of records): the caller writes the same records in the same order every session, and the
    first ``done`` of them (those already in the shards) are passed over, the last of them checked.
    """

    def __init__(self, run: RunDir, shard_size: int, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.run = run
        self.shard_size = shard_size
        self.flush_seconds = flush_seconds
        self.done, self.last_id = 0, None
        shards = run.shard_paths()
        for record in run.records():
            self.done += 1
            self.last_id = record.get("id")
        self._next_shard = int(shards[-1].name[5:10]) + 1 if shards else 0
        self.seen = 0  # records offered so far, written or passed over
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self.seen += 1
        if self.seen <= self.done:
            if self.seen == self.done and record["id"] != self.last_id:
                raise RationalystError(
                    f"{self.run.path}: record {self.done} was {self.last_id!r} when the export started and is "
                    f"{record['id']!r} now, so the input changed; pass --overwrite to start over"
                )
            return
        self._buffer.append(json.dumps(record, ensure_ascii=False))
        if len(self._buffer) >= self.shard_size or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        path = self.run.shards_dir / f"part-{self._next_shard:05d}.jsonl"
        try:
            atomic_write(path, ("\n".join(self._buffer) + "\n").encode("utf-8"))
        except OSError as exc:
            raise RationalystError(f"cannot write shard {path}: {exc.strerror or exc}") from None
        self._buffer.clear()
        self._next_shard += 1

    def close(self) -> None:
        if self.seen < self.done:
            raise RationalystError(
                f"{self.run.path} holds {self.done} records but the input now gives only {self.seen}, so the "
                "input changed; pass --overwrite to start over"
            )
        self.flush()


# ============================================================================ inputs


def resolve_input(path: Path) -> Path:
    """The filter run directory: ``path`` itself, or ``path/filter`` for a pipeline output folder."""
    path = Path(path)
    if path.is_dir() and not (path / CONFIG_FILE).exists() and (path / "filter" / CONFIG_FILE).exists():
        return path / "filter"
    if not path.exists():
        raise InputError(f"input not found: {path}")
    return path


def _run_config(path: Path | None) -> dict[str, Any]:
    """The ``config`` of a run directory's config.json, or {} (a file, or no run there)."""
    if path is None or not Path(path).is_dir():
        return {}
    try:
        stored = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stored.get("config") or {} if isinstance(stored, dict) else {}


def lineage(filter_path: Path) -> dict[str, Any]:
    """The filter run's config and the extract and select runs it came from, as far as they can be found."""
    filter_cfg = _run_config(filter_path)
    extract_path = Path(filter_cfg["input"]) if filter_cfg.get("input") else None
    extract_cfg = _run_config(extract_path)
    documents = Path(extract_cfg["input"]) if extract_cfg.get("input") else None
    return {
        "filter": filter_cfg, "extract": extract_cfg, "extract_path": extract_path,
        "documents": documents, "select": _run_config(documents),
    }


def _validate(record: dict[str, Any]) -> str | None:
    for name in ("doc_id", "preceding", "rationale", "following"):
        if not isinstance(record.get(name), str):
            return f"field {name!r} missing or not a string"
    if not isinstance(record.get("kept"), bool):
        return "field 'kept' missing or not true/false"
    if not record["rationale"].strip():
        return "field 'rationale' is empty"
    if record.get("id") is None and (not isinstance(record.get("position"), int) or isinstance(record["position"], bool)):
        return "fields 'id' and 'position' both missing"
    for name in ("delta", "tau"):  # float64 columns of the Parquet copy
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"field {name!r} not a number"
    return None


class _Index:
    """Kept rationales by document, in a temporary SQLite file beside the output (removed at the end)."""

    def __init__(self, folder: Path) -> None:
        for stale in folder.glob(f"{_INDEX_PREFIX}*"):
            stale.unlink()
        self.path = folder / f"{_INDEX_PREFIX}-{os.getpid()}.sqlite"
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE kept (id TEXT PRIMARY KEY, seq INTEGER, doc_id TEXT, offset INTEGER, pre BLOB,"
            " following_len INTEGER, fol BLOB, rationale TEXT, file TEXT, line INTEGER, used INTEGER DEFAULT 0);"
            "CREATE INDEX kept_doc ON kept (doc_id);"
            "CREATE TABLE docs (id TEXT PRIMARY KEY);"
        )
        self.seq = 0

    def add(self, record_id: str, record: dict[str, Any], rationale: str, file: Path, line: int) -> bool:
        """Index a kept rationale; False if its id was indexed before."""
        self.seq += 1
        preceding, following = record["preceding"], record["following"]
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO kept (id, seq, doc_id, offset, pre, following_len, fol, rationale, file, line)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record_id, self.seq, record["doc_id"], len(preceding), _digest(preceding), len(following),
             _digest(following), rationale, str(file), line),
        )
        if self.seq % 10_000 == 0:
            self.db.commit()
        return cursor.rowcount == 1

    def first_time(self, doc_id: str) -> bool:
        return self.db.execute("INSERT OR IGNORE INTO docs (id) VALUES (?)", (doc_id,)).rowcount == 1

    def rationales(self, doc_id: str) -> list[tuple]:
        rows = self.db.execute(
            "SELECT id, offset, pre, following_len, fol, rationale, file, line FROM kept WHERE doc_id = ?"
            " ORDER BY offset, seq", (doc_id,),
        ).fetchall()
        self.db.execute("UPDATE kept SET used = 1 WHERE doc_id = ?", (doc_id,))
        return rows

    def unused(self) -> Iterator[tuple]:
        return self.db.execute("SELECT id, doc_id, file, line FROM kept WHERE used = 0 ORDER BY seq")

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)


# ============================================================================ the two corpora


def _sft_pass(config: ExportConfig, filter_path: Path, run: RunDir, index: _Index, instruction: str | None) -> dict:
    """Index every kept rationale; write the SFT examples unless that run is complete. Returns counts."""
    writer = None if run.is_complete() else JsonlShards(run, config.shard_size)
    kept, not_kept = Counter(), Counter()
    taus: dict[str, set] = defaultdict(set)
    for file, line, record in read_json_lines(filter_path, run.report_skip, stage="filter"):
        problem = _validate(record)
        if problem:
            run.skip(problem, file=file, line=line)
            continue
        source = str(record.get("source") or "unknown")
        if not record["kept"]:
            not_kept[source] += 1
            continue
        record_id = str(record["id"]) if record.get("id") is not None else f"{record['doc_id']}:{record['position']}"
        rationale = record["rationale"].strip()
        if not index.add(record_id, record, rationale, file, line):
            run.skip("duplicate id", file=file, line=line, id=record_id)
            continue
        kept[source] += 1
        if isinstance(record.get("tau"), (int, float)):
            taus[source].add(float(record["tau"]))
        if writer is not None:
            preceding = record["preceding"]
            if config.max_preceding_chars is not None:
                preceding = preceding[-config.max_preceding_chars :]
            writer.write({
                "id": record_id, "doc_id": record["doc_id"], "source": source,
                "delta": record.get("delta"), "tau": record.get("tau"),
                "messages": sft_messages(instruction, preceding, rationale),
            })
    index.db.commit()
    if writer is not None:
        writer.close()
    return {
        "sft_examples": sum(kept.values()), "kept_by_source": dict(kept), "not_kept_by_source": dict(not_kept),
        "tau_by_source": {s: sorted(t) for s, t in taus.items()},
    }


def _pretrain_pass(config: ExportConfig, documents: Path, run: RunDir, index: _Index) -> dict:
    """Write each document with its kept rationales inline; count what could not be placed."""
    writer = JsonlShards(run, config.shard_size)
    by_source, rationales_by_source, licenses = Counter(), Counter(), {}
    for file, line, doc in read_json_lines(documents, run.report_skip, stage="select"):
        if doc.get("selected") is False:  # a select run's record of a rejected document: not a document
            continue
        doc_id, text = doc.get("id"), doc.get("text")
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id or not isinstance(text, str):
            run.skip("document without a string id and text", file=file, line=line)
            continue
        if not index.first_time(doc_id):
            run.skip("duplicate document id", file=file, line=line, id=doc_id)
            continue
        source = str(doc.get("source") or "unknown")
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        licence = meta.get("license") or meta.get("licence")
        if isinstance(licence, str) and source not in licenses:
            licenses[source] = licence
        placed = []
        for rid, offset, pre, following_len, fol, rationale, rfile, rline in index.rationales(doc_id):
            if _digest(text[:offset]) != pre or _digest(text[offset : offset + following_len]) != fol:
                run.skip("rationale's preceding/following text is not its document's", file=rfile, line=rline, id=rid)
                continue
            placed.append((offset, rationale))
        if not placed and not config.all_documents:
            continue
        writer.write({"id": doc_id, "source": source, "rationales": len(placed),
                      "text": inline_document(text, placed, config.bot, config.eot)})
        by_source[source] += 1
        rationales_by_source[source] += len(placed)
    writer.close()
    for rid, doc_id, rfile, rline in index.unused():
        run.skip("kept rationale whose document is not among the documents", file=rfile, line=rline, id=rid, doc_id=doc_id)
    return {
        "documents": sum(by_source.values()), "documents_by_source": dict(by_source),
        "inline_rationales": sum(rationales_by_source.values()), "inline_rationales_by_source": dict(rationales_by_source),
        "licenses_from_documents": licenses,
    }


# ============================================================================ Parquet, datasets


def _features(kind: str):
    import datasets

    string = datasets.Value("string")
    if kind == SFT_DIR:
        return datasets.Features({
            "id": string, "doc_id": string, "source": string,
            "delta": datasets.Value("float64"), "tau": datasets.Value("float64"),
            "messages": [{"role": string, "content": string}],
        })
    return datasets.Features({"id": string, "source": string, "rationales": datasets.Value("int64"), "text": string})


def write_parquet(run_path: Path, kind: str) -> list[Path]:
    """One Parquet file per JSONL shard (those already there are kept); returns them in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _features(kind).arrow_schema
    folder = run_path / PARQUET_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(".*.tmp"):
        stale.unlink()
    files = []
    for shard in shard_paths(run_path):
        target = folder / (shard.stem + ".parquet")
        files.append(target)
        if target.exists():
            continue
        tmp = folder / f".{target.name}.{os.getpid()}.tmp"
        with open(shard, encoding="utf-8") as f, pq.ParquetWriter(tmp, schema) as parquet:
            rows = []
            for line in f:
                if line.strip():
                    rows.append(json.loads(line))
                if len(rows) >= PARQUET_BATCH:  # one row group per batch: memory stays bounded
                    parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
            if rows:
                parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
        os.replace(tmp, target)
    return files


def write_dataset(run_path: Path, kind: str, parquet_files: list[Path]) -> Path:
    """The rows as a `datasets` folder (``save_to_disk``), built from the Parquet files (streamed)."""
    import datasets

    target = run_path / DATASET_DIR
    if (target / "dataset_info.json").exists():
        return target
    tmp = run_path / f".{DATASET_DIR}.tmp"
    cache = run_path / ".hf-cache"
    for stale in (tmp, cache, target):
        shutil.rmtree(stale, ignore_errors=True)
    features = _features(kind)
    try:
        if parquet_files:
            dataset = datasets.Dataset.from_parquet(
                [str(p) for p in parquet_files], features=features, cache_dir=str(cache), keep_in_memory=False
            )
        else:
            dataset = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
        # An empty dataset saved with the default sharding has no arrow file, and load_from_disk fails on it.
        dataset.save_to_disk(str(tmp), num_shards=1 if dataset.num_rows == 0 else None)
        del dataset
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return target


# ============================================================================ the card


def _licence_of(source: str, config: ExportConfig, from_documents: dict[str, str]) -> str | None:
    return config.licenses.get(source) or from_documents.get(source) or KNOWN_LICENSES.get(source)


def write_card(config: ExportConfig, filter_path: Path, documents: Path, sft: dict, pretrain: dict, info: dict) -> Path:
    """README.md with Hugging Face card metadata: configs, licence, counts per source, models, tau."""
    sft_counts, pre_counts = sft.get("counts", {}), pretrain.get("counts", {})
    sources = sorted(set(sft_counts.get("kept_by_source", {})) | set(sft_counts.get("not_kept_by_source", {}))
                     | set(pre_counts.get("documents_by_source", {})))
    from_docs = pre_counts.get("licenses_from_documents", {})
    licences = {s: _licence_of(s, config, from_docs) for s in sources}
    known = {v for v in licences.values() if v}
    overall = known.pop().lower() if len(known) == 1 and all(licences.values()) else "other"
    filter_cfg, extract_cfg, select_cfg = info["filter"], info["extract"], info["select"]
    spec = lambda cfg, key: ((cfg.get(key) or {}).get("spec") or "unknown")  # noqa: E731
    taus = sft_counts.get("tau_by_source", {})
    rows = []
    for s in sources:
        tau = ", ".join(f"{t:g}" for t in taus.get(s, [])) or "-"
        rows.append(
            f"| {s} | {sft_counts.get('kept_by_source', {}).get(s, 0)} | {sft_counts.get('not_kept_by_source', {}).get(s, 0)}"
            f" | {pre_counts.get('documents_by_source', {}).get(s, 0)} | {tau} | {licences[s] or 'unknown'} |"
        )
    skipped = {f"sft: {k}": v for k, v in sft_counts.get("skipped", {}).items()}
    skipped.update({f"pretrain: {k}": v for k, v in pre_counts.get("skipped", {}).items()})
    instruction = export_instruction(config)
    lines = [
        "---",
        f"license: {overall}",
        "tags: [rationalyst, rationales, reasoning]",
        "configs:",
        f"- config_name: {SFT_DIR}",
        f"  data_files: {SFT_DIR}/{PARQUET_DIR}/*.parquet",
        f"- config_name: {PRETRAIN_DIR}",
        f"  data_files: {PRETRAIN_DIR}/{PARQUET_DIR}/*.parquet",
        "---",
        "",
        "# Rationales mined by rationalyst",
        "",
        "Implicit rationales inserted into unlabeled documents by an instruction model and kept when they make the "
        "following text more predictable (RATIONALYST, Jiang et al., ACL 2025), exported by `rationalyst export`.",
        "",
        f"- **{SFT_DIR}**: {sft_counts.get('sft_examples', 0)} chat examples (`messages`: user = instruction + preceding "
        "text, assistant = the rationale), the format TRL's SFTTrainer reads.",
        f"- **{PRETRAIN_DIR}**: {pre_counts.get('documents', 0)} documents with {pre_counts.get('inline_rationales', 0)} "
        f"rationales inline between `{config.bot}` and `{config.eot}`, for continued pre-training.",
        "",
        "| source | kept rationales | dropped rationales | documents | tau | licence |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## How it was made",
        "",
        f"- documents: `{documents}`" + (f" (selected by `{spec(select_cfg, 'embedder')}`, cosine similarity >= "
                                          f"{select_cfg.get('threshold')})" if select_cfg else ""),
        f"- extraction model: `{spec(extract_cfg, 'model')}`" + (f" ({extract_cfg.get('mode')} mode)" if extract_cfg else ""),
        f"- scorer: `{spec(filter_cfg, 'scorer')}`, gamma {filter_cfg.get('gamma', 'unknown')}, tau "
        f"{filter_cfg.get('tau', 'unknown')} (per source: {json.dumps(filter_cfg.get('tau_by_source', {}))})",
        f"- filter run: `{filter_path}`",
        "- user turn: " + (f"the instruction {json.dumps(instruction, ensure_ascii=False)}, a blank line, the preceding text"
                           if instruction is not None else "the preceding text alone (paper-release format)"),
        "- skipped input: " + (", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "none")
        + " (examples with file and line in `sft/manifest.json` and `pretrain/manifest.json`)",
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        f'sft = datasets.load_from_disk("{SFT_DIR}/{DATASET_DIR}")',
        f'pretrain = datasets.load_dataset("parquet", data_files="{PRETRAIN_DIR}/{PARQUET_DIR}/*.parquet", split="train")',
        "```",
        "",
        f"The same rows are JSON lines in `{SFT_DIR}/shards/` and `{PRETRAIN_DIR}/shards/`. A licence marked "
        "unknown was not recorded for that source: check it before redistributing.",
        "",
    ]
    path = config.output / CARD_FILE
    atomic_write(path, "\n".join(lines).encode("utf-8"))
    return path


# ============================================================================ entry point


def run(config: ExportConfig) -> ExportSummary:
    """Write both corpora (resuming an earlier export) in JSONL, Parquet and `datasets` form, and the card."""
    filter_path = resolve_input(config.input)
    info = lineage(filter_path)
    documents = config.documents or info["documents"]
    if documents is None or not Path(documents).exists():
        raise InputError(
            f"cannot find the documents of {filter_path} (from its extract run's input: {documents}); "
            "pass --documents <the select run directory or a JSONL file of documents>"
        )
    mode = "overwrite" if config.overwrite else "resume"
    config.output.mkdir(parents=True, exist_ok=True)
    if config.overwrite:
        (config.output / CARD_FILE).unlink(missing_ok=True)
        for kind in (SFT_DIR, PRETRAIN_DIR):
            for sub in (PARQUET_DIR, DATASET_DIR):
                shutil.rmtree(config.output / kind / sub, ignore_errors=True)
    runs = {kind: RunDir(config.output / kind, config, stage=f"export.{kind}", mode=mode) for kind in (SFT_DIR, PRETRAIN_DIR)}
    sft_run, pre_run = runs[SFT_DIR], runs[PRETRAIN_DIR]
    if not (sft_run.is_complete() and pre_run.is_complete()):
        index = _Index(config.output)
        try:
            sft_counts = _sft_pass(config, filter_path, sft_run, index, export_instruction(config))
            if not sft_run.is_complete():
                sft_run.finish(counts=sft_counts)
            if not pre_run.is_complete():
                pre_run.finish(counts=_pretrain_pass(config, Path(documents), pre_run, index))
        finally:
            index.close()
    for kind, run_dir in runs.items():
        write_dataset(run_dir.path, kind, write_parquet(run_dir.path, kind))
    sft, pretrain = sft_run.manifest() or {}, pre_run.manifest() or {}
    card = write_card(config, filter_path, Path(documents), sft, pretrain, info)
    sft_counts, pre_counts = sft.get("counts", {}), pretrain.get("counts", {})
    skipped = {f"sft: {k}": v for k, v in sft_counts.get("skipped", {}).items()}
    skipped.update({f"pretrain: {k}": v for k, v in pre_counts.get("skipped", {}).items()})
    return ExportSummary(
        output=config.output,
        sft_examples=sft_counts.get("sft_examples", 0),
        documents=pre_counts.get("documents", 0),
        inline_rationales=pre_counts.get("inline_rationales", 0),
        kept_by_source=sft_counts.get("kept_by_source", {}),
        documents_by_source=pre_counts.get("documents_by_source", {}),
        skipped=skipped,
        card=card,
    )
