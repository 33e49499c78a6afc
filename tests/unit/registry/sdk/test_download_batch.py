"""A download batch from a hostile registry (or a proxy in between): the client refuses any
answer that is not exactly the files of its verified manifest, writes nothing it has not
checked, and never reads (or holds) more than those files, whatever the answer claims."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from attest.digests import Digest, FileDigest
from registry.errors import PullVerificationError
from registry.names import Ref, RefKind
from registry.sdk.client import RegistryClient
from registry.sdk.pull import _BatchFetch, _download_batch

FILES = {"a.json": b'{"a": 1}', "b.json": b'{"b": 2}'}
ITEMS = [FileDigest(p, len(d), Digest(hashlib.sha256(d).hexdigest())) for p, d in FILES.items()]
REF = Ref("ns", "m", "1", RefKind.VERSION)


def index(items: list[FileDigest]) -> bytes:
    entries = [{"path": f.path, "digest": f.sha256.prefixed, "size": f.size} for f in items]
    return json.dumps({"files": entries}).encode() + b"\n"


Answer = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def hostile() -> Iterator[Callable[[Answer], str]]:
    """A registry on loopback whose batch answer is the test's; yields a way to set it."""
    answers: list[Answer] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answers[0](self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def answering(answer: Answer) -> str:
        answers[:] = [answer]
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        yield answering
    finally:
        server.shutdown()
        server.server_close()


def ok(handler: BaseHTTPRequestHandler, body: bytes, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/vnd.modelseal.file-batch.v1")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


def endless(handler: BaseHTTPRequestHandler, head: bytes, declared: int | None) -> None:
    """The index and the honest files, then zeros for as long as the client reads (or a
    minute)."""
    head = head + b"".join(FILES.values())
    handler.send_response(200)
    if declared is None:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        handler.send_header("Content-Length", str(declared))
    handler.end_headers()
    chunk = b"\0" * (1 << 20)
    deadline = time.monotonic() + 60
    try:
        if declared is None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
        else:
            handler.wfile.write(head)
        while time.monotonic() < deadline:
            if declared is None:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                handler.wfile.write(chunk)
    except OSError:
        pass  # the client hung up: what it should do


def pull_batch(url: str, tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    with RegistryClient(url, "ms_" + "0" * 40) as client:
        _download_batch(_BatchFetch(client, REF, ITEMS, staging, None, False))
    return staging


def test_an_honest_answer_lands(hostile: Callable[[Answer], str], tmp_path: Path) -> None:
    url = hostile(lambda h: ok(h, index(ITEMS) + b"".join(FILES.values())))
    staging = pull_batch(url, tmp_path)
    assert {p.name: p.read_bytes() for p in staging.iterdir()} == FILES


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            lambda h: ok(h, index(ITEMS) + b'{"a": 9}' + FILES["b.json"]),
            "a.json: downloaded bytes do not match",
            id="forged-bytes",
        ),
        pytest.param(
            lambda h: ok(h, index(ITEMS[::-1]) + FILES["b.json"] + FILES["a.json"]),
            "does not list exactly",
            id="reordered",
        ),
        pytest.param(
            lambda h: ok(h, index(ITEMS[:1]) + FILES["a.json"]),
            "does not list exactly",
            id="a-file-left-out",
        ),
        pytest.param(
            lambda h: ok(h, b"{}" + b"".join(FILES.values())),
            "does not list exactly",
            id="no-index",
        ),
        pytest.param(
            lambda h: ok(h, index(ITEMS) + b"".join(FILES.values()) + b"extra"),
            "declares",
            id="trailing-bytes",
        ),
        pytest.param(
            lambda h: endless(h, index(ITEMS), 10 << 30), "declares", id="ten-gib-declared"
        ),
        pytest.param(lambda h: endless(h, index(ITEMS), None), "more bytes", id="endless-chunked"),
    ],
)
def test_a_hostile_answer_is_refused_without_reading_it_all(
    hostile: Callable[[Answer], str], tmp_path: Path, answer: Answer, words: str
) -> None:
    url = hostile(answer)
    started = time.monotonic()
    with pytest.raises(PullVerificationError) as raised:
        pull_batch(url, tmp_path)
    assert words in str(raised.value)
    assert time.monotonic() - started < 10  # it stopped reading: the answer would take a minute
    written = [p for p in (tmp_path / "staging").iterdir() if p.read_bytes() != FILES[p.name]]
    assert written == []  # nothing that was not checked
