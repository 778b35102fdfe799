"""A trained LoRA adapter (PEFT's folder) as a GGUF LoRA file, so llama.cpp runs the rationalist.

`rationalyst train` fine-tunes a LoRA on the transformers copy of a GGUF model (``builtin:`` and
``gguf:`` bases are dequantized once, `lm.gguf_cache`). llama.cpp can apply a LoRA at load time to the
very GGUF those weights came from: ``W x + (alpha / r) B (A x)`` with ``W`` the quantized weights the
adapter was trained on. On CPU that runs the trained rationalist at the GGUF's speed instead of
float32 transformers, without merging or quantizing anything again.

The file is what llama.cpp's ``convert_lora_to_gguf.py`` writes, written here from the adapter alone
(the ``gguf`` package): type ``adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each
adapted weight its A (rank x in) and B (out x rank) in float32 under the weight's GGUF name with
``.lora_a`` / ``.lora_b``. For the ``llama`` architecture the GGUF stores the rows of the query and key
weights permuted for its rotary layout (transformers undoes it on load), so B's rows of those two are
permuted the same way. Checked against transformers running the merged model
(``tests/test_llamacpp.py``).

Refused with a clear error: an adapter trained on other weights than this GGUF's (its
``base_model_name_or_path`` names the dequantized folder, keyed by the file), DoRA, per-module alphas,
adapted embeddings or extra trained modules, and architectures other than ``llama`` and ``qwen2``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from rationalyst.errors import RationalystError
from rationalyst.lm.gguf_cache import gguf_key

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ARCHITECTURES = ("llama", "qwen2")


def lora_gguf(adapter: str | Path, base_gguf: str | Path) -> Path:
    """The GGUF LoRA file of PEFT adapter folder ``adapter`` for the GGUF ``base_gguf``, written once
    beside the adapter (``adapter-<base key>-<hash of the adapter's weights and config>.gguf``), and
    again whenever they change."""
    adapter, base_gguf = Path(adapter).expanduser(), Path(base_gguf).expanduser()
    config = _adapter_config(adapter)
    weights = adapter / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise RationalystError(f"{adapter}: no {ADAPTER_WEIGHTS} (a PEFT LoRA folder, as `rationalyst train` writes)")
    key = gguf_key(base_gguf.resolve())
    trained_on = Path(str(config.get("base_model_name_or_path") or "")).name
    if trained_on != key:
        raise RationalystError(
            f"{adapter}: the adapter was trained on {config.get('base_model_name_or_path')!r}, not on the weights "
            f"of {base_gguf.name} (their folder would be {key!r}); llama.cpp can only apply it to the GGUF it was "
            "trained from: train on builtin:<name> or gguf:<that file>"
        )
    out = adapter / f"adapter-{key}-{_adapter_digest(adapter)}.gguf"
    if out.is_file():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _write(config, weights, base_gguf, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    for stale in adapter.glob(f"adapter-{key}*.gguf"):  # files of earlier weights or settings
        if stale != out:
            stale.unlink(missing_ok=True)
    return out


def _adapter_digest(adapter: Path) -> str:
    """A short hash of the adapter's weights and config: the converted file is keyed by what it was
    written from, not by modification times (a copy with ``cp -p`` or ``rsync -a`` keeps older times
    on newer weights, and an edited ``lora_alpha`` changes no weight file)."""
    digest = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        with open(adapter / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _adapter_config(adapter: Path) -> dict[str, Any]:
    path = adapter / ADAPTER_CONFIG
    if not path.is_file():
        raise RationalystError(f"{adapter}: no {ADAPTER_CONFIG} (lora: names a PEFT LoRA folder or a GGUF LoRA file)")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise RationalystError(f"{path}: not JSON: {exc}") from None
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, not 'LORA'")
    if config.get("use_dora"):
        problems.append("use_dora: llama.cpp applies plain LoRA only")
    if config.get("alpha_pattern"):
        problems.append("alpha_pattern: llama.cpp takes one alpha for the whole adapter")
    if config.get("use_rslora") and config.get("rank_pattern"):
        problems.append("use_rslora with rank_pattern: no single alpha reproduces those scales")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']}: only LoRA pairs can be exported")
    if config.get("fan_in_fan_out"):
        problems.append("fan_in_fan_out: expected the Linear layout (out x in)")
    for field in ("r", "lora_alpha"):
        if not isinstance(config.get(field), (int, float)) or config[field] <= 0:
            problems.append(f"{field} is {config.get(field)!r}, not a positive number")
    if problems:
        raise RationalystError(f"{path}: cannot export to llama.cpp: " + "; ".join(problems))
    return config


def _alpha(config: dict[str, Any]) -> float:
    """The alpha llama.cpp needs for PEFT's scale: it scales by alpha / rank, PEFT by alpha / rank, or by
    alpha / sqrt(rank) under rsLoRA (so alpha x sqrt(rank) there)."""
    alpha = float(config["lora_alpha"])
    return alpha * math.sqrt(float(config["r"])) if config.get("use_rslora") else alpha


def _base_layout(base_gguf: Path) -> tuple[str, int, int, int]:
    """(architecture, blocks, attention heads, key/value heads) from the GGUF's metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(str(base_gguf))

    def value(key: str) -> Any:
        field = reader.get_field(key)
        if field is None:
            raise RationalystError(f"{base_gguf}: no {key} in its metadata")
        return field.contents()

    arch = str(value("general.architecture"))
    if arch not in ARCHITECTURES:
        raise RationalystError(f"{base_gguf}: LoRA export supports {', '.join(ARCHITECTURES)} GGUFs, not {arch!r}")
    heads = int(value(f"{arch}.attention.head_count"))
    kv_field = reader.get_field(f"{arch}.attention.head_count_kv")
    return arch, int(value(f"{arch}.block_count")), heads, int(kv_field.contents()) if kv_field else heads


def _permute_rows(b: Any, heads: int) -> Any:
    """B's rows in the GGUF's rotary layout of a llama query or key weight: within each head, the two
    halves of its rows interleaved (what convert_hf_to_gguf does to the weight itself)."""
    rows = b.shape[0]
    return b.reshape(heads, 2, rows // heads // 2, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def _write(config: dict[str, Any], weights: Path, base_gguf: Path, out: Path) -> None:
    import gguf
    from safetensors.torch import load_file

    arch, blocks, heads, kv_heads = _base_layout(base_gguf)
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), blocks)
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in load_file(str(weights)).items():
        part = "a" if ".lora_A." in name else "b" if ".lora_B." in name else None
        if part is None:
            raise RationalystError(f"{weights}: tensor {name!r} is not a LoRA A or B weight")
        base_name = name.removeprefix("base_model.model.").replace(f".lora_{part.upper()}.weight", ".weight")
        target = names.get_name(base_name, try_suffixes=(".weight",))
        if target is None or target.startswith(("token_embd", "output.")):
            raise RationalystError(
                f"{weights}: no GGUF weight of {arch} for {base_name!r} (adapted embeddings cannot be exported)"
            )
        pairs.setdefault(target, {})[part] = tensor.float()
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, _alpha(config))
    for target, pair in sorted(pairs.items()):
        if set(pair) != {"a", "b"}:
            raise RationalystError(f"{weights}: {target} has a LoRA {'A' if 'a' in pair else 'B'} but not its pair")
        b = pair["b"]
        if arch == "llama" and target.endswith((".attn_q.weight", ".attn_k.weight")):
            b = _permute_rows(b, heads if ".attn_q." in target else kv_heads)
        writer.add_tensor(f"{target}.lora_a", pair["a"].contiguous().numpy())
        writer.add_tensor(f"{target}.lora_b", b.contiguous().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
