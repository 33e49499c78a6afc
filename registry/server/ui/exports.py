"""The console's evidence download: the archive ``modelseal export`` writes, from the services.

:class:`ServiceSource` is an :class:`attest.export.Source` that reads with the signed-in
principal's rights, through the same service calls the API routes ``modelseal export`` uses make
(a pending version is unknown to those who do not see pending versions, the audit log is there
for auditors and admins only, and only they may sign a fresh checkpoint). The export is written
to a private temporary directory, packed, and removed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from attest.export import (
    ExportedBundle,
    ExportedFile,
    ExportedLogEntry,
    ExportedLogKey,
    ExportedVersion,
    archive_name,
    packed,
    write_export,
)
from attest.keys import TrustedKey, public_pem
from registry.errors import NotFoundError, PermissionDeniedError
from registry.names import parse_ref
from registry.server.api.deps import Services
from registry.server.services.auth import Action, Principal
from registry.server.services.common import Page, PageRequest
from registry.server.services.tlog import MAX_PAGE, LogService
from registry.server.ui import views

T = TypeVar("T")
PAGE = 500


class ServiceSource:
    def __init__(
        self, services: Services, principal: Principal, registry: str, log: LogService
    ) -> None:
        self._services = services
        self._principal = principal
        self._registry = registry
        self._log = log

    @property
    def registry(self) -> str:
        return self._registry

    def version(self, ref: str) -> ExportedVersion | None:
        try:
            record = views.resolve_visible(self._services, self._principal, parse_ref(ref))
        except (NotFoundError, PermissionDeniedError):
            return None
        uris = dict(record.uris)
        return ExportedVersion(
            namespace=record.namespace,
            name=record.name,
            version=record.version,
            kind=record.kind,
            state=record.state,
            root_digest=record.root_digest.prefixed,  # as the API states it
            external=record.external,
            pushed_by=record.created_by,
            files=tuple(
                ExportedFile(f.path, f.size, f.sha256.prefixed, uris.get(f.path))
                for f in record.files
            ),
        )

    def bundles(self, ref: str) -> list[ExportedBundle]:
        parsed = parse_ref(ref)
        attestations = self._services.attestations
        items = _all(lambda page: attestations.list_attestations(self._principal, parsed, page))
        return [
            ExportedBundle(i.id, i.predicate_type, attestations.get(self._principal, parsed, i.id))
            for i in items
        ]

    def policy(self, namespace: str, revision: int | None) -> str | None:
        try:
            return self._services.releases.get_policy(self._principal, namespace, revision).document
        except (NotFoundError, PermissionDeniedError):
            return None

    def identities(self) -> list[Mapping[str, Any]]:
        attestations = self._services.attestations
        items = _all(lambda page: attestations.list_identities(self._principal, page))
        return [
            {
                "name": i.name,
                "key_pem": i.public_key_pem,
                "issuer": i.sigstore_issuer,
                "identity": i.sigstore_identity,
                "regex": i.regex,
            }
            for i in items
        ]

    def audit_entries(self) -> list[dict[str, Any]] | None:
        entries: list[dict[str, Any]] = []
        after = 0
        try:
            while True:
                batch = self._services.audit.entries(self._principal, after=after, limit=1000)
                entries.extend(batch)
                if len(batch) < 1000:
                    return entries
                after = int(batch[-1]["seq"])
        except PermissionDeniedError:
            return None

    def latest_checkpoint(self) -> bytes | None:
        return self._services.audit.latest_checkpoint(self._principal)

    def sign_checkpoint(self) -> bool:
        if not self._principal.allowed(Action.AUDIT, None):  # as POST /v1/audit/checkpoints
            return False
        self._services.audit.checkpoint(self._principal)
        return True

    # The transparency log: any signed-in principal reads it (as the /v1/log routes); a
    # version's status event follows the version's read rules (as GET …/versions/V/log).

    def log_key(self) -> ExportedLogKey | None:
        origin, vkey = self._log.identity()
        return ExportedLogKey(origin, vkey, self._log.key_binding().encode())

    def log_status(self, ref: str) -> ExportedLogEntry | None:
        try:
            record = views.resolve_visible(self._services, self._principal, parse_ref(ref))
            found = self._log.status_event(record.ref)
        except (NotFoundError, PermissionDeniedError):
            return None
        return ExportedLogEntry(found.entry.index, found.entry.entry)

    def log_checkpoint(self) -> str:
        return self._log.checkpoint_note()

    def log_inclusion(self, index: int, size: int) -> list[bytes]:
        return self._log.inclusion(index, size)

    def log_entries(self, start: int, end: int) -> list[bytes]:
        entries: list[bytes] = []
        while start + len(entries) < end:
            at = start + len(entries)
            _size, page = self._log.entries(at, min(end, at + MAX_PAGE))
            if not page:
                raise NotFoundError(f"the log has no entries from {at}", index=at)
            entries.extend(e.entry for e in page)
        return entries


def _all(fetch: Callable[[PageRequest], Page[T]]) -> list[T]:
    items: list[T] = []
    after: str | None = None
    while True:
        page = fetch(PageRequest(PAGE, after))
        items.extend(page.items)
        if page.next_after is None:
            return items
        after = page.next_after


def evidence_archive(
    services: Services,
    principal: Principal,
    ref: str,
    registry_key: TrustedKey,
    registry: str,
    *,
    log: LogService,
) -> tuple[str, bytes]:
    """The file name and bytes of the evidence archive of version ``ref`` (with the proofs of
    the transparency log ``log``)."""
    source = ServiceSource(services, principal, registry, log)
    with tempfile.TemporaryDirectory(prefix="modelseal-ui-export-") as tmp:
        out = Path(tmp) / "export"
        out.mkdir(mode=0o700)
        root = write_export(source, ref, out, public_pem(registry_key.key).decode())
        top = archive_name(root.ref)
        return f"{top}.tar.gz", packed(out, top)
