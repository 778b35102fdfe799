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


def kill_when(code: str, args: list[str], shards: Path, count: int = 1, write_delay: float = 0.4, timeout: float = 180) -> None:
    """Run ``code`` in a child Python and SIGKILL it once ``shards`` holds ``count`` shard files."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITES.format(seconds=write_delay) + code, *args], env=env)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and len(list(shards.glob("part-*.jsonl"))) < count:
            time.sleep(0.05)
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
