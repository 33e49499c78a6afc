"""A version's signed status lists every dependency its provenance names; one that the registry no
longer holds, or holds with another digest, refuses the pull (a database attacker's way around
a revocation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from registry.errors import PullVerificationError
from registry.server.models import Artifact, Version
from tests.integration.test_audit import _db
from tests.integration.test_release import World, _deployer, _released
from tests.support import Live


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


@pytest.mark.parametrize("attack", ["renamed", "other digest"])
def test_a_dependency_gone_from_the_registry_refuses_the_pull(
    world: World, tmp_path: Path, attack: str
) -> None:
    _released(world)
    deployer = _deployer(world)
    deployer.pull("fraud/m@1", tmp_path / "before")  # the acceptance
    engine = _db(world.live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        dataset = conn.execute(
            select(Version.id).join(Artifact).where(Artifact.name == "tx", Version.version == "3")
        ).scalar_one()
        values = {"version": "3-gone"} if attack == "renamed" else {"root_digest": "0" * 64}
        conn.execute(update(Version).where(Version.id == dataset).values(**values))
    engine.dispose()  # type: ignore[attr-defined]
    with pytest.raises(PullVerificationError) as refused:
        deployer.pull("fraud/m@1", tmp_path / "after")
    state = "missing" if attack == "renamed" else "mismatch"
    assert f"is built on fraud/tx@3, which is {state}" in str(refused.value)
    assert not (tmp_path / "after").exists()
