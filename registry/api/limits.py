"""Request-body limits enforced before a body is read (ASGI middleware)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.problems import problem_response
from registry.errors import PayloadTooLargeError


class BodyTooLargeError(PayloadTooLargeError):
    """Raised from ``receive`` when a body without Content-Length grows past the limit."""


class BodyLimitMiddleware:
    """Refuse bodies over a limit: by Content-Length up front (413 without reading), and by
    counting for bodies that arrive without one. Upload chunk routes get their own, larger
    limit (and require Content-Length themselves)."""

    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self.upload_limit if path.startswith("/v1/uploads/") else self.default_limit
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        if declared is not None and (declared < 0 or declared > limit):
            detail = (
                f"request body of {declared} bytes exceeds the limit of {limit} bytes"
                if declared >= 0
                else "invalid Content-Length"
            )
            status, slug = (413, "payload-too-large") if declared >= 0 else (400, "invalid-request")
            response = problem_response(status, slug, detail, instance=path)
            await response(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(
                        f"request body exceeds the limit of {limit} bytes", limit=limit
                    )
            return message

        await self.app(scope, counting_receive, send)
