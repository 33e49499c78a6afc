"""ML-BOMs are built off the request path: a job table (``bom_jobs``) and a worker in every replica.

Building, strictly validating and signing a model's CycloneDX ML-BOM
(:class:`~registry.server.services.sbom.BomService`) takes seconds for a model of many files
(about ten for 20,000), so no request builds one. A job is written in the transaction of the
change that calls for it, so it exists if and only if that change committed:

* the version's commit (:func:`enqueue` in ``VersionService.commit``), due after
  :data:`SCAN_GRACE`: the commit request scans the version next, and the BOM names every file's
  scan verdict;
* the version's scan, and provenance or evaluation results about a pending model: a session
  listener (:meth:`BomJobs.__init__`) sees the attestation row flushed and asks, due now.

There is one row per version: asking again while a job is pending coalesces into it; while a
build runs, the job is marked to run once more (``again``) when that build is over, since the
build may not have read the new evidence.

Every replica runs a worker thread (:meth:`BomJobs.start`) that claims due jobs, on PostgreSQL by
``SELECT … FOR UPDATE SKIP LOCKED`` (concurrent workers take different rows), on SQLite (one
process, one writer: every transaction takes the write lock) by a conditional UPDATE. The claim is
a short transaction that sets ``running``, a claim token and a lease (:data:`LEASE`); no lock is
held while the BOM is built, and the worker extends the lease every third of it while it builds.
A worker that died stops extending: once its lease has ended, any replica claims the job again.
The BOM is recorded in the transaction that marks the job done, and only while the claim is still
the worker's (a worker that lost its lease records nothing), so two builds of one job never both
count. A failed build is retried with exponential backoff (:data:`RETRY_SECONDS` doubling, at most
:data:`RETRY_MAX_SECONDS`); after :data:`MAX_ATTEMPTS` attempts (an attempt whose worker died
counts too) the job is ``failed``: kept with its error, logged, and reported as the version's BOM
status. New evidence asks again; so can an operator (``docs/operations.md``).

A commit or evidence in this process wakes the worker at once; jobs of other replicas are seen
within :data:`POLL_SECONDS`. :meth:`BomJobs.run_pending` runs the due jobs in the calling thread
(tests), and :meth:`BomJobs.settle` builds one version's pending BOM now or waits for the worker
that holds it (for a caller that must not go on without it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, case, event, exists, false, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from attest.errors import AttestError
from attest.predicates import CYCLONEDX_BOM
from registry.server.db import transaction
from registry.server.models import Artifact, Attestation, BomJob, Version
from registry.server.services.common import Clock, aware, release_memory, utcnow

log = logging.getLogger(__name__)

PENDING = "pending"
RUNNING = "running"
DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"

#: How long a claim holds a job without the worker extending it (every third of it).
LEASE = timedelta(seconds=30)
#: Attempts before a job is ``failed`` (attempts whose worker died count too).
MAX_ATTEMPTS = 5
RETRY_SECONDS = 10.0
RETRY_MAX_SECONDS = 600.0
#: How often an idle worker looks for jobs other replicas asked for.
POLL_SECONDS = 1.0
#: How long the commit's job waits for the version's scan (which asks again, due now, when it is
#: recorded); past that, the worker scans the version itself before it builds.
SCAN_GRACE = timedelta(minutes=10)
#: ``Session.info`` key: this transaction's evidence does not ask for the model's BOM (the
#: scan a BOM job records just before it builds).
NO_BOM_ASK = "modelseal.no_bom_ask"
#: ``Session.info`` key: the transaction asked for a job that is due now (wake the worker).
_DUE_NOW = "modelseal.bom_job_due"


class BomStatus(StrEnum):
    """A model version's ML-BOM as the API reports it."""

    PENDING = "pending"  # asked for and not built yet (or being built again)
    READY = "ready"
    FAILED = "failed"  # the last build failed and the worker gave up


