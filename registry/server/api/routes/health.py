from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from registry import __version__
from registry.server.api.deps import ServicesDep
from registry.wire import Health, RegistryKeyPublic

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health", response_model=Health)
def health() -> Health:
    """Liveness: answers without authentication and touches nothing."""
    return Health(version=__version__)


@router.get(
    "/ready",
    operation_id="ready",
    response_model=dict[str, str],
    responses={503: {"description": "The database or the blob store is unavailable "
                     "(problem+json; `facts` names each component's state; `Retry-After`).",
                     "content": {"application/problem+json": {}}}},
)  # fmt: skip
def ready(services: ServicesDep) -> dict[str, str] | JSONResponse:
    """Readiness: 200 when this replica reaches its database and its blob store, else 503.
    No authentication; it names components, never addresses. ``/health`` is liveness only."""
    from registry.server.api.problems import RETRY_AFTER_SECONDS, problem_response

    found = services.readiness()
    down = sorted(k for k, v in found.items() if v != "ok")
    if down:
        return problem_response(
            503, "not-ready", f"not ready: {', '.join(down)} unavailable", instance="/ready",
            facts=found, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    return {"status": "ready", **found}


@router.get("/v1/registry/key", operation_id="registry_key", response_model=RegistryKeyPublic)
def registry_key(services: ServicesDep) -> RegistryKeyPublic:
    """The registry's public signing key (no authentication: it is public; pin it)."""
    return RegistryKeyPublic(
        fingerprint=services.registry_key_fingerprint,
        public_key_pem=services.registry_key_pem,
    )
