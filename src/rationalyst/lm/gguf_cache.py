"""GGUF files for the `hf` backend: dequantize once, keep a safetensors copy in the cache.

transformers can load a GGUF file directly, but it dequantizes every tensor and converts the tokenizer
on each load (about 20 s for the 135M default model on 2 cores). Converting once to an ordinary model
folder makes every later load a plain safetensors read. The folder is keyed by the file's name, size
and a hash of its first and last MiB, written to a temporary folder and renamed into place, so two
processes converting at once cannot leave a half-written model behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from rationalyst.cache import cache_dir
from rationalyst.errors import ModelNotFoundError

log = logging.getLogger(__name__)

_SAMPLE = 1 << 20


def gguf_key(path: Path) -> str:
    """A cheap content key: name, size, and sha256 of the first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}:{size}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(_SAMPLE))
        f.seek(max(size - _SAMPLE, 0))
        digest.update(f.read(_SAMPLE))
    return f"{path.stem}-{digest.hexdigest()[:16]}"


def converted_gguf(path: str | Path) -> Path:
    """A transformers model folder holding the dequantized weights and tokenizer of a GGUF file."""
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {path}")
    target = cache_dir("gguf") / gguf_key(src)
    if (target / "config.json").exists():
        return target
    log.info("converting %s to safetensors (once) in %s", src.name, target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _convert(src, tmp)
        if not target.exists():
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot read GGUF file {src}: {exc}") from None
    # A GGUF-loaded model refuses save_pretrained while it still looks quantized; the weights are
    # already dequantized, so dropping the marker is safe (the reload gives identical logits).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
