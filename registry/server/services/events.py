"""Security events: Prometheus counters and HMAC-signed webhooks.

Events: a release the gate refused, an explicit rejection, a revocation, a verification failure
(evidence refused at upload, or a failed verified pull reported by the SDK), and bursts of
authentication failures from one client address. Each goes to the process's metrics and, when
webhooks are configured, is POSTed to every target as JSON signed with HMAC-SHA256:

    X-Modelseal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

Receivers recompute the HMAC over the timestamp and the raw body and reject stale timestamps.

Targets are vetted twice: when the service starts (URL shape; literal addresses) and before every
delivery, where the host name is resolved and the connection goes to the vetted address itself, so
a name that re-resolves to a private address later (DNS rebinding) cannot redirect a delivery.
Loopback, private, link-local (cloud metadata), shared, multicast and reserved addresses are refused
unless ``MODELSEAL_WEBHOOK_ALLOW_PRIVATE`` is set. Redirects are never followed.

Events go through an outbox in the database (``event_outbox``), one row per webhook target: an
event caused by a change is written by :func:`stage` in the transaction of that change (next to
its audit entry), so it exists if and only if the change committed; an event about a refusal (no
change) is written in a transaction of its own before the refusal is answered. Each replica runs
a worker thread that claims due rows and delivers them: on PostgreSQL with ``SELECT … FOR UPDATE
SKIP LOCKED``, holding the row lock through the attempt, so concurrent workers never take the same
row and a replica that dies mid-delivery releases it with its connection; on SQLite (one process)
a row is claimed by moving its due time past the attempt, and the write lock is not held while
the receiver is called. A failed attempt is retried with exponential backoff
(``webhook_retry_seconds`` doubling, at most ``webhook_retry_max_seconds``) up to
``webhook_max_attempts``; then, or at once for a permanent refusal (a 4xx other than 429, a
target address that is not allowed), the row is marked ``dead`` and kept, logged and counted.

Delivery is at least once: a receiver may see an event again (a replica that died after the
receiver answered but before it recorded the delivery). Every body carries ``event_id`` (also in
the ``X-Modelseal-Event-Id`` header), the same on every attempt, so receivers can drop repeats.
A slow receiver never slows requests down. Counters are per replica, as Prometheus expects (each
replica is scraped); ``modelseal_webhook_outbox`` shows the rows of every replica by status.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import ConfigurationError
from registry.server.db import transaction
from registry.server.models import EventOutbox

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelseal-Signature"
EVENT_HEADER = "X-Modelseal-Event"
EVENT_ID_HEADER = "X-Modelseal-Event-Id"
TIMEOUT_SECONDS = 5.0
#: Delivered rows are deleted after this long; dead rows are kept.
DELIVERED_RETENTION = timedelta(days=7)
#: Dead rows (given up on) are kept this long for operators to look at, then deleted.
DEAD_RETENTION = timedelta(days=30)
#: A client's report repeated (same reporter, same reference) within this many seconds is
#: counted but sends no second webhook: a token cannot fill the outbox or flood the receivers.
REPORT_REPEAT_SECONDS = 60.0
#: How often a worker prunes delivered rows and counts the outbox for the gauge.
MAINTENANCE_SECONDS = 30.0
#: SQLite: how long a claimed row is left alone while its attempt runs (longer than one attempt).
SQLITE_LEASE = timedelta(seconds=10 * TIMEOUT_SECONDS)
MAX_URL_LENGTH = 2048  # event_outbox.target


class Event(StrEnum):
    RELEASE_REFUSED = "release_refused"
    VERSION_REJECTED = "version_rejected"
    VERSION_REVOKED = "version_revoked"
    VERIFICATION_FAILURE = "verification_failure"
    AUTH_FAILURE_BURST = "auth_failure_burst"


class WebhookTargetError(ConfigurationError):
    """A webhook URL that may not be called (bad shape, or a non-public address): at start-up
    the service refuses to run with it; at delivery the attempt is dropped."""


class UnresolvableTargetError(Exception):
    """A webhook host name that did not resolve (this time): a transient failure at delivery, not
    a misconfiguration (names are resolved only when a delivery is attempted), so the attempt is
    retried; deliberately outside :class:`WebhookTargetError`."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    https: bool
    host: str
    port: int
    path: str


