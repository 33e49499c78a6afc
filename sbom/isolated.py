"""BOM building and strict validation in a child process, for long-running services.

The builder (cyclonedx-python-lib, ~4 MiB) and the strict validator (jsonschema with its format
checkers and the CycloneDX 1.6 schema, ~25 MiB, 1.3 s to load) are needed now and then; keeping
that memory for the rest of a registry's life would be most of the difference between an idle
server and one that has built a single BOM. :class:`BomChild` runs
:func:`sbom.build.build_model_bom` and :func:`sbom.validate.validate_bom` in a child process
(``python -m sbom.isolated``), started on first use, fed over a pipe, and stopped after
``idle_seconds`` without work.

The results, and the :class:`~sbom.errors.BomError` a bad input or BOM raises (message and
facts), are those of the functions run in-process. A child that cannot be started, dies or
answers nonsense raises :class:`~sbom.errors.BomValidatorUnavailableError`: that says nothing
about the BOM, and the caller tries again later.

The wire: each message is an 8-byte big-endian length, then that many bytes of UTF-8 JSON. The
parent sends ``{"validate": BOM}`` or ``{"build": INPUT}`` (:func:`sbom.model.input_to_wire`);
the child answers ``{"ok": true}`` (with ``"bom"``, the BOM built), ``{"error": MESSAGE,
"facts": {...}}`` (the input or BOM is bad) or ``{"crash": DESCRIPTION}`` (the child itself
failed), each with ``"digest"``, the sha256 of the message it answers (an answer about another
message is refused). A child that has not answered after ``timeout`` seconds is stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from sbom.errors import BomError, BomValidatorUnavailableError
from sbom.model import ModelBomInput, input_from_wire, input_to_wire

#: Seconds without work after which the child process is stopped.
IDLE_SECONDS = 120.0
#: Seconds a build or validation may take before the child is stopped (a 20,000-file BOM
#: takes a few).
TIMEOUT_SECONDS = 600.0
#: Largest message either side accepts (a BOM over the evidence size cap is refused earlier).
MAX_MESSAGE = 1 << 30
_HEADER = struct.Struct(">Q")


def child_environment() -> dict[str, str]:
    """The environment of a Python child process that imports this distribution's packages
    from where this process did, whatever the child's working directory and ``sys.path``."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    # Only absolute entries: an empty or relative one (``PYTHONPATH=:/opt/x``) would put the
    # working directory back on the path that ``-P`` keeps it off.
    given = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(p)]
    env["PYTHONPATH"] = os.pathsep.join([root, *given])
    return env


