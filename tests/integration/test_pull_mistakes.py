"""A deployer pulling a version that is not released yet is a user's mistake: counted apart, no
security event (a real verification failure still is one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import PullVerificationError
from tests.integration.test_events import _metric
from tests.support import Live, make_model_dir


def test_pulling_a_pending_version_is_counted_apart_from_verification_failures(
    live: Live, tmp_path: Path
) -> None:
    with live.client() as admin:
        admin.push(make_model_dir(tmp_path / "m"), "vision/m@1")
        token = admin.create_token("deploy", "deployer", "vision").token
        assert token is not None
    with live.client(token=token) as deployer:
        with pytest.raises(PullVerificationError, match="only released versions are pulled"):
            deployer.pull("vision/m@1", tmp_path / "out")
        deployer.report_verification_failure("vision/m@1", "digest mismatch")
    assert _metric(live, 'modelseal_pull_refusals_total{reason="not-released"}') == 1
    assert _metric(live, 'modelseal_security_events_total{event="verification_failure"}') == 1
