"""GPU memory between stages: drop what a finished stage loaded so the next one starts on an empty GPU.

vLLM refuses to start an engine when the free memory is under ``gpu_memory_utilization x total``, so an
engine, a scorer or a trainer left alive by the previous stage (or cached by PyTorch's allocator) makes
the next stage fail. `release_memory` runs the garbage collector (models are freed once nothing refers
to them) and returns the allocator's cached blocks to the driver; `rationalyst run` calls it after each
stage, the train stage before rank 0 reloads the model to merge.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def release_memory() -> dict[str, int]:
    """Collect garbage and empty the CUDA cache; returns bytes allocated/reserved on each GPU after it
    (``{}`` without CUDA). Never raises: a failure to free is logged, not fatal."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return {}
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    after: dict[str, int] = {}
    try:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
        for i in range(torch.cuda.device_count()):
            after[f"cuda:{i}.allocated"] = torch.cuda.memory_allocated(i)
            after[f"cuda:{i}.reserved"] = torch.cuda.memory_reserved(i)
    except RuntimeError as exc:  # pragma: no cover - a broken CUDA context
        log.warning("could not release GPU memory: %s", exc)
    return after