@dataclass(frozen=True, slots=True)
class JobState:
    status: str
    attempts: int
    due_at: datetime
    last_error: str | None

    @property
    def bom_status(self) -> BomStatus | None:
        if self.status in (PENDING, RUNNING):
            return BomStatus.PENDING
        if self.status == FAILED:
            return BomStatus.FAILED
        return BomStatus.READY if self.status == DONE else None


@dataclass(frozen=True, slots=True)
class BomState:
    """A version's BOM status (None: it has no BOM and none is asked for) and its job."""

    status: BomStatus | None
    job: JobState | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a build produced: ``built`` False when there was nothing to build (the version was
    rejected, or is no model); ``record`` writes the new BOM in the transaction that marks the
    job done (None: the BOM is unchanged, nothing to write)."""

    built: bool
    record: Callable[[Session], None] | None = None


class Builder(Protocol):
    def build_job(self, version_id: int) -> Outcome:
        """Build, validate and sign the BOM of a version (nothing is written)."""
        ...


def enqueue(
    session: Session, version_id: int, now: datetime, *, delay: timedelta | None = None
) -> None:
    """Ask, in ``session``'s transaction, for the BOM of ``version_id`` to be built at ``now``
    (+ ``delay``): a new pending job; or the pending one, due at the earlier time, its failed
    attempts forgotten (new reason, new tries); or, while it runs, once more after that build.
    """
    due = now + (delay or timedelta(0))
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(BomJob).values(
        version_id=version_id,
        status=PENDING,
        attempts=0,
        due_at=due,
        again=False,
        claim=None,
        requested_at=now,
        updated_at=now,
        last_error=None,
    )
    running = BomJob.status == RUNNING
    earlier = and_(BomJob.status == PENDING, BomJob.due_at <= stmt.excluded.due_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[BomJob.version_id],
        set_={
            "status": case((running, RUNNING), else_=PENDING),
            "again": case((running, true()), else_=false()),
            "attempts": case((running, BomJob.attempts), else_=0),
            "due_at": case((running | earlier, BomJob.due_at), else_=stmt.excluded.due_at),
            "requested_at": stmt.excluded.requested_at,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.connection().execute(stmt)
    if due <= now:
        session.info[_DUE_NOW] = True


def _scanning(session: Session, version_id: int) -> bool:
    """Whether the version is still ``scanning`` (its job scans it first)."""
    state = session.execute(select(Version.state).where(Version.id == version_id)).scalar()
    return state == "scanning"


def job_state(session: Session, version_id: int) -> JobState | None:
    row = session.execute(
        select(BomJob.status, BomJob.attempts, BomJob.due_at, BomJob.last_error).where(
            BomJob.version_id == version_id
        )
    ).first()
    return None if row is None else JobState(row[0], row[1], aware(row[2]), row[3])


def bom_state(session: Session, version_id: int) -> BomState:
    """A version's BOM status: its job's, or (no job: versions committed before jobs existed)
    ready when a BOM is stored."""
    job = job_state(session, version_id)
    if job is not None:
        return BomState(job.bom_status, job)
    stored = session.execute(
        select(
            exists().where(
                Attestation.version_id == version_id, Attestation.predicate_type == CYCLONEDX_BOM
            )
        )
    ).scalar_one()
    return BomState(BomStatus.READY if stored else None)


def describe(exc: BaseException) -> str:
    """An error as the job keeps it, which readers of the version see: what the BOM's own
    checks say (its content is theirs to read), only the kind of anything else (a database or
    store error may name internals; the log has it all)."""
    if isinstance(exc, AttestError):
        return f"{type(exc).__name__}: {exc}"[:1024]
    return f"{type(exc).__name__} (details in the registry's log)"


@dataclass(frozen=True, slots=True)
class _Claim:
    version_id: int
    token: str
    attempts: int  # this one included


class _LostClaim(Exception):
    """The job is no longer this worker's (its lease ended and another worker took it)."""


