"""uvicorn's HTTP protocols, answering a request it cannot even parse (a malformed
Content-Length, a broken request line) with an RFC 9457 problem document like every other
error, instead of uvicorn's plain-text 400.

Such a request never reaches the application (no ASGI scope exists yet), so this is the only
place to answer it. It overrides uvicorn's ``send_400_response``, which is not a public API:
``tests/integration/test_input_edges.py`` fails if an upgrade stops calling it.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

from registry.errors import PROBLEM_TYPE_BASE


def _problem(message: str) -> bytes:
    return json.dumps({
        "type": f"{PROBLEM_TYPE_BASE}invalid-request",
        "title": "Bad Request",
        "status": 400,
        "detail": f"malformed HTTP request: {message}",
    }).encode()  # fmt: skip


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        import h11

        body = _problem(msg)
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):  # fmt: skip
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def protocol() -> type:
    """httptools' protocol when it is installed (uvicorn's choice), else h11's; both answer a
    malformed request with a problem document."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return ProblemH11Protocol

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            body = _problem(msg)
            head = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in self.server_state.default_headers:
                head.extend([name, b": ", value, b"\r\n"])
            head.extend([b"content-type: application/problem+json\r\n",
                         b"content-length: " + str(len(body)).encode() + b"\r\n",
                         b"connection: close\r\n\r\n", body])  # fmt: skip
            self.transport.write(b"".join(head))
            self.transport.close()

    return ProblemHttpToolsProtocol
