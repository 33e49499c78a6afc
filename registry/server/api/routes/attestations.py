"""Evidence: trusted identities and the signed bundles attached to versions."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from attest.predicates import CYCLONEDX_BOM
from registry.errors import InvalidRequestError, NotFoundError
from registry.names import validate_name
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.paging import PageDep, link_next
from registry.server.api.problems import problem_response
from registry.server.api.routes.versions import (
    INT32_MAX,
    NamePath,
    NamespacePath,
    SelectorPath,
    version_ref,
)
from registry.server.services.attestations import AttestationRecord, IdentityRecord
from registry.server.services.bomjobs import PENDING, BomStatus
from registry.server.services.common import utcnow
from registry.server.services.sbom import BomTarget
from registry.wire import AttestationPublic, IdentityIn, IdentityPublic, Problem

router = APIRouter(tags=["evidence"], dependencies=[KnownQuery])

_VERSION = "/v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}"
#: Longest ``Retry-After`` while a BOM is pending (a job waiting out a failed attempt's backoff,
#: or a commit's job waiting for the scan, may be due later than that: ask again sooner).
MAX_RETRY_AFTER = 30


def _identity(record: IdentityRecord, *, with_key: bool = False) -> IdentityPublic:
    if not with_key:
        record = dataclasses.replace(record, public_key_pem=None)
    return IdentityPublic.model_validate(record, from_attributes=True)


def _attestation(record: AttestationRecord) -> AttestationPublic:
    return AttestationPublic.model_validate(record, from_attributes=True)


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
    """A version's evidence in the order attached (paged: see the Link header).

    Asked for the ML-BOM (``predicate_type`` ``https://cyclonedx.org/bom``) of a model whose
    BOM is being built: 503 with ``Retry-After`` (the current BOM is the one being built), and
    409 when the registry gave up building it."""
    ref = version_ref(namespace, name, selector)
    if predicate_type == CYCLONEDX_BOM:  # the status first: a list read after it is as new
        unready = _bom_unready(services.boms.target(principal, ref), request)
        if unready is not None:
            return unready  # type: ignore[return-value]
    found = services.attestations.list_attestations(principal, ref, page, predicate_type)
    link_next(request, response, found, page.limit)
    return [_attestation(r) for r in found.items]


@router.get(
    f"{_VERSION}/sbom",
    operation_id="get_ml_bom",
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {}},
            "description": "The current ML-BOM: the newest registry-signed bundle whose "
            "predicate is the version's CycloneDX 1.6 BOM, byte for byte.",
        },
        **{
            status: {
                "model": Problem,
                "content": {"application/problem+json": {}},
                "description": description,
            }
            for status, description in (
                (404, "Not a model, or a model without a BOM (rejected)."),
                (409, "The registry gave up building the BOM (``facts.error`` says why)."),
                (503, "The BOM is being built: retry after ``Retry-After`` seconds."),
            )
        },
    },
)
def get_ml_bom(
    request: Request,
    namespace: NamespacePath,
    name: NamePath,
    selector: SelectorPath,
    principal: PrincipalDep,
    services: ServicesDep,
) -> Response:
    """The version's current ML-BOM, as a Sigstore bundle signed by the registry (verify it with
    the registry's key, as for every bundle). Built off the request path after the commit and
    again when provenance or evaluation results arrive: until then 503 with ``Retry-After``."""
    target = services.boms.target(principal, version_ref(namespace, name, selector))
    if target.kind != "model":
        raise NotFoundError(f"{target.ref} is a {target.kind}: ML-BOMs are built for models")
    unready = _bom_unready(target, request)
    if unready is not None:
        return unready
    if target.current is None:
        raise NotFoundError(f"{target.ref} has no ML-BOM (it is {target.state})")
    return Response(target.current, media_type="application/json")


def _bom_unready(target: BomTarget, request: Request) -> Response | None:
    """The answer while a model's BOM is pending (503, ``Retry-After``) or failed (409)."""
    state = target.bom
    job = state.job
    if job is None or state.status not in (BomStatus.PENDING, BomStatus.FAILED):
        return None
    if state.status == BomStatus.FAILED:
        return problem_response(
            409,
            "conflict",
            f"the ML-BOM of {target.ref} could not be built ({job.attempts} attempts): "
            f"{job.last_error}. It is built again when provenance or evaluation results arrive "
            "while the version is pending, or when an operator asks (docs/operations.md)",
            instance=request.url.path,
            facts={"bom_status": str(state.status), "attempts": job.attempts,
                   "error": job.last_error},
        )  # fmt: skip
    wait = (job.due_at - utcnow()).total_seconds()
    if job.status == PENDING and wait > 0:  # a failed attempt's backoff, or the scan's grace
        retry_after = max(1, min(MAX_RETRY_AFTER, math.ceil(wait)))
    else:  # due or being built: about what a build of this many files takes
        retry_after = min(MAX_RETRY_AFTER, 2 + target.file_count // 5000)
    failures = job.attempts - (0 if job.status == PENDING else 1)  # running: this one counts
    failed = (f"; {failures} attempt(s) failed so far, the last with {job.last_error}"
              if failures > 0 and job.last_error else "")  # fmt: skip
    return problem_response(
        503,
        "service-unavailable",
        f"the ML-BOM of {target.ref} is pending: it is being built off the request path"
        f"{failed}; retry in {retry_after} s",
        instance=request.url.path,
        facts={"bom_status": str(state.status), "retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


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