class BomJobs:
    """The queue and this replica's worker (see the module docstring).

    ``triggers``: predicate types whose arrival about a pending model asks for its BOM (the
    registry's scan, provenance, evaluation results). The listeners are installed on
    ``sessions`` at once; the worker thread runs between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        builder: Builder,
        *,
        triggers: Collection[str] = (),
        clock: Clock = utcnow,
        lease: timedelta = LEASE,
        max_attempts: int = MAX_ATTEMPTS,
        retry_seconds: float = RETRY_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        name: str | None = None,
    ) -> None:
        if lease <= timedelta(0) or max_attempts < 1 or retry_seconds <= 0 or poll_seconds <= 0:
            raise ValueError("ML-BOM job lease, attempts and intervals must be positive")
        self._sessions = sessions
        self._builder = builder
        self._triggers = frozenset(triggers)
        self._clock = clock
        self._lease = lease
        self._max_attempts = max_attempts
        self._retry = retry_seconds
        self._retry_max = max(retry_max_seconds, retry_seconds)
        self._poll = poll_seconds
        self.name = (name or f"{socket.gethostname()}:{os.getpid()}")[:40]
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        event.listen(sessions, "after_flush", self._flushed)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_rollback", self._rolled_back)

    # -- asking ------------------------------------------------------------------------------

    def _flushed(self, session: Session, _context: UOWTransaction) -> None:
        """New trigger evidence about a pending model in this flush: ask for its BOM, in the
        same transaction."""
        if not self._triggers or session.info.get(NO_BOM_ASK):
            return
        ids = {
            obj.version_id
            for obj in session.new
            if isinstance(obj, Attestation) and obj.predicate_type in self._triggers
        }
        if not ids:
            return
        wanted = session.connection().execute(
            select(Version.id)
            .join(Artifact, Version.artifact_id == Artifact.id)
            .where(
                Version.id.in_(ids),
                Artifact.kind == "model",
                Version.state.in_(("pending", "scanning")),
            )
        )
        now = self._clock()
        for version_id in wanted.scalars():
            enqueue(session, version_id, now)

    def _committed(self, session: Session) -> None:
        if session.info.pop(_DUE_NOW, False):
            self._wake.set()

    @staticmethod
    def _rolled_back(session: Session) -> None:
        session.info.pop(_DUE_NOW, None)

    def state(self, version_id: int) -> JobState | None:
        with self._sessions() as session:
            return job_state(session, version_id)

    # -- the worker --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._loop, daemon=True, name="modelseal-bom-jobs"
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current build (at most ``timeout`` seconds: a longer build
        is left to its lease, and another replica takes the job over)."""
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                busy = self.run_once()
            except Exception as exc:
                log.warning("ML-BOM jobs: %s", exc)
                busy = False
            if not busy:
                self._wake.wait(self._poll)

    def run_once(self) -> bool:
        """Claim one due job and run it; False when none is due (the worker's step)."""
        claim = self._claim()
        if claim is None:
            return False
        self._run(claim)
        return True

    def run_pending(self) -> int:
        """Run due jobs in this thread until none is due; how many ran (tests call this)."""
        ran = 0
        while self.run_once():
            ran += 1
        return ran

    def settle(self, version_id: int, *, timeout: float) -> JobState | None:
        """Run the version's job now, in this thread, when it is pending and not waiting out a
        failed attempt's backoff (however it is due), or held by a worker whose lease ended;
        else wait up to ``timeout`` seconds for the worker that holds it. Returns the job's state
        then (None: the version has no job)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(version_id)
            if state is None or state.status not in (PENDING, RUNNING):
                return state
            if state.status == RUNNING or state.attempts == 0:  # not a failing one's backoff
                claim = self._claim(version_id)  # (running: only once its lease has ended)
                if claim is not None:
                    self._run(claim)
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return state
            time.sleep(min(0.2, left))

    def _claim(self, version_id: int | None = None) -> _Claim | None:
        """Take a due job (``version_id``: that version's, however it is due while pending)."""
        for _ in range(10):  # a job given up on, or (SQLite, elsewhere) a lost race: the next
            now = self._clock()
            with transaction(self._sessions) as session:
                postgres = session.get_bind().dialect.name == "postgresql"
                query = select(BomJob.version_id, BomJob.status, BomJob.attempts, BomJob.due_at)
                if version_id is None:
                    query = query.where(
                        BomJob.status.in_((PENDING, RUNNING)), BomJob.due_at <= now
                    ).order_by(BomJob.due_at)
                else:
                    query = query.where(
                        BomJob.version_id == version_id,
                        (BomJob.status == PENDING)
                        | ((BomJob.status == RUNNING) & (BomJob.due_at <= now)),
                    )
                query = query.limit(1)
                if postgres:
                    query = query.with_for_update(skip_locked=True)
                row = session.execute(query).first()
                if row is None:
                    return None
                vid, status, attempts, due_at = row
                unchanged = (
                    BomJob.version_id == vid,
                    BomJob.status == status,
                    BomJob.due_at == due_at,
                )
                if status == RUNNING:
                    log.warning(
                        "ML-BOM of version %d: its worker stopped (the lease ended); "
                        "taking the job over",
                        vid,
                    )
                scanning = attempts >= self._max_attempts and _scanning(session, vid)
                if attempts >= self._max_attempts and (status == RUNNING or not scanning):
                    # Past the last attempt, its worker stopped: given up on, except a version
                    # being scanned (nothing of it is served meanwhile), which is tried again
                    # later, not at once (whatever killed the worker may do it again).
                    if scanning:
                        error = (
                            f"{attempts} attempts to scan it did not finish (the last "
                            f"one's worker stopped); next in {self._retry_max:.0f} s"
                        )
                    else:
                        error = (f"gave up after {attempts} attempts: the last one never "
                                 "finished (its worker stopped, for instance killed while "
                                 "building)")  # fmt: skip
                    later = now + timedelta(seconds=self._retry_max) if scanning else now
                    session.execute(
                        update(BomJob)
                        .where(*unchanged)
                        .values(
                            status=PENDING if scanning else FAILED,
                            claim=None,
                            again=False,
                            due_at=later,
                            last_error=error,
                            updated_at=now,
                        )
                        .execution_options(synchronize_session=False)
                    )
                    log.error("ML-BOM of version %d: %s", vid, error)
                    continue
                token = f"{self.name}/{uuid.uuid4().hex}"
                moved = session.execute(
                    update(BomJob)
                    .where(*unchanged)
                    .values(
                        status=RUNNING,
                        claim=token,
                        attempts=attempts + 1,
                        again=False,
                        due_at=now + self._lease,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
                if moved == 1:
                    return _Claim(vid, token, attempts + 1)
        return None

    def _run(self, claim: _Claim) -> None:
        started = time.monotonic()
        try:
            with self._heartbeat(claim):
                outcome = self._builder.build_job(claim.version_id)
        except Exception as exc:
            self._failed(claim, exc)
            return
        finally:
            release_memory()  # a BOM or a scan of many files leaves a large freed heap
        try:
            self._finish(claim, outcome)
        except _LostClaim:
            log.warning(
                "ML-BOM of version %d: built, but this worker's lease ended and another "
                "took the job over; this build is not recorded",
                claim.version_id,
            )
            return
        log.info(
            "ML-BOM of version %d: %s in %.1f s",
            claim.version_id,
            "built" if outcome.built else "nothing to build",
            time.monotonic() - started,
        )

    @contextmanager
    def _heartbeat(self, claim: _Claim) -> Iterator[None]:
        """Extend the claim's lease every third of it while the body runs."""
        done = threading.Event()
        interval = self._lease.total_seconds() / 3

        def beat() -> None:
            while not done.wait(interval):
                try:
                    with transaction(self._sessions) as session:
                        held = session.execute(
                            update(BomJob)
                            .where(
                                BomJob.version_id == claim.version_id,
                                BomJob.claim == claim.token,
                                BomJob.status == RUNNING,
                            )
                            .values(due_at=self._clock() + self._lease)
                            .execution_options(synchronize_session=False)
                        ).rowcount  # type: ignore[attr-defined]
                except Exception as exc:  # the next beat tries again; the lease has slack
                    log.warning(
                        "ML-BOM of version %d: extending the lease failed: %s",
                        claim.version_id,
                        exc,
                    )
                    continue
                if held != 1:
                    return  # taken over: finishing will find out, and record nothing

        beating = threading.Thread(target=beat, daemon=True, name="modelseal-bom-lease")
        beating.start()
        try:
            yield
        finally:
            done.set()
            beating.join()

    def _held(self, claim: _Claim) -> tuple[Any, ...]:
        return (
            BomJob.version_id == claim.version_id,
            BomJob.claim == claim.token,
            BomJob.status == RUNNING,
        )

    def _finish(self, claim: _Claim, outcome: Outcome) -> None:
        """Record the BOM and mark the job done, in one transaction, if the claim still holds
        (asked for again meanwhile: pending again, due now)."""
        now = self._clock()
        with transaction(self._sessions) as session:
            # The BOM first: its row locks the version's row (key share) before the job's row is
            # locked, the order an attachment takes them in (the version FOR UPDATE, then the job
            # from its listener); the other order deadlocks with an attachment on PostgreSQL.
            if outcome.record is not None:
                outcome.record(session)
                session.flush()
            moved = session.execute(
                update(BomJob)
                .where(*self._held(claim))
                .values(
                    status=case((BomJob.again, PENDING), else_=DONE if outcome.built else SKIPPED),
                    attempts=case((BomJob.again, 0), else_=BomJob.attempts),
                    again=False,
                    claim=None,
                    due_at=now,
                    last_error=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:
                raise _LostClaim  # (the BOM is rolled back with it)
            if (
                session.execute(
                    select(BomJob.status).where(BomJob.version_id == claim.version_id)
                ).scalar_one()
                == PENDING
            ):
                session.info[_DUE_NOW] = True

    def _failed(self, claim: _Claim, exc: Exception) -> None:
        """Retry later, or give up after the last attempt (asked for again meanwhile: pending
        again, due now, its attempts forgotten). The job of a version still ``scanning`` never
        gives up (a store outage longer than the attempts must not leave the version unscanned
        for good): past the last attempt it is retried every ``retry_max`` seconds."""
        error = describe(exc)
        now = self._clock()
        last = claim.attempts >= self._max_attempts
        delay = min(self._retry_max, self._retry * 2 ** (claim.attempts - 1))
        with transaction(self._sessions) as session:
            give_up = last and not _scanning(session, claim.version_id)
            moved = session.execute(
                update(BomJob)
                .where(*self._held(claim))
                .values(
                    status=case((BomJob.again, PENDING), else_=FAILED if give_up else PENDING),
                    due_at=case(
                        (BomJob.again, now),
                        else_=now if give_up else now + timedelta(seconds=delay),
                    ),
                    attempts=case((BomJob.again, 0), else_=BomJob.attempts),
                    again=False,
                    claim=None,
                    last_error=error,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        where = f"ML-BOM of version {claim.version_id}"
        if moved != 1:
            log.warning("%s: build failed after the lease ended (%s)", where, error, exc_info=exc)
        elif give_up:
            log.error(
                "%s: build failed %d times, giving up: %s",
                where,
                claim.attempts,
                error,
                exc_info=exc,
            )
        elif last:
            log.error(
                "%s: scanning it failed %d times; nothing of it is served until it is "
                "scanned, next attempt in %.0f s: %s",
                where,
                claim.attempts,
                delay,
                error,
                exc_info=exc,
            )
        else:
            log.warning(
                "%s: build failed (attempt %d of %d), next in %.0f s: %s",
                where,
                claim.attempts,
                self._max_attempts,
                delay,
                error,
                exc_info=exc,
            )
