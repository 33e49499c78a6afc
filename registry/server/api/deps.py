"""FastAPI dependencies: the services container and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from registry.errors import AuthenticationError, InvalidRequestError, RateLimitedError
from registry.server.config import Settings
from registry.server.services import Principal, TokenService, UploadService, VersionService
from registry.server.services.attestations import AttestationService
from registry.server.services.audit import AuditService
from registry.server.services.events import SecurityEvents
from registry.server.services.intoto import IntotoService
from registry.server.services.lifecycle import LifecycleService
from registry.server.services.ratelimit import TokenBuckets
from registry.server.services.releases import ReleaseService
from registry.server.services.sbom import BomService


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    tokens: TokenService
    uploads: UploadService
    versions: VersionService
    attestations: AttestationService
    releases: ReleaseService
    lifecycle: LifecycleService
    audit: AuditService
    token_limits: TokenBuckets
    address_limits: TokenBuckets
    registry_key_pem: str
    registry_key_fingerprint: str
    events: SecurityEvents
    boms: BomService
    intoto: IntotoService
    #: Readiness probe: component -> "ok" or why it is not (``/ready``).
    readiness: Callable[[], dict[str, str]] = field(default=lambda: {})


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


bearer = HTTPBearer(auto_error=False, description="An API token: `ms_<id>_<secret>`.")


async def get_principal(
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials if credentials is not None else None
    client = request.client.host if request.client else "unknown"
    principal, wait = await run_in_threadpool(_admit, services, client, token)
    request.state.principal = principal  # for the audit log
    _limit(wait, f"token {principal.name!r}")
    return principal


def _admit(services: Services, client: str, token: str | None) -> tuple[Principal, float]:
    """The address limit, then the token, then the token's limit (the buckets live in the
    database: one thread hop for all three)."""
    _limit(services.address_limits.take(client), f"address {client}")
    try:
        principal = services.tokens.authenticate(token)
    except AuthenticationError:
        services.events.auth_failure(client)
        raise
    return principal, services.token_limits.take(principal.token_id)


def _limit(wait: float, who: str) -> None:
    if wait > 0:
        raise RateLimitedError(
            f"too many requests from {who}; retry in {wait:.1f} s", retry_after=round(wait, 3)
        )


def known_query(request: Request) -> None:
    """Refuse query parameters the operation does not declare (400), as unknown body fields are
    refused: a misspelt ``?revison=2`` must not silently answer the policy in force."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params.keys()) - _query_names(route))
    if unknown:
        shown = [name[:64].encode("unicode_escape").decode("ascii") for name in unknown[:10]]
        allowed = ", ".join(sorted(_query_names(route))) or "none"
        raise InvalidRequestError(
            f"unknown query parameter {shown[0]!r} (this operation takes: {allowed})",
            parameters=shown,
        )


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters of a route and of every dependency it has (kept on the route)."""
    known: frozenset[str] | None = getattr(route, "_known_query", None)
    if known is None:
        names: set[str] = set()
        pending: list[Dependant] = [route.dependant]
        while pending:
            dependant = pending.pop()
            names.update(p.alias for p in dependant.query_params)
            pending.extend(dependant.dependencies)
        known = frozenset(names)
        route._known_query = known  # type: ignore[attr-defined]
    return known


KnownQuery = Depends(known_query)
ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
