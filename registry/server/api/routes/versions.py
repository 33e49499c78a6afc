"""Namespaces, artifacts and versions."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from registry.errors import PayloadTooLargeError
from registry.names import (
    ALIAS_PATTERN,
    NAME_PATTERN,
    PATH_PATTERN,
    SELECTOR_PATTERN,
    VERSION_PATTERN,
    Kind,
    Ref,
    parse_selector,
    validate_name,
    validate_path,
    validate_version,
)
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.paging import PageDep, link_next
from registry.server.services.bomjobs import BomStatus
from registry.server.services.versions import VersionRecord
from registry.wire import (
    BATCH_BLOB_MAX_BYTES,
    BATCH_INDEX_MAX_BYTES,
    BATCH_MAX_BYTES,
    FILE_BATCH_MEDIA_TYPE,
    ArtifactPublic,
    FilePublic,
    FilesIn,
    ManifestIn,
    NamespacePublic,
    VersionPublic,
    VersionSummary,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/namespaces", tags=["versions"], dependencies=[KnownQuery])

#: Integers a path or query may carry: the database's INTEGER and BIGINT (beyond them a
#: request is a 400, not a database error).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# The naming rules of registry.names are in the schema (so schema-valid means valid); the handlers
# still check them (a mismatch is a 400 ``invalid-name`` naming the rule).


def _named(description: str, pattern: str) -> Any:
    return Path(description=description, json_schema_extra={"pattern": pattern})


NamespacePath = Annotated[str, _named("Namespace name.", NAME_PATTERN)]
NamePath = Annotated[str, _named("Artifact name.", NAME_PATTERN)]
VersionPath = Annotated[str, _named("Version; starts with a digit.", VERSION_PATTERN)]
SelectorPath = Annotated[str, _named("VERSION, ALIAS or sha256:<root digest>.", SELECTOR_PATTERN)]
AliasPath = Annotated[str, _named("Alias name (prod, staging, …).", ALIAS_PATTERN)]
FilePath = Annotated[str, _named("The file's path inside the version.", PATH_PATTERN)]


def _summary(record: VersionRecord) -> VersionSummary:
    return VersionSummary.model_validate(record, from_attributes=True)


def public_version(record: VersionRecord, *, bom_status: BomStatus | None = None) -> VersionPublic:
    """The API view of a version (``bom_status``: its ML-BOM's, where the answer reports it)."""
    uris = dict(record.uris)
    return VersionPublic(
        **dict(_summary(record)),
        files=[
            FilePublic(path=f.path, size=f.size, digest=f.sha256, uri=uris.get(f.path))
            for f in record.files
        ],
        bom_status=None if bom_status is None else bom_status.value,
    )


def version_ref(namespace: str, name: str, selector: str) -> Ref:
    """A validated reference from path parameters."""
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    sel, kind = parse_selector(selector)
    return Ref(namespace, name, sel, kind)


@router.get("", operation_id="list_namespaces", response_model=list[NamespacePublic])
def list_namespaces(
    request: Request, response: Response, principal: PrincipalDep, services: ServicesDep,
    page: PageDep,
) -> list[NamespacePublic]:  # fmt: skip
    """Namespaces the caller can see, by name (paged: see the Link header)."""
    found = services.versions.list_namespaces(principal, page)
    link_next(request, response, found, page.limit)
    return [NamespacePublic(name=n) for n in found.items]


@router.get(
    "/{namespace}/artifacts", operation_id="list_artifacts", response_model=list[ArtifactPublic]
)
def list_artifacts(
    request: Request, response: Response, namespace: NamespacePath, principal: PrincipalDep,
    services: ServicesDep, page: PageDep,
) -> list[ArtifactPublic]:  # fmt: skip
    """The artifacts of a namespace, by name (paged: see the Link header)."""
    validate_name(namespace, what="namespace")
    found = services.versions.list_artifacts(principal, namespace, page)
    link_next(request, response, found, page.limit)
    return [
        ArtifactPublic(
            namespace=a.namespace,
            name=a.name,
            kind=Kind(a.kind),
            created_at=a.created_at,
            version_count=a.version_count,
        )
        for a in found.items
    ]


@router.get(
    "/{namespace}/artifacts/{name}/versions",
    operation_id="list_versions",
    response_model=list[VersionSummary],
)
def list_versions(
    request: Request, response: Response, namespace: NamespacePath, name: NamePath,
    principal: PrincipalDep, services: ServicesDep, page: PageDep,
) -> list[VersionSummary]:  # fmt: skip
    """The versions of an artifact, oldest first (paged: see the Link header)."""
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    found = services.versions.list_versions(principal, namespace, name, page)
    link_next(request, response, found, page.limit)
    return [_summary(v) for v in found.items]


@router.put(
    "/{namespace}/artifacts/{name}/versions/{version}",
    operation_id="put_version",
    response_model=VersionPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": VersionPublic, "description": "Identical version already exists."}},
)
def put_version(
    namespace: NamespacePath,
    name: NamePath,
    version: VersionPath,
    manifest: ManifestIn,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
) -> VersionPublic:
    """Create a version from its manifest. Every blob must already be uploaded to the namespace.

    Versions are immutable: the same manifest again answers 200 and writes nothing; another
    manifest for an existing version answers 409. The version's identity (``root_digest``) is
    computed here from the verified blob digests.
    """
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    validate_version(version)
    record, created = services.versions.commit(
        principal,
        namespace=namespace,
        name=name,
        version=version,
        kind=manifest.kind,
        files=[f.to_file_digest() for f in manifest.files],
        uris=manifest.uris(),
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return public_version(record, bom_status=services.boms.status(record).status)


@router.get(
    "/{namespace}/artifacts/{name}/versions/{selector}",
    operation_id="get_version",
    response_model=VersionPublic,
)
def get_version(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
) -> VersionPublic:
    record = services.versions.resolve(principal, version_ref(namespace, name, selector))
    return public_version(record, bom_status=services.boms.status(record).status)


@router.post(
    "/{namespace}/artifacts/{name}/versions/{selector}/files",
    operation_id="download_files",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {FILE_BATCH_MEDIA_TYPE: {}},
            "description": 'One line of JSON, {"files": [{"path", "digest", "size"}, ...]}, and a '
            "newline, then the files' bytes back to back in that order.",
        }
    },
)
def download_files(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    body: FilesIn,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """Stream many small files of a version in one response (at most 1,000 files of at most
    1 MiB each, 16 MiB and an index line of 256 KiB in all), under the rules of a single file's
    download. Clients check every file's size and digest against the manifest they verified,
    wherever the bytes come from. A store that fails once the answer has started cuts it short
    (the client sees fewer bytes than ``Content-Length``), and the failure is audited."""
    ref = version_ref(namespace, name, selector)
    record, items = services.versions.servable_files(
        principal, ref, body.paths, max_size=BATCH_BLOB_MAX_BYTES
    )
    request.state.version = record.ref  # the audit entry names the version an alias selected
    index = {"files": [{"path": f.path, "digest": f.sha256.prefixed, "size": f.size}
                       for f in items]}  # fmt: skip
    head = json.dumps(index, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    total = sum(f.size for f in items)
    if len(head) > BATCH_INDEX_MAX_BYTES or total > BATCH_MAX_BYTES:
        raise PayloadTooLargeError(
            f"{len(items)} files of {total} bytes (an index of {len(head)} bytes) are more than "
            f"one answer carries ({BATCH_MAX_BYTES} bytes, an index of "
            f"{BATCH_INDEX_MAX_BYTES}); ask for fewer at a time",
            limit=BATCH_MAX_BYTES,
        )
    request_id = str(getattr(request.state, "request_id", "")) or "-"
    client = request.client.host if request.client else None

    def stream() -> Iterator[bytes]:
        yield head
        for item in items:
            try:
                yield from services.versions.read_file(item)
            except Exception as exc:
                # The 200 and its audit entry are out: record the failure too, then cut the
                # answer short (a client never takes a short answer for a whole one).
                log.error("download batch of %s cut short at %s: %s", ref, item.path, exc)
                services.audit.append(
                    actor=principal.name, action="download_files", target=request.url.path,
                    outcome="error", request_id=request_id,
                    details={"status": 200, "client": client, "cut_at": item.path,
                             "error": str(exc)[:500]},
                )  # fmt: skip
                raise

    return StreamingResponse(
        stream(),
        media_type=FILE_BATCH_MEDIA_TYPE,
        headers={
            "Content-Length": str(len(head) + total),
            "X-Modelseal-Root-Digest": record.root_digest.prefixed,
        },
    )


@router.get(
    "/{namespace}/artifacts/{name}/versions/{selector}/files/{path:path}",
    operation_id="get_version_file",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {
            "description": "With ``redirect=true`` on a registry that presigns downloads: the "
            "file's bytes are at the short-lived URL in ``Location`` (send no credentials "
            "there). ``X-Modelseal-Digest`` names the sha256 they must have.",
        },
    },
)
def get_version_file(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    path: FilePath,
    principal: PrincipalDep,
    services: ServicesDep,
    request: Request,
    redirect: Annotated[
        bool,
        Query(
            description="Accept a 307 to a presigned storage URL instead of the bytes (answered "
            "only when the registry is configured for it; else the bytes come as usual)."
        ),
    ] = False,
) -> Response:
    """Stream one file, or with ``redirect`` point at where it can be fetched directly.
    ``Content-Digest``-style header ``X-Modelseal-Digest`` names its sha256; clients must check
    it while reading, wherever the bytes come from."""
    ref = version_ref(namespace, name, selector)
    validate_path(path)
    record, item, url = services.versions.file_location(principal, ref, path, redirect=redirect)
    if url is not None:
        request.state.version = record.ref  # audited: the version an alias selected
        return Response(
            status_code=status.HTTP_307_TEMPORARY_REDIRECT,
            headers={
                "Location": url,
                "X-Modelseal-Digest": item.sha256.prefixed,
                "X-Modelseal-Size": str(item.size),
                "X-Modelseal-Root-Digest": record.root_digest.prefixed,
                # The URL is a bearer credential until it expires: keep it out of caches
                # and out of Referer headers.
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )
    body: Iterator[bytes] = services.versions.read_file(item)
    return StreamingResponse(
        body,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(item.size),
            "X-Modelseal-Digest": item.sha256.prefixed,
            "ETag": f'"sha256:{item.sha256}"',
            "X-Modelseal-Root-Digest": record.root_digest.prefixed,
        },
    )
