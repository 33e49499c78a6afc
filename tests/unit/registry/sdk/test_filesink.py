"""FileSink: exclusive creation, O_DIRECT where possible, the page cache for everything else."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from registry.sdk.filesink import ALIGN, FileSink

MiB = 1024 * 1024


def _aligned(data: bytes) -> memoryview:
    buffer = mmap.mmap(-1, max(len(data), 1))
    buffer[: len(data)] = data
    return memoryview(buffer)[: len(data)]


def test_direct_writes_full_aligned_pieces_and_buffers_the_short_tail(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 123)
    target = tmp_path / "model.bin"
    sink = FileSink(target, direct=True)
    direct_at_start = sink.direct
    sink.write(_aligned(data[: 2 * MiB]))
    still_direct = sink.direct
    sink.write(_aligned(data[2 * MiB :]))  # not a multiple of ALIGN: through the page cache
    sink.close(durable=True)
    assert target.read_bytes() == data
    if direct_at_start:  # a filesystem without O_DIRECT (tmpfs) stays buffered throughout
        assert still_direct
        assert not sink.direct


def test_unaligned_buffers_fall_back_to_the_page_cache(tmp_path: Path) -> None:
    data = os.urandom(2 * ALIGN)
    buffer = bytearray(b"x" + data)
    target = tmp_path / "f"
    sink = FileSink(target, direct=True)
    sink.write(memoryview(buffer)[1:])  # address off by one: O_DIRECT would refuse it
    sink.write(memoryview(data))  # read-only bytes: never handed to O_DIRECT
    sink.close(durable=True)
    assert target.read_bytes() == data + data
    assert not sink.direct


def test_buffered_sink_and_sync(tmp_path: Path) -> None:
    target = tmp_path / "f"
    sink = FileSink(target, direct=False)
    sink.write(memoryview(b"abc"))
    sink.sync_data()
    sink.write(memoryview(b"def"))
    sink.close(durable=False)
    assert target.read_bytes() == b"abcdef"
    assert not sink.direct


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"keep")
    for direct in (True, False):
        with pytest.raises(FileExistsError):
            FileSink(target, direct=direct)
    assert target.read_bytes() == b"keep"


def test_o_direct_is_used_on_this_filesystem_when_it_supports_it(tmp_path: Path) -> None:
    """Guards the fast path itself: on ext4/xfs the sink must really be direct."""
    probe = tmp_path / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError:
        pytest.skip("this filesystem has no O_DIRECT")
    os.close(fd)
    sink = FileSink(tmp_path / "f", direct=True)
    assert sink.direct
    sink.write(_aligned(b"\0" * ALIGN))
    assert sink.direct
    sink.close(durable=True)
