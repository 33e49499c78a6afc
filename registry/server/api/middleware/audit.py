"""Records denied requests, refused releases, presigned downloads and server errors in the
audit log (ASGI middleware).

State changes are not recorded here: each service writes the entry of its change in the same
database transaction (:mod:`registry.server.services.journal`), so no change persists without
it. This middleware binds the request (id, client address) those entries carry, and records what
changed nothing: a successful mutating request no service recorded (an idempotent repeat, a
report) is logged with ``"unchanged": true``; a request a service recorded is never logged twice.

The entry is written when the response starts and before it is sent. Only the status is
observed, so streamed downloads pass through untouched. Upload chunks are not logged one by
one; finishing an upload is. A download answered with a presigned storage URL is logged
(``redirected``): that URL reads the blob without asking the registry again. A console
evidence export is logged whatever its outcome (``ok``, ``denied``, ``refused``, ``error``).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.server.api.problems import unavailable, unavailable_response
from registry.server.services.audit import AuditService
from registry.server.services.journal import RequestContext, bind_request, unbind_request

log = logging.getLogger(__name__)

_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_QUIET = {"upload_chunk"}
#: Reads recorded whatever their outcome (and besides any entry a service wrote meanwhile): an
#: evidence archive carries the version's whole chain and, for auditors, the audit log; a batch
#: download is a POST (its paths are a body), recorded as the read it is, not as a change.
_ACCESSES = {"ui_export_evidence", "download_files"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNSAFE_HEADER = b"x-modelseal-unsafe-skip-verify"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, audit: AuditService) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"").decode("latin1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        client = scope.get("client")
        context = RequestContext(request_id, client[0] if client else None)
        started = replaced = False

        async def capture(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's answer was replaced by a 503 (below)
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                status = int(message["status"])
                try:
                    await self._record(scope, headers, context, status)
                except Exception as exc:
                    outage = unavailable(exc)
                    if outage is None:
                        raise
                    log.warning("audit entry of %s not written: %s", scope.get("path"), outage[1])
                    if status < 500:
                        # An answer whose entry is missing (a denial, a presigned URL) is not
                        # sent: the client gets a 503 to retry instead.
                        replaced = True
                        response = unavailable_response(*outage, str(scope.get("path", "")))
                        response.headers["x-request-id"] = request_id
                        await response(scope, receive, send)
                        return
            await send(message)

        token = bind_request(context)
        try:
            await self.app(scope, receive, capture)
        finally:
            unbind_request(token)
            if not started:  # the app died before answering
                try:
                    await self._record(scope, headers, context, 500)
                except Exception as exc:
                    if unavailable(exc) is None:
                        raise
                    log.warning("audit entry of failed %s not written", scope.get("path"))

    async def _record(
        self, scope: Scope, headers: dict[bytes, bytes], context: RequestContext, code: int
    ) -> None:
        route = scope.get("route")
        action = getattr(route, "operation_id", None) or str(scope.get("method", ""))
        method = str(scope.get("method", ""))
        outcome = None
        unchanged = False
        if code in (401, 403):
            outcome = "denied"
        elif action in _ACCESSES:
            outcome = "ok" if code < 400 else "error" if code >= 500 else "refused"
        elif method in _MUTATING and action not in _QUIET and code < 400:
            if context.written:
                return  # the service wrote its entry with the change
            outcome, unchanged = "ok", True
        elif action == "release_version" and code == 409:
            outcome = "refused"
        elif action == "get_version_file" and code == 307:
            # A presigned URL reads the blob without the registry: its issue is the access.
            outcome = "redirected"
        elif headers.get(UNSAFE_HEADER) == b"1" and code < 400:
            action, outcome = "unsafe_skip_verify", "warned"
        elif code >= 500:  # whatever failed, the attempt is on record
            outcome = "error"
        if outcome is None:
            return
        state: Any = scope.get("state", {})
        principal = state.get("principal") if isinstance(state, dict) else None
        details: dict[str, Any] = {
            "status": code,
            "client": context.client,
            "role": str(principal.role) if principal is not None else None,
        }
        if unchanged:
            details["unchanged"] = True
        version = state.get("version") if isinstance(state, dict) else None
        if isinstance(version, str):
            details["version"] = version  # an access by alias or digest: what it resolved to
        await run_in_threadpool(
            self.audit.append,
            actor=principal.name if principal is not None else "anonymous",
            action=action,
            target=str(scope.get("path", ""))[:1024],
            outcome=outcome,
            request_id=context.request_id,
            details=details,
        )
