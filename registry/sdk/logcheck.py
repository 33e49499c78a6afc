"""What a client checks of the registry's transparency log (docs/transparency-log.md, "What
clients check") before it believes a version's status or an alias.

    log_verifier        the log's origin and note key: pinned per registry URL on first contact
                        (beside the registry key, :mod:`registry.sdk.pins`); another key or
                        origin later refuses, naming both
    check_checkpoint    a signed checkpoint: the pinned key and origin, no older than the
                        freshness window (``log_max_age``), not from the future, cosigned by the
                        required witnesses, and extending the newest checkpoint remembered for
                        this registry (a consistency proof; smaller, forked, inconsistent or
                        older-timestamped trees are refused naming both); remembered only after
    proven_entry        an entry, its inclusion proof and the checkpoint covering it
    check_version       a version's newest status event: a release naming this version, its
                        root digest and the SHA-256 of a registry-signed release bundle the pull
                        verified; a revocation refuses; none logged refuses (fail closed)
    check_alias         an alias's newest logged move names the version the alias resolves to;
                        a logged rollback (``older``) is reported with who made it
    verify_log          ``audit verify``: the newest checkpoint, and every entry rebuilt into
                        its root (what a monitor does)

Failures are :class:`~registry.errors.ResponseVerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import NotFoundError, ResponseVerificationError
from registry.sdk.pins import PinStore

if TYPE_CHECKING:
    from attest.note import Checkpoint, NoteVerifier
    from registry.sdk.client import RegistryClient
    from registry.wire import VersionPublic

#: How old the log's signed checkpoint may be (``--max-age``, ``MODELSEAL_LOG_MAX_AGE``): the
#: registry re-signs it every few minutes, so an older one is a frozen view.
DEFAULT_LOG_MAX_AGE = 24 * 3600.0
#: How far in the future a checkpoint or cosignature may be dated (clock skew).
LOG_CLOCK_SKEW = 60


@dataclass(frozen=True, slots=True)
class LogRequirements:
    """What the caller requires of the log's checkpoints."""

    max_age: float = DEFAULT_LOG_MAX_AGE
    witnesses: tuple[NoteVerifier, ...] = ()
    witness_threshold: int = 0


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """A log entry proven included in a verified checkpoint."""

    index: int
    data: bytes
    entry: dict[str, Any]
    checkpoint: Checkpoint


def load_witness(spec: str) -> NoteVerifier:
    """A witness from ``NAME=FILE``: FILE holds its vkey (``NAME+<id>+<base64>``, type 0x04
    cosignature key) or its Ed25519 public key (PEM).

    Raises:
        ValueError: not NAME=FILE, unreadable, or not a witness key named NAME.
    """
    from attest.errors import AttestError
    from attest.note import SIG_COSIGNATURE_V1, NoteVerifier

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--witness {spec!r}: expected NAME=KEYFILE")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"--witness {name}: cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in raw:
            return NoteVerifier.from_public_pem(name, raw, SIG_COSIGNATURE_V1)
        verifier = NoteVerifier.from_vkey(raw.decode("ascii", "replace").strip())
    except AttestError as exc:
        raise ValueError(f"--witness {name}: {path}: {exc}") from None
    if verifier.name != name or verifier.sig_type != SIG_COSIGNATURE_V1:
        raise ValueError(
            f"--witness {name}: {path} holds the key of {verifier.name!r} "
            f"(type 0x{verifier.sig_type:02x}), not a cosignature key named {name!r}"
        )
    return verifier


