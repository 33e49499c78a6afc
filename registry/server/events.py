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
unless ``webhook_allow_private`` is set. Redirects are never followed.

Delivery runs in one background thread with a bounded queue: a slow receiver never slows requests
down; when the queue is full the event is dropped and counted. Metrics are per replica, as
Prometheus expects (each replica is scraped).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, generate_latest

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Modelseal-Signature"
EVENT_HEADER = "X-Modelseal-Event"
QUEUE_SIZE = 1000
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0


class Event(StrEnum):
    RELEASE_REFUSED = "release_refused"
    VERSION_REJECTED = "version_rejected"
    VERSION_REVOKED = "version_revoked"
    VERIFICATION_FAILURE = "verification_failure"
    AUTH_FAILURE_BURST = "auth_failure_burst"


class WebhookTargetError(ValueError):
    """A webhook URL that may not be called (bad shape, or a non-public address)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    https: bool
    host: str
    port: int
    path: str


def parse_target(url: str, *, allow_private: bool) -> Target:
    """Check a webhook URL's shape (and a literal address); names are checked at delivery."""
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
                f"webhook {url!r}: localhost is refused (set webhook_allow_private to allow)"
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
            f"webhook {url!r}: {address} is a {kind} address (set webhook_allow_private to allow)"
        )


def resolve(target: Target, *, allow_private: bool) -> str:
    """Resolve the target and return one vetted address; every resolved address must pass."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookTargetError(f"webhook {target.url!r}: cannot resolve: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise WebhookTargetError(f"webhook {target.url!r}: no address")
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
            "modelseal_webhook_deliveries", "Webhook deliveries by outcome.", ["outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.pull_refusals = Counter(
            "modelseal_pull_refusals",
            "Pulls a client refused for a user's mistake (a version not released yet), not "
            "for failed verification: no security event.",
            ["reason"],
            registry=self.registry,
        )
        for event in Event:
            self.events.labels(event=str(event))
        for outcome in ("delivered", "failed", "dropped", "refused"):
            self.deliveries.labels(outcome=outcome)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SecurityEvents:
    """Counts events, detects auth-failure bursts, and hands events to the webhook thread."""

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
    ) -> None:
        self.metrics = Metrics()
        self._targets = [parse_target(url, allow_private=allow_private) for url in webhooks]
        if self._targets and not secret:
            raise WebhookTargetError("webhooks need a webhook_secret to sign their bodies")
        self._secret = secret or b""
        self._allow_private = allow_private
        self._burst_count = burst_count
        self._burst_window = burst_window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUE_SIZE)
        self._context = ssl.create_default_context(cafile=ca_bundle)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._targets and self._thread is None:
            self._thread = threading.Thread(target=self._deliver_loop, daemon=True,
                                            name="modelseal-webhooks")  # fmt: skip
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def emit(self, event: Event, **fields: Any) -> None:
        self.metrics.events.labels(event=str(event)).inc()
        log.warning("security event %s: %s", event, fields)
        if not self._targets:
            return
        body = json.dumps(
            {"event": str(event), "at": datetime.now(UTC).isoformat(), **fields},
            sort_keys=True,
            default=str,
        ).encode()
        try:
            self._queue.put_nowait((str(event), body))
        except queue.Full:
            self.metrics.deliveries.labels(outcome="dropped").inc()

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

    def _deliver_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, body = item
            for target in self._targets:
                outcome = self._deliver(target, event, body)
                self.metrics.deliveries.labels(outcome=outcome).inc()

    def _deliver(self, target: Target, event: str, body: bytes) -> str:
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2**attempt)
            try:
                address = resolve(target, allow_private=self._allow_private)
            except WebhookTargetError as exc:
                log.error("%s", exc)
                return "refused"
            conn: http.client.HTTPConnection = (
                _PinnedHTTPSConnection(address, target, self._context)
                if target.https
                else _PinnedHTTPConnection(address, target)
            )
            try:
                conn.request(
                    "POST",
                    target.path,
                    body=body,
                    headers={
                        "Content-Type": "application/json",
                        SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
                        EVENT_HEADER: event,
                        "User-Agent": "modelseal-webhook",
                    },
                )
                status = conn.getresponse().status
            except (OSError, http.client.HTTPException) as exc:
                log.warning("webhook %s: %s (attempt %d)", target.url, exc, attempt + 1)
                continue
            finally:
                conn.close()
            if 200 <= status < 300:
                return "delivered"
            log.warning("webhook %s answered %d (attempt %d)", target.url, status, attempt + 1)
            if 400 <= status < 500 and status != 429:
                return "failed"
        return "failed"
