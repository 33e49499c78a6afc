"""Bounded shutdown: on SIGTERM `modelseal serve --drain-seconds N` stops accepting connections,
lets a request in flight finish within N seconds (the acceptance), and closes a request that
does not finish by then, exiting after about N seconds (the rejection)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import free_port


@contextmanager
def _serving(data_dir: Path, drain: int) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSEAL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "registry", "serve", "--data-dir", str(data_dir),
         "--port", str(port), "--drain-seconds", str(drain)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.1)
        yield process, port, (data_dir / "admin-token").read_text().strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _half_sent(port: int, token: str) -> tuple[socket.socket, bytes]:
    """A token request whose body is only half sent: in flight until the rest comes."""
    body = json.dumps({"name": "drained", "role": "auditor"}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    time.sleep(0.5)
    return sock, body[10:]


def _refuses_new_connections(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_a_request_in_flight_finishes_within_the_drain(tmp_path: Path) -> None:
    with _serving(tmp_path / "data", drain=20) as (process, port, token):
        sock, rest = _half_sent(port, token)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _refuses_new_connections(port)
        with sock:
            sock.sendall(rest)
            answer = sock.recv(65536).decode("latin1")
        assert answer.startswith("HTTP/1.1 201"), answer
        assert process.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal


def test_a_request_that_outlasts_the_drain_is_closed(tmp_path: Path) -> None:
    with _serving(tmp_path / "data", drain=2) as (process, port, token):
        sock, _ = _half_sent(port, token)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        took = time.monotonic() - started
        assert 1.5 <= took <= 8, took
        with sock:  # closed by the server: at most an error answer, then end of stream
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        assert not received.startswith(b"HTTP/1.1 2"), received
