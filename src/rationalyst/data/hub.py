"""The Hugging Face hub, for every reader of ``hf:`` sources (corpora and benchmarks).

It owns three things, so that each is written once:

* `parse_hf_spec`: the one parser of ``hf:`` specs, in either of their two spellings —
  ``hf:<name>[:<config>][@<split>]`` (benchmark sources: ``hf:allenai/ai2_arc:ARC-Challenge@test``)
  and ``hf:<name>[?config=<config>&split=<split>]`` (corpus sources: ``hf:wikitext?config=wikitext-2-raw-v1``);
* the checks made before loading: offline mode (`hf_offline`) and, online without a proxy, a quick
  TCP probe of the hub endpoint (`hub_reachable`) instead of minutes of retries;
* `load_hub_dataset`: both together around ``datasets.load_dataset``, failing with a
  `RationalystError` that names the source and says what to do instead.

``datasets`` and ``huggingface_hub`` are imported only when used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlparse

from rationalyst.errors import RationalystError

HF_PREFIX = "hf:"
#: Variables naming a proxy: with one set the reachability probe is skipped (it would go around it).
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_SPEC_FORMS = "hf:<name>[:<config>][@<split>] or hf:<name>[?config=<config>&split=<split>]"


class HubSource(NamedTuple):
    """A hub dataset split: ``load_dataset(name, config, split=split)`` (a tuple ``(name, config, split)``)."""

    name: str
    config: str | None
    split: str

    def spec(self) -> str:
        """``hf:<name>[:<config>]@<split>``."""
        return f"hf:{self.name}" + (f":{self.config}" if self.config else "") + f"@{self.split}"


def parse_hf_spec(spec: str, *, default: HubSource | None = None, default_split: str = "train") -> HubSource:
    """``hf:<name>[:<config>][@<split>]`` or ``hf:<name>[?config=<config>&split=<split>]`` -> `HubSource`.

    Parts left out come from ``default`` when the name is left out or is ``default``'s (``hf:`` alone is
    ``default``); otherwise the config is None and the split ``default_split``.
    """
    if not spec.startswith(HF_PREFIX):
        raise RationalystError(f"{spec!r} is not an hf:<name> spec")
    body, _, query = spec[len(HF_PREFIX) :].strip().partition("?")
    options = dict(parse_qsl(query, keep_blank_values=False))
    unknown = set(options) - {"config", "split"}
    if unknown:
        raise RationalystError(f"{spec!r}: unknown option(s) {', '.join(sorted(unknown))} (known: config, split)")
    name_config, _, split = body.partition("@")
    name, _, config = name_config.partition(":")
    name, config, split = name.strip().strip("/"), config.strip(), split.strip()
    for part, given in (("config", config), ("split", split)):
        if given and options.get(part, given) != given:
            raise RationalystError(f"{spec!r}: two different {part}s ({given!r}, {options[part]!r})")
    name = name or (default.name if default else "")
    if not name:
        raise RationalystError(f"{spec!r}: expected {_SPEC_FORMS}")
    same = default is not None and default.name == name
    return HubSource(
        name=name,
        config=config or options.get("config") or (default.config if same else None),
        split=split or options.get("split") or (default.split if same else default_split),
    )


def hf_offline(datasets: Any) -> bool:
    """Whether offline mode is set (``HF_HUB_OFFLINE`` and its kin, or ``datasets``' own flag)."""
    if any(os.environ.get(f, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for f in _OFFLINE_VARS):
        return True
    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))


def hub_reachable(timeout: float = 5.0) -> tuple[bool, str]:
    """Whether a TCP connection to the hub endpoint opens (a quick check instead of minutes of retries)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001  # pragma: no cover
        pass
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, endpoint
    except OSError as e:
        return False, f"{endpoint} ({e})"


def load_hub_dataset(
    datasets: Any,
    hub: HubSource,
    label: str,
    how: str,
    *,
    streaming: bool = False,
    reachable: Callable[[], tuple[bool, str]] | None = None,
) -> tuple[Any, bool]:
    """(dataset, offline): ``datasets.load_dataset`` for ``hub``, checked first.

    Online without a proxy, the hub endpoint is probed (``reachable``, default `hub_reachable`) and an
    unreachable hub raises at once. ``streaming``: stream the split online (offline, a cached copy is
    memory-mapped Arrow, read without holding it in memory). ``label`` names the source in errors and
    ``how`` says what to do instead.
    """
    offline = hf_offline(datasets)
    if not offline and not any(os.environ.get(v) for v in PROXY_VARS):
        ok, where = (reachable or hub_reachable)()
        if not ok:
            raise RationalystError(f"{label}: the Hugging Face hub cannot be reached at {where}; {how}")
    options = {"streaming": not offline} if streaming else {}
    try:
        return datasets.load_dataset(hub.name, hub.config, split=hub.split, **options), offline
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds (ConnectionError, FileNotFoundError, ...)
        state = "offline mode (HF_HUB_OFFLINE) is set and no cached copy was found" if offline else "loading failed"
        raise RationalystError(
            f"{label}: cannot load Hugging Face dataset {hub.name!r} (split {hub.split!r}): {state}: {e}; {how}"
        ) from e
