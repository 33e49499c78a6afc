"""Storage URLs found unusable, remembered between runs (registry.sdk.redirects), and the
transport that consults that memory, over real local HTTP servers (see test_transfer.py).

Each process is a new RawTransport over one memory file: the first pays for the probe and
records it, the next streams through the registry without asking for a URL until the record is a
day old; a record that cannot be trusted as a record (damaged, oversized, unreadable, from the
future) is ignored with a warning and never stops a download.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.sdk import redirects
from registry.sdk.redirects import MAX_ENTRIES, RedirectMemory
from registry.sdk.transfer import RawTransport
from tests.support import free_port
from tests.unit.registry.sdk.test_transfer import STORED, STREAMED, TOKEN, Pair, _get

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "storage-redirects.json"


def _memory(path: Path, clock: Clock) -> RedirectMemory:
    return RedirectMemory(path, clock=clock)


def _transport(made: Pair, path: Path, clock: Clock) -> RawTransport:
    """A new process's transport: a new object, the same memory file."""
    return RawTransport(made.url, {"Authorization": TOKEN}, verify=True, timeout=10,
                        memory=_memory(path, clock))  # fmt: skip


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    made.location = f"http://127.0.0.1:{free_port()}/bucket/k?X-Amz-Signature=f00"
    yield made
    made.close()


def _asked(made: Pair) -> list[str]:
    return [p for p, _ in made.registry_seen.requests]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("registry.sdk") and r.levelno >= logging.WARNING]  # fmt: skip


# -- the memory file -----------------------------------------------------------------------------


def test_a_record_holds_for_a_day_per_registry_then_not(memory_file: Path, clock: Clock) -> None:
    memory = _memory(memory_file, clock)
    assert memory.recall("http://r.example:8700") is None  # no file yet
    assert memory.remember("http://user:pw@r.example:8700/", "cannot reach s3:9000: refused")
    record = memory.recall("http://r.example:8700")
    assert record is not None and record.reason == "cannot reach s3:9000: refused"
    assert memory.fresh(record)
    assert memory.recall("http://other.example:8700") is None
    document = json.loads(memory_file.read_text())
    assert list(document["registries"]) == ["http://r.example:8700"]  # no user information
    assert stat.S_IMODE(memory_file.stat().st_mode) == 0o600
    clock.now += DAY - 1
    assert memory.fresh(record)
    clock.now += 1
    assert not memory.fresh(record)  # a day old: probe again
    clock.now -= 2 * DAY
    assert not memory.fresh(record)  # from the future (the clock went back): probe again
    memory.forget("http://r.example:8700")
    assert memory.recall("http://r.example:8700") is None


def test_the_file_stays_small(memory_file: Path, clock: Clock) -> None:
    memory = _memory(memory_file, clock)
    for i in range(MAX_ENTRIES + 8):
        clock.now += 1
        memory.remember(f"http://r{i}.example", "x" * 10_000)
    registries = json.loads(memory_file.read_text())["registries"]
    assert len(registries) == MAX_ENTRIES  # the oldest records went first
    assert "http://r0.example" not in registries
    assert f"http://r{MAX_ENTRIES + 7}.example" in registries
    assert all(len(e["reason"]) == redirects.MAX_REASON for e in registries.values())
    assert memory_file.stat().st_size <= redirects.MAX_BYTES
    assert [p.name for p in memory_file.parent.iterdir()] == [memory_file.name]  # no temp files


GOOD = {"at": 1_800_000_000.0, "reason": "refused"}
NOT_AN_ENTRY = "is not a URL with a time and a reason"


