"""Spec strings to backends, with lazy imports so the core never loads an engine it does not use.

    hf:<hub id or folder>       transformers (CPU or CUDA)
    gguf:<file.gguf>            transformers on a GGUF file, converted once to a cached safetensors folder
    llamacpp:<file.gguf>        llama-cpp-python (extra: rationalyst[llamacpp]); also llamacpp:builtin:<name>
    vllm:<hub id or folder>     vLLM's offline engine on GPUs (extra: rationalyst[vllm])
    openai:<base URL>#<model>   any OpenAI-compatible server, e.g. openai:http://127.0.0.1:8000/v1#NAME
    st:<hub id or folder>       a sentence-transformers embedder
    builtin:<name>              a model shipped in a PyPI package (see `rationalyst models`)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from rationalyst.config import StrictModel
from rationalyst.errors import ModelNotFoundError, RationalystError
from rationalyst.lm.base import Embedder, LanguageModel
from rationalyst.lm.builtin import builtin_path, get_builtin
from rationalyst.lm.model_location import require_model_location
from rationalyst.lm.precision import DtypeName

LM_SCHEMES = ("hf", "gguf", "llamacpp", "builtin", "vllm", "openai")
EMBEDDER_SCHEMES = ("st", "builtin")


def _n_ctx_in_hash(n_ctx: int) -> int:
    """What of llama.cpp's ``n_ctx`` decides its numbers: nothing from 512 up (its kernels round by the
    chunks of ``n_batch`` = min(n_ctx, 512); scores and samples at 512 and 4,096 are bit-identical,
    tests/test_llamacpp.py), so each such window hashes as the default 4,096 (a run made at the default
    keeps its hash, and one whose prompts were too long resumes with a raised window); a smaller one
    hashes as itself."""
    return 4096 if n_ctx >= 512 else n_ctx


class ModelConfig(StrictModel):
    """A model and how to run it. In YAML either a spec string or a mapping with these fields."""

    spec: str = Field(description="Backend spec, e.g. builtin:smollm2-135m, hf:<dir>, gguf:<file>.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    dtype: DtypeName = Field(
        "auto",
        description="Weights dtype for hf; auto = bfloat16 on CUDA (float16 before Ampere), float32 on CPU; fastest = "
        "the same on CUDA, bfloat16 on CPUs that compute it natively (AVX512-BF16, AMX), else float32 "
        "(rationalyst.lm.precision).",
    )
    batch_size: int = Field(
        8, ge=1, description="Sequences per forward pass (llamacpp: rows sampled together, one KV stream each)."
    )
    n_ctx: int = Field(
        4096, ge=16, description="Context window for llamacpp (from 512 up, raising it keeps a run resumable)."
    )
    n_threads: int | None = Field(None, ge=1, description="CPU threads for llamacpp (default: all).")
    lora: str | None = Field(
        None,
        description="llamacpp: a LoRA applied to the GGUF: the adapter folder `rationalyst train` wrote (its "
        "`adapter`, trained on this GGUF through builtin: or gguf:; converted once to a GGUF LoRA beside it) "
        "or a GGUF LoRA file.",
    )
    prefix_cache: int = Field(
        4, ge=0, description="hf: KV caches of recent prompts kept for reuse by prompts that extend them (0 = off); "
        "llamacpp: scoring contexts, each holding a recent scored sequence (at least this many; the step search keeps "
        "one a problem side by side, batch_problems; 0: one, always).",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one model is split across.")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of each GPU's memory it may take (weights + KV cache)."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="vllm: context window (default: the model's); smaller saves KV-cache memory."
    )
    tokenizer: str | None = Field(
        None,
        description="Hugging Face tokenizer (hub id or folder) of the model, for openai: exact token-id "
        "scoring and chat contexts in scoring; for vllm: a tokenizer other than the model's.",
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the API key.")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds one request may take.")
    max_retries: int = Field(3, ge=0, description="openai: retries on 5xx, 429 and connection errors.")

    added_fields = frozenset({"lora"})  # unset, the runs made before it keep their hash (finished stays finished)
    hashed_as = {"n_ctx": _n_ctx_in_hash}
    execution_fields = frozenset(
        {
            "device", "batch_size", "n_threads", "prefix_cache", "tensor_parallel_size",
            "gpu_memory_utilization", "max_model_len", "api_key_env", "concurrency", "timeout_s", "max_retries",
        }
    )

    @model_validator(mode="before")
    @classmethod
    def _from_spec_string(cls, value):
        return {"spec": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _lora_on_llamacpp(self) -> ModelConfig:
        if self.lora is not None and not self.spec.startswith("llamacpp:"):
            raise ValueError(
                f"lora is applied by the llamacpp backend only (llamacpp:<file.gguf> or llamacpp:builtin:<name>), "
                f"not to {self.spec!r}; for transformers use the merged model, hf:<train output>/merged"
            )
        return self


def _split_spec(spec: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    scheme, sep, target = spec.partition(":")
    if not sep or not target or scheme not in allowed:
        raise RationalystError(
            f"bad model spec {spec!r}: expected one of " + ", ".join(f"{s}:<...>" for s in allowed)
        )
    return scheme, target


def _as_config(spec: str | ModelConfig, overrides: dict) -> ModelConfig:
    if isinstance(spec, ModelConfig):
        return spec.model_copy(update=overrides) if overrides else spec
    return ModelConfig(spec=spec, **overrides)


def resolve_gguf(target: str) -> Path:
    """A GGUF path, or `builtin:<name>` for a builtin language model's GGUF file."""
    if target.startswith("builtin:"):
        name = target.removeprefix("builtin:")
        if get_builtin(name).kind != "lm":
            raise RationalystError(f"builtin:{name} is not a language model")
        return builtin_path(name)
    path = Path(target).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {target}")
    return path


