"""`modelseal attest --evaluation METRICS.json`: an evaluation job signs its metrics without
knowing the test-result predicate; the gate reads them, and bad metrics never reach the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import Live, run_cli

POLICY = """\
model:
  require:
    signature: ['*']
    provenance: ['*']
    evaluation:
      signers: [eval-ci]
      metrics: {accuracy: ">= 0.90"}
"""


@pytest.fixture
def pushed(live: Live, model_dir: Path, tmp_path: Path) -> Path:
    """A signed push by training-ci, and eval-ci's key registered; returns the key directory."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("training-ci", "eval-ci"):
        assert run_cli("keygen", str(keys / name), live=live).returncode == 0
        added = run_cli("identity", "add", name, "--key", str(keys / f"{name}.pub"), live=live)
        assert added.returncode == 0, added.stderr
    (tmp_path / "policy.yaml").write_text(POLICY)
    policy = run_cli("policy", "set", "vision", str(tmp_path / "policy.yaml"), live=live)
    assert policy.returncode == 0, policy.stderr
    key = str(keys / "training-ci.key")
    push = run_cli("push", str(model_dir), "vision/m@1", "--sign-key", key, "--no-progress",
                   live=live)  # fmt: skip
    assert push.returncode == 0, push.stderr
    return keys


def test_evaluation_metrics_are_signed_and_read_by_the_gate(
    live: Live, pushed: Path, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.84, "f1": 0.8}))
    low = run_cli("attest", "vision/m@1", "--evaluation", str(metrics),
                  "--sign-key", str(pushed / "eval-ci.key"), live=live)  # fmt: skip
    assert low.returncode == 0, low.stderr
    assert "test-result/v0.1 signed by eval-ci" in low.stderr
    refused = run_cli("release", "vision/m@1", live=live)
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == ["evaluation: accuracy 0.84 < 0.9"]
    with live.client() as client:
        [attached] = client.list_attestations(
            "vision/m@1", "https://in-toto.io/attestation/test-result/v0.1"
        )
        assert attached.signer == "eval-ci"


BAD_METRICS = [
    ('{"accuracy": "high"}', "'accuracy' is str, not a number"),
    ('{"accuracy": {"top1": 0.9}}', "'accuracy' is dict, not a number"),
    ('{"accuracy": true}', "'accuracy' is bool, not a number"),
    ("{}", "must be a non-empty JSON object of metric name to number"),
    ("[0.9]", "must be a non-empty JSON object of metric name to number"),
    ('{"accuracy": 0.9', "not valid JSON"),
]


def test_bad_metrics_are_refused_before_anything_is_sent(
    live: Live, pushed: Path, tmp_path: Path
) -> None:
    metrics = tmp_path / "metrics.json"
    for content, message in BAD_METRICS:
        metrics.write_text(content)
        result = run_cli("attest", "vision/m@1", "--evaluation", str(metrics),
                         "--sign-key", str(pushed / "eval-ci.key"), live=live)  # fmt: skip
        assert result.returncode == 1, content
        assert message in result.stderr, (content, result.stderr)
        assert "Traceback" not in result.stderr
    with live.client() as client:
        assert (
            client.list_attestations(
                "vision/m@1", "https://in-toto.io/attestation/test-result/v0.1"
            )
            == []
        )


def test_evaluation_and_predicate_options_exclude_each_other(live: Live, pushed: Path) -> None:
    neither = run_cli("attest", "vision/m@1", "--sign-key", str(pushed / "eval-ci.key"), live=live)
    assert neither.returncode == 1
    assert "attest needs either --evaluation METRICS.json or --predicate-type" in neither.stderr
    half = run_cli("attest", "vision/m@1", "--predicate-type", "https://example.com/x",
                   "--sign-key", str(pushed / "eval-ci.key"), live=live)  # fmt: skip
    assert half.returncode == 1 and "--predicate-type and --predicate go together" in half.stderr
