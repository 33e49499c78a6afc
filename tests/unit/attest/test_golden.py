"""Bundles written by earlier releases keep verifying (tests/data/golden-*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.bundle import Bundle
from attest.files import verify_directory
from attest.keys import TrustedKey
from attest.verifying import Verifier
from tests.peers import model_signing

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "golden-0.1.0"
ROOT = "aae57c61780821e311afde6d57d042eaaf8d729ed033ef30e87144f16ec325c9"


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_release_0_1_0_bundles_still_verify(kind: str) -> None:
    verifier = Verifier(keys=[TrustedKey.from_pem(kind, (GOLDEN / f"{kind}.pub").read_bytes())])
    oms = verify_directory(
        GOLDEN / "model", Bundle.parse((GOLDEN / f"model.{kind}.sig").read_bytes()), verifier
    )
    assert oms.statement.subject.sha256 == ROOT
    evaluation = verifier.verify(
        Bundle.parse((GOLDEN / f"evaluation.{kind}.sigstore.json").read_bytes())
    )
    assert evaluation.statement.subject.sha256 == ROOT
    assert evaluation.statement.predicate["metrics"] == {"accuracy": 0.93}


def test_release_0_1_0_oms_bundle_passes_model_signing() -> None:
    public, signature = str(GOLDEN / "ecdsa.pub"), str(GOLDEN / "model.ecdsa.sig")
    result = model_signing("verify", "key", "--public_key", public, "--signature", signature,
                           str(GOLDEN / "model"))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
