"""The one door from the command line into the server.

``modelseal serve`` and ``modelseal admin …`` import this module inside the command (so every
other command starts without FastAPI or SQLAlchemy); nothing else in :mod:`registry.cli` imports
:mod:`registry.server`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from registry.server.config import Settings
from registry.server.services.auth import IssuedToken
from registry.server.services.bootstrap import bootstrap, operator_actor, operator_admin_token

__all__ = ["Settings", "bootstrap", "issue_admin_token", "operator_actor", "run", "settings"]


def settings(
    data_dir: Path, database_url: str | None = None, storage: str | None = None
) -> Settings:
    """Settings for DATA_DIR, with the command line's overrides (the environment fills the rest)."""
    overrides: dict[str, Any] = {"data_dir": data_dir}
    if database_url:
        overrides["database_url"] = database_url
    if storage:
        overrides["storage"] = storage
    return Settings(**overrides)


def run(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    drain_seconds: int,
) -> None:
    """Serve the API with uvicorn until SIGTERM/SIGINT (after :func:`bootstrap`)."""
    import uvicorn

    from registry.server.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="info",
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=drain_seconds,
    )


def issue_admin_token(settings: Settings, *, name: str, expires_days: int | None) -> IssuedToken:
    """A registry-wide admin token written straight to the database (audited as the operator)."""
    return operator_admin_token(
        settings, name=name, expires_in=timedelta(days=expires_days) if expires_days else None
    )
