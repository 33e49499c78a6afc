"""Policies and the release gate."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from registry.errors import InvalidRequestError
from registry.names import validate_alias, validate_name
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.paging import PageDep, link_next
from registry.server.api.routes.versions import (
    INT32_MAX,
    INT64_MAX,
    AliasPath,
    NamePath,
    NamespacePath,
    SelectorPath,
    public_version,
    version_ref,
)
from registry.server.services.releases import AuditHead, PolicyRecord
from registry.wire import (
    AliasIn,
    AliasMovePublic,
    AliasPublic,
    FlaggedAliasPublic,
    PolicyPublic,
    RejectIn,
    RevocationPublic,
    RevokedPublic,
    RevokeIn,
    VersionPublic,
)

router = APIRouter(tags=["releases"], dependencies=[KnownQuery])

_VERSION = "/v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}"


def _policy(record: PolicyRecord) -> PolicyPublic:
    return PolicyPublic.model_validate(record, from_attributes=True)


@router.put(
    "/v1/namespaces/{namespace}/policy",
    operation_id="set_policy",
    response_model=PolicyPublic,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/yaml": {"schema": {}}}}
    },
)
async def set_policy(
    namespace: NamespacePath, request: Request, principal: PrincipalDep, services: ServicesDep
) -> PolicyPublic:
    """Store a new policy revision (admins). An invalid policy is refused with its line."""
    validate_name(namespace, what="namespace")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError("a policy must be UTF-8 YAML") from None
    record = await run_in_threadpool(services.releases.set_policy, principal, namespace, text)
    return _policy(record)


@router.get(
    "/v1/namespaces/{namespace}/policy", operation_id="get_policy", response_model=PolicyPublic
)
def get_policy(
    namespace: NamespacePath,
    principal: PrincipalDep,
    services: ServicesDep,
    revision: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="An older revision.")
    ] = None,
) -> PolicyPublic:
    """The policy in force, or an older revision (revision 0: the built-in default)."""
    validate_name(namespace, what="namespace")
    return _policy(services.releases.get_policy(principal, namespace, revision))


@router.post(f"{_VERSION}/release", operation_id="release_version", response_model=VersionPublic)
def release_version(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
) -> VersionPublic:
    """Run the release gate. 409 ``release-refused`` lists every broken link in
    ``facts.reasons``; the version stays pending with the verdict recorded. A model whose ML-BOM
    is still being built past a wait answers 503 with ``Retry-After`` (the SDK retries)."""
    ref = version_ref(namespace, name, selector)
    return public_version(services.releases.release(principal, str(ref)))


@router.post(f"{_VERSION}/reject", operation_id="reject_version", response_model=VersionPublic)
def reject_version(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    body: RejectIn,
    principal: PrincipalDep,
    services: ServicesDep,
) -> VersionPublic:
    """Reject a pending version for good."""
    ref = version_ref(namespace, name, selector)
    return public_version(services.releases.reject(principal, str(ref), body.reason))


@router.post(f"{_VERSION}/revoke", operation_id="revoke_version", response_model=RevocationPublic)
def revoke_version(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    body: RevokeIn,
    principal: PrincipalDep,
    services: ServicesDep,
) -> RevocationPublic:
    """Revoke a released version (incident response) and, transitively through provenance,
    every released version built on it: each gets a registry-signed revocation naming the root
    cause, an audit entry and a security event. Aliases pointing at them are listed (flagged)."""
    ref = version_ref(namespace, name, selector)
    result = services.releases.revoke(principal, ref, body.reason)  # events: in its transactions
    root = result.record
    return RevocationPublic(
        version=public_version(root),
        dependents=result.dependents,
        revoked=[
            RevokedPublic(version=i.record.ref, built_on=i.built_on, reason=i.reason)
            for i in result.revoked
        ],
        aliases=[FlaggedAliasPublic(alias=a, version=v) for a, v in result.aliases],
    )


@router.get(
    f"{_VERSION}/status",
    operation_id="version_status",
    response_class=Response,
    responses={200: {"content": {"application/json": {}},
                     "description": "A registry-signed bundle (Sigstore bundle v0.3)."}},
)  # fmt: skip
def version_status(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
    audit_since: Annotated[
        int | None,
        Query(
            ge=0,
            le=INT64_MAX,
            description="Also sign the hash of this audit entry (the count of the "
            "newest checkpoint the client saw), so it can tell a rolled-back log.",
        ),
    ] = None,
) -> Response:
    """The version's current state, every dependency's (transitively through provenance) and
    the audit log's head, as a statement signed by the registry key now (``issuedAt``). A
    verified pull asks for it before writing a byte and accepts it only within its freshness
    window, so a revocation reaches deploy jobs that hold an older release attestation."""
    ref = version_ref(namespace, name, selector)
    count, head, at = services.audit.head(audit_since)
    audit = AuditHead(count, head, audit_since, at) if audit_since else AuditHead(count, head)
    raw = services.releases.status(principal, ref, audit)
    return Response(raw, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get(f"{_VERSION}/in-toto", operation_id="in_toto_export",
            response_model=dict[str, str])  # fmt: skip
def in_toto_export(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
) -> dict[str, str]:
    """An in-toto layout and links for a released version, signed by the registry key:
    ``{"root.layout": …, "<step>.<keyid8>.link": …}`` for ``in-toto-verify``."""
    return services.intoto.in_toto(principal, version_ref(namespace, name, selector))


_ARTIFACT = "/v1/namespaces/{namespace}/artifacts/{name}"


@router.put(
    f"{_ARTIFACT}/aliases/{{alias}}", operation_id="set_alias", response_model=AliasMovePublic
)
def set_alias(
    namespace: NamespacePath,
    name: NamePath,
    alias: AliasPath,
    body: AliasIn,
    principal: PrincipalDep,
    services: ServicesDep,
) -> AliasMovePublic:
    """Point an alias at a released version (recorded in its history)."""
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    validate_alias(alias)
    move = services.lifecycle.set_alias(principal, namespace, name, alias, body.version)
    return AliasMovePublic.model_validate(move, from_attributes=True)


@router.get(f"{_ARTIFACT}/aliases", operation_id="list_aliases", response_model=list[AliasPublic])
def list_aliases(
    request: Request, response: Response, namespace: NamespacePath, name: NamePath,
    principal: PrincipalDep, services: ServicesDep, page: PageDep,
) -> list[AliasPublic]:  # fmt: skip
    """The aliases of an artifact, by name (paged: see the Link header)."""
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    found = services.lifecycle.list_aliases(principal, namespace, name, page)
    link_next(request, response, found, page.limit)
    return [AliasPublic.model_validate(r, from_attributes=True) for r in found.items]


@router.get(
    f"{_ARTIFACT}/aliases/{{alias}}/history",
    operation_id="alias_history",
    response_model=list[AliasMovePublic],
)
def alias_history(
    request: Request,
    response: Response,
    namespace: NamespacePath,
    name: NamePath,
    alias: AliasPath,
    principal: PrincipalDep,
    services: ServicesDep,
    page: PageDep,
) -> list[AliasMovePublic]:
    """Every move of an alias, oldest first: who, when, from, to (paged: see the Link header)."""
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    validate_alias(alias)
    found = services.lifecycle.history(principal, namespace, name, alias, page)
    link_next(request, response, found, page.limit)
    return [AliasMovePublic.model_validate(m, from_attributes=True) for m in found.items]
