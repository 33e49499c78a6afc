"""Policies name registered identities only, and the starter template is a valid policy."""

from __future__ import annotations

import pytest

from attest import keys
from attest.policy import POLICY_TEMPLATE, parse_policy
from attest.signing import KeySigner
from registry.errors import InvalidRequestError
from tests.support import Live, run_cli


def test_a_policy_naming_an_unregistered_identity_is_refused_with_the_known_names(
    live: Live,
) -> None:
    with live.client() as client:
        client.add_key_identity("training-ci", keys.public_pem(KeySigner(keys.generate())
                                                               .public_key).decode())  # fmt: skip
        with pytest.raises(InvalidRequestError) as refused:
            client.set_policy("vision", POLICY_TEMPLATE)
        assert str(refused.value) == (
            "invalid policy: it names identities that are not registered: eval-ci; registered: "
            "training-ci (register one with `modelseal identity add NAME --key FILE.pub`)"
        )
        assert client.get_policy("vision").revision == 0
        client.add_key_identity("eval-ci", keys.public_pem(KeySigner(keys.generate())
                                                           .public_key).decode())  # fmt: skip
        assert client.set_policy("vision", POLICY_TEMPLATE).revision == 1
        assert client.set_policy("vision", "model:\n  require: {signature: ['*']}\n").revision == 2


def test_policy_template_prints_a_valid_commented_policy() -> None:
    printed = run_cli("policy", "template")
    assert printed.returncode == 0
    assert printed.stdout == POLICY_TEMPLATE
    policy = parse_policy(printed.stdout)
    model = policy.for_kind("model")
    assert model.signature == ("training-ci",) and model.evaluation_signers == ("eval-ci",)
    assert [str(t) for t in model.thresholds] == ["accuracy >= 0.9"]
    assert model.separate_from_pusher and model.dependencies_released
    for rule in ("signature:", "provenance:", "evaluation:", "scan:", "allow_formats",
                 "dependencies:", "separate_from_pusher"):  # fmt: skip
        assert rule in printed.stdout


def test_the_readme_documents_the_template_verbatim() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Policies and trust files\n", 1)[1]
    documented = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert documented == POLICY_TEMPLATE
