"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import (
    PROBLEM_TYPE_BASE,
    EvidenceRejectedError,
    PermissionDeniedError,
    RegistryError,
    ReleaseRefusedError,
    StorageUnavailableError,
    problem_for,
)
from registry.server.services.events import Event, SecurityEvents

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: What a 503 asks clients to wait before trying again (outages are usually short restarts).
RETRY_AFTER_SECONDS = 2


def unavailable(exc: BaseException) -> tuple[str, str] | None:
    """``(slug, detail)`` when ``exc`` means the database or the blob store cannot be reached
    (a 503 the client may retry), else None. Details name the component, never the URL."""
    from sqlalchemy import exc as sa

    if isinstance(exc, StorageUnavailableError):
        return "storage-unavailable", exc.detail
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return "database-unavailable", "the database connection was lost; retry shortly"
    if isinstance(exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError):
        return "database-unavailable", "the database is unavailable; retry shortly"
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, BotoCoreError):
        return "storage-unavailable", "the blob store is unreachable; retry shortly"
    return None


def unavailable_response(slug: str, detail: str, path: str | None) -> JSONResponse:
    return problem_response(
        503, slug, detail, instance=path, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    instance: str | None = None,
    facts: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if facts:
        body["facts"] = facts
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="modelseal"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=extra)


def install(app: FastAPI) -> None:
    """Map every error to problem+json, and say so in the app's OpenAPI document."""
    _document_problems(app)

    @app.exception_handler(RegistryError)
    async def _registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        status, slug = problem_for(exc)
        if isinstance(exc, StorageUnavailableError):
            log.warning("request %s: %s", request.url.path, exc.detail)
            return unavailable_response(slug, exc.detail, request.url.path)
        await _security_event(request, exc)
        busy = status == 503 and "retry_after" in exc.facts  # expected: the client retries
        if status >= 500 and not busy:
            log.error("request %s failed: %s", request.url.path, exc.detail, exc_info=exc)
        elif busy:
            log.info("request %s: %s", request.url.path, exc.detail)
        headers = None
        if status == 429 or busy:
            wait = math.ceil(float(exc.facts.get("retry_after", 1)))
            headers = {"Retry-After": str(max(1, wait))}
        return problem_response(
            status,
            slug,
            exc.detail,
            instance=request.url.path,
            facts=_jsonable(exc.facts),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
            }
            for err in exc.errors()[:20]
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        detail = f"{where}: {first['msg']}" if where else str(first["msg"])
        return problem_response(
            400, "invalid-request", detail, instance=request.url.path, facts={"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; one path is
            # served by one route per method here.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(
            exc.status_code,
            slug,
            str(exc.detail),
            instance=request.url.path,
            headers=headers,
        )

    async def _outage(request: Request, exc: Exception) -> JSONResponse:
        outage = unavailable(exc)
        if outage is None:
            return await _unexpected(request, exc)
        log.warning("request %s: %s (%s)", request.url.path, outage[1], type(exc).__name__)
        return unavailable_response(*outage, request.url.path)

    # Registered by class (not as the catch-all) so they answer inside the audit middleware,
    # which then sees the 503 and the client gets an answer, not a dropped connection.
    from botocore.exceptions import BotoCoreError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError

    for outage_class in (DBAPIError, OperationalError, InterfaceError, TimeoutError,
                         BotoCoreError):  # fmt: skip
        app.add_exception_handler(outage_class, _outage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        outage = unavailable(exc)
        if outage is not None:
            log.warning("request %s: %s (%s)", request.url.path, outage[1], type(exc).__name__)
            return unavailable_response(*outage, request.url.path)
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(
            500, "internal-error", "internal error; see the server log", instance=request.url.path
        )


_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}


def _document_problems(app: FastAPI) -> None:
    """Errors are ``application/problem+json`` bodies of the ``Problem`` schema, and invalid
    requests are 400 problems: the document says exactly that (FastAPI would offer each error
    as ``application/json`` too, and a 422 ``HTTPValidationError`` no request ever gets)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for methods in document.get("paths", {}).values():
                for operation in methods.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for answer in responses.values():
                        content = answer.get("content", {})
                        if PROBLEM_MEDIA_TYPE in content:
                            answer["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_SCHEMA}}
            schemas = document.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path."""
    from starlette.routing import Match

    return [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _security_event(request: Request, exc: RegistryError) -> None:
    """A refusal changed nothing: its event is written in a transaction of its own before the
    refusal is answered (a failure to write it is logged and counted, the answer stands)."""
    events: SecurityEvents = request.app.state.services.events
    principal = getattr(request.state, "principal", None)
    who = {
        "actor": principal.name if principal is not None else "anonymous",
        "target": request.url.path,
        "detail": exc.detail,
        "request_id": getattr(request.state, "request_id", None),
    }
    if isinstance(exc, ReleaseRefusedError):
        reasons = _jsonable(exc.facts).get("reasons")
        await run_in_threadpool(events.emit_or_drop, Event.RELEASE_REFUSED, reasons=reasons, **who)
    elif isinstance(exc, EvidenceRejectedError):
        await run_in_threadpool(events.emit_or_drop, Event.VERIFICATION_FAILURE,
                                source="attestation upload", **who)  # fmt: skip
    elif isinstance(exc, PermissionDeniedError):
        events.permission_denied()


def _jsonable(facts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in facts.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [
                v
                if isinstance(v, str | int | float | bool)
                else {str(k): str(x) for k, x in v.items()}
                if isinstance(v, dict)
                else str(v)
                for v in value
            ]
        else:
            out[key] = str(value)
    return out
