"""Run the app with uvicorn, bound to loopback unless told otherwise."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from rationalyst.errors import RationalystError
from rationalyst.lm.base import LanguageModel
from rationalyst.serve.engine import GuidedFn, ServerLimits

log = logging.getLogger(__name__)

INSTALL_HINT = "rationalyst serve needs FastAPI and uvicorn; install them with:\n  pip install 'rationalyst[serve]'"


def run_server(
    models: Mapping[str, LanguageModel],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    guided: GuidedFn | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted."""
    try:
        import uvicorn

        from rationalyst.serve.app import create_app
    except ImportError:
        raise RationalystError(INSTALL_HINT) from None
    app = create_app(models, guided=guided, api_key=api_key, limits=limits)
    names = ", ".join(list(models) + (["rationalyst-guided"] if guided else []))
    log.info("serving %s on http://%s:%d/v1", names, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
