"""A release and a revocation of what it is built on, racing: the release never lands on a
revoked dependency, and a revocation that missed a dependent revokes it when repeated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from attest.predicates import REVOCATION
from registry.errors import ConflictError
from registry.server.app import create_app
from registry.server.models import Artifact, Attestation, Version
from registry.server.services import Role
from tests.integration.test_audit import _db
from tests.integration.test_release import World
from tests.support import Live


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def test_a_revocation_landing_between_the_gate_and_the_write_refuses_the_release(
    world: World,
) -> None:
    world.model("fraud/m@1", deps=[("fraud/tx@3", world.dataset())])
    app = create_app(world.live.settings, expiry_interval=None)  # same database and store
    services = app.state.services
    secret = services.tokens.create(name="racer", role=Role.RELEASER, namespace="fraud").secret
    principal = services.tokens.authenticate(secret)
    releases = services.releases
    gate = releases.check

    def racing(*args: Any, **kwargs: Any) -> Any:
        verdict = gate(*args, **kwargs)  # the dependency is released while the gate runs
        world.admin.revoke("fraud/tx@3", "poisoned rows")  # ... and revoked right after
        return verdict

    releases.check = racing  # type: ignore[method-assign]
    with pytest.raises(ConflictError, match="fraud/tx@3, which it is built on, was revoked"):
        releases.release(principal, "fraud/m@1")
    assert world.admin.show("fraud/m@1").state == "pending"


def test_a_dependent_that_escaped_the_cascade_is_revoked_when_the_revocation_is_repeated(
    world: World,
) -> None:
    world.model("fraud/m@1", deps=[("fraud/tx@3", world.dataset())])
    world.releaser.release("fraud/m@1")
    world.admin.revoke("fraud/tx@3", "poisoned rows")
    # What a release that won the race would have left: the model released, no revocation.
    engine = _db(world.live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        model = conn.execute(select(Version.id).join(Artifact)
                             .where(Artifact.name == "m")).scalar_one()  # fmt: skip
        conn.execute(update(Version).where(Version.id == model).values(state="released"))
        conn.execute(delete(Attestation).where(
            Attestation.version_id == model, Attestation.predicate_type == REVOCATION
        ))  # fmt: skip
    engine.dispose()  # type: ignore[attr-defined]
    assert world.admin.show("fraud/m@1").state == "released"
    again = world.admin.revocation("fraud/tx@3", "poisoned rows")
    assert world.admin.show("fraud/m@1").state == "revoked"
    assert [r.version for r in again.revoked] == ["fraud/m@1"]
    assert len(world.admin.list_attestations("fraud/m@1", REVOCATION)) == 1
