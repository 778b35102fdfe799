"""`rationalyst serve`: an OpenAI-compatible HTTP API over any backend, plus the rationale-guided model.

`create_app` builds the FastAPI app (routes and errors in `app`, request logic in `engine`, bodies in
`protocol`); `run_server` runs it with uvicorn. FastAPI and uvicorn are the ``serve`` extra.
"""

from rationalyst.serve.engine import GuidedFn, ServerLimits

__all__ = ["GuidedFn", "ServerLimits", "create_app", "run_server"]


def __getattr__(name: str):
    # The app needs FastAPI; importing this package for its types does not.
    if name == "create_app":
        from rationalyst.serve.app import create_app

        return create_app
    if name == "run_server":
        from rationalyst.serve.server import run_server

        return run_server
    raise AttributeError(name)
