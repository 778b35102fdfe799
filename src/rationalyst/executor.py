"""Where a stage's batches run: in this process, or on a Ray cluster.

A stage describes its work as a *worker factory* (a picklable callable that builds a worker holding
its model) and a stream of JSON-serialisable items; the worker maps a batch of items to output
records. The local executor builds one worker and runs the batches in order.

The Ray executor starts one pool of long-lived actors for the whole stage (one call of
`map_batches`); each actor builds its worker, and so loads its model, once. The driver reads the
stream a batch at a time, sends each batch to the least busy actor, keeps at most ``window`` items in
flight, and yields each batch's records in input order as soon as every batch before it is back. The
stage's process stays the only writer of the run directory, so atomic shards, resume and the manifest
behave the same under both executors, and so do the records. (Earlier versions built a Ray Dataset
per window of 2,048 items, and Ray Data started a new actor pool, reloading every model, per window;
a Dataset would also need the whole input in the driver, where the stream is read lazily here, so
Ray Data, and with it ``compute=ActorPoolStrategy``/``concurrency=``, is not used.)

Resources come from the cluster (``ray.cluster_resources()``) unless stated: ``gpus_per_worker``
defaults to 1 on a cluster with GPUs (0 without), ``workers`` to as many as the cluster's GPUs (or,
without GPUs, CPUs) hold. A pool the cluster cannot hold, or a cluster with fewer GPUs than
``min_gpus``, is an error at start rather than actors waiting for resources forever (an autoscaling
cluster is judged by what it has when the stage starts).

A worker may return skip notices, dicts with a ``"_skip"`` key holding the reason (plus any details),
which the stage counts in its manifest instead of writing.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
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

    kind: Literal["local", "ray"] = Field("local", description="local: this process; ray: actors on a Ray cluster.")
    ray_address: str | None = Field(None, description="Address of an existing Ray cluster (default: start one locally).")
    workers: int | None = Field(
        None, ge=1, description="Ray: worker actors, each holding one model replica (default: as many as the cluster holds)."
    )
    cpus_per_worker: float = Field(1, gt=0, description="Ray: CPUs reserved per worker.")
    gpus_per_worker: float | None = Field(
        None, ge=0, description="Ray: GPUs reserved per worker (default: 1 on a cluster with GPUs, else 0; 1 for an 8B model)."
    )
    min_gpus: int = Field(0, ge=0, description="Ray: fewer GPUs than this in the cluster is an error at start.")
    window: int = Field(2048, ge=1, description="Ray: most items in flight at once (sent to workers, not yet written).")

    execution_fields = frozenset(
        {"kind", "ray_address", "workers", "cpus_per_worker", "gpus_per_worker", "min_gpus", "window"}
    )


def plan_pool(config: ExecutorConfig, resources: dict[str, float]) -> tuple[int, float]:
    """(workers, GPUs per worker) for ``config`` on a cluster with ``resources`` (``ray.cluster_resources()``;
    preflight, which knows the GPUs only, leaves out ``CPU``: then the CPUs bound nothing).

    Raises `RationalystError` when the cluster has fewer GPUs than ``min_gpus`` or cannot hold the pool.
    """
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources["CPU"]) if "CPU" in resources else math.inf
    have = f"{gpus:g} GPUs" + (f" and {cpus:g} CPUs" if "CPU" in resources else "")
    if gpus < config.min_gpus:
        raise RationalystError(
            f"this stage needs at least {config.min_gpus} GPUs (executor.min_gpus) and the Ray cluster has "
            f"{gpus:g}; run it on a cluster with more GPUs, or lower executor.min_gpus and the models' sizes"
        )
    per_worker = config.gpus_per_worker if config.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    workers = config.workers
    if workers is None:
        by_cpus = cpus / config.cpus_per_worker + 1e-9
        fits = gpus / per_worker + 1e-9 if per_worker > 0 else by_cpus
        workers = min(fits, by_cpus)
        workers = math.floor(workers) if math.isfinite(workers) else 1
        if workers < 1:
            raise RationalystError(
                f"the Ray cluster ({have}) cannot hold one worker of {per_worker:g} GPUs and "
                f"{config.cpus_per_worker:g} CPUs; lower executor.gpus_per_worker / cpus_per_worker or add machines"
            )
    if workers * per_worker > gpus + 1e-9 or workers * config.cpus_per_worker > cpus + 1e-9:
        raise RationalystError(
            f"executor asks for {workers} workers x ({per_worker:g} GPUs, {config.cpus_per_worker:g} CPUs) = "
            f"{workers * per_worker:g} GPUs and {workers * config.cpus_per_worker:g} CPUs; the Ray cluster has "
            f"{have} (the actors would wait forever): lower executor.workers, or leave "
            "it unset to use what the cluster has"
        )
    return workers, per_worker


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
    """The body of one Ray actor: builds the stage's worker (its model) once, then maps JSON batches."""

    def __init__(self, factory: WorkerFactory) -> None:
        self.worker = factory()

    def run(self, payload: str) -> str:
        # JSON both ways, so that items and records look the same as after a local run's writes.
        return json.dumps(self.worker(json.loads(payload)))


def _ray_map_batches(items: Iterable[Any], factory: WorkerFactory, batch_size: int, config: ExecutorConfig) -> Iterator[dict]:
    try:
        import ray
    except ImportError:
        raise RationalystError("the ray executor needs Ray; install it with:\n  pip install 'rationalyst[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    workers, gpus_per_worker = plan_pool(config, ray.cluster_resources())
    actor_class = ray.remote(_RayWorker)
    actors = [
        actor_class.options(num_cpus=config.cpus_per_worker, num_gpus=gpus_per_worker).remote(factory)
        for _ in range(workers)
    ]
    log.info("ray executor: %d workers x %g GPUs for the whole stage", workers, gpus_per_worker)
    batches = batched(items, batch_size)
    order: deque[Any] = deque()  # futures in input order
    owner: dict[Any, tuple[int, int]] = {}  # future -> (actor index, items in the batch)
    busy = [0] * workers  # batches sent to each actor and not yet back
    done: set[Any] = set()
    in_flight, exhausted = 0, False
    try:
        while True:
            # Keep every actor fed (two batches each, so none waits between batches) within the window.
            while not exhausted and (in_flight < config.window or not order) and min(busy) < 2:
                batch = next(batches, None)
                if batch is None:
                    exhausted = True
                    break
                index = busy.index(min(busy))
                future = actors[index].run.remote(json.dumps(batch))
                order.append(future)
                owner[future] = (index, len(batch))
                busy[index] += 1
                in_flight += len(batch)
            if not order:
                return
            running = [f for f in order if f not in done]
            if running:
                ready, _ = ray.wait(running, num_returns=1)
                for future in ready:
                    done.add(future)
                    busy[owner[future][0]] -= 1
            while order and order[0] in done:
                future = order.popleft()
                done.discard(future)
                in_flight -= owner.pop(future)[1]
                yield from json.loads(ray.get(future))
    finally:
        for actor in actors:
            ray.kill(actor)
