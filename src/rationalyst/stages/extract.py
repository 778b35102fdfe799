"""Stage 2: documents → rationale records ``{id, doc_id, source, preceding, rationale, following, position}``.

A rationale is the unstated "why" between two pieces of a document. Each record places one rationale
at an insertion point of the ORIGINAL document text: ``preceding`` is the text before the point,
``following`` the text from the point up to the next record's point (or the end), so
``preceding + following`` is always a prefix of the document and no other rationale appears in either.
``position`` is the rationale's 0-based index within its document and ``id`` is ``f"{doc_id}:{position}"``.
Insertion points sit right after a sentence or line: ``preceding`` never ends in whitespace, and
``following`` starts with the whitespace (if any) that separated the two pieces.

Two modes (``ExtractConfig.mode``):

``boundary`` (default; METHOD.md's "extraction that cannot break the text")
    Split the document at sentence ends (``. ! ?`` followed by whitespace, not after a list number or
    a common abbreviation; "3.5" is not split) and at line ends, skip points with fewer than
    ``min_preceding_chars`` before them, keep at most ``max_rationales_per_doc`` points spread evenly
    over the rest, and generate one rationale per point from the preceding text alone (greedy by
    default, stopping at ``<EOT>`` or a newline). No document text is regenerated, so fidelity holds
    by construction. The prompts of a whole batch of documents go to the model in one call.

``rewrite`` (the paper's)
    The model copies the whole document with rationales inserted between ``<BOT>`` and ``<EOT>``.
    `parse_rewrite` reads the markers robustly: a ``<BOT>`` with no ``<EOT>`` before the next
    ``<BOT>`` loses its text up to the end of its line (counted ``unclosed_marker``), a stray
    ``<EOT>`` is removed (``stray_marker``), a nested ``<BOT> … <BOT> … <EOT> … <EOT>`` span is
    removed whole (``nested_markers``), an empty rationale is dropped (``empty``). The fidelity check
    compares the text with the rationales stripped to the original (normalized Indel similarity, i.e.
    rapidfuzz ``fuzz.ratio / 100``, on whitespace-normalized text); below ``fidelity_threshold`` the
    whole document is dropped (``fidelity``).

    Mapping back to the original: the stripped text is aligned to the original character by
    character (rapidfuzz ``Indel.opcodes``; difflib's opcodes when rapidfuzz is absent). A rationale
    inside an unchanged stretch maps exactly; one at the edge of a changed stretch maps to that edge;
    one inside text the model added (with nothing of the original replaced) maps to where the addition
    sits. A rationale inside a stretch where the model *replaced* original text, or right where it
    dropped original text, has no well-defined place and is dropped (``unmappable``). The exception:
    where the original text of the changed stretch at or around a rationale is only closing punctuation
    (the sentence's ``?`` turned into the space before ``<BOT>``, or deleted), the rationale goes after it.

Both modes then drop rationales at the document's edges (nothing before or after them:
``at_document_edge``), at the same point as an earlier one (``same_position``), beyond
``max_rationales_per_doc`` (``over_limit``), generations cut by ``max_new_tokens``
(``unfinished``, unless ``keep_unfinished``), and, with ``drop_copies``, rationales that copy the text
right after them (``copies_following``: Stage 3 would reward such a leak of the answer) or right
before them (``copies_preceding``: an echo carries no reasoning).

Prompts and few-shot demonstrations are files, one per kind of source, in
``rationalyst/prompts/extract/<kind>.yaml`` (kinds: math, multiple_choice, code, web); the kind of a
document comes from its ``source`` through ``ExtractConfig.source_kinds`` (first case-insensitive
substring match, else ``default_kind``). ``prompts_dir`` points at a folder of replacement files.

Resume works at document granularity. The output directory is a `RunDir` whose shards hold the
rationale records only (exactly what Stage 3 reads); beside it, ``<output>/documents/`` is a second
`RunDir` with one summary record per finished document (``id`` = the document id, its status, kept
and dropped counts, generated tokens), including documents that yielded no rationale. A document is
done when its summary exists. Shards are only ever cut between documents (every ``shard_size``
records or 30 seconds), and the rationale shard is written before the summary shard, so a kill
leaves every document either fully written or not at all. The summaries are handed to their writer
only once the rationale shard is on disk: if writing it fails (disk full, an I/O error), they are
dropped and a resume redoes those documents. The one window in between (rationales written, summary
not) is repaired when the run is reopened by writing a ``recovered`` summary for such documents (its
drop counts are lost, its records are kept). The manifest's counts come from all summaries, so they
are exact after any number of resumes. Input problems (bad lines, empty text, repeated ids) are not
"done" and are counted again by every session, as `RunDir.skip` intends.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rationalyst.config import StrictModel, content_digest
from rationalyst.data.extraction_text import (
    EOT,
    clean_rationale,
    copies,
    fidelity,
    map_offsets,
    parse_rewrite,
    split_boundaries,
    spread,
    truncate_left,
)
from rationalyst.data.prompt_files import prompt_path, read_prompt_yaml
from rationalyst.errors import PromptTooLongError, RationalystError
from rationalyst.executor import ExecutorConfig, map_batches
from rationalyst.lm import LanguageModel, SamplingParams, load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.registry import ModelConfig
from rationalyst.runs import RunDir, read_json_lines
from rationalyst.search.heuristics import derive_seed

log = logging.getLogger(__name__)

STAGE = "extract"
DOCUMENTS_STAGE = "extract.documents"
DOCUMENTS_DIR = "documents"
FLUSH_SECONDS = 30.0  # shards are cut at least this often (between documents), so a kill loses little

Mode = Literal["rewrite", "boundary"]
Kind = Literal["math", "multiple_choice", "code", "web"]
KINDS: tuple[str, ...] = ("math", "multiple_choice", "code", "web")

DEFAULT_SOURCE_KINDS: dict[str, str] = {
    "gsm8k": "math",
    "math": "math",  # also MATH, DM-Mathematics, mathematics_dataset
    "aqua": "math",
    "svamp": "math",
    "cqa": "multiple_choice",  # ECQA, CommonsenseQA (cqa_data_*.csv)
    "commonsense": "multiple_choice",
    "arc_challenge": "multiple_choice",
    "arc-challenge": "multiple_choice",
    "ai2_arc": "multiple_choice",
    "mmlu": "multiple_choice",
    "hellaswag": "multiple_choice",
    "openbookqa": "multiple_choice",
    "proofwriter": "multiple_choice",
    "github": "code",
    "code": "code",
}


class ExtractConfig(StrictModel):
    """`rationalyst extract`: insert candidate rationales into selected documents (Stage 2)."""

    input: Path = Field(
        description="Stage 1's run directory of documents, or a JSONL file of records with id, text, source."
    )
    output: Path = Field(description="Run directory for the rationale records (resumed if it exists).")
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(spec=DEFAULT_LM),
        description="The extracting instruction model (paper: Llama-3-8B-Instruct).",
    )
    mode: Mode = Field(
        "boundary",
        description="boundary: one rationale per sentence boundary from the preceding text; "
        "rewrite: the paper's copy-with-markers rewrite, checked for fidelity.",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy (the paper's).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus mass when temperature > 0.")
    seed: int | None = Field(
        0, description="Sampling seed when temperature > 0; each prompt draws from its own, derived from this, its document and point."
    )
    max_new_tokens: int = Field(64, ge=1, description="Most tokens of one rationale (boundary mode).")
    rewrite_max_new_tokens: int = Field(
        3000,
        ge=1,
        description="Most tokens of one rewritten document (paper: 3000); a document gets at most "
        "its chars / 2 + max_rationales_per_doc * max_new_tokens.",
    )
    batch_size: int = Field(8, ge=1, description="Documents whose prompts go to the model in one generate call.")
    max_rationales_per_doc: int = Field(8, ge=1, description="Most rationales kept per document.")
    min_preceding_chars: int = Field(
        40, ge=0, description="Boundary mode: no insertion point with fewer characters before it."
    )
    max_preceding_chars: int = Field(
        4000,
        ge=100,
        description="Boundary mode: the prompt keeps only this many characters of preceding text, "
        "cut from the left (counted as prompts_truncated); the record keeps it all.",
    )
    max_rewrite_chars: int = Field(
        4000, ge=1, description="Rewrite mode: longer documents are not sent to the model (status too_long)."
    )
    fidelity_threshold: float = Field(
        0.9, ge=0, le=1, description="Rewrite mode: least similarity of the stripped output to the document."
    )
    keep_unfinished: bool = Field(False, description="Keep rationales cut off by max_new_tokens.")
    drop_copies: bool = Field(True, description="Drop rationales that copy the text right after or before them.")
    num_demos: int = Field(2, ge=0, description="Few-shot demonstrations per prompt (the first n of the kind's file).")
    source_kinds: dict[str, Kind] = Field(
        default_factory=lambda: dict(DEFAULT_SOURCE_KINDS),
        description="Substring of a document's source (case-insensitive, first match wins) → prompt kind.",
    )
    default_kind: Kind = Field("web", description="Prompt kind for sources that match nothing.")
    prompts_dir: Path | None = Field(
        None, description="Folder of <kind>.yaml prompt files replacing the packaged ones."
    )
    shard_size: int = Field(
        500,
        ge=1,
        description="Records (rationales + document summaries) per shard, approximately: shards end "
        "only between batches of documents, and at least every 30 seconds.",
    )
    sample_documents: int | None = Field(
        None,
        ge=1,
        description="Extract from a seeded sample of this many input documents only (a budget for small "
        "machines); each document's rank is a hash of sample_seed and its id, so a larger sample contains "
        "a smaller one and the input's order does not matter.",
    )
    sample_seed: int = Field(0, description="Seed of sample_documents' ranking.")
    overwrite: bool = Field(False, description="Start over instead of resuming an earlier run.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="local, or ray.")

    # How to run, not what to compute: left out of the config hash, so changing them keeps a run
    # resumable. (batch_size only changes which prompts share a padded batch.)
    execution_fields = frozenset({"output", "batch_size", "shard_size", "overwrite", "executor"})

    def kind_for(self, source: str) -> str:
        lowered = source.lower()
        for needle, kind in self.source_kinds.items():
            if needle.lower() in lowered:
                return kind
        return self.default_kind


# ============================================================================ prompts


@dataclass(frozen=True)
class PromptSet:
    """One kind's prompt templates and demonstrations, as read from ``<kind>.yaml``."""

    kind: str
    boundary_system: str
    boundary_user: str
    rewrite_system: str
    rewrite_user: str
    demos: tuple[str, ...]  # annotated documents

    def boundary_demos(self, num_demos: int) -> list[tuple[str, str]]:
        """(text before the demo's last rationale, that rationale) for the first ``num_demos`` demos."""
        pairs = []
        for demo in self.demos[:num_demos]:
            parsed = parse_rewrite(demo)
            offset, rationale = parsed.rationales[-1]
            pairs.append((parsed.stripped[:offset], rationale))
        return pairs

    def rewrite_demos(self, num_demos: int) -> list[tuple[str, str]]:
        """(document, annotated document) for the first ``num_demos`` demos."""
        return [(parse_rewrite(demo).stripped, demo) for demo in self.demos[:num_demos]]

    def boundary_messages(self, preceding: str, num_demos: int) -> list[dict[str, str]]:
        return _chat(self.boundary_system, self.boundary_user, "{preceding}", self.boundary_demos(num_demos), preceding)

    def rewrite_messages(self, document: str, num_demos: int) -> list[dict[str, str]]:
        return _chat(self.rewrite_system, self.rewrite_user, "{document}", self.rewrite_demos(num_demos), document)


