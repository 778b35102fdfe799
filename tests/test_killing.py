"""The kill helper itself: it kills only mid-write, and fails the test otherwise."""

from __future__ import annotations

import time

import pytest

from tests.killing import kill_when

# A child that writes one-record shards into argv[1] forever (each write slowed by SLOW_WRITES).
_WRITER = """
from pydantic import BaseModel
from rationalyst.runs import RunDir
class Config(BaseModel):
    name: str = "kill-test"
run = RunDir(sys.argv[1], Config(), stage="kill-test")
with run.writer(shard_size=1) as writer:
    i = 0
    while True:
        writer.write({"id": str(i)})
        i += 1
"""


def test_kills_after_the_wanted_shards(tmp_path):
    kill_when(_WRITER, [str(tmp_path / "run")], tmp_path / "run" / "shards", count=2, write_delay=0.05, timeout=60)
    assert len(list((tmp_path / "run" / "shards").glob("part-*.jsonl"))) >= 2
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_fails_when_nothing_was_written_in_time(tmp_path):
    started = time.monotonic()
    with pytest.raises(AssertionError, match="0 of 1 shards .* after 3 s"):
        kill_when("time.sleep(60)", [], tmp_path / "shards", timeout=3)
    assert time.monotonic() - started < 30  # the sleeping child was killed, not waited for


def test_fails_when_the_child_exits_before_the_kill(tmp_path):
    with pytest.raises(AssertionError, match="exited .* before it could be killed"):
        kill_when("pass", [], tmp_path / "shards", timeout=60)
