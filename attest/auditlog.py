"""The audit log's hash chain, verifiable without the registry's code.

Entry ``n`` has ``hash = sha256(prev_hash || canonical_json(fields))`` with ``prev_hash`` the
hash of entry ``n-1`` (64 zeros for the first). A checkpoint is a registry-signed in-toto
statement whose subject digest is the head hash and whose predicate names the entry count.
Editing, deleting or reordering any entry breaks the chain at that entry; truncating the end
breaks the match with the newest checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from attest.errors import AuditChainError, AuditRollbackError
from attest.jsonsafe import dumps_canonical
from attest.statement import Statement

GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "target", "outcome", "request_id", "details")


def check_extends(
    seen_count: int,
    seen_head: str,
    *,
    count: int,
    head: str,
    hash_at_seen: str | None,
    seen: str = "before",
    now: str = "now",
) -> None:
    """Refuse a log that does not extend the checkpoint ``(seen_count, seen_head)`` a verifier
    remembered: shorter than it, or whose entry ``seen_count`` (``hash_at_seen``; None when the
    log has no such entry) no longer hashes to ``seen_head``. ``seen`` and ``now`` say where
    each checkpoint comes from, for the message.

    Raises:
        AuditRollbackError: naming both checkpoints.
    """
    if seen_count <= 0:
        return
    theirs = f"checkpoint {seen_count} (head sha256:{seen_head}, seen {seen})"
    ours = f"the log served {now} holds {count} entries (head sha256:{head})"
    if count >= seen_count and hash_at_seen is None:
        raise AuditRollbackError(
            f"{ours}, but it does not vouch for its entry {seen_count}, {theirs}. Refusing",
            seq=seen_count,
        )
    if count < seen_count or hash_at_seen is None:
        raise AuditRollbackError(
            f"the audit log was rolled back: {ours}, fewer than {theirs}; entries "
            f"{count + 1}..{seen_count} were removed. Refusing; report it to the registry's "
            "operators",
            seq=min(count, seen_count) + 1,
        )
    if hash_at_seen != seen_head:
        raise AuditRollbackError(
            f"the audit log was rewritten: {ours}, but its entry {seen_count} hashes to "
            f"sha256:{hash_at_seen}, not to {theirs}. Refusing; report it to the registry's "
            "operators",
            seq=seen_count,
        )


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    body = dumps_canonical({k: entry[k] for k in FIELDS})
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def verify_chain(
    entries: Sequence[Mapping[str, Any]],
    checkpoint: Statement | None,
    *,
    first_seq: int = 1,
) -> str:
    """Check every link and the newest checkpoint; returns the head hash.

    ``entries`` is the whole log, or (``first_seq`` > 1) a suffix of it starting at that entry,
    whose first ``prev_hash`` is then taken as given: the checkpoint still proves the suffix is
    what the registry signed.

    Raises:
        AuditChainError: naming the first entry that was edited, removed or moved, or a head
            that does not match the checkpoint.
    """
    previous = GENESIS if first_seq == 1 or not entries else str(entries[0].get("prev_hash"))
    expected_seq = first_seq
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            raise AuditChainError(
                f"entry {expected_seq} is missing or out of order (found {seq} in its place)",
                seq=expected_seq,
            )
        if entry.get("prev_hash") != previous:
            raise AuditChainError(
                f"entry {seq} does not follow entry {seq - 1} (prev_hash differs)", seq=seq
            )
        if entry_hash(previous, entry) != entry.get("hash"):
            raise AuditChainError(f"entry {seq} was modified (its hash does not match)", seq=seq)
        previous = str(entry["hash"])
        expected_seq += 1
    if checkpoint is not None:
        count = int(checkpoint.predicate.get("count", -1))
        last = first_seq + len(entries) - 1
        if count > last:
            raise AuditChainError(
                f"the signed checkpoint covers {count} entries, the log has {last}: "
                f"entries {last + 1}..{count} were removed",
                seq=last + 1,
            )
        if count < first_seq - 1:
            raise AuditChainError(
                f"the signed checkpoint covers {count} entries, before entry {first_seq}",
                seq=first_seq,
            )
        head = (
            str(entries[count - first_seq]["hash"])
            if count >= first_seq
            else (str(entries[0].get("prev_hash")) if entries else GENESIS)
        )
        if head != checkpoint.subject.sha256:
            raise AuditChainError(
                f"entry {count} does not match the signed checkpoint's head", seq=count
            )
    return previous
