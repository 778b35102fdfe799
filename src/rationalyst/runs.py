"""The runs layer: how every pipeline stage writes its output so that finished work is never lost.

A stage writes into one run directory::

    <run>/config.json            the stage name, config and its hash, written when the run starts
    <run>/shards/part-00000.jsonl records (JSON objects with a string ``id``), one per line
    <run>/manifest.json          written last, only when the stage completes

Why it is built this way:

* Each shard is written to a hidden temp file, fsynced and renamed into place, so a process killed at
  any moment leaves whole shards only; a stale temp file is deleted when the run is reopened.
* The writer flushes a shard every ``shard_size`` records and at least every ``flush_seconds``, so a
  kill loses at most that much work. Reopening the run (mode ``resume``) and iterating over
  `RunDir.pending` redoes only the missing records; an id is never written twice.
* The manifest records the config, code and package versions, counts (skipped inputs by reason, with
  examples) and timings. Its presence with the current config hash means the stage is done.
* Skipped inputs are counted in memory, not persisted: a skipped input never becomes "done", so a
  resumed run meets it again and counts it again, and the manifest's counts stay right.

One process writes a run at a time; concurrent writers to the same directory are not supported.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

import rationalyst
from rationalyst.config import config_hash, content_digest
from rationalyst.data.records import SkipReporter, json_objects, lone_surrogate_at, non_finite_at
from rationalyst.errors import InputError, RationalystError

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
SHARDS_DIR = "shards"
MAX_SKIP_EXAMPLES = 100
# Packages whose versions go into the manifest (those not installed are left out).
KEY_PACKAGES = (
    "torch",
    "transformers",
    "pydantic",
    "numpy",
    "sentence-transformers",
    "accelerate",
    "safetensors",
    "gguf",
    "llama-cpp-python",
    "vllm",
    "ray",
)

_SHARD_RE = re.compile(r"^part-(\d+)\.jsonl$")
_TEMP_MARK = ".tmp-"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (not possible on every platform, hence best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete, never partial."""
    tmp = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def dumps(obj: Any) -> bytes:
    """``obj`` as indented UTF-8 JSON with a final newline (manifests, configs, state files).

    A path whose name is not UTF-8 reaches Python with its bytes as lone surrogates (PEP 383), which
    UTF-8 cannot encode: those are written as JSON escapes (``\\udce9``), which read back as the same
    surrogates, so the path round-trips to the same bytes on disk."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def read_json(path: Path) -> Any:
    """A JSON file's content, or None if it is missing or unreadable (e.g. written by a foreign tool)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``start`` (default: this package's source), or None.

    Reads ``.git`` files directly (no subprocess), so it is cheap; any problem gives None.
    Stops at ``site-packages`` so an installed copy does not report an unrelated enclosing repo.
    """
    try:
        path = Path(start if start is not None else rationalyst.__file__).resolve()
        for folder in [path, *path.parents]:
            if folder.name == "site-packages":
                return None
            dot_git = folder / ".git"
            if dot_git.exists():
                break
        else:
            return None
        if dot_git.is_file():  # a worktree or submodule: ".git" says "gitdir: <path>"
            gitdir = Path(dot_git.read_text().split("gitdir:", 1)[1].strip())
            dot_git = gitdir if gitdir.is_absolute() else (folder / gitdir).resolve()
        common = dot_git
        if (dot_git / "commondir").is_file():
            common = (dot_git / (dot_git / "commondir").read_text().strip()).resolve()
        head = (dot_git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head[4:].strip()
        for base in (dot_git, common):
            ref_file = base / ref
            if ref_file.is_file():
                return ref_file.read_text().strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
        return None  # e.g. a branch with no commits yet
    except (OSError, IndexError, ValueError):
        return None


def package_versions(names: Iterable[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; packages that are not installed are skipped."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def shard_paths(run_path: str | Path) -> list[Path]:
    """The finished shard files of a run directory, in shard order (temp files never included)."""
    shards_dir = Path(run_path) / SHARDS_DIR
    if not shards_dir.is_dir():
        return []
    numbered = []
    for entry in shards_dir.iterdir():
        match = _SHARD_RE.match(entry.name)
        if match:
            numbered.append((int(match.group(1)), entry))
    return [p for _, p in sorted(numbered)]


def shard_lines(run_path: str | Path) -> Iterator[tuple[Path, int, str]]:
    """(shard, 1-based line, line) of every non-blank line of a run directory's shards, in written order."""
    for shard in shard_paths(run_path):
        with open(shard, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    yield shard, line_no, line


def read_records(run_path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the records of a run directory (e.g. the previous stage's output), in written order."""
    for shard, line_no, line in shard_lines(run_path):
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise RationalystError(f"{shard}, line {line_no}: corrupt record: {exc}") from None


def is_complete_manifest(manifest: Any, config_hash: str | None) -> bool:
    """Whether a manifest's content marks a complete run of the config with ``config_hash``."""
    return isinstance(manifest, dict) and manifest.get("status") == "complete" and manifest.get("config_hash") == config_hash


def changed_inputs(info: Mapping[str, Any], inputs: Mapping[str, str]) -> list[str]:
    """The names in ``inputs`` whose digest differs from the one a run's ``config.json`` (``info``) keeps;
    a name it does not keep (digested since that run started) is not a change."""
    kept = info.get("inputs") or {}
    return [name for name, digest in inputs.items() if name in kept and kept[name] != digest]


def run_info(path: str | Path) -> tuple[dict[str, Any], bool] | None:
    """A run directory's ``config.json`` content and whether the run completed with that config; None
    when ``path`` holds no run (no readable config naming a stage)."""
    path = Path(path)
    info = read_json(path / CONFIG_FILE)
    if not isinstance(info, dict) or not isinstance(info.get("stage"), str):
        return None
    return info, is_complete_manifest(read_json(path / MANIFEST_FILE), info.get("config_hash"))


def output_stamp(path: str | Path) -> str | None:
    """What a complete run directory holds, in 16 hex digits (its config hash, record count and the name
    and size of each shard), or None when it holds no complete run. The same records written again give
    the same stamp (no timings in it: a run restored from a copy, or resumed with nothing left, is
    unchanged); records added, removed or rewritten change it. Cheap: no shard is read."""
    found = run_info(path)
    if found is None or not found[1]:
        return None
    manifest = read_json(Path(path) / MANIFEST_FILE)
    shards = [(shard.name, shard.stat().st_size) for shard in shard_paths(path)]
    return content_digest([found[0].get("config_hash"), (manifest.get("counts") or {}).get("records"), shards])


def stage_input_files(path: Path, stage: str) -> list[Path]:
    """The shards of a run directory (warning if it has not finished), or the one file given."""
    path = Path(path)
    if path.is_dir():
        files = shard_paths(path)
        if not files:
            raise InputError(f"{path}: no record shards found (is it a {stage} run directory?)")
        if not (path / MANIFEST_FILE).exists():
            logger.warning("%s has no manifest: its stage has not finished, reading what it wrote so far", path)
        return files
    if not path.is_file():
        raise InputError(f"input not found: {path}")
    return [path]


def read_json_lines(path: Path, on_skip: SkipReporter, stage: str) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, line, record) for every JSON object of a stage's input (a run directory or one JSONL
    file); other lines are reported to ``on_skip(reason, file, line)`` and passed over."""
    for file in stage_input_files(path, stage):
        yield from json_objects(file, on_skip)


class RunDir:
    """One stage's output directory: config, JSONL shards, and a manifest once the stage completes.

    ``mode="resume"`` (the default) keeps what an earlier run with the same config wrote; if the
    directory holds a run with a different config (or stage), opening it raises `RationalystError`.
    ``mode="overwrite"`` deletes the earlier run's config, shards and manifest first.
    Callers check `is_complete` to skip a finished stage, otherwise write with `writer`, iterating
    over `pending` inputs, and call `finish`.

    ``inputs`` are digests (`config.content_digest`) of what decides the output but the config names
    only by path or not at all, such as the prompt files read: name → digest, kept in ``config.json``.
    A digest that differs from the one kept is a change like a config change (resuming raises
    `RationalystError` naming the input). They are kept apart from the config hash so that a run made
    before an input was digested stays finished: it keeps the digests of its first reopening.
    """

    def __init__(
        self,
        path: str | Path,
        config: BaseModel,
        *,
        stage: str,
        mode: Literal["resume", "overwrite"] = "resume",
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        if mode not in ("resume", "overwrite"):
            raise ValueError(f"mode must be 'resume' or 'overwrite', not {mode!r}")
        self.path = Path(path)
        self.stage = stage
        self.config = config
        self.config_hash = config_hash(config)
        self.inputs = dict(inputs or {})
        self.shards_dir = self.path / SHARDS_DIR
        self._session_started = time.time()
        self._skips: Counter[str] = Counter()
        self._skip_examples: list[dict[str, Any]] = []
        self._writer: ShardWriter | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if mode == "overwrite":
                self._wipe()
            else:
                self._check_existing()
            self._remove_stale_temp_files()
            stored = read_json(self.path / CONFIG_FILE)
            if stored is None:
                self._run_started = _now()
                info = {
                    "stage": stage,
                    "config_hash": self.config_hash,
                    "started": self._run_started,
                    "config": config.model_dump(mode="json"),
                    "inputs": self.inputs,
                }
                atomic_write(self.path / CONFIG_FILE, dumps(info))
            else:
                self._run_started = stored.get("started", _now())
                kept = stored.get("inputs") or {}
                if any(name not in kept for name in self.inputs):  # digested since the run was started
                    atomic_write(self.path / CONFIG_FILE, dumps({**stored, "inputs": {**self.inputs, **kept}}))
            self.shards_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise RationalystError(f"cannot write the run directory {self.path}: {exc.strerror or exc}") from None
        shards = self.shard_paths()
        if shards:
            logger.info("resuming %s run in %s: %d shard(s) already written", stage, self.path, len(shards))

    # -- opening -------------------------------------------------------------------------------

    def _wipe(self) -> None:
        # The manifest goes first, so a kill part-way never leaves a "complete" run with missing shards.
        for name in (MANIFEST_FILE, CONFIG_FILE):
            (self.path / name).unlink(missing_ok=True)
        if self.shards_dir.exists():
            shutil.rmtree(self.shards_dir)
            logger.info("overwrite: removed the earlier run's shards in %s", self.path)
        _fsync_dir(self.path)

    def _check_existing(self) -> None:
        config_file = self.path / CONFIG_FILE
        hint = "pass --overwrite (mode='overwrite') to start over, or choose another output directory"
        if not config_file.exists():
            if self.shard_paths():
                raise RationalystError(
                    f"{self.path} holds shards but no {CONFIG_FILE}, so it cannot be resumed; {hint}"
                )
            return
        stored = read_json(config_file)
        if not isinstance(stored, dict):
            raise RationalystError(f"{config_file} is unreadable, so the run cannot be resumed; {hint}")
        if stored.get("stage") != self.stage:
            raise RationalystError(
                f"{self.path} holds output of stage {stored.get('stage')!r}, not {self.stage!r}; {hint}"
            )
        if stored.get("config_hash") != self.config_hash:
            raise RationalystError(
                f"the config changed since the run in {self.path} was started "
                f"(hash {stored.get('config_hash')} there, {self.config_hash} now), so its output cannot be "
                f"resumed; {hint}"
            )
        changed = changed_inputs(stored, self.inputs)
        if changed:
            raise RationalystError(
                f"{' and '.join(changed)} changed since the run in {self.path} was started, so its output "
                f"cannot be resumed; {hint}"
            )

    def _remove_stale_temp_files(self) -> None:
        for folder in (self.path, self.shards_dir):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.name.startswith(".") and _TEMP_MARK in entry.name and entry.is_file():
                    logger.warning("removing %s, left by an interrupted run", entry)
                    entry.unlink()

    # -- reading -------------------------------------------------------------------------------

    def shard_paths(self) -> list[Path]:
        """The finished shard files, in shard order (temp files are never included)."""
        return shard_paths(self.path)

    def records(self) -> Iterator[dict[str, Any]]:
        """All records of all shards, in shard order and within a shard in the order written."""
        return read_records(self.path)

    def done_ids(self) -> set[str]:
        """The ids of all records already in shards."""
        return {record["id"] for record in self.records()}

    def pending(self, items: Iterable[T], key: Callable[[T], str] = lambda item: item["id"]) -> Iterator[T]:
        """The ``items`` whose id (``key(item)``, default ``item["id"]``) is not yet written; for resuming.

        The done ids are read when this is called, not when iteration starts.
        """
        done = self.done_ids()
        return (item for item in items if key(item) not in done)

    def is_complete(self) -> bool:
        """True only when a manifest exists with status complete and this run's config hash."""
        return is_complete_manifest(read_json(self.path / MANIFEST_FILE), self.config_hash)

    def manifest(self) -> dict[str, Any] | None:
        """The manifest's content, or None if the run has not completed."""
        manifest = read_json(self.path / MANIFEST_FILE)
        return manifest if isinstance(manifest, dict) else None

    # -- writing -------------------------------------------------------------------------------

    def writer(self, shard_size: int = 100, flush_seconds: float = 30.0) -> ShardWriter:
        """A `ShardWriter` appending shards after the existing ones; one writer at a time.

        Opening a writer withdraws the manifest: the run is not complete again until `finish`.
        """
        if self._writer is not None and not self._writer.closed:
            raise RuntimeError(f"a writer for {self.path} is already open")
        try:
            if (self.path / MANIFEST_FILE).exists():
                (self.path / MANIFEST_FILE).unlink()
                _fsync_dir(self.path)
        except OSError as exc:
            raise RationalystError(f"cannot write the run directory {self.path}: {exc.strerror or exc}") from None
        self._writer = ShardWriter(self, shard_size=shard_size, flush_seconds=flush_seconds)
        return self._writer

    def forget(self, ids: Iterable[str]) -> int:
        """Remove the records with these ids from the shards, so that a resume does them again (a
        document the model refused as too long, retried in a larger context window); returns how many
        were removed. The manifest is withdrawn first, and each shard is rewritten atomically without
        them, so a kill part-way leaves an incomplete run whose remaining records are whole."""
        if self._writer is not None and not self._writer.closed:
            raise RuntimeError(f"close the writer of {self.path} before forgetting records")
        wanted, removed = set(ids), 0
        if not wanted:
            return 0
        try:
            (self.path / MANIFEST_FILE).unlink(missing_ok=True)
            _fsync_dir(self.path)
            for shard in self.shard_paths():
                lines = shard.read_bytes().splitlines(keepends=True)
                kept = [line for line in lines if not line.strip() or json.loads(line).get("id") not in wanted]
                if len(kept) != len(lines):
                    atomic_write(shard, b"".join(kept))
                    removed += len(lines) - len(kept)
        except OSError as exc:
            raise RationalystError(f"cannot rewrite the shards of {self.path}: {exc.strerror or exc}") from None
        return removed

    def skip(self, reason: str, *, file: str | Path | None = None, line: int | None = None, **details: Any) -> None:
        """Count one skipped (bad) input under ``reason``; the first 100 go to the manifest as examples."""
        self._skips[reason] += 1
        if len(self._skip_examples) < MAX_SKIP_EXAMPLES:
            example: dict[str, Any] = {"reason": reason}
            if file is not None:
                example["file"] = str(file)
            if line is not None:
                example["line"] = line
            example.update(details)
            self._skip_examples.append(example)
        logger.debug("skipped input (%s) at %s:%s", reason, file, line)

    def report_skip(self, reason: str, file: str | Path | None, line: int | None) -> None:
        """`skip` as a plain ``(reason, file, line)`` callback, for readers that report bad lines."""
        self.skip(reason, file=file, line=line)

    @property
    def skipped(self) -> dict[str, int]:
        """Skipped inputs so far in this session, by reason."""
        return dict(self._skips)

    def finish(self, counts: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the manifest (last, atomically) marking the stage complete; returns its content.

        ``counts`` are the stage's own counts, added to ``records``, ``shards``, ``skipped`` and
        ``skipped_total``; ``extra`` is any further JSON-serializable information.
        """
        if self._writer is not None and not self._writer.closed:
            raise RuntimeError("close the writer before finishing the run")
        reserved = {"records", "shards", "skipped", "skipped_total"}
        clash = reserved & set(counts or {})
        if clash:
            raise ValueError(f"counts may not set the reserved keys {sorted(clash)}")
        finished = time.time()
        manifest = {
            "stage": self.stage,
            "status": "complete",
            "config_hash": self.config_hash,
            "config": self.config.model_dump(mode="json"),
            "inputs": self.inputs,
            "code": {"rationalyst": rationalyst.__version__, "git_commit": git_commit()},
            "environment": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "executable": sys.executable,
                "packages": package_versions(),
            },
            "counts": {
                **(counts or {}),
                "records": sum(1 for _ in self.records()),
                "shards": len(self.shard_paths()),
                "skipped": dict(self._skips),
                "skipped_total": sum(self._skips.values()),
            },
            "skipped_examples": self._skip_examples,
            "timings": {
                "run_started": self._run_started,
                "started": datetime.fromtimestamp(self._session_started, timezone.utc).isoformat(timespec="seconds"),
                "finished": datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(finished - self._session_started, 3),
            },
            "extra": dict(extra or {}),
        }
        try:
            atomic_write(self.path / MANIFEST_FILE, dumps(manifest))
        except OSError as exc:
            raise RationalystError(f"cannot write {self.path / MANIFEST_FILE}: {exc.strerror or exc}") from None
        logger.info(
            "%s complete: %d records in %s, %d skipped",
            self.stage,
            manifest["counts"]["records"],
            self.path,
            manifest["counts"]["skipped_total"],
        )
        return manifest


class ShardWriter:
    """Buffers records and writes them as atomic JSONL shards; use it as a context manager.

    A shard is written every ``shard_size`` records, and when a record is added ``flush_seconds`` or
    more after the last flush; the remainder is written when the writer closes (also on an
    exception, since buffered records are finished work). Obtain one from `RunDir.writer`.
    """

    def __init__(self, run: RunDir, shard_size: int = 100, flush_seconds: float = 30.0) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, not {shard_size}")
        self.run = run
        self.shard_size = shard_size
        self.flush_seconds = flush_seconds
        self.closed = False
        self.written = 0  # records written by this writer (flushed or buffered)
        self._ids = run.done_ids()
        shards = run.shard_paths()
        self._next_shard = int(_SHARD_RE.match(shards[-1].name).group(1)) + 1 if shards else 0
        self._buffer: list[bytes] = []
        self._last_flush = time.monotonic()

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record (a JSON object with a string ``id``); a repeated id, a string that cannot be
        encoded as UTF-8 (an unpaired surrogate) or a number JSON cannot hold (NaN, infinite) raises
        ValueError and the record is not added."""
        if self.closed:
            raise RuntimeError("the writer is closed")
        if not isinstance(record, Mapping):
            raise ValueError(f"a record must be a JSON object (mapping), not {type(record).__name__}")
        record_id = record.get("id")
        if not isinstance(record_id, str) or not record_id:
            raise ValueError(f"a record needs a non-empty string 'id', got {record_id!r}")
        if record_id in self._ids:
            raise ValueError(f"duplicate record id {record_id!r} in {self.run.path}")
        # Serialize and encode now: an unencodable record fails here, alone (not at a flush, with the
        # buffered shard), and later edits of the record don't leak in.
        try:
            line = json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:
            field = lone_surrogate_at(record)
            raise ValueError(f"record {record_id!r}, field '{field}': an unpaired surrogate cannot be written as UTF-8") from None
        except ValueError:
            field = non_finite_at(record)
            if field is None:  # not a number (a circular reference): json's own message
                raise
            raise ValueError(f"record {record_id!r}, field '{field}': JSON cannot hold a NaN or infinite number") from None
        self._ids.add(record_id)
        self._buffer.append(line)
        self.written += 1
        if len(self._buffer) >= self.shard_size or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records as the next shard (nothing if the buffer is empty)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        path = self.run.shards_dir / f"part-{self._next_shard:05d}.jsonl"
        data = b"\n".join(self._buffer) + b"\n"
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise RationalystError(f"cannot write shard {path}: {exc.strerror or exc}") from None
        logger.debug("wrote %s (%d records)", path, len(self._buffer))
        self._buffer.clear()
        self._next_shard += 1

    def close(self) -> None:
        """Flush the remaining records and close the writer."""
        if not self.closed:
            self.flush()
            self.closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # don't hide the original error behind a failed last flush
            logger.exception("could not write the last shard of %s", self.run.path)
            self.closed = True
