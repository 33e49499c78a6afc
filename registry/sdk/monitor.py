"""Monitoring the transparency log (``modelseal log monitor``): every event since a checkpoint,
each proven in the newest one.

:func:`monitor` verifies the newest checkpoint as pulls do (:func:`registry.sdk.logcheck.
check_checkpoint`: the log key pinned on first contact, freshness, required witnesses, extending
the checkpoint this client remembers), verifies that it extends the caller's starting checkpoint
(``--since``, or the state file's, signed by the same pinned key) with a consistency proof, then
reads every entry after it (``GET /v1/log/entries``, paged) and checks each entry's inclusion
proof in the newest checkpoint before it is described (from the empty log: the tree rebuilt from
all the entries must have the checkpoint's root, before any is described). Nothing is reported
as an event unless it is proven; the caller saves the new checkpoint (:func:`save_state`) only
after all of it verified.

Failures are :class:`~registry.errors.ResponseVerificationError`, naming the cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attest.atomic import write_atomic
from registry.errors import ResponseVerificationError
from registry.sdk import logcheck
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    from attest.note import Checkpoint
    from registry.sdk.client import RegistryClient

PAGE = 1000  # entries per GET /v1/log/entries (the server's limit)
WHERE = "log monitor"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One proven entry of the log and its one-line description."""

    index: int
    entry: dict[str, Any]
    line: str


@dataclass(frozen=True, slots=True)
class MonitorResult:
    """The newest checkpoint (its signed note as served), where the run started, the events."""

    checkpoint: Checkpoint
    note: str
    since: Checkpoint | None
    events: list[LogEvent]


def describe(entry: dict[str, Any]) -> str:
    """One line saying who did what (``entry`` a log entry, docs/transparency-log.md)."""
    kind = entry.get("type")
    subject = entry.get("subject")
    actor = entry.get("actor")
    role = f" ({entry['role']})" if entry.get("role") else ""
    by = f"by {actor}{role}"
    if kind == "release":
        return (
            f"release {subject} {by} under policy revision {entry.get('policy_revision')} "
            f"(policy sha256 {str(entry.get('policy_sha256'))[:16]}…, "
            f"root {entry.get('root_digest')})"
        )
    if kind == "revocation":
        cause = f", cascaded from {entry.get('built_on')}" if entry.get("built_on") else ""
        return f"revocation {subject} {by}: {entry.get('reason')!r}{cause}"
    if kind == "rejection":
        return f"rejection {subject} by {entry.get('by')} {actor}: {entry.get('reason')!r}"
    if kind == "alias":
        move = "rollback" if entry.get("older") is True else "move"
        return (
            f"alias {move} {subject}: {entry.get('from')} -> {entry.get('to')} {by} "
            f"(root {entry.get('to_root_digest')})"
        )
    if kind == "policy":
        return (
            f"policy {entry.get('namespace')} revision {entry.get('revision')} {by} "
            f"(sha256 {str(entry.get('sha256'))[:16]}…)"
        )
    if kind == "identity":
        who = entry.get("fingerprint") or entry.get("identity") or entry.get("identity_regex")
        return (
            f"identity {entry.get('name')} {entry.get('change')} ({entry.get('kind')}: {who}) {by}"
        )
    if kind == "token":
        scope = f" namespace {entry['namespace']}" if entry.get("namespace") else ""
        return (
            f"token {entry.get('name')} ({entry.get('token_id')}) {entry.get('change')}: role "
            f"{entry.get('role')}{scope}, expires {entry.get('expires_at')}, by {actor}"
        )
    if kind == "registry_key":
        return f"registry key {entry.get('change')} {entry.get('fingerprint')} {by}"
    return f"{kind} {subject} {by}"


def load_state(path: Path, url: str) -> str | None:
    """The signed checkpoint saved in ``path`` for the registry at ``url`` (None: no file).

    Raises:
        ResponseVerificationError: unreadable, or saved for another registry.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ResponseVerificationError(f"{WHERE}: the state file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), str):
        raise ResponseVerificationError(f"{WHERE}: the state file {path} holds no checkpoint")
    if data.get("url") != url:
        raise ResponseVerificationError(
            f"{WHERE}: the state file {path} is of the registry at {data.get('url')}, not {url}"
        )
    return str(data["checkpoint"])


def save_state(path: Path, url: str, note_text: str) -> None:
    """Save the signed checkpoint atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"url": url, "checkpoint": note_text}) + "\n", mode=0o644)


