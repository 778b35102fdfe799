"""The Ray executor writes the same records as the local one (local Ray, 2 workers)."""

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
