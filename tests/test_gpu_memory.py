"""GPU memory between stages: `rationalyst run` releases what each stage loaded before the next starts,
and `release_memory` frees a dropped model (reference cycles included)."""

from __future__ import annotations

import gc
import weakref

from rationalyst import pipeline
from rationalyst.config import load_config
from rationalyst.lm.memory import release_memory
from tests.test_pipeline import write_recipe


class FakeEngine:
    def __init__(self) -> None:
        self.self_ref = self  # a cycle: only the garbage collector frees it


def test_each_stage_is_followed_by_a_release(tmp_path, monkeypatch):
    config = load_config(pipeline.PipelineConfig, write_recipe(tmp_path, tmp_path / "run"))
    events: list[str] = []
    engines: list[weakref.ref] = []

    def stage(name):
        def run(overwrite):
            events.append(name)
            engines.append(weakref.ref(FakeEngine()))
        return run

    runners = [(name, getattr(config, name), stage(name)) for name in ("select", "extract", "filter", "train", "eval")]

    def release():
        events.append("release")
        gc.collect()
        assert engines[-1]() is None  # the stage's engine is gone before the next stage starts

    monkeypatch.setattr(pipeline, "_stage_runners", lambda cfg: runners)
    monkeypatch.setattr(pipeline, "_guard_corpus_inputs", lambda cfg: None)
    monkeypatch.setattr(pipeline, "_guard_selected", lambda cfg: None)
    monkeypatch.setattr(pipeline, "release_memory", release)
    pipeline.run(config)
    assert events == [x for name in ("select", "extract", "filter", "train", "eval") for x in (name, "release")]


def test_a_failed_stage_releases_too(tmp_path, monkeypatch):
    config = load_config(pipeline.PipelineConfig, write_recipe(tmp_path, tmp_path / "run"))
    released: list[int] = []

    def fail(overwrite):
        from rationalyst.errors import InputError

        raise InputError("bad input")

    monkeypatch.setattr(pipeline, "_stage_runners", lambda cfg: [("select", config.select, fail)])
    monkeypatch.setattr(pipeline, "_guard_corpus_inputs", lambda cfg: None)
    monkeypatch.setattr(pipeline, "release_memory", lambda: released.append(1))
    try:
        pipeline.run(config)
    except Exception as exc:  # noqa: BLE001
        assert "stage select failed" in str(exc)
    assert released == [1]


def test_release_memory_frees_a_dropped_model_in_a_cycle():
    gc.disable()
    try:
        engine = FakeEngine()
        ref = weakref.ref(engine)
        del engine
        assert ref() is not None  # held by its own cycle until collected
        assert isinstance(release_memory(), dict)
        assert ref() is None
    finally:
        gc.enable()
