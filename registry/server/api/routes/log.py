"""The transparency log (docs/transparency-log.md): checkpoint, key, proofs, entries, tiles, and
a version's newest status event with its inclusion proof.

Every read needs an authenticated token, of any role: entries name namespaces, models, tokens
and identities across the whole registry (never a secret). The per-version read follows the
version's read rules.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from registry.errors import InvalidRequestError
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.routes.versions import (
    INT64_MAX,
    NamePath,
    NamespacePath,
    SelectorPath,
    version_ref,
)
from registry.server.services.tlog import LOGGED_ACTIONS, LogService, StatusProof, b64
from registry.wire import (
    ConsistencyProofPublic,
    InclusionProofPublic,
    LogEntriesPublic,
    LogEntryPublic,
    LogKeyPublic,
    VersionLogPublic,
)

router = APIRouter(tags=["log"], dependencies=[KnownQuery])

_PREFIX = "/v1/log"
_NO_STORE = {"Cache-Control": "no-store"}
Size = Annotated[int, Query(ge=0, le=INT64_MAX, description="A tree size.")]
Index = Annotated[int, Query(ge=0, le=INT64_MAX, description="A leaf index.")]
_TYPES = sorted(set(LOGGED_ACTIONS.values()))


def _log(request: Request) -> LogService:
    service: LogService = request.app.state.tlog
    return service


@router.get(
    f"{_PREFIX}/checkpoint",
    operation_id="log_checkpoint",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}},
                     "description": "The newest signed checkpoint (C2SP tlog-checkpoint in a "
                                    "signed note), with any witness cosignatures."}},
)  # fmt: skip
def log_checkpoint(request: Request, principal: PrincipalDep) -> Response:
    """The newest checkpoint: origin, tree size, root hash and ``timestamp`` line, signed by the
    log key. It is re-signed at least every ``checkpoint_seconds``, so its age proves
    freshness."""
    text = _log(request).checkpoint_note()
    return Response(text, media_type="text/plain; charset=utf-8", headers=_NO_STORE)


@router.get(f"{_PREFIX}/key", operation_id="log_key", response_model=LogKeyPublic)
def log_key(request: Request, principal: PrincipalDep) -> LogKeyPublic:
    """The log's origin and note verifier key; clients pin it beside the registry key."""
    service = _log(request)
    origin, vkey = service.identity()
    return LogKeyPublic(origin=origin, vkey=vkey, binding=service.key_binding())


@router.get(
    f"{_PREFIX}/proof/inclusion",
    operation_id="log_inclusion_proof",
    response_model=InclusionProofPublic,
)
def log_inclusion_proof(
    request: Request, principal: PrincipalDep, index: Index, size: Size
) -> InclusionProofPublic:
    """The inclusion proof of entry ``index`` in the tree of ``size`` entries (``size`` at
    most the newest checkpoint's)."""
    hashes = _log(request).inclusion(index, size)
    return InclusionProofPublic(index=index, size=size, hashes=[b64(h) for h in hashes])


@router.get(
    f"{_PREFIX}/proof/consistency",
    operation_id="log_consistency_proof",
    response_model=ConsistencyProofPublic,
)
def log_consistency_proof(
    request: Request, principal: PrincipalDep, old: Size, new: Size
) -> ConsistencyProofPublic:
    """The consistency proof from the tree of ``old`` entries to that of ``new`` (at most the
    newest checkpoint's size)."""
    hashes = _log(request).consistency(old, new)
    return ConsistencyProofPublic(old=old, new=new, hashes=[b64(h) for h in hashes])


@router.get(f"{_PREFIX}/entries", operation_id="log_entries", response_model=LogEntriesPublic)
def log_entries(
    request: Request,
    principal: PrincipalDep,
    start: Index,
    end: Annotated[
        int | None,
        Query(ge=0, le=INT64_MAX, description="End (exclusive); default: a full page."),
    ] = None,
) -> LogEntriesPublic:
    """Entries ``[start, end)`` (at most 1000) within the newest checkpoint, as their exact
    bytes."""
    size, found = _log(request).entries(start, end)
    return LogEntriesPublic(
        size=size,
        entries=[LogEntryPublic(index=e.index, entry=b64(e.entry), type=e.type,
                                subject=e.subject) for e in found],
    )  # fmt: skip


@router.get(
    f"{_PREFIX}/tile/{{path:path}}",
    operation_id="log_tile",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}},
                     "description": "A tile (hashes) or an entry bundle (C2SP tlog-tiles)."}},
)  # fmt: skip
def log_tile(
    request: Request,
    principal: PrincipalDep,
    path: Annotated[
        str,
        Path(
            description="After tile/: <L>/<N>[.p/<W>] or entries/<N>[.p/<W>] (C2SP tlog-tiles).",
            max_length=200,
        ),
    ],
) -> Response:
    """A tile or entry bundle of the newest checkpoint's tree. Paths are immutable: a tile's
    bytes never change (a wider tile has another path)."""
    data = _log(request).tile(f"tile/{path}")
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get(
    "/v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}/log",
    operation_id="version_log",
    response_model=VersionLogPublic,
)
def version_log(
    request: Request,
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """The version's newest status event in the log (its release, or its revocation), the
    newest signed checkpoint (signed now if none covers the event yet) and the event's
    inclusion proof in it: what a pull checks. Follows the version's read rules."""
    record = services.versions.resolve(principal, version_ref(namespace, name, selector))
    return _proven(request, _log(request).status_event(record.ref))


def _proven(request: Request, found: StatusProof) -> Response:
    """An entry, the checkpoint covering it (with any witness cosignatures) and its proof."""
    body = VersionLogPublic(
        index=found.entry.index,
        entry=b64(found.entry.entry),
        type=found.entry.type,
        checkpoint=_log(request).cosigned_note(found.checkpoint),
        size=found.checkpoint.size,
        hashes=[b64(h) for h in found.proof],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_NO_STORE)


@router.get(f"{_PREFIX}/latest", operation_id="log_latest", response_model=VersionLogPublic)
def log_latest(
    request: Request,
    principal: PrincipalDep,
    subject: Annotated[
        str,
        Query(
            min_length=1,
            max_length=300,
            description="An entry subject, e.g. ns/name@alias or ns/name@version.",
        ),
    ],
    type: Annotated[
        str,
        Query(description=f"The entry type: one of {', '.join(_TYPES)}."),
    ],
) -> Response:
    """The newest entry about ``subject`` of ``type`` (an alias's newest move: the subject
    ``ns/name@alias``, the type ``alias``), the newest signed checkpoint (signed now if none
    covers the entry yet, with any witness cosignatures) and the entry's inclusion proof in it:
    what a pull of an alias checks. 404 when no such entry is logged."""
    if type not in _TYPES:
        raise InvalidRequestError(f"no log entry type {type[:40]!r} (one of {', '.join(_TYPES)})")
    return _proven(request, _log(request).latest_event(subject, (type,)))