def monitor(
    client: RegistryClient,
    *,
    since: str | None = None,
    pins: PinStore | None = None,
    on_event: Callable[[LogEvent], None] | None = None,
) -> MonitorResult:
    """Verify the newest checkpoint, its consistency with ``since`` (a signed checkpoint; None:
    from the empty log), and every entry after ``since`` (inclusion in the newest checkpoint);
    ``on_event`` is told of each as it is proven. The client's remembered checkpoint is not
    advanced (pulls do that).

    Raises:
        ResponseVerificationError: naming the cause (key, age, witnesses, rollback or fork,
            inconsistency, an entry not in the tree, a malformed answer).
    """
    from attest.errors import AttestError
    from attest.note import check_extends, verify_checkpoint
    from attest.tlog import MemoryTree, ProofError, leaf_hash, verify_inclusion

    pins = pins or PinStore()
    needs = logcheck.requirements(client)
    served = logcheck.latest_checkpoint(client)
    new = logcheck.check_checkpoint(client, served, pins, needs, where=WHERE, remember=False)
    old: Checkpoint | None = None
    if since is not None:
        origin, verifier = logcheck.log_verifier(client, pins)
        try:
            old = verify_checkpoint(
                since, [verifier], origin=origin, max_future_skew=logcheck.LOG_CLOCK_SKEW
            ).checkpoint
        except AttestError as exc:
            raise ResponseVerificationError(
                f"{WHERE}: the starting checkpoint does not verify with the pinned log key "
                f"{verifier.vkey}: {exc}",
                cause="log-checkpoint",
            ) from None
        proof: list[bytes] = []
        if old.size < new.size:
            answer = _get(client, "/v1/log/proof/consistency", old=old.size, new=new.size)
            proof = [_b64(h) for h in _field(answer, "hashes", list)]
        try:
            check_extends(old, new, proof)
        except AttestError as exc:
            raise ResponseVerificationError(
                f"{WHERE}: {exc}: the registry's log was rolled back or forked",
                cause="log-rollback",
                seen=old.describe(),
                now=new.describe(),
            ) from None
    # From the empty log, every entry is read anyway: rebuilding the tree from them and comparing
    # its root proves them all at once. After a start, each new entry's inclusion proof does.
    rebuild = MemoryTree() if old is None else None
    events: list[LogEvent] = []
    index = old.size if old is not None else 0
    while index < new.size:
        end = min(new.size, index + PAGE)
        page = _get(client, "/v1/log/entries", start=index, end=end)
        items = _field(page, "entries", list)
        if not items:
            raise ResponseVerificationError(f"{WHERE}: entries from {index} are missing")
        for item in items:
            if not isinstance(item, dict) or _int(item.get("index")) != index or index >= end:
                raise ResponseVerificationError(f"{WHERE}: a malformed page of entries at {index}")
            data = _b64(item.get("entry"))
            if rebuild is not None:
                rebuild.append(data)
            else:
                answer = _get(client, "/v1/log/proof/inclusion", index=index, size=new.size)
                hashes = [_b64(h) for h in _field(answer, "hashes", list)]
                try:
                    verify_inclusion(index, new.size, leaf_hash(data), hashes, new.root_hash)
                except ProofError as exc:
                    raise ResponseVerificationError(
                        f"{WHERE}: log entry {index} is not in checkpoint {new.describe()} (an "
                        f"entry altered or substituted): {exc}",
                        cause="log-inclusion",
                    ) from None
            try:
                entry = json.loads(data)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                raise ResponseVerificationError(f"{WHERE}: log entry {index} is not a JSON object")
            event = LogEvent(index, entry, describe(entry))
            events.append(event)
            if on_event is not None and rebuild is None:
                on_event(event)
            index += 1
    if rebuild is not None:
        if rebuild.root(new.size) != new.root_hash:
            raise ResponseVerificationError(
                f"{WHERE}: the log's {new.size} entries are not in checkpoint {new.describe()} "
                "(an entry altered or substituted): their tree has another root",
                cause="log-inclusion",
            )
        if on_event is not None:
            for event in events:
                on_event(event)
    return MonitorResult(new, served, old, events)


def _get(client: RegistryClient, path: str, **params: int) -> dict[str, Any]:
    answer = client._request("GET", path, params=params).json()
    if not isinstance(answer, dict):
        raise ResponseVerificationError(f"{WHERE}: a malformed answer from {path}")
    return answer


def _field(answer: dict[str, Any], key: str, kind: type) -> Any:
    value = answer.get(key)
    if not isinstance(value, kind):
        raise ResponseVerificationError(f"{WHERE}: a malformed answer (no {key!r})")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _b64(value: Any) -> bytes:
    try:
        return logcheck.b64_field(value)
    except ValueError:
        raise ResponseVerificationError(f"{WHERE}: a malformed base64 value in an answer") from None