def _doc(registries: object, fmt: int = 1) -> bytes:
    return json.dumps({"format": fmt, "registries": registries}).encode()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[]", "not a format-1 record"),
        (_doc({}, fmt=2), "not a format-1 record"),
        (_doc([]), "'registries' is not an object"),
        (_doc({"http://r": {"at": "yesterday", "reason": "x"}}), NOT_AN_ENTRY),
        (_doc({"http://r": {"at": True, "reason": "x"}}), NOT_AN_ENTRY),
        (_doc({"http://r": {"at": 1.0}}), NOT_AN_ENTRY),
        (b'{"format": 1, "registries": {"http://r": {"at": NaN, "reason": "x"}}}', NOT_AN_ENTRY),
        (_doc({"r.example": GOOD}), NOT_AN_ENTRY),
        (_doc({f"http://r{i}": GOOD for i in range(40)}), "at most 32 entries"),
        (b" " * (redirects.MAX_BYTES + 1), "larger than 65536 bytes"),
        (b"[" * 60_000, "nested too deeply"),  # a RecursionError, not a ValueError
    ],
)
def test_a_damaged_file_is_ignored_with_a_warning_and_replaced(
    memory_file: Path, clock: Clock, content: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    memory_file.parent.mkdir()
    memory_file.write_bytes(content)
    memory = _memory(memory_file, clock)
    with caplog.at_level(logging.WARNING, logger="registry.sdk.redirects"):
        assert memory.recall("http://r") is None
        assert memory.recall("http://r") is None  # said once per process
        assert memory.remember("http://r", "refused")
    [warning] = _warnings(caplog)
    assert str(memory_file) in warning and why in warning and "ignored" in warning
    assert memory.recall("http://r") is not None  # the next record replaced it


def test_an_unreadable_or_unwritable_place_costs_a_warning_never_an_error(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    a_directory = tmp_path / "storage-redirects.json"
    a_directory.mkdir()
    blocked = tmp_path / "a-file" / "storage-redirects.json"
    blocked.parent.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="registry.sdk.redirects"):
        assert _memory(a_directory, clock).recall("http://r") is None
        assert _memory(blocked, clock).remember("http://r", "refused") is False
    unreadable, *_, unwritable = _warnings(caplog)
    assert str(a_directory) in unreadable and "cannot be read (Is a directory)" in unreadable
    assert str(blocked) in unwritable and "cannot write" in unwritable


def test_the_default_place_is_beside_the_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", str(tmp_path / "cfg"))
    assert RedirectMemory().path == tmp_path / "cfg" / "storage-redirects.json"


# -- the transport, run after run ----------------------------------------------------------------


def test_the_next_run_streams_at_once_until_the_record_is_a_day_old(
    unreachable: Pair, memory_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="registry.sdk"):
        first = _transport(unreachable, memory_file, clock)
        assert _get(first) == STREAMED  # probed, fell back
        first.close()
        [warning] = _warnings(caplog)
        assert "cannot reach" in warning and str(memory_file) in warning
        caplog.clear()

        second = _transport(unreachable, memory_file, clock)  # the next run
        assert [_get(second) for _ in range(3)] == [STREAMED] * 3
        second.close()
        assert _warnings(caplog) == []  # nothing to warn about: it just streams
        assert "were unusable from here" in caplog.text  # said at INFO
        assert _asked(unreachable) == ["/files/x?redirect=true"] + ["/files/x"] * 4

        clock.now += DAY  # the record expired: probe again (and fail again, and remember)
        third = _transport(unreachable, memory_file, clock)
        assert _get(third) == STREAMED
        third.close()
    assert _asked(unreachable)[-2:] == ["/files/x?redirect=true", "/files/x"]
    record = _memory(memory_file, clock).recall(unreachable.url)
    assert record is not None and record.at == clock.now


def test_a_store_reachable_again_clears_the_expired_record(
    tmp_path: Path, memory_file: Path, clock: Clock
) -> None:
    made = Pair(tmp_path)
    made.location = f"{made.store_url}/bucket/k?X-Amz-Signature=f00"
    try:
        _memory(memory_file, clock).remember(made.url, "cannot reach it yesterday")
        clock.now += DAY
        transport = _transport(made, memory_file, clock)
        assert [_get(transport), _get(transport)] == [STORED, STORED]
        transport.close()
    finally:
        made.close()
    assert len(made.store_seen.requests) == 2
    assert json.loads(memory_file.read_text())["registries"] == {}


def test_a_store_error_is_not_remembered(
    tmp_path: Path, memory_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A 5xx is the store's passing trouble: this run streams, the next one tries again."""
    made = Pair(tmp_path, store_status=503)
    made.location = f"{made.store_url}/bucket/k?X-Amz-Signature=f00"
    try:
        with caplog.at_level(logging.WARNING, logger="registry.sdk.transfer"):
            assert _get(_transport(made, memory_file, clock)) == STREAMED
            assert _get(_transport(made, memory_file, clock)) == STREAMED
    finally:
        made.close()
    assert _asked(made) == ["/files/x?redirect=true", "/files/x"] * 2
    assert not memory_file.exists()
    assert all("answered HTTP 503" in w for w in _warnings(caplog))


def test_a_damaged_memory_still_lets_the_store_be_used(
    pair: Pair, memory_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    memory_file.parent.mkdir()
    memory_file.write_text('{"format": 1, "registries": {"' + pair.url + '": "yes"}}')
    with caplog.at_level(logging.WARNING, logger="registry.sdk"):
        transport = _transport(pair, memory_file, clock)
        assert _get(transport) == STORED
        transport.close()
    [warning] = _warnings(caplog)
    assert str(memory_file) in warning and "is damaged" in warning
    assert len(pair.store_seen.requests) == 1


def test_asking_for_no_redirect_never_reads_the_memory(
    unreachable: Pair, memory_file: Path, clock: Clock
) -> None:
    memory_file.parent.mkdir()
    memory_file.write_text("damaged, but never read")
    transport = _transport(unreachable, memory_file, clock)
    assert _get(transport, redirect=False) == STREAMED
    transport.close()
    assert memory_file.read_text() == "damaged, but never read"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    made = Pair(tmp_path)
    made.location = f"{made.store_url}/bucket/blobs/sha256/abc?X-Amz-Signature=f00"
    yield made
    made.close()
