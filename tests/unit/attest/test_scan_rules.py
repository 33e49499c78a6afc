"""The release gate's reading of a signed scan report: only clean passes unless the policy names
what it accepts, and no policy accepts unsafe or unscannable files."""

from __future__ import annotations

from typing import Any

import pytest

from attest.errors import PolicyError
from attest.policy import DEFAULT_POLICY, parse_policy
from attest.scan import RULESET
from attest.scan.rules import ALLOWABLE, accepted_unknown, scan_problems


def report(*files: dict[str, Any], ruleset: str = RULESET) -> dict[str, Any]:
    return {"scanner": {"name": "modelseal-scan", "ruleset": ruleset}, "files": list(files)}


def entry(path: str, verdict: str, fmt: str = "safetensors", *, pickle: bool = False,
          findings: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    return {"path": path, "format": fmt, "verdict": verdict, "pickle": pickle,
            "findings": list(findings)}  # fmt: skip


def policy(allow: str = "") -> frozenset[str]:
    text = "model:\n  require:\n    signature: ['*']\n    scan: "
    text += f"{{allow_formats: [{allow}]}}\n" if allow else "clean\n"
    return parse_policy(text).for_kind("model").allow_formats


def test_clean_files_pass_and_defaults_accept_nothing_else() -> None:
    assert scan_problems(report(entry("a", "clean")), policy()) == []
    assert not DEFAULT_POLICY.for_kind("model").allow_formats


def test_unknown_files_need_the_policy_to_name_them() -> None:
    scanned = report(entry("a", "clean"), entry("blob.bin", "unknown", "unknown"))
    [problem] = scan_problems(scanned, policy())
    assert problem.startswith("blob.bin: unknown format, not positively identified")
    assert "scan: {allow_formats: [unknown]}" in problem
    assert scan_problems(scanned, policy("unknown")) == []
    assert accepted_unknown(scanned, policy("unknown")) == ["blob.bin"]
    assert accepted_unknown(scanned, policy()) == []


@pytest.mark.parametrize("verdict", ["unscannable", "unsafe"])
def test_no_policy_accepts_unsafe_or_unscannable(verdict: str) -> None:
    scanned = report(entry("m.pkl", verdict, "pickle", pickle=True, findings=("why",)))
    everything = policy(", ".join(sorted(ALLOWABLE)))
    assert scan_problems(scanned, everything) == [f"m.pkl: {verdict} (why)"]


def test_clean_pickles_stay_quarantined_unless_allowed() -> None:
    scanned = report(entry("m.pt", "clean", "pytorch-zip", pickle=True))
    [problem] = scan_problems(scanned, policy())
    assert "quarantined by policy" in problem
    assert scan_problems(scanned, policy("pickle")) == []
    assert scan_problems(scanned, policy("pytorch-zip")) == []


def test_a_scan_made_under_older_rules_is_not_trusted() -> None:
    """Older rulesets called unidentified files (a headerless pickle among them) clean."""
    stale = report(entry("model.pkl", "clean", "unknown"), ruleset="2026-11-26.1")
    [problem] = scan_problems(stale, policy("unknown"))
    assert "made under ruleset 2026-11-26.1, older than" in problem
    [missing] = scan_problems({"files": []}, policy())
    assert "made under ruleset (none)" in missing


def test_allow_formats_names_are_checked() -> None:
    with pytest.raises(PolicyError, match=r"allow_formats names pickel; known: .*pickle"):
        policy("pickel")
