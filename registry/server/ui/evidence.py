"""Every bundle of a version with its verification result, cached by bundle digest.

A bundle's result depends only on its bytes and on what is trusted (the registered identities
and the registry key), so it is computed once per (SHA-256 of the bytes, digest of the
identities) and reused: a page showing 50 bundles verifies none of them twice. The digest is
taken of the bytes read, never of the stored ``bundle_digest`` column, so an edited row cannot
borrow another bundle's result. The checks are those of
:meth:`AttestationService.verified_evidence` (signature by a trusted key or identity, subject
is the version's root digest) plus, for display, the rule that registry-only statements count
only when the registry key signed them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from attest.bundle import Bundle
from attest.errors import AttestError
from attest.keys import TrustedKey
from attest.predicates import (
    CYCLONEDX_BOM,
    OCI_RELEASE,
    OMS_SIGNATURE,
    RELEASE,
    REVOCATION,
    SCAN,
    SLSA_PROVENANCE,
    STATUS,
    TEST_RESULT,
)
from attest.statement import Statement
from attest.verifying import Verified, Verifier
from registry.errors import RegistryError
from registry.server.services.attestations import REGISTRY_ONLY, AttestationService
from registry.server.services.scanning import REGISTRY_SIGNER
from registry.server.services.versions import VersionRecord
from registry.server.ui.queries import Reads

#: The predicate type in words, as the console shows it.
WORDS = {
    OMS_SIGNATURE: "signature",
    SLSA_PROVENANCE: "provenance",
    TEST_RESULT: "evaluation",
    SCAN: "scan",
    CYCLONEDX_BOM: "ML-BOM",
    RELEASE: "release",
    OCI_RELEASE: "release (OCI)",
    REVOCATION: "revocation",
    STATUS: "status",
}
CACHE_ENTRIES = 4096
#: Larger bundles are verified every time rather than held in memory.
CACHE_MAX_BUNDLE = 1024 * 1024


def words(predicate_type: str) -> str:
    return WORDS.get(predicate_type, "other")


@dataclass(frozen=True, slots=True)
class BundleResult:
    """A bundle's verification: ``verified`` None when it does not verify (``reason`` says
    why)."""

    verified: Verified | None
    reason: str


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    id: int
    predicate_type: str
    words: str
    signer: str  # the verified identity's name, else the stored name
    signer_id: str
    created_at: datetime
    created_by: str
    bundle_sha256: str
    ok: bool
    reason: str  # why not, or a note
    statement: Statement | None
    by_registry: bool
    verified: Verified | None  # when ok


class EvidenceCache:
    def __init__(
        self, reads: Reads, attestations: AttestationService, registry_key: TrustedKey
    ) -> None:
        self._reads = reads
        self._attestations = attestations
        self._registry = registry_key
        self.registry_id = f"sha256:{registry_key.fingerprint}"
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple[str, str], BundleResult] = OrderedDict()
        self._verifiers: dict[str, Verifier] = {}
        self.hits = 0
        self.misses = 0

    def _verifier(self, trust: str) -> Verifier:
        with self._lock:
            found = self._verifiers.get(trust)
        if found is None:
            found = self._attestations.verifier(extra_keys=[self._registry])
            with self._lock:
                self._verifiers = {trust: found}  # only the current trust is worth keeping
        return found

    def _result(self, raw: bytes, trust: str) -> BundleResult:
        key = (hashlib.sha256(raw).hexdigest(), trust)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                self.hits += 1
                return cached
            self.misses += 1
        try:
            result = BundleResult(self._verifier(trust).verify(Bundle.parse(raw)), "")
        except AttestError as exc:
            result = BundleResult(None, exc.diagnostics())
        except RegistryError as exc:  # nothing trusted at all
            result = BundleResult(None, exc.detail)
        if len(raw) <= CACHE_MAX_BUNDLE:
            with self._lock:
                self._results[key] = result
                while len(self._results) > CACHE_ENTRIES:
                    self._results.popitem(last=False)
        return result

    def trust(self) -> str:
        """The current trust (identities) digest: compute once per page, pass to the others."""
        return self._reads.trust_fingerprint()

    def verified(self, raw: bytes, trust: str, root_digest: str) -> Verified | None:
        """``raw`` verified and about ``root_digest``, or None (cached like :meth:`items`)."""
        found = self._result(raw, trust).verified
        if found is None or found.statement.subject.sha256 != root_digest:
            return None
        return found

    def items(
        self, record: VersionRecord, predicate_type: str | None = None, *, trust: str | None = None
    ) -> list[EvidenceItem]:
        """Every stored bundle of ``record`` (the caller may read it), oldest first."""
        trust = trust or self._reads.trust_fingerprint()
        out = []
        for stored in self._reads.bundles(record, predicate_type):
            result = self._result(stored.raw, trust)
            verified = result.verified
            ok, reason = verified is not None, result.reason
            by_registry = verified is not None and verified.signer_id == self.registry_id
            if verified is not None:
                statement = verified.statement
                if statement.subject.sha256 != record.root_digest:
                    ok, reason = (
                        False,
                        (
                            f"about sha256:{statement.subject.sha256}, not this version "
                            f"(sha256:{record.root_digest})"
                        ),
                    )
                elif statement.predicate_type != stored.predicate_type:
                    ok, reason = False, "its statement's type is not the one it was stored as"
                elif statement.predicate_type in REGISTRY_ONLY and not by_registry:
                    ok, reason = False, "only the registry signs this kind of statement"
                elif by_registry and statement.predicate_type not in REGISTRY_ONLY | {OCI_RELEASE}:
                    reason = "signed by the registry key: never counts as user evidence"
            out.append(
                EvidenceItem(
                    id=stored.id,
                    predicate_type=stored.predicate_type,
                    words=words(stored.predicate_type),
                    signer=(REGISTRY_SIGNER if by_registry else verified.signer)
                    if verified is not None
                    else stored.signer,
                    signer_id=verified.signer_id if verified is not None else "",
                    created_at=stored.created_at,
                    created_by=stored.created_by,
                    bundle_sha256=hashlib.sha256(stored.raw).hexdigest(),
                    ok=ok,
                    reason=reason,
                    statement=verified.statement if verified is not None else None,
                    by_registry=by_registry,
                    verified=verified if ok else None,
                )
            )
        return out
