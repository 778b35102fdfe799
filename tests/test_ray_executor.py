"""The Ray executor writes the same records as the local one (local Ray, 2 workers), loads each model once
per actor for a whole stage, and refuses a pool the cluster cannot hold."""

from __future__ import annotations

import json
import math

import pytest

from rationalyst.runs import read_records
from rationalyst.stages import filter as filter_stage
from rationalyst.stages import select

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

FLOATS = ("similarity", "score_with", "score_without", "delta")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def assert_same_records(a_dir, b_dir):
    a, b = list(read_records(a_dir)), list(read_records(b_dir))
    assert [r["id"] for r in a] == [r["id"] for r in b]  # same records, same order
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in FLOATS} == {k: v for k, v in y.items() if k not in FLOATS}
        for key in FLOATS:
            if key in x:
                assert math.isclose(x[key], y[key], abs_tol=1e-4)  # batching differs, values agree
    return a


def test_select_on_ray_matches_local(tmp_path):
    from tests.test_select import CORPUS, QUESTIONS

    common = dict(corpus=[str(CORPUS)], benchmarks=[str(QUESTIONS)], threshold=0.2, embedder={"spec": "builtin:minilm", "batch_size": 2})
    select.run(select.SelectConfig(output=tmp_path / "local", **common))
    select.run(select.SelectConfig(output=tmp_path / "ray", executor={"kind": "ray", "workers": 2, "window": 4}, **common))
    records = assert_same_records(tmp_path / "local", tmp_path / "ray")
    assert sum(r["selected"] for r in records) == 3
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"]["duplicate id"] == 1


def test_filter_on_ray_matches_local(tmp_path):
    from tests.test_filter import make_records, write_jsonl

    source = write_jsonl(tmp_path / "rationales.jsonl", make_records())
    filter_stage.run(filter_stage.FilterConfig(input=source, output=tmp_path / "local", documents_per_batch=2))
    filter_stage.run(filter_stage.FilterConfig(
        input=source, output=tmp_path / "ray", documents_per_batch=1, executor={"kind": "ray", "workers": 2, "window": 2}
    ))
    assert len(assert_same_records(tmp_path / "local", tmp_path / "ray")) == len(make_records())


def test_extract_on_ray_matches_local(tmp_path):
    from rationalyst.stages import extract
    from tests.test_mining_pipeline import DOCUMENTS

    common = dict(input=DOCUMENTS, batch_size=1, max_rationales_per_doc=2, max_new_tokens=32)
    extract.run(extract.ExtractConfig(output=tmp_path / "local", **common))
    extract.run(extract.ExtractConfig(output=tmp_path / "ray", executor={"kind": "ray", "workers": 2}, **common))
    assert list(read_records(tmp_path / "local")) == list(read_records(tmp_path / "ray"))
    assert list(read_records(tmp_path / "local" / "documents")) == list(read_records(tmp_path / "ray" / "documents"))


def test_one_model_load_per_actor_for_the_whole_stage(tmp_path):
    from rationalyst.executor import ExecutorConfig, map_batches

    loads = tmp_path / "loads.txt"

    def factory():  # a closure, so Ray pickles it by value
        with open(loads, "a") as f:
            f.write("model loaded\n")

        def worker(batch):
            return [{"id": str(x), "double": 2 * x} for x in batch] + [{"_skip": "odd batch"}] * (batch[0] % 2)

        return worker

    items = iter(range(12))  # a stream, read lazily: 3 windows of 4 items
    config = ExecutorConfig(kind="ray", workers=2, window=4)
    records = list(map_batches(items, factory, 2, config))
    assert [r["double"] for r in records if "_skip" not in r] == [2 * x for x in range(12)]  # input order
    assert len([r for r in records if "_skip" in r]) == 0  # every batch starts at an even item
    assert loads.read_text().count("model loaded") == 2  # one per actor, not one per actor per window


def test_a_cluster_too_small_is_an_error_at_start(tmp_path):
    from rationalyst.errors import RationalystError
    from rationalyst.executor import ExecutorConfig, map_batches

    loads = tmp_path / "loads.txt"

    def factory():
        loads.write_text("loaded")
        return lambda batch: []

    with pytest.raises(RationalystError, match="at least 1 GPUs .* has 0"):
        list(map_batches(range(4), factory, 2, ExecutorConfig(kind="ray", min_gpus=1)))
    with pytest.raises(RationalystError, match="3 workers .* the Ray cluster has 0 GPUs and 2 CPUs"):
        list(map_batches(range(4), factory, 2, ExecutorConfig(kind="ray", workers=3)))
    with pytest.raises(RationalystError, match="1 workers .* = 1 GPUs"):
        list(map_batches(range(4), factory, 2, ExecutorConfig(kind="ray", workers=1, gpus_per_worker=1)))
    assert not loads.exists()
    # Unset, the pool is what the cluster holds: 2 CPU workers here.
    assert len(list(map_batches(range(4), lambda: (lambda b: [{"id": str(x)} for x in b]), 1, ExecutorConfig(kind="ray")))) == 4