def settings_from_env(kwargs: dict[str, Any]) -> None:
    """``log_max_age``, ``witnesses`` and ``witness_threshold`` from ``MODELSEAL_LOG_MAX_AGE``
    (seconds), ``MODELSEAL_WITNESSES`` (``NAME=KEYFILE`` separated by commas) and
    ``MODELSEAL_WITNESS_THRESHOLD``, unless given in ``kwargs``.

    Raises:
        ValueError: a malformed setting.
    """
    max_age = os.environ.get("MODELSEAL_LOG_MAX_AGE")
    if max_age:
        try:
            kwargs.setdefault("log_max_age", float(max_age))
        except ValueError:
            raise ValueError(
                f"MODELSEAL_LOG_MAX_AGE must be a number of seconds, not {max_age!r}"
            ) from None
    witnesses = os.environ.get("MODELSEAL_WITNESSES")
    if witnesses and "witnesses" not in kwargs:
        kwargs["witnesses"] = [load_witness(w.strip()) for w in witnesses.split(",") if w.strip()]
    threshold = os.environ.get("MODELSEAL_WITNESS_THRESHOLD")
    if threshold:
        if not threshold.isdigit():
            raise ValueError(f"MODELSEAL_WITNESS_THRESHOLD must be a count, not {threshold!r}")
        kwargs.setdefault("witness_threshold", int(threshold))


def check_requirements(
    max_age: float, witnesses: Sequence[NoteVerifier], threshold: int | None
) -> int:
    """The witness threshold to apply (default: every named witness), after checking the
    settings.

    Raises:
        ValueError: a bad window, or a threshold beyond the witnesses named.
    """
    import math

    if not (math.isfinite(max_age) and max_age >= 1):
        raise ValueError(f"the log's freshness window must be at least 1 s, not {max_age!r}")
    names = {w.name for w in witnesses}
    if len(names) != len(witnesses):
        raise ValueError("a witness is named twice")
    k = len(names) if threshold is None else threshold
    if not 0 <= k <= len(names):
        raise ValueError(f"--witness-threshold {k}: only {len(names)} witness(es) named")
    return k


def requirements(client: RegistryClient) -> LogRequirements:
    return LogRequirements(client.log_max_age, tuple(client.witnesses), client.witness_threshold)


def _url(client: RegistryClient) -> str:
    return str(client.base_url)


def _damaged(pins: PinStore, exc: ValueError) -> ResponseVerificationError:
    return ResponseVerificationError(f"{exc}; remove {pins.path} to start over")


def log_verifier(client: RegistryClient, pins: PinStore) -> tuple[str, NoteVerifier]:
    """The log's ``(origin, verifier)``: pinned for this registry on first contact
    (``client.on_pinned`` is told); another key or origin served later refuses, naming both."""
    from attest.errors import AttestError
    from attest.note import NoteVerifier

    url = _url(client)
    try:
        pinned = pins.log_key(url)
    except ValueError as exc:
        raise _damaged(pins, exc) from None
    if pinned is None:
        served = client._request("GET", "/v1/log/key").json()
        if not isinstance(served, dict) or not all(
            isinstance(served.get(k), str) for k in ("origin", "vkey")
        ):
            raise ResponseVerificationError(f"the registry at {url} serves no usable log key")
        try:
            NoteVerifier.from_vkey(served["vkey"])
        except AttestError as exc:
            raise ResponseVerificationError(f"the registry's log key is malformed: {exc}") from None
        anchored = _vouched(client, served)
        pinned = pins.pin_log_key(url, served["origin"], served["vkey"])
        given = anchored and client.registry_key_given  # nothing here was trusted on first use
        if pinned == {"origin": served["origin"], "vkey": served["vkey"]} and not given:
            if client.on_notice is not None:
                client.on_notice(
                    f"pinned the transparency log {served['origin']} (key {served['vkey']}) for "
                    f"{url} in {pins.path} (first contact; another log key will be refused)"
                )
    try:
        return pinned["origin"], NoteVerifier.from_vkey(pinned["vkey"])
    except AttestError as exc:
        raise _damaged(pins, ValueError(f"the pinned log key of {url}: {exc}")) from None


