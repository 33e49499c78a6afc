"""Security events reported by clients, and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials

from registry.names import parse_ref
from registry.server.api.deps import KnownQuery, PrincipalDep, ServicesDep, bearer, get_principal
from registry.server.services.auth import Action
from registry.server.services.events import Event
from registry.wire import VerificationFailureIn

router = APIRouter(tags=["events"], dependencies=[KnownQuery])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.post(
    "/v1/events/verification-failure",
    operation_id="report_verification_failure",
    status_code=status.HTTP_204_NO_CONTENT,
)
def report_verification_failure(
    body: VerificationFailureIn, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """The SDK reports a pull whose verification failed, about a reference in the caller's
    scope (403 otherwise, audited, no event: one team cannot raise alarms about another's).

    The report is audit-logged, counted in ``/metrics`` and sent to the webhooks."""
    ref = parse_ref(body.reference)
    principal.require(Action.READ, ref.namespace)
    if body.kind == "not-released":
        services.events.metrics.pull_refusals.labels(reason="not-released").inc()
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    services.events.emit(
        Event.VERIFICATION_FAILURE,
        source="client pull",
        actor=principal.name,
        reference=body.reference,
        detail=body.reason,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}}}},
)
async def metrics(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Response:
    """Prometheus metrics of this replica. Needs an admin or auditor token unless
    ``metrics_public`` is set."""
    if not services.settings.metrics_public:
        principal = await get_principal(request, services, credentials)
        principal.require(Action.AUDIT, None)
    body = await run_in_threadpool(services.events.metrics.exposition)
    return Response(body, media_type=PROMETHEUS_TEXT)
