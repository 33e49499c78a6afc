"""Packing an evidence export into one archive and reading it back: the same export packs to the
same bytes, and an archive that is not one ``pack`` could write is refused before anything lands
outside the directory it is unpacked into (links, devices, absolute or ``..`` names, duplicates,
a second top directory, more bytes or members than the bounds)."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from attest import export
from attest.export import ExportError, pack, packed, unpack


def _export(root: Path) -> Path:
    (root / "evidence").mkdir(parents=True)
    (root / "manifest.json").write_text('{"format": "modelseal-evidence/v1"}\n')
    (root / "evidence" / "a.sigstore.json").write_bytes(b"{}")
    (root / "policies").mkdir()
    return root


def test_an_export_packs_to_the_same_bytes_and_unpacks_whole(tmp_path: Path) -> None:
    source = _export(tmp_path / "src")
    first, second = packed(source, "ns.m.1.evidence"), packed(source, "ns.m.1.evidence")
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "ns.m.1.evidence", "ns.m.1.evidence/evidence", "ns.m.1.evidence/evidence/a.sigstore.json",
        "ns.m.1.evidence/manifest.json", "ns.m.1.evidence/policies",
    ]  # fmt: skip
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(first)
    (tmp_path / "out").mkdir()
    top = unpack(archive, tmp_path / "out")
    assert top == tmp_path / "out" / "ns.m.1.evidence"
    assert (top / "evidence" / "a.sigstore.json").read_bytes() == b"{}"
    assert (top / "policies").is_dir()


def test_pack_refuses_a_link_in_the_export(tmp_path: Path) -> None:
    source = _export(tmp_path / "src")
    (source / "link").symlink_to("/etc/passwd")
    with pytest.raises(ExportError, match="neither a file nor a directory"):
        pack(source, "top", io.BytesIO())
    with pytest.raises(ExportError, match="not a directory name"):
        pack(_export(tmp_path / "other"), "../up", io.BytesIO())


def _archive(tmp_path: Path, build: Callable[[tarfile.TarFile], None]) -> Path:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        build(tar)
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(buffer.getvalue())
    return path


def _dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x", size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    tar.addfile(info, io.BytesIO(data))


def _link(kind: bytes) -> Callable[[tarfile.TarFile], None]:
    def build(tar: tarfile.TarFile) -> None:
        _dir(tar, "top")
        info = tarfile.TarInfo("top/manifest.json")
        info.type = kind
        info.linkname = "/etc/passwd" if kind != tarfile.CHRTYPE else ""
        tar.addfile(info)

    return build


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (_link(tarfile.SYMTYPE), "not a regular file"),
        (_link(tarfile.LNKTYPE), "not a regular file"),
        (_link(tarfile.CHRTYPE), "not a regular file"),
        (_link(tarfile.FIFOTYPE), "not a regular file"),
        (lambda t: (_dir(t, "top"), _file(t, "/etc/cron.d/x")), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _file(t, "top/../../escape")), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _file(t, "top/./a")), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _file(t, "top//a")), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _file(t, "top\\..\\a")), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _file(t, "top/" + "a" * 2000)), "unsafe member name"),
        (lambda t: (_dir(t, "top"), _dir(t, "other")), "outside the one top directory"),
        (lambda t: (_dir(t, "top"), _file(t, "top/a"), _file(t, "top/a")), "appears twice"),
        (lambda t: (_dir(t, "top"), _file(t, "top/missing/a")), "not an evidence archive"),
        (lambda t: _file(t, "top"), "no export directory"),
        (lambda t: None, "no export directory"),
    ],
    ids=["symlink", "hardlink", "device", "fifo", "absolute", "dotdot", "dot", "empty-part",
         "backslash", "long-name", "two-tops", "duplicate", "no-parent", "file-top", "empty"],
)  # fmt: skip
def test_unpack_refuses_what_pack_never_writes(
    tmp_path: Path, build: Callable[[tarfile.TarFile], None], why: str
) -> None:
    archive = _archive(tmp_path, build)
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match=why):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "out" / "top" / "manifest.json").is_symlink()


def test_unpack_refuses_what_is_not_a_gzipped_tar(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    plain = tmp_path / "plain"
    plain.write_bytes(b"not an archive")
    with pytest.raises(ExportError, match="not an evidence archive"):
        unpack(plain, tmp_path / "out")
    good = packed(_export(tmp_path / "src"), "top")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ExportError, match="not an evidence archive"):
        unpack(cut, tmp_path / "out")


def test_unpack_stops_at_its_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _archive(tmp_path, lambda t: (_dir(t, "top"), _file(t, "top/a", b"x" * 10),
                                            _file(t, "top/b", b"y" * 10)))  # fmt: skip
    monkeypatch.setattr(export, "MAX_UNPACKED", 15)
    (tmp_path / "one").mkdir()
    with pytest.raises(ExportError, match="more than 15 bytes"):
        unpack(archive, tmp_path / "one")
    monkeypatch.setattr(export, "MAX_UNPACKED", 10**9)
    monkeypatch.setattr(export, "MAX_MEMBERS", 2)
    (tmp_path / "two").mkdir()
    with pytest.raises(ExportError, match="more than 2 members"):
        unpack(archive, tmp_path / "two")
