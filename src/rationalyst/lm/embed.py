"""The sentence embedder behind Stage 1 document selection: sentence-transformers models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rationalyst.errors import ModelNotFoundError
from rationalyst.lm.base import Embedder
from rationalyst.lm.hf import resolve_device
from rationalyst.lm.model_location import not_found_hint, require_model_location


class SentenceTransformerEmbedder(Embedder):
    """Mean-pooled, L2-normalised sentence vectors from a sentence-transformers folder or hub id."""

    def __init__(self, path: str | Path, *, name: str = "", device: str = "auto") -> None:
        from sentence_transformers import SentenceTransformer

        require_model_location(str(path), "sentence embedder", config_file=None)
        try:
            self.model = SentenceTransformer(str(path), device=str(resolve_device(device)))
        except OSError as exc:
            raise ModelNotFoundError(
                f"cannot load sentence embedder {str(path)!r}: {exc}{not_found_hint(str(path))}"
            ) from None
        self.name = name or f"st:{path}"

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
