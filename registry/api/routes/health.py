from __future__ import annotations

from fastapi import APIRouter

from registry import __version__
from registry.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health", response_model=Health)
def health() -> Health:
    """Liveness: answers without authentication and touches nothing."""
    return Health(version=__version__)
