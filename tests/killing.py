"""Kill a stage with SIGKILL mid-run, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Prepended to a child's code: every record write sleeps, so the kill lands mid-run.
SLOW_WRITES = """
import sys, time
from rationalyst.runs import ShardWriter
_original_write = ShardWriter.write
def _slow_write(self, record):
    _original_write(self, record)
    time.sleep({seconds})
ShardWriter.write = _slow_write
"""


def kill_when(
    code: str, args: list[str], shards: Path, count: int = 1, write_delay: float = 0.4, timeout: float = 180,
    pattern: str = "part-*.jsonl",
) -> None:
    """Run ``code`` in a child Python and SIGKILL it once ``shards`` holds ``count`` files matching
    ``pattern`` (shard files by default).

    The kill must land mid-write: if the child exits first, or ``timeout`` seconds pass with fewer
    than ``count`` shards written, the child is killed and the test fails (a kill on a timeout with
    nothing written would let a resume test pass without testing a resume).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITES.format(seconds=write_delay) + code, *args], env=env)
    try:
        deadline = time.monotonic() + timeout
        while (written := len(list(shards.glob(pattern)))) < count:
            if child.poll() is not None:
                raise AssertionError(
                    f"the child exited (status {child.returncode}) after {written} of {count} shards in {shards}, "
                    "before it could be killed mid-write"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{written} of {count} shards in {shards} after {timeout:g} s: the child was not killed mid-write"
                )
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, f"the child finished (status {child.returncode}) before the kill"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
