"""The FastAPI app: routes, API key, body-size limit, and errors as OpenAI-style JSON.

Every error is answered as ``{"error": {"message", "type", "param", "code"}}``: a malformed or
invalid request with 400, a bad key with 401, an unknown model or route with 404, a body over the
size limit with 413. A 500 is left for genuine bugs; the model's own user-fixable errors
(`RationalystError`, e.g. a prompt over the context window) are 400s.

Request bodies are read and validated here rather than by FastAPI's parameter machinery, so that
the size limit holds for chunked bodies too and validation errors are 400s in OpenAI's shape.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rationalyst import __version__
from rationalyst.lm.base import LanguageModel
from rationalyst.serve.engine import ApiError, GuidedFn, GuidedModel, ServedModel, ServerLimits
from rationalyst.serve.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList

log = logging.getLogger(__name__)

GUIDED_MODEL_NAME = "rationalyst-guided"


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def create_app(
    models: Mapping[str, LanguageModel],
    *,
    guided: GuidedFn | None = None,
    guided_name: str = GUIDED_MODEL_NAME,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """An OpenAI-compatible app serving ``models`` (name -> model), and ``guided`` under ``guided_name``."""
    limits = limits or ServerLimits()
    served = {name: ServedModel(name, model) for name, model in models.items()}
    guided_model = GuidedModel(guided_name, guided, list(served.values())) if guided is not None else None
    if guided_model is not None and guided_name in served:
        raise ValueError(f"the guided model name {guided_name!r} is also a served model's name")
    created = int(time.time())
    app = FastAPI(title="rationalyst", version=__version__, description="OpenAI-compatible API over rationalyst models")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error_response(ApiError(500, f"internal error: {type(exc).__name__}; see the server log"))

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    async def read(request: Request, cls: type[BaseModel]) -> BaseModel:
        check_key(request)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise ApiError(413, f"request body over {limits.max_request_bytes} bytes")
        body, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_request_bytes:
                raise ApiError(413, f"request body over {limits.max_request_bytes} bytes")
            body.append(chunk)
        try:
            data = json.loads(b"".join(body) or b"null")
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            raise ApiError(400, f"{where}: {err['msg']}", param=str(err["loc"][0]) if err["loc"] else None) from None

    def lookup(name: str) -> ServedModel:
        if name in served:
            return served[name]
        if guided_model is not None and name == guided_name:
            raise ApiError(400, f"{guided_name} serves /v1/chat/completions only", param="model")
        raise ApiError(404, f"the model {name!r} does not exist; see /v1/models", param="model", code="model_not_found")

    def cards() -> list[ModelCard]:
        names = list(served) + ([guided_name] if guided_model is not None else [])
        return [ModelCard(id=name, created=created) for name in names]

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        check_key(request)
        return JSONResponse(ModelList(data=cards()).model_dump())

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str, request: Request) -> JSONResponse:
        check_key(request)
        for card in cards():
            if card.id == name:
                return JSONResponse(card.model_dump())
        raise ApiError(404, f"the model {name!r} does not exist", param="model", code="model_not_found")

    @app.post("/v1/completions")
    async def completions(request: Request) -> JSONResponse:
        req = await read(request, CompletionRequest)
        model = lookup(req.model)
        answer = await run_in_threadpool(model.complete, req, limits)
        return JSONResponse(answer.model_dump())

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        req = await read(request, ChatCompletionRequest)
        if guided_model is not None and req.model == guided_name:
            answer = await run_in_threadpool(guided_model.chat, req, limits)
        else:
            answer = await run_in_threadpool(lookup(req.model).chat, req, limits)
        return JSONResponse(answer.model_dump())

    return app
