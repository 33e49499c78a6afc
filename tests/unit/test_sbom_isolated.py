"""BOM building and strict validation run in a child process: the same BOMs, verdicts and errors
as in-process, the child stopped when idle and started again on demand, and a failing child
never taken for a verdict about the BOM."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from attest.digests import FileDigest, root_digest
from sbom import BomError, BomFile, ModelBomInput, build_model_bom, validate_bom
from sbom.errors import BomValidatorUnavailableError
from sbom.isolated import BomChild
from sbom.model import input_from_wire, input_to_wire
from tests.unit.test_sbom import BAD_INPUTS, CASES, _full, _minimal


def _bom(files: int = 3) -> dict[str, Any]:
    listed = tuple(BomFile(path=f"w{i}.bin", size=i + 1, sha256=f"{i:064x}") for i in range(files))
    root = root_digest(FileDigest(f.path, f.size, f.sha256) for f in listed)
    return build_model_bom(ModelBomInput(ref="ns/m@1", root_digest=f"sha256:{root}",
                                         files=listed, created=datetime(2026, 1, 1, tzinfo=UTC),
                                         tool_version="0.2.0"))  # fmt: skip


@pytest.fixture
def validator() -> Iterator[BomChild]:
    isolated = BomChild()
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


def test_the_child_judges_as_the_validator_does(validator: BomChild) -> None:
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
    validator = BomChild(idle_seconds=0.3)
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


def test_a_child_that_dies_is_an_outage_never_a_verdict(validator: BomChild) -> None:
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
        with pytest.raises(BomValidatorUnavailableError, match="BOM process failed"):
            validator.validate(_bom())
    finally:
        child.wait()
    validator.validate(_bom())  # and the next one works


def test_a_module_planted_in_the_working_directory_does_not_stand_in_for_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attacker: whoever can write the server's working directory. A planted ``sbom`` package
    there answers every BOM "ok"; the child never imports it."""
    planted = tmp_path / "sbom"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    (planted / "isolated.py").write_text(
        "import sys, struct, json, hashlib\n"
        "while (h := sys.stdin.buffer.read(8)):\n"
        "    raw = sys.stdin.buffer.read(struct.unpack('>Q', h)[0])\n"
        "    out = json.dumps({'ok': True, 'digest': hashlib.sha256(raw).hexdigest()}).encode()\n"
        "    sys.stdout.buffer.write(struct.pack('>Q', len(out)) + out); sys.stdout.flush()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep + "relative" + os.pathsep)  # ":relative:"
    (tmp_path / "json.py").write_text("raise SystemExit('planted json')\n")  # not imported
    validator = BomChild()
    try:
        with pytest.raises(BomError):
            validator.validate(_broken()[0])
    finally:
        validator.close()


def test_an_answer_about_another_bom_or_none_in_time_is_an_outage(
    validator: BomChild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that answers "ok" about something else, or not at all within the timeout, is
    stopped; the BOM is not taken as valid."""
    liar = tmp_path / "liar.py"
    liar.write_text(
        "import sys, struct, json\n"
        "while (h := sys.stdin.buffer.read(8)):\n"
        "    sys.stdin.buffer.read(struct.unpack('>Q', h)[0])\n"
        "    out = json.dumps({'ok': True, 'digest': '0' * 64}).encode()\n"
        "    sys.stdout.buffer.write(struct.pack('>Q', len(out)) + out); sys.stdout.flush()\n"
    )
    silent = tmp_path / "silent.py"
    silent.write_text("import sys, time\nsys.stdin.buffer.read(8)\ntime.sleep(60)\n")
    for script, problem in ((liar, "not about the request sent"), (silent, "no answer in time")):
        fake = BomChild(timeout=1.0)

        def start(script: Path = script, fake: BomChild = fake) -> Any:
            fake._child = subprocess.Popen(
                [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            return fake._child

        monkeypatch.setattr(fake, "_start", start)
        try:
            with pytest.raises(BomValidatorUnavailableError, match=problem):
                fake.validate(_broken()[0])
            assert not fake.running
        finally:
            fake.close()


# -- building in the child ---------------------------------------------------------------------


def _wire_round_trip(inp: ModelBomInput) -> ModelBomInput:
    return input_from_wire(json.loads(json.dumps(input_to_wire(inp))))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_child_builds_the_bom_the_builder_builds(validator: BomChild, case: str) -> None:
    inp = CASES[case]()
    assert _wire_round_trip(inp) == inp
    assert validator.build(inp) == build_model_bom(inp)
    # SQLite hands back naive times (UTC): they cross as they are
    naive = dataclasses.replace(inp, created=datetime(2026, 3, 1, 12, 30, 5))
    assert _wire_round_trip(naive) == naive
    assert validator.build(naive) == build_model_bom(naive)


@pytest.mark.parametrize(
    "changes",
    [changes for changes, _message in BAD_INPUTS] + [{"considerations": {"vibes": ["good"]}}],
)
def test_an_input_the_builder_refuses_is_refused_through_the_child(
    validator: BomChild, changes: dict[str, Any]
) -> None:
    """Every refusal is the builder's BomError (message and facts), never an outage (which a
    job would retry) and never a BOM."""
    inp = _minimal(**changes)
    with pytest.raises(BomError) as here:
        build_model_bom(inp)
    with pytest.raises(BomError) as there:
        validator.build(inp)
    assert type(there.value) is BomError
    assert (str(there.value), there.value.facts) == (str(here.value), here.value.facts)


def test_a_build_answered_without_a_bom_is_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that says "ok" to a build without a BOM did not build one."""
    empty = tmp_path / "empty.py"
    empty.write_text(
        "import sys, struct, json, hashlib\n"
        "while (h := sys.stdin.buffer.read(8)):\n"
        "    raw = sys.stdin.buffer.read(struct.unpack('>Q', h)[0])\n"
        "    out = json.dumps({'ok': True, 'digest': hashlib.sha256(raw).hexdigest()}).encode()\n"
        "    sys.stdout.buffer.write(struct.pack('>Q', len(out)) + out); sys.stdout.flush()\n"
    )
    fake = BomChild(timeout=5.0)

    def start() -> Any:
        fake._child = subprocess.Popen(
            [sys.executable, str(empty)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return fake._child

    monkeypatch.setattr(fake, "_start", start)
    try:
        with pytest.raises(BomValidatorUnavailableError, match="without a BOM"):
            fake.build(_full())
    finally:
        fake.close()
