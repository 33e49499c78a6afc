"""A test result the gate could never use is refused when it arrives, not at release time."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.evaluation import evaluation_predicate
from attest.predicates import TEST_RESULT
from registry.errors import EvidenceRejectedError
from tests.integration.test_release import World
from tests.support import Live


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        ({"result": "PASSED"}, "the test result's metrics must be a non-empty JSON object"),
        ({"result": "PASSED", "metrics": {"accuracy": "high"}}, "'accuracy' is str"),
        ({"result": "MAYBE", "metrics": {"accuracy": 0.9}}, "result must be one of"),
    ],
)
def test_an_unusable_test_result_is_refused_at_attach(
    world: World, predicate: dict[str, object], message: str
) -> None:
    world.model("fraud/m@1", accuracy=None)
    with pytest.raises(EvidenceRejectedError, match=message):
        world.attest("fraud/m@1", TEST_RESULT, predicate, world.evaluation)
    world.attest("fraud/m@1", TEST_RESULT, evaluation_predicate({"accuracy": 0.93}),
                 world.evaluation)  # fmt: skip
    assert len(world.admin.list_attestations("fraud/m@1", TEST_RESULT)) == 1
