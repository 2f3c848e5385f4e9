"""OpenAI-shaped errors: every failure a client sees has the body the `openai` SDK parses.

Clients map the status to an exception class (400 BadRequestError, 401 AuthenticationError,
404 NotFoundError, 429 RateLimitError, 5xx InternalServerError...) and show `message`; so the
message says what was wrong and what to do, and no stack trace ever leaves the process.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aistack.runtime.gateway.jsonio import json_response

log = logging.getLogger("aistack.gateway")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error"}


INTERNAL_ERROR = "internal error in the gateway; it was logged, retry later"


class GatewayError(Exception):
    """An error answered to the client as `{"error": {...}}` with `status`."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_ or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type_=self.type, code=self.code, param=self.param)


def error_body(message: str, *, type_: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return json_response(err.body(), status=err.status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Route every exception through the OpenAI error body."""

    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        retry_after = getattr(exc, "retry_after", None)  # an upstream's, or a held request's wait
        if exc.status in (429, 503) and retry_after:
            headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
        return error_response(exc, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return error_response(GatewayError(400, f"{param or 'body'}: {first.get('msg')}", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: f"unknown path {request.url.path}; this gateway serves /v1/chat/completions, "
                        "/v1/completions, /v1/responses, /v1/models and /v1/embeddings",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                             str(exc.detail))
        return error_response(GatewayError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(GatewayError(500, INTERNAL_ERROR, code="internal_error"))
