"""The audit log: entries (auditors, admins) and signed checkpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from registry.errors import NotFoundError
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.routes.versions import INT64_MAX
from registry.server.services.auth import Action

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[KnownQuery])


@router.get("/log", operation_id="audit_log", response_model=list[dict[str, Any]])
def audit_log(
    principal: PrincipalDep,
    services: ServicesDep,
    after: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="Entries after this sequence number.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[dict[str, Any]]:
    return services.audit.entries(principal, after=after, limit=limit)


@router.get(
    "/checkpoints/latest",
    operation_id="latest_audit_checkpoint",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def latest_checkpoint(principal: PrincipalDep, services: ServicesDep) -> Response:
    """The newest registry-signed checkpoint (a bundle)."""
    raw = services.audit.latest_checkpoint(principal)
    if raw is None:
        raise NotFoundError("no audit checkpoint has been signed yet")
    return Response(raw, media_type="application/json")


@router.post("/checkpoints", operation_id="sign_audit_checkpoint", status_code=201)
def sign_checkpoint(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Sign a checkpoint of the current head now (registry-wide admins and auditors: it adds a
    row to the checkpoint table and changes nothing else)."""
    principal.require(Action.AUDIT, None)
    result = services.audit.checkpoint(principal)
    return {"count": result["count"], "head": result["head"]}
