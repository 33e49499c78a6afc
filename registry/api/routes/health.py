from __future__ import annotations

from fastapi import APIRouter

from registry import __version__
from registry.api.deps import ServicesDep
from registry.api.schemas import Health, RegistryKeyPublic

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health", response_model=Health)
def health() -> Health:
    """Liveness: answers without authentication and touches nothing."""
    return Health(version=__version__)


@router.get("/v1/registry/key", operation_id="registry_key", response_model=RegistryKeyPublic)
def registry_key(services: ServicesDep) -> RegistryKeyPublic:
    """The registry's public signing key (no authentication: it is public; pin it)."""
    return RegistryKeyPublic(
        fingerprint=services.registry_key_fingerprint,
        public_key_pem=services.registry_key_pem,
    )
