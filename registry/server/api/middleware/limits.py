"""Request-body limits enforced before a body reaches a route (ASGI middleware)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.errors import PayloadTooLargeError
from registry.server.api.problems import problem_response

MAX_JSON_DEPTH = 64
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def json_depth(body: bytes) -> int:
    """Deepest nesting of a JSON text, without parsing it (strings and escapes removed first,
    by C-speed regexes; only the brackets left are walked)."""
    brackets = _STRING.sub(b"", _ESCAPE.sub(b"", body)).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


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

        if not _is_json(scope):
            await self.app(scope, counting_receive, send)
            return
        # JSON bodies are small (bounded above): read them whole and check their nesting before
        # any parser recurses into them.
        chunks = []
        while True:
            message = await counting_receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth(body) > MAX_JSON_DEPTH:
            response = problem_response(
                400,
                "invalid-request",
                f"JSON body nested deeper than {MAX_JSON_DEPTH} levels",
                instance=path,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = bytes(value).split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