def _chat(system: str, user: str, slot: str, demos: Sequence[tuple[str, str]], text: str) -> list[dict[str, str]]:
    """System instruction, one user/assistant exchange per demo, then the user turn for ``text``."""
    messages = [{"role": "system", "content": system}]
    for demo_in, demo_out in demos:
        messages.append({"role": "user", "content": user.replace(slot, demo_in)})
        messages.append({"role": "assistant", "content": demo_out})
    messages.append({"role": "user", "content": user.replace(slot, text)})
    return messages


def load_prompts(kind: str, prompts_dir: Path | None = None) -> PromptSet:
    """Read ``<kind>.yaml`` from ``prompts_dir`` or the packaged ``rationalyst/prompts/extract``."""
    source, data = read_prompt_yaml("extract", f"{kind}.yaml", prompts_dir, what="extract prompts")
    try:
        prompts = PromptSet(
            kind=kind,
            boundary_system=str(data["boundary"]["system"]).strip(),
            boundary_user=str(data["boundary"]["user"]),
            rewrite_system=str(data["rewrite"]["system"]).strip(),
            rewrite_user=str(data["rewrite"]["user"]),
            demos=tuple(str(d).strip() for d in data.get("demos") or ()),
        )
    except (KeyError, TypeError) as exc:
        raise RationalystError(
            f"{source}: expected boundary.system/user, rewrite.system/user and demos ({exc})"
        ) from None
    if "{preceding}" not in prompts.boundary_user or "{document}" not in prompts.rewrite_user:
        raise RationalystError(f"{source}: boundary.user needs {{preceding}} and rewrite.user needs {{document}}")
    for n, demo in enumerate(prompts.demos, 1):
        parsed = parse_rewrite(demo)
        if parsed.dropped or not parsed.rationales:
            raise RationalystError(f"{source}: demo {n} needs well-formed <BOT>…<EOT> rationales")
    return prompts


