"""`rationalyst check RECIPE`: find what would stop a run, in seconds and before any model loads.

For each stage of a pipeline recipe it checks the data paths (corpus inputs, the select stage's
question files, the eval benchmarks and their evaluation-split rule), the model specs (a local folder
or file, a builtin, or a hub id: gated hub models are named), and the resources: GPUs, GPU memory per
engine (weights = parameters x bytes of the dtype; a vLLM engine takes ``gpu_memory_utilization`` of
each of its GPUs) and CPU RAM for training, against what this machine (or the Ray cluster at
``executor.ray_address``) has, or against ``--gpus N --gpu-memory GB`` for planning elsewhere (with
``--gpu-capability 7.5`` for a GPU before Ampere, where training mixes and loads in float16). It runs
the contamination guard over the corpus inputs that are benchmark files when they are on disk, and
estimates each stage's work from the recipe and the data.

The result is a list of `Row` (stage, what, needs, there, ok, fix); every problem's ``fix`` is one line
saying what to change. `rationalyst run` runs the same checks first and stops on a problem.

Sizes are estimates: parameters come from the model's ``config.json`` when it is on disk (a folder or
the Hugging Face cache), else from the size in its name (``8B``, ``135M``). Memory needs add 20% to the
weights for activations, caches and the CUDA context; a vLLM engine needs its weights to fit in its
share of the GPU with room left for the KV cache.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rationalyst.errors import RationalystError
from rationalyst.lm.model_location import could_be_hub_id
from rationalyst.lm.registry import ModelConfig

GB = 1024**3
OVERHEAD = 1.2  # weights x this = an engine's GPU memory (activations, caches, CUDA context)
VLLM_MIN_KV_GB = 1.0  # a vLLM engine's share must hold its weights and at least this much KV cache
#: Hub organisations whose models are gated (accept the license on the hub, then log in).
GATED_PREFIXES = ("meta-llama/", "mistralai/", "google/gemma", "google/medgemma", "bigcode/starcoder")
#: Parameters of the builtin models (they are too small to matter on a GPU, but counted anyway).
BUILTIN_PARAMS = {"smollm2-135m": 0.135e9, "minilm": 0.023e9, "qwen2.5-coder-1.5b": 1.5e9, "qwen2.5-coder-0.5b": 0.5e9}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_COUNT_BYTES_LIMIT = 512 * 1024**2  # count documents line by line in at most this many bytes per input


@dataclass
class Machine:
    """What the run has: GPUs, memory per GPU (None: unknown), CPU RAM, and where that came from."""

    gpus: int
    gpu_memory_gb: float | None
    cpu_ram_gb: float
    source: str
    gpu_capability: tuple[int, int] | None = None  # the GPUs' compute capability (the lowest); None: unknown


@dataclass
class Row:
    """One check: stage, what was checked, what it needs, what is there, and what to change if not OK."""

    stage: str
    what: str
    needs: str
    there: str
    ok: bool = True
    fix: str = ""


@dataclass
class ModelInfo:
    """What is known of a model spec without loading it."""

    spec: str
    params: float | None  # parameters; None when unknown
    where: str  # how it was found ("local folder", "hub (cached)", ...)
    problem: str = ""  # one line: what to change; empty when it resolves
    gated: bool = False
    produced_by: str | None = None  # a stage of this run that writes it


@dataclass
class Report:
    """Every row of a check, the work estimates, the machine checked against and how long it took."""

    machine: Machine
    rows: list[Row] = field(default_factory=list)
    estimates: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    named: set[str] = field(default_factory=set)  # models whose problem is already in a row

    @property
    def problems(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


class PreflightError(RationalystError):
    """`rationalyst run`'s checks found a problem."""

    def __init__(self, report: Report) -> None:
        self.report = report
        lines = "; ".join(f"{r.stage} {r.what}: {r.fix}" for r in report.problems)
        super().__init__(f"the recipe's checks found {len(report.problems)} problem(s): {lines} "
                         "(rationalyst check RECIPE for the table; run --no-check to go on anyway)")


# ============================================================================ machine


def _cpu_ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0.0


