"""The search's models by role: which model each role uses (`RolesConfig`) and loading each once (`ModelPool`).

A method declares the roles its results depend on where it is registered (`methods.METHOD_ROLES`);
the pool loads only those, each distinct model config once, so roles naming the same model share one
loaded model (and its caches), and a served model can be handed in to be reused.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field

from rationalyst.config import StrictModel
from rationalyst.data.rationale_text import RationalistFormat, rationalist_instruction
from rationalyst.lm import LanguageModel, load_model
from rationalyst.errors import RationalystError
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.lm.prm import PrmConfig, ProcessRewardModel
from rationalyst.lm.registry import ModelConfig
from rationalyst.search.methods import METHOD_ROLES
from rationalyst.search.roles import Roles
from rationalyst.search.settings import SearchSettings

log = logging.getLogger(__name__)


class RolesConfig(StrictModel):
    """The models of the search by role; the rationalist, scorer and judge default to the agent's model."""

    agent: ModelConfig = Field(default_factory=lambda: ModelConfig(spec=DEFAULT_LM), description="The agent that proposes steps.")
    rationalist: ModelConfig | None = Field(None, description="The rationalist (default: the agent's model).")
    scorer: ModelConfig | None = Field(None, description="The scorer: the rationalist's base model (default: the agent's model).")
    judge: ModelConfig | None = Field(None, description="The llm-judge's model (default: the agent's model).")
    prm: PrmConfig | None = Field(
        None, description="The process reward model of the prm scorer (prm, beam-prm, best-of-n-prm, dvts-prm; no default)."
    )
    rationalist_format: RationalistFormat | None = Field(
        None,
        description="The rationalist's prompt: 'rationalyst' (instruction + text) or 'paper-release' (the text alone, "
        "as the authors' released model); default: as saved beside the model by the train stage, else 'rationalyst'.",
    )
    search: SearchSettings = Field(default_factory=SearchSettings, description="Sampling and scoring settings.")
    seed: int = Field(0, description="Base seed; each problem's samples derive from it and the trajectory.")

    added_fields = frozenset({"prm"})

    def role_model(self, role: str) -> ModelConfig | PrmConfig:
        if role == "prm":
            if self.prm is None:
                raise RationalystError("the prm scorer needs a process reward model: set prm: {spec: hf:<id or folder>}")
            return self.prm
        return getattr(self, role) or self.agent

    def rationalist_instruction(self) -> str | None:
        """The instruction the rationalist is prompted with (None: the text alone)."""
        return rationalist_instruction(self.role_model("rationalist").spec, self.rationalist_format)


def require_prm(config: RolesConfig, methods: list[str]) -> None:
    """A ValueError (a config error when the recipe loads, seconds in) when a method rates steps with a
    process reward model and none is set."""
    needing = [m for m in methods if "prm" in METHOD_ROLES[m]]
    if needing and config.prm is None:
        raise ValueError(f"{', '.join(needing)} rate steps with a process reward model: set prm: {{spec: hf:<id or folder>}}")


def engine_key(config: ModelConfig) -> str:
    """What decides the loaded engine: the weights (spec, dtype, the LoRA applied to them), where they live
    (device) and how text becomes tokens (tokenizer, n_ctx). Roles that differ only in how the engine is driven (batch size,
    prefix cache, GPU memory share, request settings) share one engine: on a GPU a second copy of an 8B
    model may not fit, and vLLM refuses to start a second engine in the memory the first one holds."""
    return "|".join(str(v) for v in (config.spec, config.lora, config.dtype, config.device, config.tokenizer, config.n_ctx))


class ModelPool:
    """Loads each distinct engine once (`engine_key`); roles naming the same model share it (and its caches)."""

    def __init__(self) -> None:
        self._models: dict[str, LanguageModel] = {}
        self._by_spec: dict[str, LanguageModel] = {}

    def add(self, model: LanguageModel) -> None:
        """Use an already loaded model for every config whose spec is its name (e.g. a served model)."""
        self._by_spec[model.name] = model

    def get(self, config: ModelConfig | PrmConfig) -> Any:
        if isinstance(config, PrmConfig):
            key = "prm|" + config.model_dump_json(exclude={"batch_size"})  # how it is read is part of it
            if key not in self._models:
                log.info("loading PRM %s", config.spec)
                self._models[key] = ProcessRewardModel.load(config)
            return self._models[key]
        if config.spec in self._by_spec:
            return self._by_spec[config.spec]
        key = engine_key(config)
        if key not in self._models:
            log.info("loading %s", config.spec)
            self._models[key] = load_model(config)
        return self._models[key]

    def roles(self, config: RolesConfig, method: str) -> Roles:
        used = METHOD_ROLES[method]
        models = {role: self.get(config.role_model(role)) for role in used}
        return Roles.of(self.get(config.agent), **models, rationalist_instruction=config.rationalist_instruction())
