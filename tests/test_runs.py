"""The runs layer: atomic shards, resume after a kill, config checks, manifest, skips, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import pytest

import rationalyst
from rationalyst.config import config_hash
from rationalyst.errors import RationalystError
from rationalyst.runs import RunDir, git_commit, output_stamp

# Shared by the child processes and the test process, so both compute the same records.
RECORD_CODE = textwrap.dedent(
    """
    from rationalyst.config import StrictModel

    class Cfg(StrictModel):
        seed: int = 1
        name: str = "demo"

    N_ITEMS = 200

    def items():
        return [{"id": f"r{i:04d}", "n": i} for i in range(N_ITEMS)]

    def make_record(item):
        n = item["n"]
        return {"id": item["id"], "square": n * n, "text": "ü" * (n % 7) + f"line\\n{n}"}
    """
)

NS: dict = {}
exec(RECORD_CODE, NS)
Cfg = NS["Cfg"]
ITEMS = NS["items"]
MAKE_RECORD = NS["make_record"]

# Writes all records slowly, 5 per shard: the test kills it part-way.
SLOW_WRITER = RECORD_CODE + textwrap.dedent(
    """
    import sys, time
    from rationalyst.runs import RunDir

    run = RunDir(sys.argv[1], Cfg(), stage="demo")
    with run.writer(shard_size=5) as writer:
        for item in run.pending(items()):
            writer.write(make_record(item))
            time.sleep(0.01)
    run.finish()
    """
)

# Writes one small shard, then makes fsync hang so the next shard's write stalls after its temp file
# is fully written but before it is renamed: the test kills it right then.
STALLED_SHARD_WRITER = RECORD_CODE + textwrap.dedent(
    """
    import os, sys, time
    from rationalyst.runs import RunDir

    run = RunDir(sys.argv[1], Cfg(), stage="demo")
    with run.writer(shard_size=10_000) as writer:
        for item in items()[:10]:
            writer.write(make_record(item))
        writer.flush()
        os.fsync = lambda fd: time.sleep(60)
        for item in items()[10:]:
            writer.write(make_record(item))
        writer.flush()
    run.finish()
    """
)


def child_env() -> dict[str, str]:
    src = str(Path(rationalyst.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"child exited ({proc.returncode}) before the kill point:\n{out}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the child to reach the kill point")
        time.sleep(0.005)


def run_child(script: str, run_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(run_path)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed"


def assert_shards_whole(run_path: Path) -> list[dict]:
    """Every shard file parses fully as JSONL, ends with a newline; returns their records."""
    records = []
    for shard in sorted((run_path / "shards").glob("part-*.jsonl")):
        text = shard.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{shard} ends mid-line"
        records += [json.loads(line) for line in text.splitlines()]
    return records


def write_all(run: RunDir, shard_size: int = 100) -> None:
    with run.writer(shard_size=shard_size) as writer:
        for item in run.pending(ITEMS()):
            writer.write(MAKE_RECORD(item))
    run.finish()


def uninterrupted_records(tmp_path: Path) -> list[dict]:
    run = RunDir(tmp_path / "reference", Cfg(), stage="demo")
    write_all(run, shard_size=7)
    return list(run.records())


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_across_shards(tmp_path):
    began = time.time()
    cfg = Cfg(seed=3)
    run = RunDir(tmp_path / "run", cfg, stage="demo")
    assert not run.is_complete()
    records = [MAKE_RECORD(item) for item in ITEMS()[:25]]
    with run.writer(shard_size=10) as writer:
        for record in records:
            writer.write(record)
    assert [p.name for p in run.shard_paths()] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    assert list(run.records()) == records
    assert run.done_ids() == {r["id"] for r in records}
    assert not (run.path / "manifest.json").exists()

    manifest = run.finish(counts={"inputs": 25}, extra={"note": "hi"})
    on_disk = json.loads((run.path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["status"] == "complete" and manifest["stage"] == "demo"
    assert manifest["config_hash"] == config_hash(cfg)
    assert manifest["config"] == {"seed": 3, "name": "demo"}
    assert manifest["counts"] == {"inputs": 25, "records": 25, "shards": 3, "skipped": {}, "skipped_total": 0}
    assert manifest["code"]["rationalyst"] == rationalyst.__version__
    assert manifest["environment"]["packages"]["pydantic"]
    assert "not-a-real-package" not in manifest["environment"]["packages"]
    timings = manifest["timings"]  # this session's time: from opening the run to finishing it
    assert 0 <= timings["seconds"] <= time.time() - began
    span = datetime.fromisoformat(timings["finished"]) - datetime.fromisoformat(timings["started"])
    assert abs(span.total_seconds() - timings["seconds"]) <= 1.0  # the stamps are to the second
    assert manifest["extra"] == {"note": "hi"}
    assert run.is_complete()
    stored = json.loads((run.path / "config.json").read_text())
    assert stored["config_hash"] == config_hash(cfg) and stored["config"] == {"seed": 3, "name": "demo"}

    # Reopening a complete run with the same config lets the caller skip the stage.
    again = RunDir(tmp_path / "run", Cfg(seed=3), stage="demo")
    assert again.is_complete()
    assert list(again.pending(ITEMS()[:25])) == []


def test_resume_continues_numbering_and_pending(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer(shard_size=4) as writer:
        for item in ITEMS()[:6]:
            writer.write(MAKE_RECORD(item))
    run2 = RunDir(tmp_path / "run", Cfg(), stage="demo")
    todo = list(run2.pending(ITEMS()[:10]))
    assert [item["id"] for item in todo] == [f"r{i:04d}" for i in range(6, 10)]
    with run2.writer(shard_size=4) as writer:
        for item in todo:
            writer.write(MAKE_RECORD(item))
    assert [p.name for p in run2.shard_paths()] == [f"part-{i:05d}.jsonl" for i in range(3)]
    assert [r["id"] for r in run2.records()] == [f"r{i:04d}" for i in range(10)]
    # A custom key for items that are not dicts.
    assert list(run2.pending(range(12), key=lambda i: f"r{i:04d}")) == [10, 11]


def test_time_based_flush(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer(shard_size=1000, flush_seconds=0.2) as writer:
        writer.write({"id": "a"})
        assert run.shard_paths() == []
        time.sleep(0.25)
        writer.write({"id": "b"})  # 0.2 s since the last flush: both records go out now
        assert [r["id"] for r in run.records()] == ["a", "b"]
        writer.write({"id": "c"})
        assert len(run.shard_paths()) == 1
    assert [r["id"] for r in run.records()] == ["a", "b", "c"]
    assert len(run.shard_paths()) == 2


# -- kills ------------------------------------------------------------------------------------------


def test_sigkill_mid_run_then_resume(tmp_path):
    run_path = tmp_path / "run"
    proc = run_child(SLOW_WRITER, run_path)
    wait_for(lambda: len(list((run_path / "shards").glob("part-*.jsonl"))) >= 3, proc)
    sigkill(proc)

    partial = assert_shards_whole(run_path)
    assert 15 <= len(partial) < NS["N_ITEMS"]
    assert len({r["id"] for r in partial}) == len(partial)
    assert not (run_path / "manifest.json").exists()

    run = RunDir(run_path, Cfg(), stage="demo")
    assert not run.is_complete()
    assert run.done_ids() == {r["id"] for r in partial}
    write_all(run, shard_size=7)
    assert run.is_complete()

    records = list(run.records())
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate records after resume"
    assert set(ids) == {item["id"] for item in ITEMS()}
    assert sorted(records, key=lambda r: r["id"]) == uninterrupted_records(tmp_path)
    assert run.manifest()["counts"]["records"] == NS["N_ITEMS"]


def test_sigkill_during_shard_write_leaves_no_partial_shard(tmp_path):
    run_path = tmp_path / "run"
    shards = run_path / "shards"
    proc = run_child(STALLED_SHARD_WRITER, run_path)
    # The second shard's temp file is written and the write is stalled in fsync: kill now.
    wait_for(lambda: shards.is_dir() and any(p.name.startswith(".part-00001") for p in shards.iterdir()), proc)
    sigkill(proc)

    temps = [p for p in shards.iterdir() if p.name.startswith(".")]
    assert temps, "the kill should have left the in-progress temp file behind"
    assert [p.name for p in shards.glob("part-*.jsonl")] == ["part-00000.jsonl"]
    assert [r["id"] for r in assert_shards_whole(run_path)] == [f"r{i:04d}" for i in range(10)]

    run = RunDir(run_path, Cfg(), stage="demo")
    assert not any(p.exists() for p in temps), "stale temp file not removed on reopen"
    assert run.done_ids() == {f"r{i:04d}" for i in range(10)}
    write_all(run)
    assert sorted(run.records(), key=lambda r: r["id"]) == uninterrupted_records(tmp_path)


def test_partial_temp_files_are_never_read_and_are_removed(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer() as writer:
        writer.write({"id": "a"})
    stale = run.shards_dir / ".part-00001.jsonl.tmp-99999"
    stale.write_text('{"id": "b"}\n{"id": "c", "tr')  # a write cut off mid-line
    stale_config = run.path / ".manifest.json.tmp-99999"
    stale_config.write_text("{")
    assert run.done_ids() == {"a"}
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    assert not stale.exists() and not stale_config.exists()
    assert [r["id"] for r in run.records()] == ["a"]


# -- config, overwrite, duplicates, skips, completeness ------------------------------------------


def test_changed_config_is_a_clear_error_and_overwrite_starts_over(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(seed=1), stage="demo")
    write_all(run)
    with pytest.raises(RationalystError) as err:
        RunDir(tmp_path / "run", Cfg(seed=2), stage="demo")
    message = str(err.value)
    assert "config changed" in message and "--overwrite" in message and str(tmp_path / "run") in message
    with pytest.raises(RationalystError, match="stage 'demo'"):
        RunDir(tmp_path / "run", Cfg(seed=1), stage="other")

    fresh = RunDir(tmp_path / "run", Cfg(seed=2), stage="demo", mode="overwrite")
    assert fresh.shard_paths() == [] and fresh.done_ids() == set()
    assert not (fresh.path / "manifest.json").exists() and not fresh.is_complete()
    assert json.loads((fresh.path / "config.json").read_text())["config_hash"] == config_hash(Cfg(seed=2))
    with fresh.writer() as writer:
        writer.write({"id": "only"})
    fresh.finish()
    assert RunDir(tmp_path / "run", Cfg(seed=2), stage="demo").is_complete()
    assert [r["id"] for r in fresh.records()] == ["only"]
    with pytest.raises(ValueError, match="mode"):
        RunDir(tmp_path / "run", Cfg(seed=2), stage="demo", mode="append")


def test_a_changed_input_digest_is_a_clear_error_and_a_run_without_digests_takes_them(tmp_path):
    """The digests of what the config names only by path (prompt files) are kept in config.json at the
    start: resuming with another digest of a kept input is refused naming it; a run started before
    that input was digested is resumed and keeps the digest of its reopening."""
    path = tmp_path / "run"
    run = RunDir(path, Cfg(), stage="demo", inputs={"the prompt a.yaml": "1111"})
    write_all(run)
    with pytest.raises(RationalystError) as err:
        RunDir(path, Cfg(), stage="demo", inputs={"the prompt a.yaml": "2222"})
    assert "the prompt a.yaml changed since the run" in str(err.value) and "--overwrite" in str(err.value)
    again = RunDir(path, Cfg(), stage="demo", inputs={"the prompt a.yaml": "1111", "the prompt b.yaml": "3333"})
    assert again.is_complete() and len(list(again.records())) == len(list(ITEMS()))
    assert json.loads((path / "config.json").read_text())["inputs"] == {"the prompt a.yaml": "1111", "the prompt b.yaml": "3333"}
    with pytest.raises(RationalystError, match="the prompt b.yaml changed"):
        RunDir(path, Cfg(), stage="demo", inputs={"the prompt b.yaml": "4444"})
    fresh = RunDir(path, Cfg(), stage="demo", inputs={"the prompt b.yaml": "4444"}, mode="overwrite")
    assert fresh.done_ids() == set() and json.loads((path / "config.json").read_text())["inputs"] == {"the prompt b.yaml": "4444"}
    # A run made before digests were kept (its config.json has none) resumes and takes them.
    old = tmp_path / "old"
    write_all(RunDir(old, Cfg(), stage="demo"))
    info = json.loads((old / "config.json").read_text())
    del info["inputs"]
    (old / "config.json").write_text(json.dumps(info))
    assert RunDir(old, Cfg(), stage="demo", inputs={"the prompt a.yaml": "1111"}).is_complete()
    with pytest.raises(RationalystError, match="the prompt a.yaml changed"):
        RunDir(old, Cfg(), stage="demo", inputs={"the prompt a.yaml": "2222"})


def test_a_config_naming_a_non_utf8_path_is_written_and_resumes(tmp_path):
    """A folder named by bytes that are not UTF-8 (b'corp\\xe9') reaches Python with a lone surrogate:
    config.json holds it as a JSON escape, which reads back as the same path (the same bytes on disk),
    so the run resumes as the same config; an output folder named so works the same way."""
    name = os.fsdecode(b"corp\xe9")
    assert name == "corp\udce9"
    out = tmp_path / name
    run = RunDir(out, Cfg(name=name), stage="demo")
    write_all(run)
    text = (out / "config.json").read_bytes().decode("utf-8")  # valid UTF-8 on disk
    assert '"corp\\udce9"' in text
    assert json.loads(text)["config"]["name"] == name
    assert os.fsencode(json.loads(text)["config"]["name"]) == b"corp\xe9"
    assert RunDir(out, Cfg(name=name), stage="demo").is_complete()
    assert os.listdir(os.fsencode(tmp_path)) == [b"corp\xe9"]


def test_forgotten_records_leave_the_shards_and_are_pending_again(tmp_path):
    """`forget` withdraws the manifest and rewrites the shards without those records (a shard left empty
    stays, read as nothing); a resume writes them again after the last shard, each id once."""
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    write_all(run, shard_size=50)
    assert run.is_complete()
    gone = {"r0003", "r0120", *(f"r{i:04d}" for i in range(150, 200))}  # the whole last shard among them
    assert run.forget(gone) == len(gone)
    assert not run.is_complete() and not (run.path / "manifest.json").exists()
    assert sorted(r["id"] for r in run.records()) == sorted(i["id"] for i in ITEMS() if i["id"] not in gone)
    assert [p.name for p in run.shard_paths()] == [f"part-{i:05d}.jsonl" for i in range(4)]
    assert run.forget({"no-such-id"}) == 0
    resumed = RunDir(tmp_path / "run", Cfg(), stage="demo")
    assert sorted(i["id"] for i in resumed.pending(ITEMS())) == sorted(gone)
    write_all(resumed, shard_size=50)
    assert sorted(r["id"] for r in resumed.records()) == sorted(i["id"] for i in ITEMS())
    assert [r for r in resumed.records() if r["id"] == "r0120"] == [MAKE_RECORD({"id": "r0120", "n": 120})]
    with resumed.writer() as writer, pytest.raises(RuntimeError, match="close the writer"):
        resumed.forget({"r0001"})
        writer.write({"id": "never"})


def test_output_stamp_follows_the_records_and_not_the_timings(tmp_path):
    """The stamp of a complete run: the same records written again (another session, a copy) give the
    same stamp; a record rewritten in place, one added, or another config change it; an unfinished run
    has none."""
    def written(path, records, cfg=Cfg()):
        run = RunDir(path, cfg, stage="demo", mode="overwrite")
        with run.writer(shard_size=50) as writer:
            for record in records:
                writer.write(record)
        run.finish()
        return output_stamp(path)

    records = [MAKE_RECORD(item) for item in ITEMS()[:60]]
    first = written(tmp_path / "a", records)
    assert len(first) == 16
    time.sleep(1.1)  # the manifest's timings differ to the second
    assert written(tmp_path / "b", records) == first
    assert written(tmp_path / "b", records) == first
    edited = [*records[:59], {**records[59], "text": records[59]["text"] + "!"}]
    assert written(tmp_path / "b", edited) != first
    assert written(tmp_path / "b", [*records, MAKE_RECORD({"id": "r9999", "n": 1})]) != first
    assert written(tmp_path / "b", records, Cfg(seed=4)) != first
    unfinished = RunDir(tmp_path / "c", Cfg(), stage="demo")
    with unfinished.writer() as writer:
        writer.write(records[0])
    assert output_stamp(tmp_path / "c") is None and output_stamp(tmp_path / "missing") is None


def test_shards_without_config_are_not_resumed(tmp_path):
    (tmp_path / "run" / "shards").mkdir(parents=True)
    (tmp_path / "run" / "shards" / "part-00000.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(RationalystError, match="--overwrite"):
        RunDir(tmp_path / "run", Cfg(), stage="demo")


def test_duplicate_ids_are_rejected(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer(shard_size=2) as writer:
        writer.write({"id": "a"})
        with pytest.raises(ValueError, match="duplicate"):
            writer.write({"id": "a"})  # still buffered
        writer.write({"id": "b"})
        with pytest.raises(ValueError, match="duplicate"):
            writer.write({"id": "b", "other": 1})  # already flushed
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer() as writer:
        with pytest.raises(ValueError, match="duplicate"):
            writer.write({"id": "a"})  # written by an earlier part of the run
        writer.write({"id": "c"})
    assert [r["id"] for r in run.records()] == ["a", "b", "c"]
    with run.writer() as writer:
        for bad in ({"no": "id"}, {"id": 3}, {"id": ""}, ["id", "x"]):
            with pytest.raises(ValueError):
                writer.write(bad)


def test_an_unencodable_record_fails_at_its_own_write_and_the_shard_keeps_the_others(tmp_path):
    """A lone surrogate cannot be written as UTF-8: the write of that record raises, naming its id and
    field, and adds nothing (the id stays free); the records buffered before it and written after it
    all reach disk (the error used to come at the flush and take the whole shard with it)."""
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer(shard_size=2) as writer:
        writer.write({"id": "a", "text": "fine"})
        with pytest.raises(ValueError, match=r"record 'b', field 'meta.tags\[1\]': an unpaired surrogate"):
            writer.write({"id": "b", "meta": {"tags": ["x", "bad \ud800"]}})
        writer.write({"id": "c", "text": "ü fine too"})  # the shard of a and c is flushed here
        writer.write({"id": "b", "meta": {"tags": ["x", "mended"]}})
        assert writer.written == 3
    assert [r["id"] for r in run.records()] == ["a", "c", "b"]
    assert [p.name for p in run.shard_paths()] == ["part-00000.jsonl", "part-00001.jsonl"]


def test_a_record_with_a_number_json_cannot_hold_fails_at_its_own_write(tmp_path):
    """NaN and infinities are not JSON (Python would write NaN, which jq, JavaScript and strict readers
    refuse): the write raises naming the record and field and adds nothing; the others reach disk."""
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with run.writer(shard_size=10) as writer:
        writer.write({"id": "a", "score": -1.5})
        with pytest.raises(ValueError, match=r"record 'b', field 'scores\[1\]': JSON cannot hold a NaN"):
            writer.write({"id": "b", "scores": [0.0, float("nan")]})
        with pytest.raises(ValueError, match=r"record 'c', field 'meta.delta': JSON cannot hold"):
            writer.write({"id": "c", "meta": {"delta": float("-inf")}})
        writer.write({"id": "b", "scores": [0.0, None]})
        assert writer.written == 2
    text = run.shard_paths()[0].read_text()
    assert [json.loads(line)["id"] for line in text.splitlines()] == ["a", "b"] and "NaN" not in text


def test_skips_are_counted_in_the_manifest(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    for line in range(1, 151):
        run.skip(reason="malformed JSON", file="x.jsonl", line=line)
    run.skip(reason="no answer", file="y.jsonl", line=7, id="q7")
    with run.writer() as writer:
        writer.write({"id": "a"})
    manifest = run.finish()
    assert manifest["counts"]["skipped"] == {"malformed JSON": 150, "no answer": 1}
    assert manifest["counts"]["skipped_total"] == 151
    assert manifest["counts"]["records"] == 1
    examples = manifest["skipped_examples"]
    assert len(examples) == 100
    assert examples[0] == {"reason": "malformed JSON", "file": "x.jsonl", "line": 1}
    assert examples[99]["line"] == 100
    with pytest.raises(ValueError, match="reserved"):
        run.finish(counts={"records": 5})


def test_is_complete_semantics(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    assert not run.is_complete()
    with run.writer() as writer:
        writer.write({"id": "a"})
        with pytest.raises(RuntimeError):
            run.finish()  # writer still open
        with pytest.raises(RuntimeError):
            run.writer()  # one writer at a time
    assert not run.is_complete()
    run.finish()
    assert run.is_complete()
    # Writing more withdraws the manifest until the run finishes again.
    with run.writer() as writer:
        assert not run.is_complete()
        writer.write({"id": "b"})
    assert not run.is_complete()
    assert run.finish()["counts"]["records"] == 2
    assert run.is_complete()
    # A manifest for another config does not count as complete.
    manifest = json.loads((run.path / "manifest.json").read_text())
    manifest["config_hash"] = "0" * 16
    (run.path / "manifest.json").write_text(json.dumps(manifest))
    assert not run.is_complete()
    (run.path / "manifest.json").write_text('{"status": "comp')
    assert not run.is_complete()


def test_records_survive_an_exception_in_the_stage(tmp_path):
    run = RunDir(tmp_path / "run", Cfg(), stage="demo")
    with pytest.raises(KeyError):
        with run.writer(shard_size=100) as writer:
            writer.write({"id": "a"})
            raise KeyError("bug in the stage")
    assert run.done_ids() == {"a"}
    assert not run.is_complete()


# -- errors and helpers -------------------------------------------------------------------------


def test_unwritable_output_dir_is_a_clear_error(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    target = afile / "run"
    with pytest.raises(RationalystError) as err:
        RunDir(target, Cfg(), stage="demo")
    assert str(target) in str(err.value)


def test_git_commit_reads_refs_without_git(tmp_path):
    sha = "a" * 40
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / "src" / "pkg").mkdir(parents=True)
    start = repo / "src" / "pkg" / "mod.py"
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_commit(start) is None  # a branch with no commits yet
    (repo / ".git" / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert git_commit(start) == "b" * 40
    (repo / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    assert git_commit(start) == sha
    (repo / ".git" / "HEAD").write_text("c" * 40 + "\n")  # detached HEAD
    assert git_commit(start) == "c" * 40
    assert git_commit(tmp_path / "elsewhere" / "site-packages" / "pkg" / "mod.py") is None
