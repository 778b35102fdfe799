"""The executor's pool sizing from a cluster's resources (no Ray needed), and the local executor."""

from __future__ import annotations

import pytest

from rationalyst.errors import RationalystError
from rationalyst.executor import ExecutorConfig, map_batches, plan_pool


def test_the_pool_defaults_to_what_the_cluster_has():
    ray = dict(kind="ray")
    assert plan_pool(ExecutorConfig(**ray), {"GPU": 8.0, "CPU": 96.0}) == (8, 1.0)
    assert plan_pool(ExecutorConfig(**ray, gpus_per_worker=0.25), {"GPU": 2.0, "CPU": 96.0}) == (8, 0.25)
    assert plan_pool(ExecutorConfig(**ray, gpus_per_worker=2), {"GPU": 8.0, "CPU": 96.0}) == (4, 2)
    assert plan_pool(ExecutorConfig(**ray), {"CPU": 6.0}) == (6, 0.0)
    assert plan_pool(ExecutorConfig(**ray, cpus_per_worker=4), {"GPU": 8.0, "CPU": 16.0}) == (4, 1.0)  # CPUs bind
    assert plan_pool(ExecutorConfig(**ray, workers=3, min_gpus=4), {"GPU": 4.0, "CPU": 8.0}) == (3, 1.0)


def test_a_cluster_that_cannot_hold_the_pool_is_a_clear_error():
    with pytest.raises(RationalystError, match=r"at least 8 GPUs \(executor.min_gpus\) and the Ray cluster has 4"):
        plan_pool(ExecutorConfig(kind="ray", min_gpus=8), {"GPU": 4.0, "CPU": 64.0})
    with pytest.raises(RationalystError, match="8 workers x .* = 8 GPUs .* the Ray cluster has 2 GPUs"):
        plan_pool(ExecutorConfig(kind="ray", workers=8, gpus_per_worker=1), {"GPU": 2.0, "CPU": 64.0})
    with pytest.raises(RationalystError, match="cannot hold one worker"):
        plan_pool(ExecutorConfig(kind="ray", gpus_per_worker=2), {"GPU": 1.0, "CPU": 64.0})
    with pytest.raises(RationalystError, match="= 0 GPUs and 4 CPUs; the Ray cluster has 0 GPUs and 2 CPUs"):
        plan_pool(ExecutorConfig(kind="ray", workers=4), {"CPU": 2.0})


def test_the_local_executor_loads_one_worker_and_keeps_order():
    loads = []

    def factory():
        loads.append(1)
        return lambda batch: [{"id": str(x)} for x in batch]

    records = list(map_batches(iter(range(7)), factory, 3, ExecutorConfig()))
    assert [r["id"] for r in records] == [str(x) for x in range(7)] and loads == [1]
