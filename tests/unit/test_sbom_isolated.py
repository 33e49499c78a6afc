"""The strict BOM validator run in a child process: the same verdicts and errors as in-process,
the child stopped when idle and started again on demand, and a failing child never taken for a
verdict about the BOM."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from attest.digests import FileDigest, root_digest
from sbom import BomError, BomFile, ModelBomInput, build_model_bom, validate_bom
from sbom.errors import BomValidatorUnavailableError
from sbom.isolated import IsolatedValidator


def _bom(files: int = 3) -> dict[str, Any]:
    listed = tuple(BomFile(path=f"w{i}.bin", size=i + 1, sha256=f"{i:064x}") for i in range(files))
    root = root_digest(FileDigest(f.path, f.size, f.sha256) for f in listed)
    return build_model_bom(ModelBomInput(ref="ns/m@1", root_digest=f"sha256:{root}",
                                         files=listed, created=datetime(2026, 1, 1, tzinfo=UTC),
                                         tool_version="0.2.0"))  # fmt: skip


@pytest.fixture
def validator() -> Iterator[IsolatedValidator]:
    isolated = IsolatedValidator()
    yield isolated
    isolated.close()


def _broken() -> list[dict[str, Any]]:
    good = _bom(100)  # long enough for the sliced arrays
    unknown_key = copy.deepcopy(good)
    unknown_key["metadata"]["component"]["surprise"] = 1
    duplicate = copy.deepcopy(good)
    files = duplicate["metadata"]["component"]["components"]
    files[70] = copy.deepcopy(files[3])
    bad_version = {**good, "specVersion": "1.5"}
    dangling = copy.deepcopy(good)
    dangling["dependencies"][0]["dependsOn"] = ["nowhere"]
    return [unknown_key, duplicate, bad_version, dangling]


def test_the_child_judges_as_the_validator_does(validator: IsolatedValidator) -> None:
    validator.validate(_bom(100))
    for broken in _broken():
        with pytest.raises(BomError) as here:
            validate_bom(broken)
        with pytest.raises(BomError) as there:
            validator.validate(broken)
        assert type(there.value) is BomError
        assert str(there.value) == str(here.value)
        assert there.value.facts == here.value.facts
    with pytest.raises(BomError, match="not JSON-serializable"):
        validator.validate({**_bom(), "version": float("nan")})
    assert validator.running  # one child answered all of them


def test_an_idle_child_stops_and_the_next_validation_starts_another() -> None:
    validator = IsolatedValidator(idle_seconds=0.3)
    try:
        validator.validate(_bom())
        assert validator.running
        deadline = time.monotonic() + 10
        while validator.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not validator.running
        validator.validate(_bom())
        with pytest.raises(BomError):
            validator.validate(_broken()[0])
    finally:
        validator.close()


def test_a_child_that_dies_is_an_outage_never_a_verdict(validator: IsolatedValidator) -> None:
    validator.validate(_bom())
    child = validator._child
    assert child is not None
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    validator.validate(_bom())  # a dead idle child is replaced
    assert validator._child is not child

    # Killed while it validates (stopped first, so that it cannot answer in time).
    child = validator._child
    assert child is not None and child.stdin is not None
    os.kill(child.pid, signal.SIGSTOP)
    try:
        threading.Timer(0.5, os.kill, (child.pid, signal.SIGKILL)).start()
        with pytest.raises(BomValidatorUnavailableError, match="validator process failed"):
            validator.validate(_bom())
    finally:
        child.wait()
    validator.validate(_bom())  # and the next one works
