"""One error hierarchy and one error body: ``{"error": {"type", "message", "param"}}``.

Handlers convert every failure (ours, FastAPI's validation errors, Starlette's HTTP errors, anything unexpected)
into that body, so clients parse one shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class TriageError(Exception):
    """Base of every error the API reports. Subclasses fix the HTTP status and the ``type``."""

    status_code = 500
    type = "internal_error"

    def __init__(self, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class InvalidRequest(TriageError):
    status_code = 400
    type = "invalid_request"


class ValidationFailed(TriageError):
    status_code = 422
    type = "validation_error"


class Forbidden(TriageError):
    status_code = 403
    type = "forbidden"


class ReloadFailed(TriageError):
    status_code = 409
    type = "reload_failed"


class Overloaded(TriageError):
    status_code = 429
    type = "overloaded"


class Unavailable(TriageError):
    status_code = 503
    type = "unavailable"


class DeadlineExceeded(TriageError):
    status_code = 503
    type = "timeout"


class InternalError(TriageError):
    status_code = 500
    type = "internal_error"


def error_body(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "param": param}}


def _loc_to_param(loc: tuple[Any, ...]) -> str | None:
    """('body', 'tickets', 3, 'text') -> 'tickets[3].text'."""
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TriageError)
    async def _triage(_: Request, exc: TriageError) -> JSONResponse:
        return JSONResponse(error_body(exc.type, exc.message, exc.param), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first: dict[str, Any] = dict(errors[0]) if errors else {"msg": "invalid request", "loc": (), "type": ""}
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx") or {}
            return JSONResponse(
                error_body("invalid_json", f"request body is not valid JSON: {ctx.get('error', first['msg'])}"), 400
            )
        param = _loc_to_param(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = f"unknown field {param!r}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error(s))"
        return JSONResponse(error_body("validation_error", message, param), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
            # FastAPI's JSON parsing failed outside json.JSONDecodeError: not UTF-8, or nested past the parser
            why = "not UTF-8" if isinstance(exc.__cause__, UnicodeDecodeError) else "nested too deeply"
            return JSONResponse(error_body("invalid_json", f"request body is not valid JSON: {why}"), 400)
        type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(type_, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error: %s", type(exc).__name__)
        return JSONResponse(error_body("internal_error", "internal error; see the server log"), 500)
