"""ModelPool: roles that name the same weights share one loaded engine; different weights or devices do not."""

from __future__ import annotations

from rationalyst.lm.registry import ModelConfig
from rationalyst.search import pool as pool_module
from rationalyst.search.pool import ModelPool, RolesConfig


def test_roles_differing_only_in_how_the_engine_is_driven_share_it(monkeypatch):
    loads = []
    monkeypatch.setattr(pool_module, "load_model", lambda config: loads.append(config.spec) or object())
    pool = ModelPool()
    a = pool.get(ModelConfig(spec="hf:/m", batch_size=2, gpu_memory_utilization=0.3))
    b = pool.get(ModelConfig(spec="hf:/m", batch_size=16, prefix_cache=0))
    assert a is b and loads == ["hf:/m"]
    assert pool.get(ModelConfig(spec="hf:/m", dtype="bfloat16")) is not a
    assert pool.get(ModelConfig(spec="hf:/m", device="cpu")) is not a
    assert pool.get(ModelConfig(spec="hf:/other")) is not a
    assert loads == ["hf:/m", "hf:/m", "hf:/m", "hf:/other"]


def test_a_method_loads_only_the_roles_it_uses(monkeypatch):
    loads = []
    monkeypatch.setattr(pool_module, "load_model", lambda config: loads.append(config.spec) or object())
    config = RolesConfig(agent="hf:/agent", rationalist="hf:/rationalist", scorer="hf:/scorer", judge="hf:/judge")
    ModelPool().roles(config, "cot")
    assert loads == ["hf:/agent"]
    ModelPool().roles(config, "implicit")
    assert sorted(loads[1:]) == ["hf:/agent", "hf:/rationalist", "hf:/scorer"]
