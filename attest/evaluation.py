"""Evaluation results as in-toto test-result statements, in the shape the release gate reads.

    predicate = evaluation_predicate({"accuracy": 0.93, "f1": 0.88})
    check_evaluation_predicate(predicate)      # what the registry checks when it arrives

The predicate is an ``https://in-toto.io/attestation/test-result/v0.1`` object whose ``metrics``
member maps metric names to finite numbers; the gate compares those numbers with the policy's
thresholds. A test result without such a ``metrics`` object could never satisfy a threshold, so
it is refused when it is attached rather than when a release is attempted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from attest.errors import InvalidStatementError

RESULTS = ("PASSED", "WARNED", "FAILED")
_MAX_METRICS = 1000


def check_metrics(metrics: object, *, where: str = "metrics") -> dict[str, float | int]:
    """A flat JSON object of metric name to finite number, or :class:`InvalidStatementError`
    naming what is wrong."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise InvalidStatementError(
            f"{where} must be a non-empty JSON object of metric name to number, "
            'e.g. {"accuracy": 0.93}'
        )
    if len(metrics) > _MAX_METRICS:
        raise InvalidStatementError(f"{where} holds more than {_MAX_METRICS} metrics")
    out: dict[str, float | int] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > 128:
            raise InvalidStatementError(f"{where}: metric names are strings of 1-128 characters")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidStatementError(
                f"{where}: {name!r} is {type(value).__name__}, not a number"
            )
        if not math.isfinite(value):
            raise InvalidStatementError(f"{where}: {name!r} is not a finite number")
        out[name] = value
    return out


def evaluation_predicate(metrics: Mapping[str, Any], *, result: str = "PASSED") -> dict[str, Any]:
    """The test-result predicate for ``metrics`` (checked with :func:`check_metrics`)."""
    if result not in RESULTS:
        raise InvalidStatementError(f"result must be one of {', '.join(RESULTS)}")
    return {
        "result": result,
        "passedTests": [],
        "warnedTests": [],
        "failedTests": [],
        "metrics": check_metrics(metrics),
    }


def check_evaluation_predicate(predicate: Mapping[str, Any]) -> None:
    """Refuse a test-result predicate the gate could never use (no usable ``metrics``)."""
    check_metrics(predicate.get("metrics"), where="the test result's metrics")
    result = predicate.get("result")
    if result is not None and result not in RESULTS:
        raise InvalidStatementError(f"the test result's result must be one of {', '.join(RESULTS)}")