def prompt_inputs(config: ExtractConfig) -> dict[str, str]:
    """Digests of the prompt files extraction reads (`RunDir` inputs), one per kind whose file exists (in
    ``prompts_dir``, or packaged): an edited prompt file starts the run over instead of resuming it."""
    inputs = {}
    for kind in KINDS:
        source = prompt_path("extract", f"{kind}.yaml", config.prompts_dir)
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # a kind without a file fails when (if ever) a document of that kind is extracted
        except (OSError, UnicodeDecodeError) as exc:
            raise RationalystError(f"cannot read the extract prompts {source}: {exc}") from None
        inputs[f"the extraction prompt {kind}.yaml"] = content_digest(text)
    return inputs


# ============================================================================ per-document extraction


@dataclass
class Document:
    id: str
    text: str
    source: str
    kind: str


@dataclass
class DocResult:
    """What became of one document: its records and the summary written to ``documents/``."""

    doc: Document
    status: str = "ok"
    candidates: int = 0
    kept: list[tuple[int, str]] = field(default_factory=list)  # (offset in doc.text, rationale)
    dropped: Counter = field(default_factory=Counter)
    generated_tokens: int = 0
    cut_by_length: int = 0  # generations that hit their token budget
    prompts_truncated: int = 0
    fidelity: float | None = None
    window: str | None = None  # too_long_for_model: the context window it was refused in (`context_window`)

    def records(self) -> list[dict[str, Any]]:
        text, out = self.doc.text, []
        for position, (offset, rationale) in enumerate(self.kept):
            end = self.kept[position + 1][0] if position + 1 < len(self.kept) else len(text)
            out.append(
                {
                    "id": f"{self.doc.id}:{position}",
                    "doc_id": self.doc.id,
                    "source": self.doc.source,
                    "preceding": text[:offset],
                    "rationale": rationale,
                    "following": text[offset:end],
                    "position": position,
                }
            )
        return out

    def summary(self, mode: str) -> dict[str, Any]:
        if self.status == "ok" and not self.kept:
            self.status = "no_rationales"
        return {
            "id": self.doc.id,
            "source": self.doc.source,
            "kind": self.doc.kind,
            "mode": mode,
            "status": self.status,
            "chars": len(self.doc.text),
            "candidates": self.candidates,
            "rationales": len(self.kept),
            "dropped": dict(self.dropped),
            "generated_tokens": self.generated_tokens,
            "cut_by_length": self.cut_by_length,
            "prompts_truncated": self.prompts_truncated,
            "fidelity": self.fidelity,
            **({"window": self.window} if self.window is not None else {}),
        }