def _vouched(client: RegistryClient, served: dict[str, Any]) -> bool:
    """Whether the registry key this operation trusts (``--registry-key``, or the one pinned)
    vouches for the served log key: its signed statement must name exactly this origin and
    vkey. With no registry key known yet, False (the log key is then trusted on first use).

    Raises:
        ResponseVerificationError: a registry key is known and does not vouch for this log key.
    """
    from attest.bundle import Bundle
    from attest.errors import AttestError
    from attest.tlogproof import vouched_log_key

    anchor = client.registry_anchor
    if anchor is None:
        return False
    origin, vkey = served["origin"], served["vkey"]
    try:
        verified = anchor.verify(Bundle.parse(str(served.get("binding", "")).encode()))
    except AttestError as exc:
        raise ResponseVerificationError(
            f"the registry key does not vouch for the log key {vkey} the registry at "
            f"{_url(client)} serves ({exc}); refusing"
        ) from None
    try:
        vouched: tuple[str, str] | None = vouched_log_key(verified.statement)
    except AttestError:
        vouched = None
    if vouched != (origin, vkey):
        raise ResponseVerificationError(
            f"the registry key's statement about its log names another key than {vkey}; refusing"
        )
    return True


def _served_key_mismatch(client: RegistryClient, origin: str, vkey: str) -> str:
    """What the registry serves now as its log key, to name beside the pinned one."""
    try:
        served = client._request("GET", "/v1/log/key").json()
        now = f"now presents log {served.get('origin')!r} with key {served.get('vkey')}"
    except Exception:
        now = "now signs with another key"
    return f"{now}, not the log {origin!r} with key {vkey} pinned on first contact"


def check_checkpoint(
    client: RegistryClient,
    note_text: str,
    pins: PinStore,
    needs: LogRequirements,
    *,
    where: str,
    remember: bool = True,
) -> Checkpoint:
    """Verify a signed checkpoint and that it extends the newest one remembered for this
    registry; remember it. Returns the checkpoint.

    Raises:
        ResponseVerificationError: naming the cause (key, origin, age, witnesses, rollback/fork).
    """
    from attest.errors import AttestError
    from attest.note import (
        Checkpoint,
        CheckpointError,
        UnknownNoteSignerError,
        check_extends,
        verify_checkpoint,
    )

    url = _url(client)
    origin, verifier = log_verifier(client, pins)
    max_age = max(1, int(needs.max_age))
    try:
        signed = verify_checkpoint(
            note_text,
            [verifier],
            origin=origin,
            witnesses=needs.witnesses,
            witness_threshold=needs.witness_threshold,
            max_age=max_age,
            max_future_skew=LOG_CLOCK_SKEW,
        )
    except UnknownNoteSignerError as exc:
        raise ResponseVerificationError(
            f"{where}: the log checkpoint is not signed by the pinned log key ({exc}); the "
            f"registry at {url} {_served_key_mismatch(client, origin, verifier.vkey)}; refusing",
            cause="log-key",
        ) from None
    except CheckpointError as exc:
        stale = "stale" in str(exc)
        hint = (
            " (the registry stopped re-signing its log: a frozen view, or a registry down for "
            "long; --max-age / MODELSEAL_LOG_MAX_AGE sets the window)"
            if stale
            else ""
        )
        raise ResponseVerificationError(
            f"{where}: {exc}{hint}; refusing", cause="log-stale" if stale else "log-checkpoint"
        ) from None
    except AttestError as exc:
        raise ResponseVerificationError(
            f"{where}: the log checkpoint does not verify with the pinned log key "
            f"{verifier.vkey}: {exc}; refusing",
            cause="log-checkpoint",
        ) from None
    new = signed.checkpoint
    try:
        seen = pins.log_checkpoint(url)
        old = Checkpoint.parse(seen["text"]) if seen is not None else None
    except (ValueError, AttestError) as exc:
        raise _damaged(pins, ValueError(f"the remembered log checkpoint of {url}: {exc}")) from None
    if old is not None:
        proof: list[bytes] = []
        if old.size < new.size and (old.timestamp is None or (new.timestamp or 0) >= old.timestamp):
            proof = _consistency(client, old.size, new.size, where)
        try:
            check_extends(old, new, proof)
        except AttestError as exc:
            when = f" ({seen.get('seen_at')})" if seen and seen.get("seen_at") else ""
            raise ResponseVerificationError(
                f"{where}: {exc}{when}: the registry's log was rolled back or forked (a split "
                "view); refusing",
                cause="log-rollback",
                seen=old.describe(),
                now=new.describe(),
            ) from None
    if remember:
        pins.remember_log_checkpoint(
            url, new.text(), new.size, new.timestamp or 0,
            datetime.now(UTC).isoformat(timespec="seconds"), where,
        )  # fmt: skip
    return new


