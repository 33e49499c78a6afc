"""Evidence: trusted identities and the signed bundles attached to versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from registry.errors import InvalidRequestError
from registry.names import validate_name
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.paging import PageDep, link_next
from registry.server.api.routes.versions import (
    INT32_MAX,
    NamePath,
    NamespacePath,
    SelectorPath,
    version_ref,
)
from registry.server.services.attestations import AttestationRecord, IdentityRecord
from registry.wire import AttestationPublic, IdentityIn, IdentityPublic

router = APIRouter(tags=["evidence"], dependencies=[KnownQuery])

_VERSION = "/v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}"


def _identity(record: IdentityRecord, *, with_key: bool = False) -> IdentityPublic:
    return IdentityPublic(
        name=record.name,
        kind=record.kind,
        fingerprint=f"sha256:{record.fingerprint}" if record.fingerprint else None,
        sigstore_issuer=record.sigstore_issuer,
        sigstore_identity=record.sigstore_identity,
        regex=record.regex,
        created_at=record.created_at,
        created_by=record.created_by,
        public_key_pem=record.public_key_pem if with_key else None,
    )


def _attestation(record: AttestationRecord) -> AttestationPublic:
    return AttestationPublic(
        id=record.id,
        ref=record.ref,
        predicate_type=record.predicate_type,
        subject_digest=f"sha256:{record.subject_digest}",
        bundle_digest=f"sha256:{record.bundle_digest}",
        signer=record.signer,
        signer_id=record.signer_id,
        created_at=record.created_at,
        created_by=record.created_by,
    )


@router.post(
    "/v1/identities",
    operation_id="add_identity",
    response_model=IdentityPublic,
    status_code=status.HTTP_201_CREATED,
)
def add_identity(
    body: IdentityIn, principal: PrincipalDep, services: ServicesDep
) -> IdentityPublic:
    """Trust a signer (admins only): a PEM public key, or a Sigstore issuer + identity."""
    validate_name(body.name, what="identity name")
    evidence = services.attestations
    if body.public_key_pem is not None:
        if body.sigstore_issuer or body.sigstore_identity:
            raise InvalidRequestError("an identity is either a key or a Sigstore identity")
        record = evidence.add_key_identity(principal, body.name, body.public_key_pem)
    elif body.sigstore_issuer and body.sigstore_identity:
        record = evidence.add_sigstore_identity(
            principal,
            body.name,
            issuer=body.sigstore_issuer,
            identity=body.sigstore_identity,
            regex=body.regex,
        )
    else:
        raise InvalidRequestError(
            "give public_key_pem, or both sigstore_issuer and sigstore_identity"
        )
    return _identity(record)


@router.get("/v1/identities", operation_id="list_identities", response_model=list[IdentityPublic])
def list_identities(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    page: PageDep,
    with_keys: Annotated[bool, Query(description="Include public keys (PEM).")] = False,
) -> list[IdentityPublic]:
    """Registered identities, by name (paged: see the Link header)."""
    found = services.attestations.list_identities(principal, page)
    link_next(request, response, found, page.limit)
    return [_identity(r, with_key=with_keys) for r in found.items]


@router.post(
    f"{_VERSION}/attestations",
    operation_id="attach_attestation",
    response_model=AttestationPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": AttestationPublic, "description": "Already attached."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A Sigstore bundle v0.3 (JSON) whose DSSE payload is an in-toto "
            "statement about the version's root digest.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def attach_attestation(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
) -> AttestationPublic:
    """Attach a signed bundle. It is verified (signer registered, signature, subject = the
    version's root digest, OMS manifest = the version's files) and stored byte-exact."""
    ref = version_ref(namespace, name, selector)
    raw = await request.body()
    record, created = await run_in_threadpool(services.attestations.attach, principal, ref, raw)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _attestation(record)


@router.get(
    f"{_VERSION}/attestations",
    operation_id="list_attestations",
    response_model=list[AttestationPublic],
)
def list_attestations(
    request: Request,
    response: Response,
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
    page: PageDep,
    predicate_type: Annotated[str | None, Query(max_length=256)] = None,
) -> list[AttestationPublic]:
    """A version's evidence in the order attached (paged: see the Link header)."""
    ref = version_ref(namespace, name, selector)
    found = services.attestations.list_attestations(principal, ref, page, predicate_type)
    link_next(request, response, found, page.limit)
    return [_attestation(r) for r in found.items]


@router.get(
    f"{_VERSION}/attestations/{{attestation_id}}",
    operation_id="get_attestation",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "The exact bundle."}},
)
def get_attestation(
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    attestation_id: Annotated[int, Path(ge=1, le=INT32_MAX, description="Attestation id.")],
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """The bundle, byte for byte as it was attached."""
    raw = services.attestations.get(
        principal, version_ref(namespace, name, selector), attestation_id
    )
    return Response(raw, media_type="application/json")