def _write(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_within(fd: int, deadline: float) -> bytes:
    """One message from the pipe ``fd`` (unbuffered reads), by ``deadline`` (monotonic)."""

    def exactly(count: int) -> bytes:
        chunks: list[bytes] = []
        while count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no answer in time")
            chunk = os.read(fd, min(count, 1 << 20))
            if not chunk:
                raise EOFError("the child closed its output")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    (size,) = _HEADER.unpack(exactly(_HEADER.size))
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes, more than {MAX_MESSAGE}")
    return exactly(size)


def _read(stream: IO[bytes]) -> bytes | None:
    """One message, or None at a clean end of the stream."""
    header = stream.read(_HEADER.size)
    if not header:
        return None
    if len(header) != _HEADER.size:
        raise EOFError("the stream ended inside a message header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes, more than {MAX_MESSAGE}")
    payload = stream.read(size)
    if len(payload) != size:
        raise EOFError(f"the stream ended after {len(payload)} of {size} bytes")
    return payload


class BomChild:
    """:func:`~sbom.build.build_model_bom` and :func:`~sbom.validate.validate_bom` run in a
    child process (see the module docstring). Thread-safe: requests are serialized, one child
    serves them all."""

    def __init__(
        self, *, idle_seconds: float = IDLE_SECONDS, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        self._idle = idle_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._used = 0.0
        self._timer: threading.Timer | None = None

    @property
    def running(self) -> bool:
        child = self._child
        return child is not None and child.poll() is None

    def __call__(self, bom: Mapping[str, Any]) -> None:
        self.validate(bom)

    def validate(self, bom: Mapping[str, Any]) -> None:
        """Raises :class:`BomError` unless ``bom`` is strictly valid CycloneDX 1.6, or
        :class:`BomValidatorUnavailableError` when the child fails."""
        try:
            payload = json.dumps({"validate": bom}, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # as validate_bom says it
            raise BomError(f"BOM is not JSON-serializable: {exc}") from None
        self._request(payload)

    def build(self, inp: ModelBomInput) -> dict[str, Any]:
        """:func:`~sbom.build.build_model_bom` of ``inp``, strictly validated: the same BOM or
        :class:`BomError`; :class:`BomValidatorUnavailableError` when the child fails."""
        try:
            # NaN and infinities travel (as Python's json spells them) for the builder to refuse.
            payload = json.dumps({"build": input_to_wire(inp)}).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise BomError(f"the BOM's input cannot be written as JSON: {exc}") from None
        bom = self._request(payload).get("bom")
        if not isinstance(bom, dict):
            raise BomValidatorUnavailableError("the BOM builder answered without a BOM")
        return bom

    def _request(self, payload: bytes) -> dict[str, Any]:
        with self._lock:
            answer = self._ask(payload)
            self._used = time.monotonic()
            self._arm()
        if answer.get("ok") is True:
            return answer
        if isinstance(answer.get("error"), str):
            facts = answer.get("facts")
            raise BomError(answer["error"], **(facts if isinstance(facts, dict) else {}))
        crash = str(answer.get("crash", answer))[:500]
        raise BomValidatorUnavailableError(f"the BOM process failed: {crash}")

    def close(self) -> None:
        """Stop the child (the next request starts another)."""
        with self._lock:
            self._stop()

    # -- the child ------------------------------------------------------------------------------

    def _ask(self, payload: bytes) -> dict[str, Any]:
        child = self._child
        if child is None or child.poll() is not None:
            child = self._start()
        assert child.stdin is not None and child.stdout is not None
        digest = hashlib.sha256(payload).hexdigest()
        try:
            _write(child.stdin, payload)
            raw = _read_within(child.stdout.fileno(), time.monotonic() + self._timeout)
            answer = json.loads(raw)
            if not isinstance(answer, dict):
                raise ValueError(f"answer of type {type(answer).__name__}")
            if answer.get("digest") != digest:
                raise ValueError("the answer is not about the request sent")
        except (OSError, EOFError, ValueError, TimeoutError) as exc:
            self._stop()
            code = child.returncode
            raise BomValidatorUnavailableError(
                f"the BOM process failed ({type(exc).__name__}: {exc}"
                + (f"; exit status {code}" if code is not None else "")
                + ")"
            ) from exc
        return answer

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            # -P: the working directory is not on the child's import path (a module planted
            # there must not stand in for the builder or the validator).
            self._child = subprocess.Popen(
                [sys.executable, "-P", "-m", "sbom.isolated"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=child_environment(),
                close_fds=True,
            )
        except OSError as exc:
            raise BomValidatorUnavailableError(f"the BOM process could not start: {exc}") from exc
        return self._child

    def _stop(self) -> None:
        child, self._child = self._child, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            child.wait(timeout=5)  # it exits at the end of its input
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._idle, self._stop_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _stop_if_idle(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # working: the request arms the timer again
        try:
            if time.monotonic() - self._used >= self._idle:
                self._stop()
        finally:
            self._lock.release()


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child: answer each request read from ``source`` until it ends."""
    from sbom.build import build_model_bom
    from sbom.validate import validate_bom

    while (raw := _read(source)) is not None:
        answer: dict[str, Any]
        digest = hashlib.sha256(raw).hexdigest()
        try:
            request = json.loads(raw)
            if "build" in request:
                answer = {"ok": True, "bom": build_model_bom(input_from_wire(request["build"]))}
            else:
                validate_bom(request["validate"])
                answer = {"ok": True}
        except BomError as exc:
            answer = {"error": str(exc), "facts": exc.facts}
        except Exception as exc:  # the child failed, not the BOM
            answer = {"crash": f"{type(exc).__name__}: {exc}"[:500]}
        answer["digest"] = digest  # what the answer is about
        _write(sink, json.dumps(answer, default=str).encode("utf-8"))


if __name__ == "__main__":
    # Answers go to the original standard output; anything printed goes to standard error.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, answers)