def _local_gpus() -> tuple[int, float | None, tuple[int, int] | None]:
    """This machine's CUDA GPUs: their count, the smallest one's memory and the lowest compute capability."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0, None, None
    if not torch.cuda.is_available():
        return 0, None, None
    n = torch.cuda.device_count()
    if not n:
        return 0, None, None
    memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(n)) / GB
    return n, memory, min(tuple(torch.cuda.get_device_capability(i)) for i in range(n))


def _ray_gpus(address: str) -> int | None:
    try:
        import ray
    except ImportError:
        return None
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR", ignore_reinit_error=True)
        return int(ray.cluster_resources().get("GPU", 0))
    except Exception:  # noqa: BLE001 - an unreachable cluster is reported, not raised
        return None
    finally:
        if ray.is_initialized():
            ray.shutdown()


def detect_machine(
    gpus: int | None = None, gpu_memory_gb: float | None = None, ray_address: str | None = None,
    gpu_capability: tuple[int, int] | None = None,
) -> Machine:
    """The machine to check against: ``gpus``/``gpu_memory_gb``/``gpu_capability`` where given
    (planning), else this machine's CUDA GPUs, or the GPUs of the Ray cluster at ``ray_address``."""
    ram = _cpu_ram_gb()
    if gpus is not None:
        return Machine(gpus, gpu_memory_gb, ram, "as given (--gpus/--gpu-memory)", gpu_capability)
    n, memory, capability = _local_gpus()
    source = "this machine"
    if ray_address:
        cluster = _ray_gpus(ray_address)
        if cluster is not None:
            n, source = cluster, f"the Ray cluster at {ray_address} (GPU memory: {'this machine' if memory else 'unknown'})"
    return Machine(n, gpu_memory_gb if gpu_memory_gb is not None else memory, ram, source,
                   gpu_capability if gpu_capability is not None else capability)


# ============================================================================ models


def _params_from_config(path: Path) -> float | None:
    """Parameters of a decoder from its config.json (embeddings + attention + MLP per layer)."""
    try:
        c = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    c = c.get("text_config", c)
    try:
        h, layers, vocab = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return None
    inter = int(c.get("intermediate_size") or 4 * h)
    heads = int(c.get("num_attention_heads") or 1)
    kv = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or h // heads)
    attention = h * heads * head_dim * 2 + h * kv * head_dim * 2
    embeddings = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return float(embeddings + layers * (attention + 3 * h * inter))


def _params_from_name(name: str) -> float | None:
    """Parameters from a size in the name ("Llama-3-8B" -> 8e9); None when there is none, or for a
    mixture of experts written "8x7B" (one expert's size, not the model's: Mixtral-8x7B has 46.7B)."""
    if re.search(r"\d\s*[xX]\s*\d+(?:\.\d+)?\s*[bBmM](?![a-zA-Z])", name):
        return None
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])", name.replace("_", "-"))
    if not m:
        return None
    return float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)


