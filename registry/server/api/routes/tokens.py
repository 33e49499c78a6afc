"""API tokens (admins): create (the secret is shown once), list without secrets, revoke."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from registry.names import validate_name
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep
from registry.server.api.paging import PageDep, link_next
from registry.server.services.auth import Role
from registry.wire import TokenIn, TokenPublic

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[KnownQuery])


@router.post("", operation_id="create_token", response_model=TokenPublic, status_code=201)
def create_token(body: TokenIn, principal: PrincipalDep, services: ServicesDep) -> TokenPublic:
    if body.namespace is not None:
        validate_name(body.namespace, what="namespace")
    expires = timedelta(days=body.expires_days) if body.expires_days else None
    issued = services.tokens.issue(
        principal, name=body.name, role=Role(body.role), namespace=body.namespace,
        expires_in=expires,
    )  # fmt: skip
    return TokenPublic(
        id=issued.id, name=body.name, role=body.role, namespace=body.namespace, token=issued.secret
    )


@router.get("", operation_id="list_tokens", response_model=list[TokenPublic])
def list_tokens(
    request: Request, response: Response, principal: PrincipalDep, services: ServicesDep,
    page: PageDep,
) -> list[TokenPublic]:  # fmt: skip
    """API tokens without their secrets, oldest first (paged: see the Link header)."""
    found = services.tokens.list_tokens(principal, page)
    link_next(request, response, found, page.limit)
    return [TokenPublic.model_validate(r, from_attributes=True) for r in found.items]


@router.delete("/{token_id}", operation_id="revoke_token", status_code=204)
def revoke_token(token_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    services.tokens.revoke_as(principal, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