def context_window(config: ExtractConfig) -> str:
    """The extractor's context window as far as this config says it (kept with a document refused as
    too long): llama.cpp's ``n_ctx``, vLLM's ``max_model_len``, else the model's own. Neither is part of
    the config's hash (n_ctx from 512 up: `registry._n_ctx_in_hash`), so it can be raised and the run
    resumed, trying those documents again. (A llama.cpp refusal kept before its window was is tried
    again once.)"""
    if config.model.spec.startswith("llamacpp:"):
        return f"n_ctx={config.model.n_ctx}"
    return f"max_model_len={config.model.max_model_len}"


#: The window of a refusal recorded before windows were (a run of the default max_model_len, as most are).
_DEFAULT_WINDOW = "max_model_len=None"


def refused_in_another_window(
    summaries: Iterable[dict[str, Any]], config: ExtractConfig, *, servers: bool = True
) -> set[str]:
    """The documents the model refused as too long whose refusal may not hold now: refused under another
    `context_window` (max_model_len raised), or, with ``servers``, by an OpenAI-compatible server, whose
    window is the server's and may have been raised since (one rejected request each if not)."""
    window, server = context_window(config), servers and config.model.spec.startswith("openai:")
    return {
        s["id"] for s in summaries
        if s.get("status") == "too_long_for_model" and (server or s.get("window", _DEFAULT_WINDOW) != window)
    }