def _hub_cached_config(repo: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    try:
        found = try_to_load_from_cache(repo, "config.json")
    except Exception:  # noqa: BLE001 - a malformed id is reported by the caller
        return None
    return Path(found) if isinstance(found, str) else None


def model_info(spec: str, produced: dict[Path, str] | None = None) -> ModelInfo:
    """Resolve a model spec without loading it. ``produced``: paths that a stage of this run writes."""
    scheme, _, target = spec.partition(":")
    if scheme == "builtin":
        from rationalyst.lm.builtin import get_builtin, installed_parts

        try:
            model = get_builtin(target)
        except RationalystError as exc:
            return ModelInfo(spec, None, "builtin", problem=f"{exc}; run `rationalyst models` for the builtin names")
        if any(p is None for p in installed_parts(model)):
            return ModelInfo(spec, BUILTIN_PARAMS.get(target), "builtin", problem=f"not installed: {model.install_command}")
        return ModelInfo(spec, BUILTIN_PARAMS.get(target), "builtin (installed)")
    if scheme in ("gguf", "llamacpp"):
        if target.startswith("builtin:"):
            return model_info(target, produced)
        path = Path(target).expanduser()
        if path.is_file():
            return ModelInfo(spec, path.stat().st_size / 0.6, "local GGUF file")  # ~4.8 bits per weight
        return ModelInfo(spec, None, "GGUF file", problem=f"{target} not found: give the path of a .gguf file")
    if scheme == "openai":
        return ModelInfo(spec, 0.0, "a server (not contacted; no local GPU memory)")
    if scheme not in ("hf", "vllm", "st") or not target:
        return ModelInfo(spec, None, "?", problem=f"bad model spec {spec!r}: use hf:, vllm:, gguf:, builtin:, openai: or st:")
    path = Path(target).expanduser()
    for made, stage in (produced or {}).items():
        if path == made or path.resolve() == made.resolve():
            return ModelInfo(spec, None, f"written by the {stage} stage", produced_by=stage)
    if scheme == "st" and not path.exists():
        params = _params_from_name(target) or 0.11e9  # sentence embedders: ~110M parameters
        cached = _hub_cached_config(target) if could_be_hub_id(target) else None
        where = "hub id (in the local cache)" if cached else "hub id (downloaded at run time)"
        if not could_be_hub_id(target):
            return ModelInfo(spec, None, "local path", problem=f"{target} not found: give an existing folder or a hub id")
        return ModelInfo(spec, params, where)
    if path.exists():
        params = _params_from_config(path / "config.json") if path.is_dir() else None
        if params is None and path.is_dir():
            weights = sum(f.stat().st_size for f in path.glob("*.safetensors"))
            params = weights / 2 if weights else None  # bf16 checkpoints
        return ModelInfo(spec, params, "local folder")
    if not could_be_hub_id(target):
        return ModelInfo(spec, None, "local path", problem=f"{target} not found: give an existing folder or a hub id (name or org/name)")
    gated = target.startswith(GATED_PREFIXES)
    cached = _hub_cached_config(target)
    params = (_params_from_config(cached) if cached else None) or _params_from_name(target)
    if cached:
        return ModelInfo(spec, params, "hub id (in the local cache)", gated=gated)
    info = ModelInfo(spec, params, "hub id (downloaded at run time)", gated=gated)
    if os.environ.get("HF_HUB_OFFLINE", "").strip() in ("1", "true", "True", "yes"):
        info.problem = f"{target} is not in the local cache and HF_HUB_OFFLINE is set: download it first or unset it"
    elif gated and not (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or _hf_token_file()):
        info.problem = (f"{target} is gated: accept its license on https://huggingface.co/{target} and log in "
                        "(`hf auth login` or HF_TOKEN)")
    return info


def _hf_token_file() -> bool:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return (home / "token").is_file()


def _dtype_bytes(config: ModelConfig, on_gpu: bool, default_gpu: str = "bfloat16") -> int:
    if config.dtype == "fastest":  # 16 bits on GPUs; on a CPU whatever it runs fastest
        from rationalyst.lm import precision

        return 2 if on_gpu or precision.cpu_has_native_bf16() else 4
    if config.dtype != "auto":
        return DTYPE_BYTES[config.dtype]
    return DTYPE_BYTES[default_gpu] if on_gpu else 4


def _gb(x: float) -> str:
    return f"{x:.1f} GB" if x < 10 else f"{x:.0f} GB"


# ============================================================================ engines


@dataclass
class Engine:
    """One loaded model of a stage and its memory."""

    role: str
    config: ModelConfig
    info: ModelInfo


def _engine_gpu_need(engine: Engine, machine: Machine) -> tuple[float, int, str]:
    """(GB per GPU, GPUs, description) the engine takes on the GPU; 0 GPUs: runs on the CPU."""
    cfg, params = engine.config, engine.info.params
    scheme = cfg.spec.partition(":")[0]
    if scheme == "vllm":
        tp = cfg.tensor_parallel_size
        share = cfg.gpu_memory_utilization * machine.gpu_memory_gb if machine.gpu_memory_gb else None
        weights = params * _dtype_bytes(cfg, True) / GB / tp if params else None
        text = f"vLLM x{tp} GPU, {cfg.gpu_memory_utilization:g} of each"
        if weights is not None:
            text += f" (weights {_gb(weights)}/GPU)"
        return (share or 0.0), tp, text
    if scheme in ("openai", "llamacpp") or cfg.device == "cpu" or machine.gpus == 0:
        return 0.0, 0, "CPU"
    if params is None:
        return 0.0, 1, "size unknown"
    need = params * _dtype_bytes(cfg, True) / GB * OVERHEAD
    return need, 1, f"{_gb(need)}"


def _check_engines(report: Report, stage: str, engines: Sequence[Engine], machine: Machine, *, per_worker_gpus: float | None = None) -> None:
    """Models resolve; the stage's engines fit together on its GPU(s) (one process, or one Ray worker)."""
    for e in engines:
        info = e.info
        if info.problem and info.spec.partition(":")[2] in report.named:  # one line per model is enough
            report.add(stage, f"{e.role} model", e.config.spec, info.where, False, "as above")
        elif info.problem:
            report.named.add(info.spec.partition(":")[2])
            report.add(stage, f"{e.role} model", e.config.spec, info.where, False, info.problem)
        else:
            note = f"{info.where}" + (", gated" if info.gated else "")
            if info.params:
                note += f", ~{info.params / 1e9:.2g}B params"
            report.add(stage, f"{e.role} model", e.config.spec, note)
    gpu_engines = [(e, *_engine_gpu_need(e, machine)) for e in engines]
    gpu_engines = [g for g in gpu_engines if g[2] > 0]
    if not gpu_engines:
        return
    needs_gpus = max(g[2] for g in gpu_engines)
    what = "GPUs" if per_worker_gpus is None else "GPUs (Ray)"
    if machine.gpus < needs_gpus:
        report.add(stage, what, f">= {needs_gpus}", str(machine.gpus), False,
                   f"needs {needs_gpus} GPU(s) for {gpu_engines[0][0].config.spec}: run on a machine with GPUs"
                   + (" or lower tensor_parallel_size" if needs_gpus > 1 else " (or pass --gpus to plan for one)"))
        return
    if machine.gpu_memory_gb is None:
        report.add(stage, "GPU memory", ", ".join(g[3] for g in gpu_engines), "unknown", False,
                   "GPU memory unknown: pass --gpu-memory GB (per GPU) to check it")
        return
    mem = machine.gpu_memory_gb
    budget = mem * (per_worker_gpus if per_worker_gpus else 1.0)
    total = 0.0
    problems: list[str] = []
    for e, need, _, text in gpu_engines:
        total += need
        scheme = e.config.spec.partition(":")[0]
        if scheme == "vllm" and e.info.params:
            weights = e.info.params * _dtype_bytes(e.config, True) / GB / e.config.tensor_parallel_size
            if weights + VLLM_MIN_KV_GB > need:
                problems.append(
                    f"{e.role}: {e.config.spec} needs ~{_gb(weights)} of weights per GPU but gpu_memory_utilization "
                    f"{e.config.gpu_memory_utilization:g} x {_gb(mem)} = {_gb(need)}; raise "
                    f"{stage}.{_field_of(e.role)}.gpu_memory_utilization, set tensor_parallel_size, or use larger GPUs"
                )
    needs = " + ".join(f"{e.role} {text}" for e, _, _, text in gpu_engines)
    there = f"{machine.gpus} x {_gb(mem)}" + (f" ({per_worker_gpus:g} GPU per worker)" if per_worker_gpus else "")
    if total > budget * 0.98:
        problems.append(
            f"{len(gpu_engines)} engine(s) need ~{_gb(total)} on one GPU and it has {_gb(budget)}: lower "
            "gpu_memory_utilization, use bfloat16, give roles the same model, or use larger GPUs"
        )
    report.add(stage, "GPU memory", f"{needs} = ~{_gb(total)}", there, not problems, "; ".join(problems))


def _field_of(role: str) -> str:
    return {"extractor": "model"}.get(role, role)


# ============================================================================ data


def _corpus_path(item: Any) -> str:
    """Where a corpus input is read from: a benchmark input's relative path falls back to the benchmarks
    folder, as the benchmark loader resolves it."""
    from rationalyst.data.benchmarks import benchmarks_dir

    path = Path(item.path).expanduser()
    folder = benchmarks_dir()
    if item.benchmark is not None and not item.path.startswith("hf:") and not path.is_absolute() and not path.exists():
        if folder is not None and (folder / path).exists():
            return str(folder / path)
    return item.path


def _resolve_data(path: str) -> tuple[bool, str, list[Path]]:
    """(exists, description, local files) of a corpus path: file, folder, glob or hf:<dataset>."""
    if path.startswith("hf:"):
        return True, "hub dataset (read at run time)", []
    p = Path(path).expanduser()
    if not p.exists() and re.search(r"[*?\[]", path):  # as read_corpus: an existing "shard[1].jsonl" is a file
        import glob

        files = []
        for match in sorted(Path(f) for f in glob.glob(str(p), recursive=True)):
            files += [match] if match.is_file() else sorted(f for f in match.rglob("*") if f.is_file())
        return bool(files), f"{len(files)} file(s) match", files
    if p.is_file():
        return True, "file", [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return bool(files), f"folder, {len(files)} file(s)", files
    return False, "not found", []


def _count_documents(files: Iterable[Path]) -> tuple[int, bool]:
    """Lines of the plain JSONL files (at most `_COUNT_BYTES_LIMIT` bytes; then extrapolated by size):
    (documents, exact). Compressed and other files count by size at 2 KB a document."""
    count, exact, budget = 0, True, _COUNT_BYTES_LIMIT
    for f in files:
        size = f.stat().st_size
        if f.suffix in (".jsonl", ".json") and size <= budget:
            with open(f, "rb") as fh:
                count += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            budget -= size
        elif f.suffix in (".txt", ".md"):
            count += 1
        else:
            exact = False
            count += int(size * (4 if f.suffix in (".zst", ".gz") else 1) / 2048)
    return count, exact


# ============================================================================ the check


def _method_roles() -> dict[str, tuple[str, ...]]:
    try:  # the search package owns it once the eval stage's roles move there (issue 16)
        from rationalyst.search.methods import METHOD_ROLES  # type: ignore[attr-defined]
    except ImportError:
        from rationalyst.stages.eval import METHOD_ROLES
    return dict(METHOD_ROLES)


def _in_range(stage: str, start: str | None, stop: str | None) -> bool:
    from rationalyst.pipeline import STAGES

    first = STAGES.index(start) if start else 0
    last = STAGES.index(stop) if stop else len(STAGES) - 1
    return first <= STAGES.index(stage) <= last


def check(config: Any, machine: Machine, *, start: str | None = None, stop: str | None = None) -> Report:
    """Every check of a `PipelineConfig` against ``machine``, for the stages from ``start`` to ``stop``."""
    started = time.perf_counter()
    report = Report(machine)
    out = Path(config.output)
    produced = {out / "train" / "merged": "train", Path(config.train.output) / "merged": "train"}
    produced = {p: s for p, s in produced.items() if _in_range(s, start, stop)}
    corpus_dir = out / "corpus"
    generated = config.generate_corpus is not None and _in_range("corpus", start, stop)

    # ---- select
    documents = 0
    exact = True
    if generated:
        documents += sum(config.generate_corpus.documents.values())
    if _in_range("select", start, stop):
        for c in config.select.corpus:
            if generated and Path(c.path).parent == corpus_dir:
                report.add("select", "corpus", c.path, "written by the corpus stage")
                continue
            found, text, files = _resolve_data(_corpus_path(c))
            n, n_exact = _count_documents(files)
            documents += n
            exact &= n_exact and not c.path.startswith("hf:")
            if found:
                report.add("select", "corpus", c.path, text + (f", {'' if n_exact else '~'}{n:,} documents" if files else ""))
            else:
                report.add("select", "corpus", c.path, text, False,
                           f"select.corpus: {c.path} does not exist (relative to {Path.cwd()}); fix the path or remove the input")
        for b in config.select.benchmarks:
            if generated and Path(b).parent == corpus_dir:
                report.add("select", "questions", b, "written by the corpus stage")
                continue
            found, text, _ = _resolve_data(b)
            report.add("select", "questions", b, text, found,
                       "" if found else f"select.benchmarks: {b} does not exist (relative to {Path.cwd()}); fix the path")
        _check_stage_models(report, "select", [("embedder", config.select.embedder)], config.select.executor, machine, produced)

    # ---- extract, filter
    if _in_range("extract", start, stop):
        _check_stage_models(report, "extract", [("extractor", config.extract.model)], config.extract.executor, machine, produced)
    if _in_range("filter", start, stop):
        _check_stage_models(report, "filter", [("scorer", config.filter.scorer)], config.filter.executor, machine, produced)

    # ---- train
    base = None
    if _in_range("train", start, stop):
        base = _check_train(report, config.train, machine, produced)

    # ---- eval
    items: dict[str, list] = {}
    problems_total = 0
    if _in_range("eval", start, stop) or _in_range("select", start, stop):
        items, problems_total = _check_eval_data(report, config, start, stop)
    if _in_range("eval", start, stop):
        roles = {"agent"} | {r for m in config.eval.methods for r in _method_roles().get(m, ())}
        engines: dict[str, tuple[str, ModelConfig]] = {}
        for role in ("agent", "rationalist", "scorer", "judge"):  # a PRM is checked when the config loads
            if role in roles:
                cfg = config.eval.role_model(role)
                engines.setdefault(cfg.model_dump_json(), (role, cfg))  # the eval stage's ModelPool key
        resolved = []
        for role, cfg in engines.values():
            info = model_info(cfg.spec, produced)
            if info.produced_by == "train" and base is not None:
                info.params = base.params
            resolved.append(Engine(role, cfg, info))
        _check_engines(report, "eval", resolved, machine)

    # ---- contamination
    if _in_range("select", start, stop):
        _check_contamination(report, config, items)

    _estimate(report, config, documents, exact, items, problems_total)
    report.seconds = time.perf_counter() - started
    return report


def _check_stage_models(report: Report, stage: str, roles: list[tuple[str, ModelConfig]], executor: Any,
                        machine: Machine, produced: dict[Path, str]) -> None:
    engines = [Engine(role, cfg, model_info(cfg.spec, produced)) for role, cfg in roles]
    per_worker = None
    if executor.kind == "ray":
        from rationalyst.executor import plan_pool

        # The pool the stage will ask Ray for, planned as it will be (the CPUs are not known here).
        try:
            _, per_worker = plan_pool(executor, {"GPU": machine.gpus})
        except RationalystError as exc:
            workers = "as many as fit" if executor.workers is None else str(executor.workers)
            report.add(stage, "GPUs (Ray)", f"workers: {workers}", f"{machine.gpus} GPUs", False,
                       f"{exc} ({stage}.executor)")
            return
        per_worker = per_worker or None
    _check_engines(report, stage, engines, machine, per_worker_gpus=per_worker)


def _check_train(report: Report, train: Any, machine: Machine, produced: dict[Path, str]) -> ModelInfo:
    """The base model, its precision on the machine checked (a refused one is a problem), and the memory of
    training it in this process: LoRA or full, in the dtype the train stage loads it in (float32 master
    weights, float16 for a LoRA on a GPU before Ampere; unknown capability: float32, the most)."""
    info = model_info(train.base.spec, produced)
    engine = Engine("base", train.base, info)
    if info.problem:
        report.add("train", "base model", train.base.spec, info.where, False,
                   "as above" if info.spec.partition(":")[2] in report.named else info.problem)
        report.named.add(info.spec.partition(":")[2])
    else:
        report.add("train", "base model", train.base.spec, info.where + (", gated" if info.gated else ""))
    if not info.params:
        return info
    on_gpu = machine.gpus > 0 and train.base.device != "cpu" and engine.config.spec.partition(":")[0] != "openai"
    precision = _training_precision(report, train, machine, on_gpu)
    # Where the GPU's capability is unknown, base.dtype as written ("auto": float32, the most it loads).
    weights = precision.weights if precision else train.base.dtype if train.base.dtype in DTYPE_BYTES else None
    weight_bytes = DTYPE_BYTES.get(weights, 4)
    ram = info.params * weight_bytes / GB
    report.add("train", "CPU RAM", f"~{_gb(ram)} (weights loaded on the CPU first)", _gb(machine.cpu_ram_gb),
               ram <= machine.cpu_ram_gb * 0.9,
               "" if ram <= machine.cpu_ram_gb * 0.9 else
               f"loading {train.base.spec} needs ~{_gb(ram)} of CPU RAM: set train.base.dtype: bfloat16, or train with "
               "accelerate launch (recipes/accelerate-fsdp.yaml, cpu_ram_efficient_loading)")
    if not on_gpu:
        return info
    # Full fine-tune with AdamW: weights + grads + 2 optimizer states; LoRA: frozen weights + a small adapter.
    per_param = weight_bytes + (4 + 8 if train.full_finetune else 0)
    need = info.params * per_param / GB * OVERHEAD
    mem = machine.gpu_memory_gb
    kind = "full fine-tune (weights, grads, AdamW)" if train.full_finetune else "LoRA (frozen weights)"
    if weights:
        kind += f", {weights} weights"
    else:
        kind += ", float32 weights" + (" (half on a GPU before Ampere: --gpu-capability)" if machine.gpu_capability is None else "")
    if mem is None:
        report.add("train", "GPU memory", f"~{_gb(need)} {kind}", "unknown", False,
                   "GPU memory unknown: pass --gpu-memory GB (per GPU) to check it")
    else:
        ok = need <= mem
        report.add("train", "GPU memory", f"~{_gb(need)} {kind}, one process", f"1 x {_gb(mem)}", ok,
                   "" if ok else "in one process it does not fit: set train.base.dtype: bfloat16, use LoRA, or train "
                   "with accelerate launch --config_file recipes/accelerate-fsdp.yaml over several GPUs (--until filter, then --from eval)")
    return info


def _training_precision(report: Report, train: Any, machine: Machine, on_gpu: bool) -> Any:
    """The train stage's precision on the checked machine (`training_precision`), None where it depends
    on a GPU whose compute capability is not known; a precision it refuses (bf16 on a T4, fp16 on a
    CPU) is a problem row, and None."""
    from rationalyst.errors import RationalystError
    from rationalyst.lm.precision import describe_capability
    from rationalyst.stages.train import training_precision

    if on_gpu and machine.gpu_capability is None:
        return None
    try:
        if on_gpu:
            return training_precision(train, gpu_capability=machine.gpu_capability)
        return training_precision(train.model_copy(update={"base": train.base.model_copy(update={"device": "cpu"})}))
    except RationalystError as err:
        report.add("train", "precision", "bf16" if train.bf16 else "fp16" if train.fp16 else "auto",
                   describe_capability(machine.gpu_capability) if on_gpu else "CPU", False, str(err))
        return None


def _check_eval_data(report: Report, config: Any, start: str | None, stop: str | None) -> tuple[dict[str, list], int]:
    """Each eval benchmark: its split rule, its source on disk (hub sources are read at run time)."""
    from rationalyst.errors import InputError
    from rationalyst.stages.eval import _load_items, check_split

    items: dict[str, list] = {}
    total = 0
    for ref in config.eval.benchmarks:
        where = ref.source or "default file"
        try:
            check_split(ref)
        except RationalystError as exc:
            report.add("eval", f"benchmark {ref.name}", where, "a train split", False, str(exc))
            continue
        if ref.source and ref.source.startswith("hf:"):
            n = ref.limit
            report.add("eval", f"benchmark {ref.name}", where, "hub dataset (read at run time)")
            total += n or 0
            continue
        try:
            loaded, skipped = _load_items(ref)
        except (RationalystError, InputError, OSError) as exc:
            report.add("eval", f"benchmark {ref.name}", where, "not found", False, str(exc))
            continue
        items[ref.name] = loaded
        total += len(loaded)
        report.add("eval", f"benchmark {ref.name}", where,
                   f"{len(loaded):,} problems" + (f", {len(skipped)} bad rows skipped" if skipped else ""))
    return items, total


def _check_contamination(report: Report, config: Any, items: dict[str, list]) -> None:
    """The guard of `pipeline._guard_corpus_inputs`, writing nothing: eval items against the corpus
    inputs that are benchmark files, when both are on disk."""
    from rationalyst.stages.select import input_documents
    from rationalyst.stages import guard

    inputs = [c for c in config.select.corpus if c.benchmark is not None]
    local = [c for c in inputs if not c.path.startswith("hf:") and _resolve_data(_corpus_path(c))[0]]
    if not inputs:
        return
    if not items or not local:
        report.add("select", "contamination guard", "eval items vs benchmark corpus inputs",
                   "skipped: inputs not on disk (checked at run time)")
        return
    texts = ((d.id, d.text) for c in local for d in input_documents(c, lambda *_: None))
    where = "the corpus inputs " + ", ".join(c.path for c in local)
    try:
        results = guard.check(items, texts, where=where, allow=config.allow_contamination, report=None)
    except guard.ContaminationError as exc:
        report.add("select", "contamination guard", f"no eval item in {', '.join(c.path for c in local)}",
                   "overlap", False, str(exc))
        return
    overlapping = sum(len(r.overlapping) for r in results.values())
    checked = sum(r.items_checked for r in results.values())
    there = f"{checked:,} items checked, {overlapping} overlap" + (" (allowed)" if overlapping else "")
    report.add("select", "contamination guard", f"no eval item in {', '.join(c.path for c in local)}", there)


def _estimate(report: Report, config: Any, documents: int, exact: bool, items: dict[str, list], problems: int) -> None:
    """Work per stage, as upper bounds from the recipe and the data."""
    about = "" if exact else "~"
    report.estimates.append(("select", f"{about}{documents:,} documents to embed"))
    ex = config.extract
    which = "those selected"
    if ex.sample_documents is not None and ex.sample_documents < documents:
        documents, about, which = ex.sample_documents, "", "sample_documents of those selected"
    if ex.mode == "rewrite":
        rationales = documents * ex.max_rationales_per_doc
        tokens = documents * ex.rewrite_max_new_tokens
    else:
        rationales = documents * ex.max_rationales_per_doc
        tokens = rationales * ex.max_new_tokens
    report.estimates.append(("extract", f"at most {about}{documents:,} documents ({which}), "
                                        f"<= {rationales:,} rationales, <= {tokens:,} tokens to generate"))
    report.estimates.append(("filter", f"<= {rationales:,} rationales, 2 scoring passes each "
                                       f"(<= {2 * rationales:,} scored sequences)"))
    tr = config.train
    batch = tr.per_device_batch_size * tr.gradient_accumulation_steps
    steps = tr.max_steps or int(rationales * tr.epochs / max(batch, 1))
    report.estimates.append(("train", f"<= {rationales:,} records x {tr.epochs:g} epochs / batch {batch} per GPU "
                                      f"= <= {steps:,} optimizer steps on 1 GPU"))
    s = config.eval.search
    hub = [r.name for r in config.eval.benchmarks if r.name not in items]
    pairs = problems * len(config.eval.methods)
    step_tokens = s.max_steps * s.n_candidates * s.max_step_tokens
    text = f"{problems:,} problems x {len(config.eval.methods)} methods = {pairs:,} runs, <= {step_tokens:,} agent tokens per guided problem"
    if hub:
        text += f" (plus {', '.join(hub)}, read at run time)"
    report.estimates.append(("eval", text))


def check_recipe(
    recipe: Path, overrides: Sequence[str] = (), *, gpus: int | None = None, gpu_memory_gb: float | None = None,
    gpu_capability: tuple[int, int] | None = None, start: str | None = None, stop: str | None = None,
) -> Report:
    """Load and validate a pipeline recipe (`ConfigError` on a bad one) and check it."""
    from rationalyst.config import load_config
    from rationalyst.pipeline import PipelineConfig

    config = load_config(PipelineConfig, recipe, list(overrides))
    return check_config(config, gpus=gpus, gpu_memory_gb=gpu_memory_gb, gpu_capability=gpu_capability, start=start, stop=stop)


def check_config(config: Any, *, gpus: int | None = None, gpu_memory_gb: float | None = None,
                 gpu_capability: tuple[int, int] | None = None, start: str | None = None, stop: str | None = None) -> Report:
    addresses = [s.executor.ray_address for s in (config.select, config.extract, config.filter) if s.executor.kind == "ray"]
    ray_address = next((a for a in addresses if a), None) or (os.environ.get("RAY_ADDRESS") if addresses else None)
    machine = detect_machine(gpus, gpu_memory_gb, ray_address, gpu_capability)
    return check(config, machine, start=start, stop=stop)


def table(report: Report, title: str = "rationalyst check") -> Any:
    """The report as a rich table: stage, what, needs, there, OK / the fix."""
    from rich.table import Table

    m = report.machine
    memory = f"{m.gpu_memory_gb:.0f} GB" if m.gpu_memory_gb else "unknown memory"
    t = Table(title=f"{title}: {m.gpus} GPU(s), {memory} each, {m.cpu_ram_gb:.0f} GB RAM ({m.source})")
    for column in ("stage", "check", "needs", "there", "status"):
        t.add_column(column, overflow="fold")
    for r in report.rows:
        t.add_row(r.stage, r.what, r.needs, r.there, "[green]OK[/green]" if r.ok else f"[red]problem[/red]: {r.fix}")
    return t


def estimates_table(report: Report) -> Any:
    from rich.table import Table

    t = Table(title="work per stage (upper bounds from the recipe and the data)")
    t.add_column("stage")
    t.add_column("work", overflow="fold")
    for stage, text in report.estimates:
        t.add_row(stage, text)
    return t
