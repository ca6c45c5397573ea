"""One JSON shape for every error the service returns, whoever raised it.

    {"ok": false, "status": 404, "error": "no bank named 'x'", "code": "not_found"}

Routing errors (404/405), a body that is not JSON (400), validation (422), size limits (413),
auth (401/403), library errors and crashes (500) all go through :func:`install_error_handlers`,
so a client parses one shape. 400 is for a body that cannot be parsed at all; 422 for one that
parses but breaks the operation's schema or a library rule.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from consentry.banks.review import InvalidTransition
from consentry.banks.importing import ImportAborted
from consentry.errors import ConsentryError, StoreBusy, StoreError
from consentry.store.api_keys import ApiKeyExists, ApiKeyRevoked
from consentry.store.banks import BankExists

log = logging.getLogger("consentry.api")

CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    500: "internal_error", 503: "unavailable",
}  # fmt: skip


class ErrorResponse(BaseModel):
    """The body of every error response."""

    ok: bool = Field(False, description="always false for an error")
    status: int = Field(description="the HTTP status, repeated for logs and clients that lose it")
    error: str = Field(description="what went wrong, in one line a person can act on")
    code: str = Field(description="a stable machine-readable code: " + ", ".join(sorted(set(CODES.values()))))
    details: list[dict[str, Any]] | None = Field(None, description="per-field problems of a 422")


class ApiError(StarletteHTTPException):
    """An HTTP error with a code of our own; raise it anywhere in a request."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.code = code or CODES.get(status, "error")


def error_response(status: int, message: str, code: str | None = None, *, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    body = ErrorResponse(status=status, error=message, code=code or CODES.get(status, "error"), details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def status_for(exc: ConsentryError) -> int:
    """The HTTP status a library error means."""
    if isinstance(exc, KeyError):  # BankNotFound, ReviewItemNotFound, ApiKeyNotFound
        return 404
    if isinstance(exc, (BankExists, ApiKeyExists, ApiKeyRevoked, InvalidTransition)):
        return 409
    if isinstance(exc, StoreError):
        return 503
    return 422  # bad input the library refused: malformed hash, missing reason, wrong bank kind


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` declaring the error statuses a route can return, with their shape.

    Any route can answer 400 (a body that is not valid UTF-8/JSON, a bad Content-Length), 413
    (a body over the limit, even on a GET) and 500."""
    return {s: {"model": ErrorResponse, "description": CODES.get(s, "error")} for s in sorted({*statuses, 400, 413, 500})}


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and all(e.get("type") == "json_invalid" for e in errors):  # not JSON at all (or not UTF-8)
            why = (errors[0].get("ctx") or {}).get("error") or errors[0].get("msg") or "JSON decode error"
            return error_response(400, f"the request body is not valid JSON: {why}")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        sent_body = request.headers.get("content-length") not in (None, "0") or "transfer-encoding" in request.headers
        if sent_body and not _is_json(media) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            # FastAPI reads a JSON body only when it is labelled so (curl -d sends a form type)
            return error_response(400, f"the request body must be JSON sent with Content-Type: application/json"
                                       f" (got {media or 'no Content-Type'})")  # fmt: skip
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, f"{where}: {first['msg']}" if where else first["msg"], details=details)

    @app.exception_handler(ConsentryError)
    async def _library(request: Request, exc: ConsentryError) -> JSONResponse:
        retry = {"Retry-After": "10"} if isinstance(exc, StoreBusy) else None
        details = None
        if isinstance(exc, ImportAborted):  # a strict import: which rows, and why
            details = [{"loc": ["row", p.row], "msg": p.reason, "type": "rejected_row"} for p in exc.report.rejected_rows]
        return error_response(status_for(exc), str(exc), headers=retry, details=details)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error (the server log has the details)")
