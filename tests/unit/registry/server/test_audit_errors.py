"""A request that ends in a server error is on the audit record, like a denied one."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import AuditEntry
from registry.server.services.bootstrap import bootstrap


def test_a_500_from_any_route_is_an_audit_entry(local_settings: Settings) -> None:
    token = bootstrap(local_settings).read_text().strip()  # type: ignore[union-attr]
    app = create_app(local_settings, expiry_interval=None)

    @app.get("/v1/boom", operation_id="boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/boom", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 500
        assert answer.json()["detail"] == "internal error; see the server log"
        assert "a bug" not in answer.text
        assert client.get("/v1/registry/key").status_code == 200  # nothing logged for reads
    engine = make_engine(local_settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        rows = session.execute(select(AuditEntry).where(AuditEntry.outcome == "error")).scalars()
        [entry] = list(rows)
    engine.dispose()
    assert (entry.action, entry.target) == ("boom", "/v1/boom")
    assert '"status": 500' in entry.details
