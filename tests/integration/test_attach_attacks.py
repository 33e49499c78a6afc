"""Attaching evidence, as a malicious publisher would: a re-encoded signature is the same
evidence, and statements only the registry makes cannot be attached by anyone else."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attest.evaluation import evaluation_predicate
from attest.predicates import SCAN, TEST_RESULT
from attest.statement import make_statement
from registry.errors import EvidenceRejectedError
from tests.integration.test_release import World
from tests.support import Live

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def world(live: Live, tmp_path: Path) -> World:
    return World(live, tmp_path)


def _signed(world: World, ref: str, predicate_type: str, predicate: dict[str, object],
            signer: object) -> bytes:  # fmt: skip
    version = world.admin.show(ref)
    statement = make_statement(name=f"{version.namespace}/{version.name}",
                               root_digest=version.root_digest.removeprefix("sha256:"),
                               predicate_type=predicate_type, predicate=predicate)  # fmt: skip
    return signer.sign(statement).raw  # type: ignore[attr-defined,no-any-return]


def test_a_malleated_ecdsa_signature_is_the_same_evidence(world: World) -> None:
    world.model("fraud/m@1", accuracy=None)
    raw = _signed(world, "fraud/m@1", TEST_RESULT, evaluation_predicate({"accuracy": 0.95}),
                  world.evaluation)  # fmt: skip
    first = world.admin.attach("fraud/m@1", raw)
    document = json.loads(raw)
    entry = document["dsseEnvelope"]["signatures"][0]
    r, s = decode_dss_signature(base64.b64decode(entry["sig"]))
    entry["sig"] = base64.b64encode(encode_dss_signature(r, P256_ORDER - s)).decode()
    again = world.admin.attach("fraud/m@1", json.dumps(document).encode())  # still verifies
    assert again.id == first.id
    assert len(world.admin.list_attestations("fraud/m@1", TEST_RESULT)) == 1


def test_statements_only_the_registry_makes_cannot_be_attached(world: World) -> None:
    """Even signed by a registered identity: the gate reads the registry's newest scan."""
    world.model("fraud/m@1", accuracy=None)
    forged = _signed(world, "fraud/m@1", SCAN, {"scanner": {"ruleset": "9999"},
                     "verdict": "clean", "files": []}, world.training)  # fmt: skip
    with pytest.raises(EvidenceRejectedError, match="made by the registry itself"):
        world.admin.attach("fraud/m@1", forged)
    assert len(world.admin.list_attestations("fraud/m@1", SCAN)) == 1  # the push's own