def parse_target(url: str, *, allow_private: bool) -> Target:
    """Check a webhook URL's shape (and a literal address); names are checked at delivery."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookTargetError(f"webhook {url[:64]!r}…: longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookTargetError(f"webhook {url!r}: needs an http(s)://host/... URL")
    if parts.username or parts.password:
        raise WebhookTargetError(f"webhook {url!r}: credentials in the URL are not allowed")
    target = Target(
        url=url,
        https=parts.scheme == "https",
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        if target.host.rstrip(".").lower() == "localhost" and not allow_private:
            raise WebhookTargetError(
                f"webhook {url!r}: localhost is refused "
                "(set MODELSEAL_WEBHOOK_ALLOW_PRIVATE=true to allow)"
            ) from None
    else:
        check_address(literal, url, allow_private=allow_private)
    return target


def check_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, url: str, *, allow_private: bool
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast or address.is_unspecified:
        raise WebhookTargetError(f"webhook {url!r}: {address} is not a unicast address")
    if allow_private:
        return
    if not address.is_global or address.is_reserved:
        kind = (
            "loopback"
            if address.is_loopback
            else "link-local"
            if address.is_link_local
            else "private or reserved"
        )
        raise WebhookTargetError(
            f"webhook {url!r}: {address} is a {kind} address "
            "(set MODELSEAL_WEBHOOK_ALLOW_PRIVATE=true to allow)"
        )


def resolve(target: Target, *, allow_private: bool) -> str:
    """Resolve the target and return one vetted address; every resolved address must pass."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnresolvableTargetError(f"webhook {target.url!r}: cannot resolve: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnresolvableTargetError(f"webhook {target.url!r}: no address")
    for address in addresses:
        check_address(ipaddress.ip_address(address), target.url, allow_private=allow_private)
    return addresses[0]


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, body: bytes, header: str, *, max_age: float = 300) -> bool:
    """Receiver side (documented, and used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > max_age:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, target: Target) -> None:
        super().__init__(target.host, target.port, timeout=TIMEOUT_SECONDS)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, target: Target, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=TIMEOUT_SECONDS, context=context)
        self._address = address
        self._ssl_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self.host)


class Metrics:
    """The process's Prometheus registry (one per app, so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "modelseal_security_events", "Security events by kind.", ["event"],
            registry=self.registry,
        )  # fmt: skip
        self.auth_failures = Counter(
            "modelseal_auth_failures", "Requests refused for a missing or bad token.",
            registry=self.registry,
        )  # fmt: skip
        self.denied = Counter(
            "modelseal_permission_denied", "Requests refused by the role matrix.",
            registry=self.registry,
        )  # fmt: skip
        self.deliveries = Counter(
            "modelseal_webhook_deliveries",
            "Webhook deliveries by outcome: delivered; retried (an attempt failed, another is "
            "due); failed and refused (given up, the row is dead: after the last attempt or a "
            "permanent error; refused: the target's address is not allowed); dropped (the "
            "event could not be written to the outbox).",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "modelseal_webhook_outbox",
            "Rows of the webhook outbox (every replica's) by status, as last counted.",
            ["status"],
            registry=self.registry,
        )
        self.pull_refusals = Counter(
            "modelseal_pull_refusals",
            "Pulls a client refused for a user's mistake (a version not released yet), not "
            "for failed verification: no security event.",
            ["reason"],
            registry=self.registry,
        )
        for kind in Event:
            self.events.labels(event=str(kind))
        for outcome in ("delivered", "retried", "failed", "dropped", "refused"):
            self.deliveries.labels(outcome=outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


#: ``Session.info`` keys: the SecurityEvents a session factory belongs to, and the events a
#: session's current transaction staged (counted and logged once it commits).
_HUB = "modelseal.security_events"
_STAGED = "modelseal.staged_events"


def stage(session: Session, kind: Event, **fields: Any) -> None:
    """Record a security event in ``session``'s transaction: its outbox rows are written now
    and it is counted and logged when the transaction commits; if it rolls back, the event never
    happened. Call it inside the unit of work of the change that causes the event.

    A session whose factory has no :class:`SecurityEvents` (services built without an app, as
    some tests do) records nothing."""
    hub = session.info.get(_HUB)
    if isinstance(hub, SecurityEvents):
        hub.stage(session, kind, fields)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    event_id: str
    event: str
    target: str
    body: bytes
    attempts: int


class SecurityEvents:
    """Counts events, detects auth-failure bursts, writes events to the outbox and delivers it.

    ``sessions`` is the app's session factory: events staged in its sessions are counted when
    they commit, and the outbox is read and written through it. Webhooks need it."""

    def __init__(
        self,
        *,
        webhooks: Sequence[str] = (),
        secret: bytes | None = None,
        allow_private: bool = False,
        burst_count: int = 20,
        burst_window: float = 60.0,
        ca_bundle: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sessions: sessionmaker[Session] | None = None,
        max_attempts: int = 12,
        retry_seconds: float = 2.0,
        retry_max_seconds: float = 900.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.metrics = Metrics()
        self._targets = {url: parse_target(url, allow_private=allow_private) for url in webhooks}
        if self._targets and not secret:
            raise WebhookTargetError("webhooks need MODELSEAL_WEBHOOK_SECRET to sign their bodies")
        if self._targets and sessions is None:
            raise WebhookTargetError("webhooks need the database (their outbox)")
        if max_attempts < 1 or retry_seconds <= 0 or retry_max_seconds <= 0 or poll_seconds <= 0:
            raise ConfigurationError("webhook attempts and intervals must be positive")
        self._secret = secret or b""
        self._allow_private = allow_private
        self._burst_count = burst_count
        self._burst_window = burst_window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._reports: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self._context = ssl.create_default_context(cafile=ca_bundle)
        self._sessions = sessions
        self._max_attempts = max_attempts
        self._retry = retry_seconds
        self._retry_max = retry_max_seconds
        self._poll = poll_seconds
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        if sessions is not None:
            sessions.configure(info={_HUB: self})
            event.listen(sessions, "after_commit", self._committed)
            event.listen(sessions, "after_rollback", self._rolled_back)

    # -- recording ---------------------------------------------------------------------------

    def stage(self, session: Session, kind: Event, fields: dict[str, Any]) -> None:
        """See :func:`stage`."""
        if self._targets:
            now = datetime.now(UTC)
            event_id = str(uuid.uuid4())
            body = json.dumps(
                {"event": str(kind), "at": now.isoformat(), **fields, "event_id": event_id},
                sort_keys=True,
                default=str,
            ).encode()
            session.execute(
                insert(EventOutbox),
                [
                    {"event_id": event_id, "event": str(kind), "target": url, "body": body,
                     "status": "pending", "attempts": 0, "next_attempt_at": now,
                     "created_at": now, "updated_at": now, "last_error": None}
                    for url in self._targets
                ],
            )  # fmt: skip
        session.info.setdefault(_STAGED, []).append((kind, fields))

    def emit(self, kind: Event, **fields: Any) -> None:
        """An event about something that changed nothing (a refusal, a report, an auth-failure
        burst): written in a transaction of its own. Raises the database's error when the outbox
        cannot be written (the caller answers 503, or see :meth:`emit_or_drop`)."""
        if self._sessions is None or not self._targets or self._repeated(kind, fields):
            self._count(kind, fields)
            return
        with transaction(self._sessions) as session:
            self.stage(session, kind, fields)

    def _repeated(self, kind: Event, fields: dict[str, Any]) -> bool:
        """Whether this is a client's report it already made within REPORT_REPEAT_SECONDS."""
        if kind is not Event.VERIFICATION_FAILURE or fields.get("source") != "client pull":
            return False
        key = (str(fields.get("actor")), str(fields.get("reference")))
        now = self._clock()
        with self._lock:
            last = self._reports.pop(key, None)
            repeated = last is not None and now - last < REPORT_REPEAT_SECONDS
            self._reports[key] = last if repeated and last is not None else now
            while len(self._reports) > 10_000:
                self._reports.popitem(last=False)
        return repeated

    def emit_or_drop(self, kind: Event, **fields: Any) -> None:
        """:meth:`emit` for callers already answering an error: a failure is logged and counted
        (``dropped``), not raised."""
        try:
            self.emit(kind, **fields)
        except Exception as exc:
            self._count(kind, fields)
            self.metrics.deliveries.labels(outcome="dropped").inc()
            log.error("security event %s not written to the outbox (%s): %s", kind, exc, fields)

    def _committed(self, session: Session) -> None:
        staged = session.info.pop(_STAGED, None)
        if staged:
            for kind, fields in staged:
                self._count(kind, fields)
            self._wake.set()

    def _rolled_back(self, session: Session) -> None:
        session.info.pop(_STAGED, None)

    def _count(self, kind: Event, fields: dict[str, Any]) -> None:
        self.metrics.events.labels(event=str(kind)).inc()
        log.warning("security event %s: %s", kind, fields)

    def auth_failure(self, client: str) -> None:
        """Count a 401; one ``auth_failure_burst`` event per window of ``burst_count`` failures."""
        self.metrics.auth_failures.inc()
        now = self._clock()
        with self._lock:
            times = self._failures.pop(client, None) or deque()
            while times and now - times[0] > self._burst_window:
                times.popleft()
            times.append(now)
            burst = len(times) >= self._burst_count
            if burst:
                times.clear()  # next event only after another full burst
            self._failures[client] = times
            while len(self._failures) > 10_000:
                self._failures.popitem(last=False)
        if burst:
            self.emit(Event.AUTH_FAILURE_BURST, client=client, failures=self._burst_count,
                      window_seconds=self._burst_window)  # fmt: skip

    def permission_denied(self) -> None:
        self.metrics.denied.inc()

    # -- delivery ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._targets and self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._deliver_loop, daemon=True,
                                            name="modelseal-webhooks")  # fmt: skip
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current attempt; undelivered rows stay in the outbox."""
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _deliver_loop(self) -> None:
        maintained = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                busy = self.deliver_next()
            except Exception as exc:
                log.warning("webhook outbox: %s", exc)
                busy = False
            if time.monotonic() - maintained >= MAINTENANCE_SECONDS:
                maintained = time.monotonic()
                try:
                    self.maintain()
                except Exception as exc:
                    log.warning("webhook outbox maintenance: %s", exc)
            if not busy:
                self._wake.wait(self._poll)

    def deliver_next(self) -> bool:
        """Claim one due row for a target of this replica and attempt it; False when none is
        due. (The worker's step; tests call it directly.)"""
        if not self._targets or self._sessions is None:
            return False
        with transaction(self._sessions) as session:
            postgres = session.get_bind().dialect.name == "postgresql"
            query = (
                select(EventOutbox)
                .where(
                    EventOutbox.status == "pending",
                    EventOutbox.next_attempt_at <= datetime.now(UTC),
                    EventOutbox.target.in_(list(self._targets)),
                )
                .order_by(EventOutbox.id)
                .limit(1)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True)
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                return False
            claimed = _Claimed(row.id, row.event_id, row.event, row.target, bytes(row.body),
                               row.attempts)  # fmt: skip
            if postgres:  # the row lock is held through the attempt; released with the connection
                outcome = self._record(session, claimed, self._attempt(claimed))
            else:
                row.next_attempt_at = datetime.now(UTC) + SQLITE_LEASE
        if not postgres:  # SQLite: never hold the write lock while a receiver is called
            result = self._attempt(claimed)
            with transaction(self._sessions) as session:
                outcome = self._record(session, claimed, result)
        self.metrics.deliveries.labels(outcome=outcome).inc()  # once recorded
        return True

    def _attempt(self, row: _Claimed) -> tuple[str, str | None]:
        """One POST: ``(delivered | retry | failed | refused, error)``."""
        target = self._targets[row.target]
        try:
            address = resolve(target, allow_private=self._allow_private)
        except UnresolvableTargetError as exc:
            return "retry", str(exc)
        except WebhookTargetError as exc:  # the name resolved to an address it may not call
            return "refused", str(exc)
        conn: http.client.HTTPConnection = (
            _PinnedHTTPSConnection(address, target, self._context)
            if target.https
            else _PinnedHTTPConnection(address, target)
        )
        try:
            conn.request(
                "POST",
                target.path,
                body=row.body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self._secret, row.body, int(time.time())),
                    EVENT_HEADER: row.event,
                    EVENT_ID_HEADER: row.event_id,
                    "User-Agent": "modelseal-webhook",
                },
            )
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return "retry", f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        if 200 <= status < 300:
            return "delivered", None
        if 400 <= status < 500 and status != 429:
            return "failed", f"answered {status}"
        return "retry", f"answered {status}"

    def _record(self, session: Session, row: _Claimed, result: tuple[str, str | None]) -> str:
        """Write an attempt's result to the row; returns the ``deliveries`` outcome."""
        outcome, error = result
        attempts = row.attempts + 1
        now = datetime.now(UTC)
        values: dict[str, Any] = {"attempts": attempts, "updated_at": now,
                                  "last_error": error[:512] if error else None}  # fmt: skip
        where = f"webhook {row.target} event {row.event} {row.event_id}"
        if outcome == "delivered":
            values["status"] = "delivered"
        elif outcome == "retry" and attempts < self._max_attempts:
            delay = min(self._retry_max, self._retry * 2 ** (attempts - 1))
            values["next_attempt_at"] = now + timedelta(seconds=delay)
            outcome = "retried"
            log.warning("%s: attempt %d failed (%s); next in %.1f s", where, attempts, error,
                        delay)  # fmt: skip
        else:
            values["status"] = "dead"
            outcome = "failed" if outcome == "retry" else outcome
            log.error("%s is dead after %d attempt(s): %s", where, attempts, error)
        session.execute(update(EventOutbox).where(EventOutbox.id == row.id).values(**values))
        return outcome

    def maintain(self) -> dict[str, int]:
        """Delete delivered and dead rows past their retention and count the outbox by status (the
        ``modelseal_webhook_outbox`` gauge)."""
        if self._sessions is None:
            return {}
        with transaction(self._sessions) as session:
            now = datetime.now(UTC)
            for status, kept in (("delivered", DELIVERED_RETENTION), ("dead", DEAD_RETENTION)):
                session.execute(
                    delete(EventOutbox).where(
                        EventOutbox.status == status, EventOutbox.updated_at < now - kept
                    )
                )
            counts = {"pending": 0, "delivered": 0, "dead": 0}
            for status, count in session.execute(
                select(EventOutbox.status, func.count()).group_by(EventOutbox.status)
            ):
                counts[status] = count
        for status, count in counts.items():
            self.metrics.outbox.labels(status=status).set(count)
        return counts
