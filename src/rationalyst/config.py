"""Typed configs: pydantic models loaded from YAML recipes plus ``key.path=value`` overrides.

Every config model forbids unknown fields, so a typo in a recipe is an error, not a silently ignored
setting. A bad value is reported with the file, the line and the dotted field path, e.g.::

    recipes/cpu-demo.yaml, line 7, field generate.temperature: Input should be a valid number
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rationalyst.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every config: unknown fields are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: Fields that say how to run, not what to compute (batch sizes, devices, shard sizes): changing
    #: them keeps a run resumable, so they are left out of `config_hash`.
    execution_fields: ClassVar[frozenset[str]] = frozenset()
    #: Fields added after runs were made with this config: left out of `config_hash` while they hold
    #: their default, so a finished run stays finished (and a half-done one resumable) across the upgrade.
    added_fields: ClassVar[frozenset[str]] = frozenset()
    #: Fields of which only a part decides the results: the hash takes ``hashed_as[name](value)``, so
    #: values that compute the same (a larger context window) keep a run resumable.
    hashed_as: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}


def _result_values(value: Any) -> Any:
    if isinstance(value, BaseModel):
        skip = getattr(value, "execution_fields", frozenset())
        fields = type(value).model_fields
        added = {k for k in getattr(value, "added_fields", frozenset())
                 if getattr(value, k) == fields[k].get_default(call_default_factory=True)}
        part = getattr(value, "hashed_as", {})
        return {k: _result_values(part[k](getattr(value, k)) if k in part else getattr(value, k))
                for k in fields if k not in skip and k not in added}
    if isinstance(value, dict):
        return {k: _result_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_result_values(v) for v in value]
    return value


def config_hash(config: BaseModel) -> str:
    """A stable hash of the config values that decide a run's results (see `execution_fields`)."""
    return content_digest(_result_values(config))


def content_digest(value: Any) -> str:
    """A stable short hash of a JSON-like value (e.g. the text of the prompt files a run reads)."""
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each dotted path in a YAML document to its 1-based line number."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _line_map(value, path + (key.value,), out)
            out[path + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _field_default(cls: Any, key: str) -> dict:
    """The default of a nested config field as a dict, so an override can change one of its fields."""
    field = getattr(cls, "model_fields", {}).get(key)
    if field is None or field.is_required():
        return {}
    default = field.get_default(call_default_factory=True)
    return default.model_dump() if isinstance(default, BaseModel) else {}


def _field_class(cls: Any, key: str) -> Any:
    field = getattr(cls, "model_fields", {}).get(key)
    return field.annotation if field is not None else None


def _item_class(annotation: Any) -> Any:
    """The item type of ``list[X]`` (optional or not), else None."""
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) in (list, tuple):
            args = get_args(candidate)
            return args[0] if args else None
    return None


def _list_index(items: list, key: str, dotted: str) -> int:
    if not key.lstrip("-").isdigit() or not -len(items) <= int(key) < len(items):
        raise ConfigError(f"bad override {dotted!r}: {key!r} is not an index of a list of {len(items)}")
    return int(key)


def _set_path(data: dict, dotted: str, value: Any, cls: Any = None) -> None:
    """Set ``a.b.c`` in nested dicts (``a.0.c``: item 0 of a list); a missing parent starts from the
    config's default for it."""
    keys = dotted.split(".")
    node: Any = data
    for key in keys[:-1]:
        if isinstance(node, list):
            index = _list_index(node, key, dotted)
            child, child_cls = node[index], cls
            if not isinstance(child, dict):
                raise ConfigError(
                    f"bad override {dotted!r}: item {index} is {child!r} in the config, not a mapping of fields: "
                    "write it as one there, or override the whole list"
                )
        else:
            child, child_cls = node.get(key), _field_class(cls, key)
            if isinstance(child, list):
                node, cls = child, _item_class(child_cls)
                continue
        if isinstance(child, str) and child_cls is not None:
            child = {"spec": child}  # a model given as a spec string, now with an option beside it
        if not isinstance(child, dict):
            child = _field_default(cls, key)
        if not isinstance(node, list):
            node[key] = child
        node, cls = child, child_cls
    if isinstance(node, list):
        node[_list_index(node, keys[-1], dotted)] = value
    else:
        node[keys[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``a.b=value`` strings to (path, value); values are parsed as YAML scalars (3, 0.7, true, [a, b])."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad override {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        parsed.append((key.strip(), value))
    return parsed


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    *,
    section: str | None = None,
    wire: Callable[[dict], dict] | None = None,
) -> T:
    """Build a config from an optional YAML file, typed ``values`` (from command-line options, by
    dotted path) and ``key.path=value`` overrides, in that order; errors name file, line and field.

    ``section``: the file may also be a recipe of several stages (``rationalyst run``'s); when its top
    level has this key, the config is that section, after ``wire`` (the pipeline's own filling of
    inputs and outputs) has been applied to the whole file, so ``rationalyst eval --config
    recipe.yaml`` evaluates exactly what ``rationalyst run recipe.yaml`` would."""
    data: dict[str, Any] = {}
    lines: dict[tuple, int] = {}
    source = str(path) if path is not None else "<defaults>"
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {source}: {exc}") from None
        try:
            node = yaml.compose(text)
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of fields, not {type(data).__name__}")
        lines = _line_map(node) if node is not None else {}
        if section is not None and section not in cls.model_fields and section in data and data[section] is None:
            data[section] = {}  # `train:` with nothing under it, as the pipeline reads it
        if section is not None and section in data and section not in cls.model_fields and not isinstance(data[section], dict):
            line = lines.get((section,))
            raise ConfigError(
                f"{source}{f', line {line}' if line else ''}, section {section}: must be a mapping of the "
                f"{section} stage's fields, not {type(data[section]).__name__}"
            )
        if section is not None and isinstance(data.get(section), dict) and section not in cls.model_fields:
            data = dict((wire(data) if wire is not None else data)[section])
            lines = {loc[1:]: line for loc, line in lines.items() if loc[:1] == (section,)}
            source = f"{source} (section {section})"
    overridden = set()
    for key, value in [*(values or {}).items(), *parse_overrides(overrides)]:
        _set_path(data, key, value, cls)
        overridden.add(tuple(int(k) if k.isdigit() else k for k in key.split(".")))
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, lines, overridden)) from None


def _describe(exc: ValidationError, source: str, lines: dict[tuple, int], overridden: set[tuple]) -> str:
    messages = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "<top level>"
        if any(loc[: len(o)] == o for o in overridden):
            where = "command-line override"
        else:
            # The deepest path that exists in the file (a missing field points at its parent).
            line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
            where = f"{source}, line {line}" if line else source
        messages.append(f"{where}, field {field}: {err['msg']}")
    return "invalid config:\n  " + "\n  ".join(messages)
