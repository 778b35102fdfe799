"""Where a stage's batches run: in this process, or on a Ray cluster as Ray Data pipelines.

A stage describes its work as a *worker factory* (a picklable callable that builds a worker holding
its model) and a stream of JSON-serialisable items; the worker maps a batch of items to output
records. The local executor builds one worker and runs the batches in order. The Ray executor takes
the stream a window at a time, turns each window into a Ray Dataset and runs ``map_batches`` with one
worker actor (one model replica) per Ray worker, then hands the records back in input order. The
stage's process stays the only writer of the run directory, so atomic shards, resume and the manifest
behave the same under both executors, and so do the records.

A worker may return skip notices, dicts with a ``"_skip"`` key holding the reason (plus any details),
which the stage counts in its manifest instead of writing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.errors import RationalystError
from rationalyst.iterutils import batched

log = logging.getLogger(__name__)

Worker = Callable[[list[Any]], list[dict]]
WorkerFactory = Callable[[], Worker]


class ExecutorConfig(StrictModel):
    """How a stage runs its batches."""

    kind: Literal["local", "ray"] = Field("local", description="local: this process; ray: Ray Data on a cluster.")
    ray_address: str | None = Field(None, description="Address of an existing Ray cluster (default: start one locally).")
    workers: int = Field(2, ge=1, description="Ray: worker actors, each holding one model replica.")
    cpus_per_worker: float = Field(1, gt=0, description="Ray: CPUs reserved per worker.")
    gpus_per_worker: float = Field(0, ge=0, description="Ray: GPUs reserved per worker (1 for an 8B model).")
    window: int = Field(2048, ge=1, description="Ray: items streamed into each Ray Dataset.")

    execution_fields = frozenset({"kind", "ray_address", "workers", "cpus_per_worker", "gpus_per_worker", "window"})


def map_batches(
    items: Iterable[Any], factory: WorkerFactory, batch_size: int, config: ExecutorConfig
) -> Iterator[dict]:
    """Run ``factory()``'s worker over batches of ``items``; yields output records in input order."""
    if config.kind == "local":
        worker = factory()
        for batch in batched(items, batch_size):
            yield from worker(batch)
        return
    yield from _ray_map_batches(items, factory, batch_size, config)


def write_records(records: Iterable[dict], writer: Any, run: Any) -> None:
    """Write a stage's output records, counting skip notices in the run instead of writing them."""
    for record in records:
        if "_skip" in record:
            details = dict(record)
            run.skip(details.pop("_skip"), **details)
        else:
            writer.write(record)


class _RayWorker:
    """A Ray Data callable class: builds the stage's worker once per actor, maps JSON payloads."""

    def __init__(self, factory: WorkerFactory) -> None:
        self.worker = factory()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        items = [json.loads(payload) for payload in batch["payload"]]
        records = self.worker(items)
        # One output row per input row keeps Ray's row accounting simple: each carries its records.
        per_item = _split_by_item(records, items)
        return {"payload": np.array([json.dumps(group) for group in per_item], dtype=object)}


def _split_by_item(records: list[dict], items: list[Any]) -> list[list[dict]]:
    """All of a batch's records go with the batch's first row; the other rows carry none."""
    return [records] + [[] for _ in items[1:]]


def _ray_map_batches(items: Iterable[Any], factory: WorkerFactory, batch_size: int, config: ExecutorConfig) -> Iterator[dict]:
    try:
        import ray
    except ImportError:
        raise RationalystError("the ray executor needs Ray; install it with:\n  pip install 'rationalyst[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # records come back in input order
    context.enable_progress_bars = False
    for window in batched(items, config.window):
        dataset = ray.data.from_items([{"payload": json.dumps(item)} for item in window])
        mapped = dataset.map_batches(
            _RayWorker,
            fn_constructor_kwargs={"factory": factory},
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=config.workers,
            num_cpus=config.cpus_per_worker,
            num_gpus=config.gpus_per_worker or None,
        )
        for row in mapped.iter_rows():
            yield from json.loads(row["payload"])
