"""write_atomic: one rename per writer, the final mode from the start, nothing left on failure."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from attest.atomic import write_atomic
from registry.sdk.resume import UploadJournal


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_it_writes_the_content_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_atomic(target, "s3cr3t\n")
    assert target.read_text() == "s3cr3t\n"
    assert _mode(target) == 0o600
    public = tmp_path / "tile"
    write_atomic(public, b"\x00\x01", mode=0o644, sync_directory=True)
    assert public.read_bytes() == b"\x00\x01"
    assert _mode(public) == 0o644
    write_atomic(target, "replaced")
    assert target.read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret", "tile"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, "old")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_missing_directory_is_an_error_not_a_stray_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "f", "x")
    assert os.listdir(tmp_path) == []


def test_threads_writing_one_path_never_rename_each_others_file(tmp_path: Path) -> None:
    """Two upload threads of one push that share a blob (two models with one identical file)
    wrote one journal record through one temporary name: the slower rename failed with
    FileNotFoundError and aborted the push."""
    journal = UploadJournal(tmp_path / "uploads")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def remember(n: int) -> None:
        start.wait()
        try:
            for i in range(200):
                journal.remember("fleet", "ab" * 32, 6, f"upload-{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=remember, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert journal.recall("fleet", "ab" * 32, 6) is not None
    assert [p.name for p in (tmp_path / "uploads").iterdir() if p.name.startswith(".")] == []
