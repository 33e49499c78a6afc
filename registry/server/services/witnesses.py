"""Collecting witness cosignatures of the log's checkpoints (C2SP tlog-witness, client side).

Each replica runs one thread per configured witness (``MODELSEAL_LOG_WITNESSES``). After the log
signs a checkpoint (:attr:`LogService.on_signed` wakes them; they also look every
:data:`POLL_SECONDS`) a thread sends the newest checkpoint to its witness with
``POST <url>/add-checkpoint``: the old size is the largest checkpoint the witness cosigned
according to ``tlog_cosignatures``, with the consistency proof from it. A 409 (the witness cosigned
another size: a cosignature this database lost, or another replica's) is answered once at once
from the size the witness names. The cosignature returned must verify with the witness's
configured key over that checkpoint before it is stored (one row per checkpoint and witness: a
replica that loses the race stores nothing). Failures are retried with exponential backoff, at
most :data:`MAX_ATTEMPTS` times per checkpoint; a witness that is down costs its own thread
only, never a signature or a request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from attest import note
from attest.errors import AttestError
from registry.server.config import witness_specs
from registry.server.db import transaction
from registry.server.models import LogCheckpoint, LogCosignature
from registry.server.services.common import Clock, utcnow
from registry.server.services.tlog import LogService, SignedHead

log = logging.getLogger(__name__)

POLL_SECONDS = 60.0  # look for an uncosigned newest checkpoint this often without a wake-up
MAX_ATTEMPTS = 6  # per checkpoint and witness
RETRY_SECONDS = 1.0  # the first backoff; doubled per failure
RETRY_MAX_SECONDS = 60.0
TIMEOUT_SECONDS = 10.0
MAX_ANSWER = 64 * 1024
SIZE_TYPE = "text/x.tlog.size"


class WitnessFailure(Exception):
    """A witness did not cosign (down, refused, or answered a cosignature that does not verify)."""


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    url: str
    verifier: note.NoteVerifier

    @property
    def name(self) -> str:
        return self.verifier.name


def endpoints(value: str | None) -> list[WitnessEndpoint]:
    return [WitnessEndpoint(url, note.NoteVerifier.from_vkey(v)) for url, v in witness_specs(value)]


class WitnessCollector:
    """Sends the newest checkpoint to each witness and stores the verified cosignatures."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        log_service: LogService,
        witnesses: list[WitnessEndpoint],
        *,
        clock: Clock = utcnow,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._sessions = sessions
        self._log = log_service
        self.witnesses = witnesses
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._stop = threading.Event()
        self._wakes = {w.name: threading.Event() for w in witnesses}
        self._threads: list[threading.Thread] = []

    # -- the hook ----------------------------------------------------------------------------

    def notify(self, _head: SignedHead | None = None) -> None:
        """A checkpoint was signed: wake every witness's thread (never blocks)."""
        for wake in self._wakes.values():
            wake.set()

    # -- one submission ----------------------------------------------------------------------

    def cosigned_size(self, name: str) -> int:
        """The largest checkpoint size ``name`` cosigned, by the stored cosignatures (0: none)."""
        with self._sessions() as session:
            found = session.execute(
                select(func.max(LogCheckpoint.size))
                .join(LogCosignature, LogCosignature.checkpoint_id == LogCheckpoint.id)
                .where(LogCosignature.witness == name)
            ).scalar_one_or_none()
        return int(found or 0)

    def _has(self, head: SignedHead, name: str) -> bool:
        with self._sessions() as session:
            return (
                session.execute(
                    select(LogCosignature.id).where(
                        LogCosignature.checkpoint_id == head.id, LogCosignature.witness == name
                    )
                ).first()
                is not None
            )

    def submit(self, witness: WitnessEndpoint, head: SignedHead | None = None) -> bool:
        """Have ``witness`` cosign ``head`` (default: the newest checkpoint) and store the
        cosignature; True when stored now, False when it already was.

        Raises:
            WitnessFailure: the witness is down, refused, or answered no valid cosignature.
        """
        head = head or self._log.latest()
        if head is None or self._has(head, witness.name):
            return False
        old = min(self.cosigned_size(witness.name), head.size)
        status, answer, content_type = self._post(witness, head, old)
        if status == 409 and content_type.startswith(SIZE_TYPE):
            theirs = _size(answer)
            if theirs is None or theirs > head.size:
                raise WitnessFailure(
                    f"witness {witness.name} cosigned size {answer[:40]!r}, beyond the log's "
                    f"checkpoint of size {head.size}: it was shown a larger tree"
                )
            status, answer, content_type = self._post(witness, head, theirs)
        if status != 200:
            raise WitnessFailure(
                f"witness {witness.name} refused the checkpoint of size {head.size}: HTTP "
                f"{status}: {answer[:300]}"
            )
        line = self._cosignature(witness, head, answer)
        try:
            with transaction(self._sessions) as session:
                session.add(LogCosignature(checkpoint_id=head.id, witness=witness.name,
                                           signature=line, created_at=self._clock()))  # fmt: skip
        except IntegrityError:  # another replica stored one for this checkpoint first
            return False
        return True

    def _post(self, witness: WitnessEndpoint, head: SignedHead, old: int) -> tuple[int, str, str]:
        proof = self._log.consistency(old, head.size) if old < head.size else []
        body = note.add_checkpoint_body(old, proof, head.note)
        try:
            with self._http.stream("POST", f"{witness.url}/add-checkpoint", content=body) as r:
                data = b""
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > MAX_ANSWER:
                        raise WitnessFailure(f"witness {witness.name} answered over {MAX_ANSWER} B")
                return (
                    r.status_code,
                    data.decode("utf-8", "replace"),
                    r.headers.get("content-type", ""),
                )
        except httpx.HTTPError as exc:
            raise WitnessFailure(f"witness {witness.name} at {witness.url}: {exc}") from None

    @staticmethod
    def _cosignature(witness: WitnessEndpoint, head: SignedHead, answer: str) -> str:
        """The answer's signature line by the witness's key, verified over ``head``."""
        for line in answer.splitlines(keepends=True):
            candidate = line if line.endswith("\n") else line + "\n"
            try:
                _text, (sig,) = note.parse_note("x\n\n" + candidate)
            except (AttestError, ValueError):
                continue
            if sig.name != witness.name or sig.key_id != witness.verifier.key_id:
                continue
            try:
                note.open_note(head.note + candidate, [witness.verifier])
            except AttestError as exc:
                raise WitnessFailure(
                    f"witness {witness.name} answered a cosignature that does not verify with "
                    f"its configured key: {exc}"
                ) from None
            return candidate
        raise WitnessFailure(
            f"witness {witness.name} answered no cosignature line by its key: {answer[:200]!r}"
        )

    # -- the threads -------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for witness in self.witnesses:
            thread = threading.Thread(target=self._run, args=(witness,),
                                      name=f"tlog-witness-{witness.name}", daemon=True)  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_SECONDS + 5)
        self._threads = []
        self._http.close()

    def _run(self, witness: WitnessEndpoint) -> None:
        wake = self._wakes[witness.name]
        checkpoint_id: int | None = None
        attempts = 0
        due = 0.0
        while not self._stop.is_set():
            wait = POLL_SECONDS if attempts == 0 else max(0.0, due - time.monotonic())
            if attempts and attempts >= MAX_ATTEMPTS:
                wait = POLL_SECONDS
            wake.wait(wait if checkpoint_id is not None or attempts else 0)
            wake.clear()
            if self._stop.is_set():
                return
            try:
                head = self._log.latest()
                if head is None:
                    continue
                if head.id != checkpoint_id:
                    checkpoint_id, attempts, due = head.id, 0, 0.0
                if attempts >= MAX_ATTEMPTS or time.monotonic() < due:
                    continue
                self.submit(witness, head)
                attempts = 0
            except Exception as exc:
                attempts += 1
                due = time.monotonic() + min(RETRY_MAX_SECONDS, RETRY_SECONDS * 2 ** (attempts - 1))
                level = logging.ERROR if attempts >= MAX_ATTEMPTS else logging.WARNING
                log.log(level, "witness %s, checkpoint %s (attempt %d of %d): %s", witness.name,
                        checkpoint_id, attempts, MAX_ATTEMPTS, exc)  # fmt: skip


def _size(text: str) -> int | None:
    value = text.strip()
    return int(value) if value.isdigit() and len(value) <= 19 else None
