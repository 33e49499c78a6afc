"""What each console page shows, gathered through the services with the caller's principal.

Access is never decided here: every read goes through a service method that checks the
principal (``resolve``, ``list_*``, ``get_policy``, ``entries``) before anything is shown, and
the few rows read directly (:mod:`registry.server.ui.queries`) belong to a version or namespace
such a call has just admitted. :func:`sees_pending` is the one display rule of the console.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from attest.bundle import Bundle
from attest.errors import AttestError, PolicyError
from attest.keys import TrustedKey
from attest.policy import KindPolicy, parse_policy
from attest.predicates import (
    AUDIT_CHECKPOINT,
    CYCLONEDX_BOM,
    RELEASE,
    REVOCATION,
    SCAN,
    TEST_RESULT,
)
from attest.verifying import Verifier
from registry.errors import NotFoundError, RegistryError
from registry.names import Ref, RefKind
from registry.server.api.deps import Services
from registry.server.services.auth import Action, Principal
from registry.server.services.common import PageRequest
from registry.server.services.lifecycle import AliasMove, AliasRecord
from registry.server.services.releases import PolicyRecord
from registry.server.services.versions import State, VersionRecord
from registry.server.ui import lineage
from registry.server.ui.evidence import EvidenceCache, EvidenceItem
from registry.server.ui.queries import LineageReads, PolicyRevision, Reads

LIST_LIMIT = 1000


def sees_pending(principal: Principal, namespace: str) -> bool:
    """Pending versions are work in progress: shown to the roles that produce, release or
    audit them (the roles :meth:`VersionService.servable_file` serves pending files to, and
    auditors), never to deployers, who see what they can deploy and what was withdrawn."""
    return any(
        principal.allowed(action, namespace)
        for action in (Action.PUSH, Action.RELEASE, Action.AUDIT)
    )


#: Versions not settled yet (being scanned, or pending): shown only to :func:`sees_pending` roles.
UNSETTLED = (State.SCANNING, State.PENDING)


def visible(principal: Principal, record: VersionRecord) -> bool:
    return record.state not in UNSETTLED or sees_pending(principal, record.namespace)


def resolve_visible(services: Services, principal: Principal, ref: Ref) -> VersionRecord:
    """The version ``ref`` selects, as the API resolves it; a pending one is "not found" for
    those who do not see pending versions (the same answer as for a version that is not
    there)."""
    record = services.versions.resolve(principal, ref)
    if not visible(principal, record):
        raise NotFoundError(f"{ref} does not exist", ref=str(ref))
    return record


# -- lists -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRow:
    record: VersionRecord
    aliases: list[str]


def version_rows(
    services: Services,
    principal: Principal,
    namespace: str,
    name: str,
    *,
    state: str = "",
    search: str = "",
) -> tuple[list[VersionRow], list[AliasRecord]]:
    """The versions of an artifact, newest first, with the aliases pointing at each."""
    records = services.versions.list_versions(
        principal, namespace, name, PageRequest(LIST_LIMIT)
    ).items
    aliases = services.lifecycle.list_aliases(
        principal, namespace, name, PageRequest(LIST_LIMIT)
    ).items
    by_version: dict[str, list[str]] = {}
    for alias in aliases:
        by_version.setdefault(alias.version, []).append(alias.alias)
    rows = [
        VersionRow(r, by_version.get(r.version, []))
        for r in reversed(records)
        if visible(principal, r)
        and (not state or r.state == state)
        and (not search or search.lower() in r.version.lower())
    ]
    return rows, [a for a in aliases if a.state not in UNSETTLED]


# -- the version page --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    size: int
    sha256: str
    format: str
    verdict: str
    findings: list[str]


@dataclass(frozen=True, slots=True)
class MetricRow:
    metric: str
    value: Any
    threshold: str
    ok: bool | None  # None: no threshold for it


@dataclass(frozen=True, slots=True)
class Evaluation:
    item: EvidenceItem
    rows: list[MetricRow]


@dataclass
class VersionPage:
    record: VersionRecord
    evidence: list[EvidenceItem]
    policy: PolicyRecord
    recorded_reasons: list[str]
    release: dict[str, Any] | None
    release_item: EvidenceItem | None
    files: list[FileRow]
    scan_item: EvidenceItem | None
    graph: lineage.Drawing
    graph_truncated: bool
    evaluations: list[Evaluation]
    thresholds: list[str]
    bom: dict[str, Any] | None
    bom_item: EvidenceItem | None
    alias_moves: list[AliasMove]
    aliases_here: list[str]
    revocations: list[tuple[EvidenceItem, dict[str, Any]]]
    cascade: list[str] = field(default_factory=list)
    gate_now: list[str] | None = None
    gate_now_at: datetime | None = None
    registry_id: str = ""


def _kind_policy(document: str, kind: str) -> KindPolicy | None:
    try:
        return parse_policy(document).for_kind(kind)
    except PolicyError:
        return None


def version_page(
    services: Services,
    cache: EvidenceCache,
    principal: Principal,
    record: VersionRecord,
    lineage_reads: LineageReads,
    *,
    gate_now: bool = False,
) -> VersionPage:
    trust = cache.trust()
    items = cache.items(record, trust=trust)
    ok = [i for i in items if i.ok]
    policy = services.releases.get_policy(principal, record.namespace)

    def newest(predicate_type: str, *, registry: bool) -> EvidenceItem | None:
        found = [i for i in ok if i.predicate_type == predicate_type and i.by_registry == registry]
        return found[-1] if found else None

    release_item = newest(RELEASE, registry=True)
    release = (
        dict(release_item.statement.predicate) if release_item and release_item.statement else None
    )
    if release is not None:
        revision = (
            release.get("policy", {}).get("revision")
            if isinstance(release.get("policy"), dict)
            else None
        )
        if isinstance(revision, int) and revision != policy.revision:
            try:
                policy = services.releases.get_policy(principal, record.namespace, revision)
            except RegistryError:
                pass
    # a release is shown with the policy it was judged under, not the one in force now
    kind_policy = _kind_policy(policy.document, record.kind)
    recorded: list[str] = []
    if record.state == State.PENDING and record.state_reason:
        recorded = [line for line in record.state_reason.splitlines()[1:] if line.strip()]

    scan_item = newest(SCAN, registry=True)
    verdicts: dict[str, dict[str, Any]] = {}
    if scan_item and scan_item.statement:
        for entry in scan_item.statement.predicate.get("files", []):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                verdicts[entry["path"]] = entry
    files = []
    for f in record.files:
        entry = verdicts.get(f.path, {})
        findings = entry.get("findings", [])
        files.append(
            FileRow(
                f.path,
                f.size,
                f.sha256,
                str(entry.get("format", "")),
                str(entry.get("verdict", "not scanned")),
                [str(x) for x in findings] if isinstance(findings, list) else [],
            )
        )

    graph = lineage.walk(
        record,
        principal,
        lineage_reads,
        cache,
        lambda namespace, state: state not in UNSETTLED or sees_pending(principal, namespace),
    )

    thresholds = kind_policy.thresholds if kind_policy else ()
    evaluations = []
    for item in ok:
        if item.predicate_type != TEST_RESULT or item.statement is None:
            continue
        metrics = item.statement.predicate.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        rows = []
        for t in thresholds:
            value = metrics.get(t.metric)
            good = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and t.holds(float(value))
            )
            rows.append(
                MetricRow(t.metric, value if t.metric in metrics else "missing", str(t), good)
            )
        named = {t.metric for t in thresholds}
        rows += [MetricRow(str(k), v, "", None) for k, v in metrics.items() if k not in named]
        evaluations.append(Evaluation(item, rows))

    bom_item = newest(CYCLONEDX_BOM, registry=True)
    bom = dict(bom_item.statement.predicate) if bom_item and bom_item.statement else None

    aliases = services.lifecycle.list_aliases(
        principal, record.namespace, record.name, PageRequest(LIST_LIMIT)
    ).items
    moves: list[AliasMove] = []
    for alias in aliases:
        moves.extend(
            services.lifecycle.history(
                principal, record.namespace, record.name, alias.alias, PageRequest(LIST_LIMIT)
            ).items
        )
    moves.sort(key=lambda m: m.at, reverse=True)

    revocations = [
        (i, dict(i.statement.predicate))
        for i in ok
        if i.predicate_type == REVOCATION and i.by_registry and i.statement is not None
    ]
    page = VersionPage(
        record=record,
        evidence=items,
        policy=policy,
        recorded_reasons=recorded,
        release=release,
        release_item=release_item,
        files=files,
        scan_item=scan_item,
        graph=lineage.draw(graph),
        graph_truncated=graph.truncated,
        evaluations=evaluations,
        thresholds=[str(t) for t in thresholds],
        bom=bom,
        bom_item=bom_item,
        alias_moves=moves,
        aliases_here=[a.alias for a in aliases if a.version == record.version],
        revocations=revocations,
        registry_id=cache.registry_id,
    )
    if record.state == State.REVOKED:
        page.cascade = cascade(services, principal, record)
    if gate_now and record.state == State.PENDING:
        page.gate_now, page.gate_now_at = run_gate(services, principal, record)
    return page


def run_gate(
    services: Services, principal: Principal, record: VersionRecord
) -> tuple[list[str], datetime]:
    """What the gate says now for a release by ``principal`` (nothing is recorded)."""
    from registry.server.services.common import utcnow

    # rescan=False: a page view writes nothing (a stale scan is reported by the gate as such;
    # the release itself rescans first).
    reasons, _evidence, _policy = services.releases.check(
        principal, record, releaser=principal.name, rescan=False
    )
    return [str(r) for r in reasons], utcnow()


def cascade(services: Services, principal: Principal, record: VersionRecord) -> list[str]:
    """The released or revoked versions built on ``record`` (what a revocation cascades to)
    that ``principal`` may read; those in namespaces it may not read are counted, not named.

    The release service's own walk, so the list shown before a revocation is the one the
    revocation uses."""
    readable: list[str] = []
    others = 0
    for dependent, _via in services.releases.dependents(record):
        if principal.can_see(dependent.namespace) and principal.allowed(
            Action.READ, dependent.namespace
        ):
            readable.append(dependent.ref)
        else:
            others += 1
    shown = sorted(readable)
    if others:
        shown.append(f"and {others} version(s) in namespaces this token cannot read")
    return shown


def bom_summary(bom: dict[str, Any]) -> dict[str, Any]:
    """Counts and names from a CycloneDX ML-BOM."""
    components = [c for c in bom.get("components", []) if isinstance(c, dict)]
    by_type: dict[str, int] = {}
    for c in components:
        by_type[str(c.get("type", "?"))] = by_type.get(str(c.get("type", "?")), 0) + 1
    meta = bom.get("metadata", {}) if isinstance(bom.get("metadata"), dict) else {}
    main = meta.get("component", {}) if isinstance(meta.get("component"), dict) else {}
    return {
        "spec": bom.get("specVersion", ""),
        "main": f"{main.get('name', '')} {main.get('version', '')}".strip(),
        "by_type": sorted(by_type.items()),
        "components": [
            (str(c.get("type", "")), str(c.get("name", "")), str(c.get("version", "")))
            for c in components[:50]
        ],
        "more": max(0, len(components) - 50),
    }


# -- policies ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # add | del | hunk | same | head
    text: str


def policy_diff(old: PolicyRecord, new: PolicyRecord) -> list[DiffLine]:
    lines = difflib.unified_diff(
        old.document.splitlines(),
        new.document.splitlines(),
        fromfile=f"revision {old.revision}",
        tofile=f"revision {new.revision}",
        lineterm="",
    )
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            out.append(DiffLine("head", line))
        elif line.startswith("@@"):
            out.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            out.append(DiffLine("add", line))
        elif line.startswith("-"):
            out.append(DiffLine("del", line))
        else:
            out.append(DiffLine("same", line))
    return out


def policy_revisions(
    services: Services, reads: Reads, principal: Principal, namespace: str
) -> list[PolicyRevision]:
    services.releases.get_policy(principal, namespace)  # the access check
    return reads.policy_revisions(namespace)


# -- the audit log ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    target: str = ""
    outcome: str = ""
    since: str = ""  # ISO date or date-time prefix
    until: str = ""

    def matches(self, entry: dict[str, Any]) -> bool:
        at = str(entry.get("at", ""))
        return (
            (not self.actor or self.actor.lower() in str(entry.get("actor", "")).lower())
            and (not self.action or self.action.lower() in str(entry.get("action", "")).lower())
            and (not self.target or self.target.lower() in str(entry.get("target", "")).lower())
            and (not self.outcome or self.outcome == entry.get("outcome"))
            and (not self.since or at >= self.since)
            and (not self.until or at[: len(self.until)] <= self.until)
        )

    @property
    def active(self) -> bool:
        return any((self.actor, self.action, self.target, self.outcome, self.since, self.until))


@dataclass
class AuditPage:
    entries: list[dict[str, Any]]
    count: int | None
    chain_ok: bool
    chain_detail: str
    checkpoint: dict[str, Any] | None
    checkpoint_ok: bool
    checkpoint_detail: str
    before: int | None  # newer-first paging: the seq to continue below


AUDIT_PAGE = 100
AUDIT_SCAN = 20_000


def audit_page(
    services: Services,
    principal: Principal,
    registry_key: TrustedKey,
    wanted: AuditFilter,
    before: int | None,
) -> AuditPage:
    """Newest entries first (at most :data:`AUDIT_PAGE`, matching ``wanted``), the chain's
    status recomputed from the newest verified checkpoint, and the newest checkpoint."""
    services.audit.entries(principal, after=0, limit=1)  # the access check (as the API's)
    try:
        count, head, _ = services.audit.head()
        chain_ok, chain_detail = (
            True,
            f"{count} entries hash from the newest signed checkpoint to head {head[:16]}…",
        )
    except RegistryError as exc:
        count, chain_ok, chain_detail = None, False, exc.detail
    top = before if before is not None else (count if count is not None else 0) + 1
    found: list[dict[str, Any]] = []
    scanned = 0
    upper = top  # entries below this sequence number are still to be read
    while upper > 1 and len(found) < AUDIT_PAGE and scanned < AUDIT_SCAN:
        after = max(0, upper - 1 - 1000)
        batch = services.audit.entries(principal, after=after, limit=upper - 1 - after)
        scanned += len(batch)
        full = False
        for entry in reversed(batch):
            if wanted.matches(entry):
                found.append(entry)
                if len(found) >= AUDIT_PAGE:
                    upper, full = int(entry["seq"]), True
                    break
        if full:
            break
        upper = after + 1
    more = upper > 1
    checkpoint, checkpoint_ok, detail = None, False, "no checkpoint has been signed yet"
    raw = services.audit.latest_checkpoint(principal)
    if raw is not None:
        try:
            statement = Verifier(keys=[registry_key]).verify(Bundle.parse(raw)).statement
            if statement.predicate_type != AUDIT_CHECKPOINT:
                raise ValueError("not a checkpoint statement")
            checkpoint = {
                "count": statement.predicate.get("count"),
                "at": statement.predicate.get("at"),
                "head": statement.subject.sha256,
            }
            checkpoint_ok, detail = True, "signature verified with the registry key"
        except (AttestError, ValueError) as exc:
            detail = f"does not verify: {exc}"
    return AuditPage(found, count, chain_ok, chain_detail, checkpoint, checkpoint_ok, detail,
                     upper if more else None)  # fmt: skip


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def alias_ref(namespace: str, name: str, version: str) -> Ref:
    return Ref(namespace, name, version, RefKind.VERSION)