def finalize(result: DocResult, candidates: Sequence[tuple[int | None, str, bool]], config: ExtractConfig) -> None:
    """Turn candidate (offset in the original or None, rationale, finished) into kept rationales."""
    text = result.doc.text
    last = -1
    for offset, rationale, finished in candidates:
        if offset is None:
            result.dropped["unmappable"] += 1
            continue
        while offset > 0 and text[offset - 1].isspace():
            offset -= 1
        if not rationale:
            result.dropped["empty"] += 1
        elif not finished and not config.keep_unfinished:
            result.dropped["unfinished"] += 1
        elif not text[:offset].strip() or not text[offset:].strip():
            result.dropped["at_document_edge"] += 1
        elif offset <= last:
            result.dropped["same_position"] += 1
        elif config.drop_copies and copies(rationale, text[offset : offset + 2 * len(rationale) + 40]):
            result.dropped["copies_following"] += 1
        elif config.drop_copies and copies(rationale, text[max(0, offset - 2 * len(rationale) - 40) : offset]):
            result.dropped["copies_preceding"] += 1
        elif len(result.kept) >= config.max_rationales_per_doc:
            result.dropped["over_limit"] += 1
        else:
            result.kept.append((offset, rationale))
            last = offset


class ExtractWorker:
    """Turns a batch of documents into output records, with one generate call per batch.

    Called with document items (``{"id", "text", "source", "kind"}``) it returns, per document and in
    order, the document's rationale records followed by ``{"_summary": <its summary>}``; this shape
    lets the stage cut shards between documents under either executor. The model is loaded on the
    first batch when none is given (a Ray worker loads its own).
    """

    def __init__(self, config: ExtractConfig, model: LanguageModel | None = None) -> None:
        self.config = config
        self._model = model
        self._prompts: dict[str, PromptSet] = {}

    @property
    def model(self) -> LanguageModel:
        if self._model is None:
            self._model = load_model(self.config.model)
        return self._model

    def __call__(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        docs = [Document(i["id"], i["text"], i["source"], i["kind"]) for i in items]
        out: list[dict[str, Any]] = []
        for result in self.process(docs):
            out += result.records()
            out.append({"_summary": result.summary(self.config.mode)})
        return out

    def prompts(self, kind: str) -> PromptSet:
        if kind not in self._prompts:
            self._prompts[kind] = load_prompts(kind, self.config.prompts_dir)
        return self._prompts[kind]

    def _params(self, max_new_tokens: int, stop: tuple[str, ...], *key: object) -> SamplingParams:
        """One prompt's sampling; sampled, its seed is drawn from the config's and the prompt's ``key``
        (document id, insertion point), so a prompt samples alike in any batch and after a resume."""
        c = self.config
        seed = None if c.seed is None else derive_seed(c.seed, *key)
        return SamplingParams(  # the extractor's text is all that is read: no log-probs
            temperature=c.temperature, top_p=c.top_p, seed=seed, max_new_tokens=max_new_tokens, stop=stop,
            logprobs=False,
        )

    def process(self, docs: Sequence[Document]) -> list[DocResult]:
        try:
            return self._process(docs)
        except PromptTooLongError as exc:  # only that: a missing model or a server down stops the run
            if len(docs) == 1:
                log.warning("document %s: %s", docs[0].id, exc)
                return [DocResult(docs[0], status="too_long_for_model", window=context_window(self.config))]
            return [r for doc in docs for r in self.process([doc])]

    def _process(self, docs: Sequence[Document]) -> list[DocResult]:
        if self.config.mode == "boundary":
            return self._boundary(docs)
        return self._rewrite(docs)

    def _boundary(self, docs: Sequence[Document]) -> list[DocResult]:
        c = self.config
        results, prompts, owners, params = [], [], [], []
        for doc in docs:
            result = DocResult(doc)
            points = spread(split_boundaries(doc.text, c.min_preceding_chars), c.max_rationales_per_doc)
            if not points:
                result.status = "no_boundaries"
            result.candidates = len(points)
            for point in points:
                preceding = doc.text[:point]
                if len(preceding) > c.max_preceding_chars:
                    preceding = truncate_left(preceding, c.max_preceding_chars)
                    result.prompts_truncated += 1
                prompts.append(self.prompts(doc.kind).boundary_messages(preceding, c.num_demos))
                params.append(self._params(c.max_new_tokens, (EOT, "\n"), doc.id, point))
                owners.append((len(results), point))
            results.append(result)
        if prompts:
            completions = self.model.generate_mixed(prompts, params)  # each insertion point as if alone
            candidates: dict[int, list[tuple[int | None, str, bool]]] = defaultdict(list)
            for (index, point), (completion, *_) in zip(owners, completions):
                results[index].generated_tokens += len(completion.token_ids)
                results[index].cut_by_length += completion.finish_reason == "length"
                candidates[index].append((point, clean_rationale(completion.text), completion.finish_reason == "stop"))
            for index, items in candidates.items():
                finalize(results[index], items, c)
        return results

    def _rewrite(self, docs: Sequence[Document]) -> list[DocResult]:
        c = self.config
        results = [DocResult(doc) for doc in docs]
        todo = []
        for result in results:
            if len(result.doc.text) > c.max_rewrite_chars:
                result.status = "too_long"
            else:
                todo.append(result)
        if not todo:
            return results
        prompts = [self.prompts(r.doc.kind).rewrite_messages(r.doc.text, c.num_demos) for r in todo]
        params = [self._params(rewrite_budget(r.doc.text, c), (), r.doc.id) for r in todo]
        completions = self.model.generate_mixed(prompts, params)  # each document as if alone
        for result, (completion, *_) in zip(todo, completions):
            result.generated_tokens = len(completion.token_ids)
            result.cut_by_length = int(completion.finish_reason == "length")
            rewrite_document(result, completion.text, c)
        return results


def rewrite_budget(text: str, config: ExtractConfig) -> int:
    """Most tokens of one document's rewrite: its characters / 2 (room for the copy) plus
    ``max_rationales_per_doc * max_new_tokens`` (room for the rationales), at most
    ``rewrite_max_new_tokens``. It depends on the document alone, never on its batch-mates, so neither
    ``batch_size`` nor the regrouping of a resume can change where a rewrite is cut."""
    return min(config.rewrite_max_new_tokens, len(text) // 2 + config.max_rationales_per_doc * config.max_new_tokens)


def rewrite_document(result: DocResult, output: str, config: ExtractConfig) -> None:
    """Parse a model's rewrite of ``result.doc``, check fidelity and map its rationales (see module doc)."""
    parsed = parse_rewrite(output)
    result.dropped.update(parsed.dropped)
    result.candidates = len(parsed.rationales) + sum(parsed.dropped.values())
    score = fidelity(parsed.stripped, result.doc.text)
    result.fidelity = round(score, 4)
    if score < config.fidelity_threshold:
        result.status = "fidelity_failed"
        if parsed.rationales:
            result.dropped["fidelity"] += len(parsed.rationales)
        return
    offsets = map_offsets(parsed.stripped, result.doc.text, [k for k, _ in parsed.rationales])
    # A rewrite cut by its token budget (counted in cut_by_length) still passes if it kept the
    # document faithfully enough; its rationales are complete, since each one is closed by <EOT>.
    finalize(result, [(o, r, True) for o, (_, r) in zip(offsets, parsed.rationales)], config)


# ============================================================================ input


def read_documents(path: Path, run: RunDir, config: ExtractConfig) -> Iterator[Document]:
    """Stream the input's documents; bad lines, empty texts and repeated ids are skipped and counted."""
    seen: set[str] = set()
    for file, line_no, record in read_json_lines(path, run.report_skip, stage="select"):
        if record.get("selected") is False:
            continue  # a document the select stage rejected (it has no text)
        doc_id = record.get("id")
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            run.skip("missing or invalid id", file=file, line=line_no)
            continue
        text = record.get("text")
        if not isinstance(text, str):
            run.skip("missing text", file=file, line=line_no, doc_id=doc_id)
            continue
        if not text.strip():
            run.skip("empty text", file=file, line=line_no, doc_id=doc_id)
            continue
        if doc_id in seen:
            run.skip("repeated document id", file=file, line=line_no, doc_id=doc_id)
            continue
        seen.add(doc_id)
        source = record.get("source")
        source = source if isinstance(source, str) and source else "unknown"
        yield Document(doc_id, text, source, config.kind_for(source))


def sample_rank(seed: int, doc_id: str) -> int:
    """A document's place in the seeded sample: the first 8 bytes of sha256(seed, id)."""
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{doc_id}".encode()).digest()[:8], "big")


def sample_documents(documents: Iterable[Document], size: int, seed: int) -> list[Document]:
    """The ``size`` documents of lowest `sample_rank`, in rank order (memory: ``size`` documents)."""
    heap: list[tuple[int, int, Document]] = []  # (-rank, input position, document): a max-heap of the kept
    for position, doc in enumerate(documents):
        item = (-sample_rank(seed, doc.id), position, doc)
        if len(heap) < size:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    return [doc for _, _, doc in sorted(heap, key=lambda item: (-item[0], item[1]))]


# ============================================================================ the stage


def summarize(summaries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The manifest counts of a set of document summaries (all sessions of a run)."""
    statuses: Counter = Counter()
    dropped: Counter = Counter()
    per_source: dict[str, dict[str, Any]] = {}
    totals = Counter()
    for s in summaries:
        statuses[s["status"]] += 1
        dropped.update(s.get("dropped") or {})
        totals["documents"] += 1
        totals["rationales"] += s["rationales"]
        totals["candidates"] += s["candidates"]
        totals["generated_tokens"] += s["generated_tokens"]
        totals["cut_by_length"] += s.get("cut_by_length", 0)
        totals["prompts_truncated"] += s["prompts_truncated"]
        src = per_source.setdefault(
            s["source"],
            {
                "documents": 0,
                "documents_with_rationales": 0,
                "rationales": 0,
                "generated_tokens": 0,
                "dropped": Counter(),
            },
        )
        src["documents"] += 1
        src["documents_with_rationales"] += s["rationales"] > 0
        src["rationales"] += s["rationales"]
        src["generated_tokens"] += s["generated_tokens"]
        src["dropped"].update(s.get("dropped") or {})
    for src in per_source.values():
        src["dropped"] = dict(src["dropped"])
    tokens = totals["generated_tokens"]
    return {
        "documents_extracted": totals["documents"],
        "documents_with_rationales": sum(v["documents_with_rationales"] for v in per_source.values()),
        "documents_by_status": dict(statuses),
        "candidates": totals["candidates"],
        "rationales": totals["rationales"],
        "rationales_dropped": dict(dropped),
        "rationales_dropped_total": sum(dropped.values()),
        "generated_tokens": tokens,
        "generations_cut_by_length": totals["cut_by_length"],
        "rationales_per_1k_generated_tokens": round(1000 * totals["rationales"] / tokens, 3) if tokens else None,
        "prompts_truncated": totals["prompts_truncated"],
        "per_source": per_source,
    }


def _recover_orphans(run: RunDir, done: set[str], docs_writer) -> int:
    """Summaries for documents whose rationales were written but whose summary was not (a kill between)."""
    counts: Counter = Counter()
    sources: dict[str, str] = {}
    for record in run.records():
        if record["doc_id"] not in done:
            counts[record["doc_id"]] += 1
            sources[record["doc_id"]] = record.get("source", "unknown")
    for doc_id, n in counts.items():
        docs_writer.write(
            {
                "id": doc_id, "source": sources[doc_id], "kind": None, "mode": None, "status": "recovered",
                "chars": None, "candidates": n, "rationales": n, "dropped": {}, "generated_tokens": 0,
                "cut_by_length": 0, "prompts_truncated": 0, "fidelity": None,
            }
        )
        done.add(doc_id)
    if counts:
        log.warning("recovered %d document(s) whose summaries were lost by an interrupted run", len(counts))
    return len(counts)


def run(config: ExtractConfig, model: LanguageModel | None = None) -> dict[str, Any]:
    """Extract rationales from every input document (resuming an earlier run); returns the manifest counts.

    ``model`` (optional, local executor only) is used instead of loading ``config.model``; the model
    is loaded only if some document still needs work.
    """
    mode = "overwrite" if config.overwrite else "resume"
    inputs = prompt_inputs(config)
    out = RunDir(config.output, config, stage=STAGE, mode=mode, inputs=inputs)
    docs_run = RunDir(Path(config.output) / DOCUMENTS_DIR, config, stage=DOCUMENTS_STAGE, mode=mode, inputs=inputs)
    retry = refused_in_another_window(docs_run.records(), config)
    if retry:
        log.info("extract: %d document(s) refused as too long before, in another context window, are tried again "
                 "(%s)", len(retry), context_window(config))
        docs_run.forget(retry)
    if out.is_complete() and docs_run.is_complete():
        log.info("extract: %s is complete for this config; nothing to do", config.output)
        return out.manifest()["counts"]

    started = time.perf_counter()
    read, session = Counter(), Counter()
    # Neither writer flushes by itself; `commit` cuts both shards, rationales first.
    with docs_run.writer(shard_size=10**9, flush_seconds=math.inf) as docs_writer, out.writer(
        shard_size=10**9, flush_seconds=math.inf
    ) as writer:
        done = docs_run.done_ids()
        recovered = _recover_orphans(out, done, docs_writer)
        resumed = len(done)
        summaries: list[dict[str, Any]] = []  # of the documents whose rationales are buffered in `writer`

        def commit() -> None:
            """Write the buffered rationales, then the summaries of their documents.

            A summary reaches its writer only once its document's rationales are on disk, so a failed
            rationale write (disk full, I/O error) cannot leave a document counted done without its
            rationales: its summary is never written and a resume redoes it.
            """
            writer.flush()  # a kill right after this is repaired by _recover_orphans
            for summary in summaries:
                docs_writer.write(summary)
            summaries.clear()
            docs_writer.flush()

        def pending() -> Iterator[dict[str, Any]]:
            documents = read_documents(config.input, out, config)
            if config.sample_documents is not None:
                documents = sample_documents(documents, config.sample_documents, config.sample_seed)
            for doc in documents:
                read["documents"] += 1
                if doc.id not in done:
                    yield {"id": doc.id, "text": doc.text, "source": doc.source, "kind": doc.kind}

        ray = config.executor.kind == "ray"
        factory = partial(ExtractWorker, config, None if ray else model)
        unflushed, last_flush = 0, time.monotonic()
        try:
            for record in map_batches(pending(), factory, config.batch_size, config.executor):
                unflushed += 1
                if "_summary" not in record:
                    writer.write(record)
                    continue
                summaries.append(record["_summary"])
                session["documents"] += 1
                session["rationales"] += record["_summary"]["rationales"]
                # Every document before this summary is complete: a safe place to cut both shards.
                if unflushed >= config.shard_size or time.monotonic() - last_flush >= FLUSH_SECONDS:
                    commit()
                    unflushed, last_flush = 0, time.monotonic()
                    log.info(
                        "extract: %d document(s) done this session, %d rationale(s)",
                        session["documents"],
                        session["rationales"],
                    )
            commit()
        except BaseException:
            try:  # keep the documents finished before the error, if their rationales can still be written
                commit()
            except Exception:  # don't hide the original error behind a failed write
                log.exception("extract: could not write the last documents of %s; a resume redoes them", config.output)
            raise

    counts = summarize(docs_run.records())
    counts.update(
        documents_read=read["documents"],
        documents_resumed=resumed - recovered,
        documents_recovered=recovered,
        documents_this_session=session["documents"],
    )
    docs_run.finish(counts=counts)
    manifest = out.finish(
        counts=counts, extra={"mode": config.mode, "seconds_this_session": round(time.perf_counter() - started, 3)}
    )
    log.info(
        "extract (%s): %d rationale(s) from %d document(s), %d dropped",
        config.mode,
        counts["rationales"],
        counts["documents_extracted"],
        counts["rationales_dropped_total"],
    )
    return manifest["counts"]