def _consistency(client: RegistryClient, old: int, new: int, where: str) -> list[bytes]:
    try:
        body = client._request(
            "GET", "/v1/log/proof/consistency", params={"old": old, "new": new}
        ).json()
        return [b64_field(h) for h in body["hashes"]]
    except (KeyError, TypeError, ValueError):
        raise ResponseVerificationError(
            f"{where}: a malformed consistency proof from size {old} to {new}"
        ) from None


def b64_field(value: Any) -> bytes:
    """A base64 field of a log answer (ValueError unless a string of canonical base64)."""
    if not isinstance(value, str):
        raise ValueError("not base64")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def proven_entry(
    client: RegistryClient, answer: Any, pins: PinStore, needs: LogRequirements, *, where: str
) -> ProvenEntry:
    """Check an answer ``{"index", "entry", "checkpoint", "size", "hashes"}``: the checkpoint
    (:func:`check_checkpoint`) and the entry's inclusion proof in it."""
    from attest.tlog import ProofError, leaf_hash, verify_inclusion

    try:
        index, size = int(answer["index"]), int(answer["size"])
        data = b64_field(answer["entry"])
        hashes = [b64_field(h) for h in answer["hashes"]]
        note_text = str(answer["checkpoint"])
        entry = json.loads(data)
        if not isinstance(entry, dict):
            raise ValueError("not an object")
    except (KeyError, TypeError, ValueError):
        raise ResponseVerificationError(f"{where}: a malformed log answer; refusing") from None
    checkpoint = check_checkpoint(client, note_text, pins, needs, where=where)
    if size != checkpoint.size:
        raise ResponseVerificationError(
            f"{where}: the inclusion proof is for a tree of {size} entries, the checkpoint "
            f"has {checkpoint.size}; refusing"
        )
    try:
        verify_inclusion(index, size, leaf_hash(data), hashes, checkpoint.root_hash)
    except ProofError as exc:
        raise ResponseVerificationError(
            f"{where}: log entry {index} is not in checkpoint {checkpoint.describe()}: {exc}; "
            "refusing",
            cause="log-inclusion",
        ) from None
    return ProvenEntry(index, data, entry, checkpoint)


def _check_not_replayed(
    client: RegistryClient, pins: PinStore, subject: str, proven: ProvenEntry, where: str
) -> None:
    url = _url(client)
    seen = pins.log_subject_index(url, subject)
    if seen is not None and proven.index < seen:
        raise ResponseVerificationError(
            f"{where}: the registry shows log entry {proven.index} as the newest about "
            f"{subject}, but entry {seen} about it was verified before: an older state "
            "replayed; refusing",
            cause="log-replay",
        )