def _lora_file(lora: str, gguf: Path) -> Path:
    """A GGUF LoRA file as given, or the one written from a PEFT adapter folder for ``gguf``."""
    path = Path(lora).expanduser()
    if path.is_dir():
        from rationalyst.lm.gguf_lora import lora_gguf

        return lora_gguf(path, gguf)
    if not path.is_file():
        raise ModelNotFoundError(f"lora not found: {lora} (an adapter folder or a GGUF LoRA file)")
    return path


def base_model_folder(spec: str | ModelConfig) -> str:
    """A local folder (or hub id) that transformers can load and train: ``hf:`` gives its target, GGUF
    specs (``builtin:``, ``gguf:``) are converted once to a cached safetensors folder."""
    spec = spec.spec if isinstance(spec, ModelConfig) else spec
    scheme, _, target = spec.partition(":")
    if scheme == "hf" and target:
        require_model_location(target)
        return target
    if scheme in ("builtin", "gguf") and target:
        from rationalyst.lm.gguf_cache import converted_gguf

        return str(converted_gguf(resolve_gguf(spec if scheme == "builtin" else target)))
    raise RationalystError(f"cannot train {spec!r}: use builtin:<name>, gguf:<file> or hf:<id or folder>")


def load_model(spec: str | ModelConfig, **overrides) -> LanguageModel:
    """Load a language model from a spec string or a `ModelConfig`."""
    config = _as_config(spec, overrides)
    scheme, target = _split_spec(config.spec, LM_SCHEMES)
    options = dict(
        name=config.spec, device=config.device, dtype=config.dtype, batch_size=config.batch_size,
        prefix_cache=config.prefix_cache,
    )
    if scheme == "vllm":
        from rationalyst.lm.vllm import VLLMModel

        return VLLMModel.load(
            target, name=config.spec, tokenizer=config.tokenizer, dtype=config.dtype,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization, max_model_len=config.max_model_len,
        )
    if scheme == "openai":
        from rationalyst.lm.openai_compat import OpenAIModel

        return OpenAIModel.from_spec(
            target, name=config.spec, tokenizer=config.tokenizer, api_key_env=config.api_key_env,
            concurrency=config.concurrency, timeout_s=config.timeout_s, max_retries=config.max_retries,
        )
    if scheme == "llamacpp":
        from rationalyst.lm.llamacpp import LlamaCppModel

        gguf = resolve_gguf(target)
        lora = None if config.lora is None else _lora_file(config.lora, gguf)
        return LlamaCppModel(
            gguf, name=config.spec if lora is None else f"{config.spec}+lora:{config.lora}", n_ctx=config.n_ctx,
            n_threads=config.n_threads, batch_size=config.batch_size, lora=lora, prefix_cache=config.prefix_cache,
        )

    from rationalyst.lm.gguf_cache import converted_gguf
    from rationalyst.lm.hf import HFModel

    if scheme == "hf":
        return HFModel.from_pretrained(target, **options)
    gguf = resolve_gguf(config.spec if scheme == "builtin" else target)
    return HFModel.from_pretrained(converted_gguf(gguf), **options)


def load_embedder(spec: str | ModelConfig, **overrides) -> Embedder:
    """Load a sentence embedder from a spec string or a `ModelConfig`."""
    config = _as_config(spec, overrides)
    scheme, target = _split_spec(config.spec, EMBEDDER_SCHEMES)
    from rationalyst.lm.embed import SentenceTransformerEmbedder

    if scheme == "builtin":
        if get_builtin(target).kind != "embedder":
            raise RationalystError(f"builtin:{target} is not a sentence embedder")
        return SentenceTransformerEmbedder(builtin_path(target), name=config.spec, device=config.device)
    return SentenceTransformerEmbedder(target, name=config.spec, device=config.device)
