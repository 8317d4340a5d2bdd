"""Every error becomes one JSON body with a sentence; stack traces go to the log only."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from campaignd.api.validation_text import sentence
from campaignd.domain.errors import (
    CampaignError,
    Conflict,
    InvalidInput,
    NotFound,
    RuleViolation,
    Unauthorized,
)
from campaignd.logs import log_event
from campaignd.store.outage import is_unavailable

STATUS_OF: list[tuple[type[CampaignError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (RuleViolation, 400),
    (Unauthorized, 401),
]


def status_for(error: CampaignError) -> int:
    for cls, code in STATUS_OF:
        if isinstance(error, cls):
            return code
    return 400


def _field_path(loc: tuple[Any, ...]) -> str:
    # Only the first part names where the input came from; a field may be named "path".
    if loc and loc[0] in ("body", "query", "path"):
        loc = loc[1:]
    parts = [str(p) for p in loc]
    return ".".join(parts) or "body"


def _error_field(error: Any) -> str:
    field = _field_path(tuple(error.get("loc", ())))
    # A check over a free-form value (RequestBody) says where inside it the problem lies.
    where = (error.get("ctx") or {}).get("where")
    return f"{field}.{where}" if where else field


def validation_body(exc: RequestValidationError) -> dict[str, Any]:
    details = []
    for e in exc.errors():
        field = _error_field(e)
        kind = str(e.get("type", ""))
        text = sentence(field, kind, str(e.get("msg", "")), dict(e.get("ctx") or {}))
        details.append({"field": field, "message": text, "type": kind})
    first = details[0] if details else {"field": "body", "message": "The body is invalid."}
    more = f" ({len(details) - 1} more problem(s) in the details.)" if len(details) > 1 else ""
    return {
        "error": f"{first['message']}{more}",
        "field": first["field"],
        "details": details,
    }


PROBED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route fully serves at this path.

    Asked of the router itself, one method at a time: included routers are nested routes
    (FastAPI >= 0.165), so reading `route.methods` off the top-level list misses them.
    """
    allowed = []
    for method in PROBED_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def install(app: FastAPI) -> None:
    @app.exception_handler(CampaignError)
    async def _campaign_error(_request: Request, exc: CampaignError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(exc.body(), status_code=status_for(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}."
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            message = f"Method {request.method} is not allowed on {request.url.path}"
            message += f"; use {', '.join(allowed)}." if allowed else "."
            headers["Allow"] = ", ".join(allowed)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            log_event(
                "api.database_unavailable",
                level=logging.WARNING,
                method=request.method,
                path=request.url.path,
                error=str(exc)[:300],
            )
            return JSONResponse(
                {"error": "The database is unavailable right now; retry in a few seconds."},
                status_code=503,
                headers={"Retry-After": "2"},
            )
        log_event(
            "api.unhandled_error",
            level=logging.ERROR,
            exc_info=True,
            method=request.method,
            path=request.url.path,
        )
        return JSONResponse({"error": "Internal error; the details are in the service log."}, 500)