def check_version(
    client: RegistryClient,
    version: VersionPublic,
    pins: PinStore,
    needs: LogRequirements,
    *,
    release_digests: Sequence[str] | None,
    allow_revoked: bool = False,
) -> ProvenEntry | None:
    """The version's newest status event, proven in a fresh checkpoint that extends the
    remembered one. For a released version (``release_digests``: the SHA-256 of every
    registry-signed release bundle of it that verified) it must be a release naming the
    version, its root digest and one of those bundles. For a pending one (``None``) only the
    checkpoint is checked: a logged release or revocation refuses, none is expected.

    Raises:
        ResponseVerificationError: naming the cause.
    """
    exact = f"{version.namespace}/{version.name}@{version.version}"
    where = f"{exact}: the transparency log"
    path = (
        f"/v1/namespaces/{version.namespace}/artifacts/{version.name}/versions/"
        f"{version.version}/log"
    )
    try:
        answer = client._request("GET", path).json()
    except NotFoundError:
        if release_digests is None:  # pending: nothing to prove; the log's head still checked
            check_checkpoint(client, latest_checkpoint(client), pins, needs, where=where)
            return None
        raise ResponseVerificationError(
            f"{exact} is released, but no release of it is in the registry's transparency log "
            "(released before the log existed, or dropped from it); refusing: a deploy job "
            "pulls only what the log proves",
            cause="log-missing",
        ) from None
    proven = proven_entry(client, answer, pins, needs, where=where)
    entry = proven.entry
    _check_not_replayed(client, pins, exact, proven, where)
    if entry.get("subject") != exact:
        raise ResponseVerificationError(
            f"{where}: entry {proven.index} is about {entry.get('subject')!r}, not {exact}; "
            "refusing"
        )
    if entry.get("type") == "revocation" and allow_revoked and version.state == "revoked":
        if entry.get("root_digest") != version.root_digest:
            raise ResponseVerificationError(
                f"{where}: the logged revocation of {exact} is of {entry.get('root_digest')}, "
                f"not the served {version.root_digest}; refusing",
                cause="log-digest",
            )
        pins.remember_log_subject(_url(client), exact, proven.index)
        return proven
    if entry.get("type") == "revocation":
        raise ResponseVerificationError(
            f"{exact} is revoked in the transparency log (entry {proven.index}, "
            f"{entry.get('at')}, by {entry.get('actor')}: {entry.get('reason') or 'no reason'}"
            "); refusing",
            cause="log-revoked",
            state="revoked",
        )
    if entry.get("type") != "release" or release_digests is None:
        raise ResponseVerificationError(
            f"{where}: entry {proven.index} is a {entry.get('type')!r} event, but the registry "
            f"serves {exact} as {version.state}; refusing",
            cause="log-state",
        )
    if entry.get("root_digest") != version.root_digest:
        raise ResponseVerificationError(
            f"{where}: the logged release of {exact} is of {entry.get('root_digest')}, not the "
            f"served {version.root_digest}; refusing",
            cause="log-digest",
        )
    if entry.get("statement_sha256") not in release_digests:
        raise ResponseVerificationError(
            f"{where}: the logged release statement (sha256:{entry.get('statement_sha256')}) is "
            "not the registry-signed release served with the version; refusing",
            cause="log-statement",
        )
    pins.remember_log_subject(_url(client), exact, proven.index)
    return proven


def verify_version_log(
    client: RegistryClient,
    ref: str,
    version: VersionPublic,
    *,
    registry_key: bytes | None = None,
    pins: PinStore | None = None,
) -> ProvenEntry | None:
    """``modelseal verify``'s log check: a released version's newest status event must be its
    release naming a registry-signed release bundle served with it; a revoked one's, its
    revocation; a pending or rejected one has none to prove (only the checkpoint is checked).
    Behind an alias, the alias's newest logged move must name the version."""
    from registry.names import RefKind, parse_ref
    from registry.sdk.trust import verified_manifest, verify_release

    pins = pins or PinStore()
    parsed = parse_ref(ref)
    needs = requirements(client)
    digests: list[str] | None = None
    if version.state == "released":
        files = verified_manifest(parsed, version)
        digests = verify_release(client, parsed, version, files, registry_key, pins)
    proven = check_version(client, version, pins, needs, release_digests=digests,
                           allow_revoked=True)  # fmt: skip
    if parsed.kind is RefKind.ALIAS:
        check_alias(client, parsed.namespace, parsed.name, parsed.selector, version.version,
                    pins, needs, on_rollback=client.on_notice)  # fmt: skip
    return proven


