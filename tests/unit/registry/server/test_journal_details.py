"""An audit entry's details are always JSON that parses, however long what was recorded."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select

from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker, migrate, transaction
from registry.server.models import AuditEntry
from registry.server.services.journal import DETAILS_MAX_CHARS, append


def _recorded(settings: Settings, details: dict[str, object]) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    try:
        with transaction(sessions) as session:
            append(session, actor="a", action="x", target="/t", outcome="ok", request_id="r",
                   details=details, at=datetime.now(UTC))  # fmt: skip
        with sessions() as session:
            return session.execute(select(AuditEntry.details)).scalar_one()
    finally:
        engine.dispose()


def test_details_within_the_limit_are_kept_whole(local_settings: Settings) -> None:
    details = {"digests": ["sha256:" + "a" * 64] * 50}
    assert json.loads(_recorded(local_settings, details)) == details


def test_longer_details_become_a_summary_that_parses(local_settings: Settings) -> None:
    details = {"digests": ["sha256:" + "b" * 64] * 500}
    text = json.dumps(details, sort_keys=True)
    assert len(text) > DETAILS_MAX_CHARS
    stored = json.loads(_recorded(local_settings, details))  # a cut at the limit would not parse
    assert stored == {
        "truncated": True,
        "chars": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
