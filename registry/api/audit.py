"""Records every state change, every denied request and every server error in the audit log
(ASGI middleware).

The entry is written when the response starts and before it is sent, so a client never hears
of a change the log does not hold. Only the status is observed, so streamed downloads pass
through untouched. Upload chunks are not logged one by one; finishing an upload is. A download
answered with a presigned storage URL is logged (``redirected``): that URL reads the blob without
asking the registry again.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.services.audit import AuditService

_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_QUIET = {"upload_chunk"}
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
        started = False

        async def capture(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                await self._record(scope, headers, request_id, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if not started:  # the app died before answering
                await self._record(scope, headers, request_id, 500)

    async def _record(
        self, scope: Scope, headers: dict[bytes, bytes], request_id: str, code: int
    ) -> None:
        route = scope.get("route")
        action = getattr(route, "operation_id", None) or str(scope.get("method", ""))
        method = str(scope.get("method", ""))
        outcome = None
        if code in (401, 403):
            outcome = "denied"
        elif method in _MUTATING and action not in _QUIET and code < 400:
            outcome = "ok"
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
        client = scope.get("client")
        await run_in_threadpool(
            self.audit.append,
            actor=principal.name if principal is not None else "anonymous",
            action=action,
            target=str(scope.get("path", ""))[:1024],
            outcome=outcome,
            request_id=request_id,
            details={
                "status": code,
                "client": client[0] if client else None,
                "role": str(principal.role) if principal is not None else None,
            },
        )
