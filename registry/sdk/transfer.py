"""Bulk byte transfer for the SDK over ``http.client``: blob bodies in and out.

httpx's response iterators cost several CPU-seconds per GB on large bodies (measured: 2.6 s/GB,
5 s/GB with chunking), ``http.client``'s ``readinto`` about 0.4 s/GB; uploads go out with
``socket.sendfile`` (zero-copy on plain TCP). JSON calls keep using httpx; only blob bodies come
through here. On downloads, reading the socket and hashing + writing run in two threads over a
small ring of buffers, so the hash overlaps the transfer and memory stays fixed (``RING * PIECE``
per download, whatever the file size).

A registry that presigns downloads answers ``?redirect=true`` with a 307 to a short-lived storage
URL; the body is then read straight from the store (one hop less), with none of the registry's
credentials sent there. A redirect that cannot be used (refused, unreachable, https -> http)
falls back to streaming through the registry, and the transport stops asking for redirects (a
firewalled store costs one connect timeout, not one per file); the caller checks the bytes the
same way. With a :class:`~registry.sdk.redirects.RedirectMemory` that is remembered for the
registry's URL between runs (a day), so the next process streams from the start; a store that
answered with a server error (5xx) is only skipped for the rest of this process.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import mmap
import queue
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from registry.errors import ConnectionFailedError, error_from_problem
from registry.sdk.redirects import RedirectMemory

log = logging.getLogger(__name__)

PIECE = 4 * 1024 * 1024
RING = 3
SEND_STEP = 8 * 1024 * 1024
MAX_ANSWER = 1024 * 1024
STORAGE_CONNECT_TIMEOUT = 10.0


class Retry:
    """Bounded exponential backoff for idempotent requests answered 503 or lost in transport:
    at most ``attempts`` tries, waits of ``base``, twice that, … capped at ``cap`` seconds (a
    longer ``Retry-After`` is honoured up to the cap), each shortened by up to a quarter at
    random so that many clients do not retry in step."""

    attempts = 5
    base = 0.5
    cap = 8.0

    @classmethod
    def delay(cls, attempt: int, retry_after: str | None = None) -> float:
        wait = min(cls.cap, cls.base * 2 ** (attempt - 1))
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = min(cls.cap, max(wait, float(retry_after)))
        return float(wait * random.uniform(0.75, 1.0))  # noqa: S311 - jitter, not a secret

    @classmethod
    def gave_up(cls, attempt: int, started: float) -> str:
        return f"(gave up after {attempt} attempts over {time.monotonic() - started:.1f} s)"


_TOKEN = re.compile(r"(ms_[0-9A-Za-z]{1,32})_[A-Za-z0-9_-]+")


def redact_secrets(text: str) -> str:
    """``text`` with every API token cut to its public id (``ms_<id>_…``): library messages
    (``Illegal header value b'Bearer …'``) may quote a header, and errors are printed."""
    return _TOKEN.sub(r"\1_…", text)


class _UnusableRedirect(Exception):
    """A storage URL that gave no body: the download can still go through the registry.

    ``lasting``: worth remembering between runs (unreachable, refused, a URL of no use), not
    a passing trouble of the store (a 5xx answer)."""

    def __init__(self, message: str, *, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class RawTransport:
    """GETs whose bodies go to a sink in a second thread; requests whose bodies are file ranges."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        verify: bool | str,
        timeout: float,
        memory: RedirectMemory | None = None,
    ) -> None:
        """``memory``: where unusable storage URLs are remembered between runs (none: only
        for this transport's life)."""
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"unsupported registry URL {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._verify = verify
        self._context: ssl.SSLContext | None = None  # one for the registry and any store
        self._local = threading.local()
        self._url = base_url
        self._memory = memory
        self._redirect_lock = threading.Lock()
        self._redirects_usable: bool | None = None  # None: the memory not consulted yet
        self._stale_record = False  # an expired record to clear once a redirect works

    def _open(
        self, https: bool, host: str, port: int | None, timeout: float
    ) -> http.client.HTTPConnection:
        """A new (not yet connected) connection; TLS verified as the caller asked."""
        if not https:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        if self._context is None:
            if self._verify is False:
                self._context = ssl._create_unverified_context()  # noqa: S323 - caller's explicit choice
            else:
                cafile = self._verify if isinstance(self._verify, str) else None
                self._context = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._context)

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open(self._https, self._host, self._port, self._timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def get(
        self,
        path: str,
        sink: Callable[[memoryview], None],
        *,
        limit: int,
        redirect: bool = False,
    ) -> tuple[int, dict[str, str]]:
        """GET ``path``; feed the body to ``sink``; return ``(bytes read, headers)``.

        Reading stops once ``limit + 1`` bytes arrived (the caller treats that as a mismatch).
        With ``redirect`` the registry may point at a presigned storage URL instead; the body
        then comes from there (see the module docstring).

        Raises:
            RegistryError (or the subclass a problem document names): HTTP errors, transport
                failures, or an exception raised by ``sink``.
        """
        redirect = redirect and self._redirects_wanted()
        target = self._prefix + path + ("?redirect=true" if redirect else "")
        started = time.monotonic()
        for attempt in range(1, Retry.attempts + 1):
            # Retried (no byte has reached ``sink`` yet) on a transport failure or a 503.
            conn = self._connection()
            try:
                conn.request("GET", target, headers=self._headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if attempt < Retry.attempts:
                    time.sleep(Retry.delay(attempt))
                    continue
                raise ConnectionFailedError(
                    f"cannot reach the registry: {redact_secrets(str(exc))} "
                    f"{Retry.gave_up(attempt, started)}"
                ) from exc
            if response.status == 503 and attempt < Retry.attempts:
                response.read(65536)
                self._drop_connection()
                time.sleep(Retry.delay(attempt, response.getheader("Retry-After")))
                continue
            break
        headers = {k.lower(): v for k, v in response.getheaders()}
        if redirect and response.status == 307 and "location" in headers:
            try:
                response.read(MAX_ANSWER)
            except (OSError, http.client.HTTPException):
                self._drop_connection()
            else:
                if response.will_close:
                    self._drop_connection()
            try:
                total = self._get_from_storage(headers["location"], sink, limit)
            except _UnusableRedirect as exc:
                self._redirect_failed(exc)
                return self.get(path, sink, limit=limit)
            if self._stale_record:
                self._redirect_worked()
            return total, headers
        if response.status >= 400:
            body = response.read(65536)
            self._drop_connection()
            try:
                problem = json.loads(body)
            except ValueError:
                problem = {"detail": f"HTTP {response.status}"}
            if not isinstance(problem, dict):
                problem = {}
            if response.status == 503:
                problem["detail"] = (
                    f"{problem.get('detail') or 'HTTP 503'} {Retry.gave_up(attempt, started)}"
                )
            raise error_from_problem(response.status, problem)
        try:
            total = _pump(response, sink, limit)
        except BaseException:
            self._drop_connection()
            raise
        if total > limit or (not response.isclosed() and response.length):
            self._drop_connection()  # body not fully consumed: the connection is unusable
        return total, headers

    def _redirects_wanted(self) -> bool:
        """Whether to ask for storage URLs: yes until one failed in this transport or, on the
        first ask, while the memory holds a fresh record of this registry's URLs failing."""
        with self._redirect_lock:
            if self._redirects_usable is None:
                self._redirects_usable = True
                memory = self._memory
                record = memory.recall(self._url) if memory is not None else None
                if memory is not None and record is not None:
                    if memory.fresh(record):
                        self._redirects_usable = False
                        log.info(
                            "streaming through the registry: its storage URLs were unusable "
                            "from here %.0f s ago (%s; remembered in %s for %.0f h)",
                            memory.age(record), record.reason, memory.path,
                            memory.ttl / 3600,
                        )  # fmt: skip
                    else:
                        self._stale_record = True
            return self._redirects_usable

    def _redirect_failed(self, exc: _UnusableRedirect) -> None:
        """Stop asking for storage URLs; say why once, and remember it between runs when it
        is ``lasting``."""
        with self._redirect_lock:
            if self._redirects_usable is False:
                return  # another download said it already
            self._redirects_usable = False
            self._stale_record = False
        memory = self._memory
        if exc.lasting and memory is not None and memory.remember(self._url, str(exc)):
            log.warning("%s; streaming through the registry instead (remembered in %s: the "
                        "next %.0f h of runs on this machine stream from the start)",
                        exc, memory.path, memory.ttl / 3600)  # fmt: skip
        else:
            log.warning("%s; streaming through the registry instead", exc)

    def _redirect_worked(self) -> None:
        """A storage URL served a body: clear the expired record that made this one a probe."""
        with self._redirect_lock:
            if not self._stale_record:
                return
            self._stale_record = False
        if self._memory is not None:
            self._memory.forget(self._url)

    def _get_from_storage(
        self, location: str, sink: Callable[[memoryview], None], limit: int
    ) -> int:
        """GET a presigned storage URL with no registry credentials; feed the body to ``sink``.

        Raises:
            _UnusableRedirect: no body came (bad URL, unreachable, refused): nothing reached
                ``sink``, so the caller may fetch the file another way.
            ConnectionFailedError: the transfer broke after bytes went to ``sink``.
        """
        parts = urlsplit(location)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise _UnusableRedirect(f"the registry redirected to an unusable URL ({parts.scheme}:)")
        if self._https and parts.scheme == "http":
            raise _UnusableRedirect(
                f"the registry (https) redirected to plain http at {parts.hostname}; refusing to "
                "fetch model bytes in clear text"
            )
        key = (parts.scheme, parts.hostname, parts.port)
        pool: dict[tuple[str, str, int | None], http.client.HTTPConnection] = (
            getattr(self._local, "storage", None) or {}
        )
        self._local.storage = pool
        where = f"the storage URL the registry sent ({parts.hostname}:{parts.port or parts.scheme})"
        while True:
            conn = pool.get(key)
            fresh = conn is None or conn.sock is None
            if conn is None:
                connect = min(self._timeout, STORAGE_CONNECT_TIMEOUT)
                conn = self._open(parts.scheme == "https", parts.hostname, parts.port, connect)
                pool[key] = conn
            try:
                if conn.sock is None:
                    conn.connect()  # within the short connect timeout, then the transfer's own
                    assert conn.sock is not None
                    conn.sock.settimeout(self._timeout)
                # Only what a plain GET needs: never the registry's Authorization header.
                conn.request(
                    "GET",
                    (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                    headers={"User-Agent": self._headers.get("User-Agent", "modelseal-client")},
                )
                response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                pool.pop(key).close()
                if fresh:
                    raise _UnusableRedirect(f"cannot reach {where}: {exc}") from exc
                # a kept-alive connection the store had closed meanwhile: once more, anew
        if response.status != 200:
            pool.pop(key).close()
            raise _UnusableRedirect(f"{where} answered HTTP {response.status}",
                                    lasting=response.status < 500)  # fmt: skip
        try:
            total = _pump(response, sink, limit)
        except BaseException:
            pool.pop(key).close()
            raise
        if total > limit or not response.isclosed() or response.will_close:
            conn.close()
            pool.pop(key, None)
        return total

    def send_file(
        self,
        method: str,
        path: str,
        source: Path,
        *,
        offset: int,
        length: int,
        headers: dict[str, str],
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Send ``length`` bytes of ``source`` from ``offset`` as the request body.

        Returns the decoded JSON answer.

        Raises:
            ConnectionFailedError: the connection failed (the caller may resume).
            RegistryError (or the subclass a problem document names): HTTP errors.
        """
        conn = self._connection()
        try:
            conn.putrequest(method, self._prefix + path, skip_accept_encoding=True)
            for name, value in {**self._headers, **headers}.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(length))
            conn.endheaders()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise ConnectionFailedError(
                f"cannot reach the registry: {redact_secrets(str(exc))}"
            ) from exc
        try:
            self._send_range(conn, source, offset, length, progress)
        except OSError as exc:
            # The server may have answered early (413, 401…) and closed: read that answer.
            send_error: OSError | None = exc
        except BaseException:  # interrupted mid-body (Ctrl-C, a progress callback): unusable
            self._drop_connection()
            raise
        else:
            send_error = None
        try:
            response = conn.getresponse()
            body = response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise ConnectionFailedError(
                f"upload interrupted: {redact_secrets(str(send_error or exc))}"
            ) from exc
        if response.will_close or send_error is not None:
            self._drop_connection()
        try:
            document = json.loads(body) if body else {}
        except ValueError:
            document = {"detail": f"HTTP {response.status}: unreadable answer"}
        if not isinstance(document, dict):
            document = {}
        if response.status >= 400:
            raise error_from_problem(response.status, document)
        if send_error is not None:
            raise ConnectionFailedError(f"upload interrupted: {redact_secrets(str(send_error))}")
        return document

    @staticmethod
    def _send_range(
        conn: http.client.HTTPConnection,
        source: Path,
        offset: int,
        length: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        if not length:
            return
        assert conn.sock is not None
        with source.open("rb") as handle:
            sent = 0
            while sent < length:
                step = min(SEND_STEP, length - sent)
                done = conn.sock.sendfile(handle, offset + sent, step)
                if done == 0:
                    raise ConnectionFailedError(f"{source} shrank while it was being uploaded")
                sent += done
                if progress:
                    progress(done)

    def close(self) -> None:
        self._drop_connection()
        for conn in (getattr(self._local, "storage", None) or {}).values():
            conn.close()
        self._local.storage = {}


def _pump(
    response: http.client.HTTPResponse, sink: Callable[[memoryview], None], limit: int
) -> int:
    """Read into a ring of buffers in this thread; run ``sink`` on filled ones in another."""
    # Page-aligned buffers (anonymous mmaps), so that a sink may hand them to O_DIRECT writes.
    free: queue.Queue[mmap.mmap] = queue.Queue()
    for _ in range(RING):
        free.put(mmap.mmap(-1, PIECE))
    filled: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
    failure: list[BaseException] = []

    def consume() -> None:
        while True:
            item = filled.get()
            if item is None:
                return
            buffer, size = item
            try:
                if not failure:
                    sink(memoryview(buffer)[:size])
            except BaseException as exc:  # reported to the reader below
                failure.append(exc)
            free.put(buffer)

    worker = threading.Thread(target=consume, name="modelseal-hash", daemon=True)
    worker.start()
    total = 0
    try:
        while not failure and total <= limit:
            buffer = free.get()
            size = _fill(response, buffer)
            if size == 0:
                free.put(buffer)
                break
            total += size
            filled.put((buffer, size))
    except (OSError, http.client.HTTPException) as exc:
        failure.append(ConnectionFailedError(f"download interrupted: {redact_secrets(str(exc))}"))
    finally:
        filled.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return total


def _fill(response: http.client.HTTPResponse, buffer: mmap.mmap) -> int:
    view = memoryview(buffer)
    size = 0
    while size < len(buffer):
        read = response.readinto(view[size:])
        if not read:
            break
        size += read
    return size
