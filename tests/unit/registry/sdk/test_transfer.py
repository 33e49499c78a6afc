"""RawTransport following a registry's redirect to a storage URL, over real local HTTP servers.

Two tiny servers stand in for the registry and the store (the protocol is what is tested; the
real registry and SeaweedFS are in tests/integration/test_presigned.py): what is sent where, and
when a redirect is not followed but the file streamed through the registry instead.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from registry.errors import NotFoundError
from registry.sdk.transfer import RawTransport
from tests.support import free_port, self_signed

STORED = b"bytes from the store " * 5000
STREAMED = b"bytes through the registry " * 5000
TOKEN = "Bearer ms_secret-token"


@dataclass
class Seen:
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _server(
    seen: Seen, answer: object, tls: tuple[Path, Path] | None = None, hang_up: bool = False
) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            status, headers, body = answer(self.path)  # type: ignore[operator]
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            # hang_up: close after answering without saying so (an idle keep-alive timeout)
            self.close_connection = hang_up

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Pair:
    """A registry that redirects ``/files/x?redirect=true`` to ``location`` and streams
    ``/files/x``; a store that serves ``store_answer``."""

    def __init__(
        self, tmp_path: Path, *, tls: bool = False, store_status: int = 200, hang_up: bool = False
    ) -> None:
        self.registry_seen, self.store_seen = Seen(), Seen()
        self.location = ""
        self._stack: list[Iterator[str]] = []
        store = _server(self.store_seen, lambda path: (store_status, {}, STORED), hang_up=hang_up)
        self.store_url = next(store)
        self._stack.append(store)
        self.ca: Path | None = None
        certs = None
        if tls:
            ca, cert, key = self_signed(tmp_path)
            self.ca, certs = ca, (cert, key)
        registry = _server(self.registry_seen, self._registry_answer, certs)
        self.url = next(registry)
        self._stack.append(registry)

    def _registry_answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("?redirect=true"):
            return 307, {"Location": self.location}, b""
        if path == "/files/x":
            return 200, {}, STREAMED
        return 404, {"Content-Type": "application/problem+json"}, b'{"detail": "no such file"}'

    def transport(self) -> RawTransport:
        verify: bool | str = str(self.ca) if self.ca else True
        return RawTransport(self.url, {"Authorization": TOKEN}, verify=verify, timeout=10)

    def close(self) -> None:
        for server in self._stack:
            next(server, None)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    made.location = f"{made.store_url}/bucket/blobs/sha256/abc?X-Amz-Signature=f00"
    yield made
    made.close()


def _get(transport: RawTransport, *, redirect: bool = True, limit: int = 10**7) -> bytes:
    received = bytearray()
    size, _ = transport.get("/files/x", received.extend, limit=limit, redirect=redirect)
    assert size == len(received)
    return bytes(received)


def test_a_redirect_is_followed_without_the_registry_credentials(pair: Pair) -> None:
    transport = pair.transport()
    assert _get(transport) == STORED
    assert _get(transport) == STORED  # twice: both connections are reused
    transport.close()
    [(path, headers)] = pair.store_seen.requests[:1]
    assert path == "/bucket/blobs/sha256/abc?X-Amz-Signature=f00"
    assert "authorization" not in headers
    assert not any(name.startswith("x-modelseal") for name in headers)
    assert all(h.get("authorization") == TOKEN for _, h in pair.registry_seen.requests)


def test_without_redirect_nothing_is_asked_and_the_registry_streams(pair: Pair) -> None:
    transport = pair.transport()
    assert _get(transport, redirect=False) == STREAMED
    transport.close()
    assert [p for p, _ in pair.registry_seen.requests] == ["/files/x"]
    assert pair.store_seen.requests == []


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("refused", "answered HTTP 403"),
        (f"http://127.0.0.1:{free_port()}/bucket/k?sig=1", "cannot reach"),
        ("file:///etc/passwd", "unusable URL (file:)"),
        ("/relative/path", "unusable URL (:)"),
    ],
)
def test_an_unusable_redirect_falls_back_to_the_registry(
    tmp_path: Path, location: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    made = Pair(tmp_path, store_status=403 if location == "refused" else 200)
    made.location = f"{made.store_url}/bucket/k" if location == "refused" else location
    try:
        transport = made.transport()
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            assert _get(transport) == STREAMED
            assert _get(transport) == STREAMED  # and no more asking: one detour, not one per file
    finally:
        made.close()
    assert [p for p, _ in made.registry_seen.requests] == [
        "/files/x?redirect=true",
        "/files/x",
        "/files/x",
    ]
    [record] = [r for r in caplog.records if r.name == "registry.sdk.transfer"]
    assert why in record.getMessage()
    assert "streaming through the registry" in record.getMessage()


def test_a_store_connection_closed_while_idle_is_reopened_not_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = Pair(tmp_path, hang_up=True)
    made.location = f"{made.store_url}/bucket/k?X-Amz-Signature=f00"
    try:
        transport = made.transport()
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            assert [_get(transport) for _ in range(3)] == [STORED] * 3
    finally:
        made.close()
    assert len(made.store_seen.requests) == 3
    assert [r for r in caplog.records if r.name == "registry.sdk.transfer"] == []


def test_an_https_registry_never_sends_the_client_to_plain_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = Pair(tmp_path, tls=True)
    made.location = f"{made.store_url}/bucket/k?X-Amz-Signature=f00"  # http
    try:
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            assert _get(made.transport()) == STREAMED
    finally:
        made.close()
    assert made.store_seen.requests == []  # not even asked
    assert "refusing to fetch model bytes in clear text" in caplog.text


def test_a_store_body_over_the_limit_is_cut_off_and_reported(pair: Pair) -> None:
    transport = pair.transport()
    received = bytearray()
    size, _ = transport.get("/files/x", received.extend, limit=1000, redirect=True)
    transport.close()
    assert size > 1000  # the caller sees "more bytes than declared" and fails the file


def test_registry_errors_are_not_redirected(pair: Pair) -> None:
    transport = pair.transport()
    with pytest.raises(NotFoundError, match="no such file"):
        transport.get("/files/other", bytearray().extend, limit=10, redirect=False)
    transport.close()
    assert pair.store_seen.requests == []
