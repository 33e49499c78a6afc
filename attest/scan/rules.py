"""What a signed scan report means for a release, under a policy's ``scan: {allow_formats}``.

Only ``clean`` files pass by default. A policy may accept, by name: ``pickle`` (or one
pickle-family format such as ``pytorch-zip``) for clean pickles, ``unknown`` for files the scanner
could not identify, and ``external`` for data the registry never held. ``unsafe`` and
``unscannable`` are never accepted. A report made under a ruleset older than
:data:`~attest.scan.core.MIN_RULESET` is refused: older rules called unidentified files clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attest.scan.core import MIN_RULESET, Format

#: names ``allow_formats`` accepts
ALLOWABLE = frozenset({"pickle", "unknown", "external"} | {str(f) for f in Format})


def scan_problems(report: Mapping[str, Any], allowed: frozenset[str]) -> list[str]:
    """Why a scan report keeps a version from release (empty: it does not)."""
    problems: list[str] = []
    scanner = report.get("scanner") or {}
    ruleset = str(scanner.get("ruleset", "")) if isinstance(scanner, Mapping) else ""
    if ruleset < MIN_RULESET and report.get("verdict") != "not-scanned":
        problems.append(
            f"made under ruleset {ruleset or '(none)'}, older than {MIN_RULESET}, which may have "
            "called unidentified files clean: the version must be scanned again"
        )
        return problems
    for entry in report.get("files", []):
        path, fmt, verdict = entry.get("path"), entry.get("format"), entry.get("verdict")
        findings = "; ".join(str(f) for f in entry.get("findings", [])[:3])
        if verdict == "not-scanned" and fmt == "external":
            if "external" not in allowed:
                problems.append(
                    f"{path}: external data the registry never held, not scanned "
                    "(accept it with scan: {allow_formats: [external]})"
                )
        elif verdict == "unknown":
            if "unknown" not in allowed:
                problems.append(
                    f"{path}: unknown format, not positively identified as one that "
                    "cannot carry code (accept it with scan: {allow_formats: "
                    "[unknown]})"
                )
        elif verdict == "unscannable":
            problems.append(f"{path}: unscannable ({findings})")
        elif verdict != "clean":
            problems.append(f"{path}: {verdict} ({findings})")
        elif entry.get("pickle") and not {"pickle", fmt} & allowed:
            problems.append(
                f"{path}: {fmt} is a pickle format, quarantined by policy "
                "(allow it with scan: {allow_formats: [pickle]})"
            )
    return problems


def accepted_unknown(report: Mapping[str, Any], allowed: frozenset[str]) -> list[str]:
    """Files that pass only because the policy accepts ``unknown`` (named in the verdict)."""
    if "unknown" not in allowed:
        return []
    return [str(e.get("path")) for e in report.get("files", []) if e.get("verdict") == "unknown"]