def latest_checkpoint(client: RegistryClient) -> str:
    return client._request("GET", "/v1/log/checkpoint").text


def check_alias(
    client: RegistryClient,
    namespace: str,
    name: str,
    alias: str,
    version: str,
    pins: PinStore,
    needs: LogRequirements,
    *,
    on_rollback: Callable[[str], None] | None = None,
) -> ProvenEntry:
    """The alias's newest logged move must point at ``version`` (the version the alias resolves
    to now): a replayed older alias state, or one missing from the log, refuses. A move that
    went back (``older``) is a rollback by intent: ``on_rollback`` is told who made it."""
    subject = f"{namespace}/{name}@{alias}"
    where = f"{subject}: the transparency log"
    try:
        answer = client._request(
            "GET", "/v1/log/latest", params={"subject": subject, "type": "alias"}
        ).json()
    except NotFoundError:
        raise ResponseVerificationError(
            f"{subject} points at {version}, but no move of the alias is in the registry's "
            "transparency log; refusing",
            cause="log-missing",
        ) from None
    proven = proven_entry(client, answer, pins, needs, where=where)
    entry = proven.entry
    _check_not_replayed(client, pins, subject, proven, where)
    if entry.get("type") != "alias" or entry.get("subject") != subject:
        raise ResponseVerificationError(
            f"{where}: entry {proven.index} is not a move of {subject}; refusing"
        )
    if entry.get("to") != version:
        raise ResponseVerificationError(
            f"{subject} points at {version}, but its newest logged move (entry {proven.index}, "
            f"{entry.get('at')}, by {entry.get('actor')}) is to {entry.get('to')}: an alias "
            "state the log does not hold (replayed from before a later move?); refusing",
            cause="log-alias",
            logged=entry.get("to"),
            served=version,
        )
    pins.remember_log_subject(_url(client), subject, proven.index)
    if entry.get("older") is True and on_rollback is not None:
        on_rollback(
            f"{subject} is a rollback: moved back from {entry.get('from')} to {version} by "
            f"{entry.get('actor')} at {entry.get('at')} (log entry {proven.index})"
        )
    return proven


def verify_log(
    client: RegistryClient, pins: PinStore, needs: LogRequirements
) -> tuple[Checkpoint, int]:
    """``audit verify``'s log check: the newest checkpoint (key, freshness, witnesses,
    extending the remembered one), then every entry read and rebuilt into its root. Returns
    the checkpoint and the number of entries.

    Raises:
        ResponseVerificationError: naming the cause.
    """
    from attest.tlog import MemoryTree

    where = "the transparency log"
    checkpoint = check_checkpoint(
        client, latest_checkpoint(client), pins, needs, where=where, remember=False
    )
    tree = MemoryTree()
    while tree.size < checkpoint.size:
        end = min(checkpoint.size, tree.size + 1000)
        page = client._request("GET", "/v1/log/entries", params={"start": tree.size, "end": end})
        try:
            for item in page.json()["entries"]:
                if int(item["index"]) != tree.size:
                    raise ValueError("out of order")
                tree.append(b64_field(item["entry"]))
        except (KeyError, TypeError, ValueError):
            raise ResponseVerificationError(f"{where}: a malformed page of entries") from None
        if tree.size < end:
            raise ResponseVerificationError(f"{where}: entries before {end} are missing")
    if tree.root(checkpoint.size) != checkpoint.root_hash:
        raise ResponseVerificationError(
            f"{where}: the {checkpoint.size} entries served do not hash to the root of "
            f"checkpoint {checkpoint.describe()}: entries were changed; refusing",
            cause="log-entries",
        )
    pins.remember_log_checkpoint(
        _url(client), checkpoint.text(), checkpoint.size, checkpoint.timestamp or 0,
        datetime.now(UTC).isoformat(timespec="seconds"), "audit verify",
    )  # fmt: skip
    return checkpoint, checkpoint.size
