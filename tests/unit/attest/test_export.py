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


# -- headers tarfile would read and pack never writes (each a memory, time or traceback hole) ---


def _gz(data: bytes, tmp_path: Path, name: str = "hostile.tar.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(data))
    return path


def _raw_header(
    name: bytes, kind: bytes, size: int, *, magic: bytes = b"ustar\x0000", size_field: bytes = b""
) -> bytes:
    header = bytearray(512)
    header[0 : len(name)] = name
    header[100:108] = b"0000644\x00"
    header[108:116] = header[116:124] = b"0000000\x00"
    header[124:136] = size_field or f"{size:011o}\x00".encode()
    header[136:148] = b"00000000000\x00"
    header[156:157] = kind
    header[257:265] = magic
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\x00 ".encode()
    return bytes(header)


def _with_data(header: bytes, data: bytes) -> bytes:
    return header + data + bytes(-len(data) % 512)


def _tarfile_bytes(build: Callable[[tarfile.TarFile], None], **options: object) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", **options) as tar:  # type: ignore[call-overload]
        build(tar)
    return buffer.getvalue()


def _big_pax(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/a")
    info.pax_headers = {"comment": "x" * 200_000}
    tar.addfile(info, io.BytesIO(b""))


def _gnu_long(tar: tarfile.TarFile) -> None:
    _dir(tar, "top")
    _file(tar, "top/" + "n" * 300)


def _hdrcharset(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("top/a")
    info.pax_headers = {"hdrcharset": "BINARY"}
    tar.addfile(info, io.BytesIO(b""))


END = bytes(1024)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_tarfile_bytes(_big_pax, format=tarfile.PAX_FORMAT), "a PAX header of"),
        (_tarfile_bytes(lambda t: _dir(t, "top"), format=tarfile.PAX_FORMAT,
                        pax_headers={"comment": "global"}), "not a regular file or directory"),
        (_tarfile_bytes(_gnu_long, format=tarfile.GNU_FORMAT), "not a POSIX"),
        (_tarfile_bytes(_hdrcharset, format=tarfile.PAX_FORMAT), "other than one path record"),
        (_with_data(_raw_header(b"top/s", b"S", 10), b"x" * 10) + END, "type b'S'"),
        (_with_data(_raw_header(b"././@LongLink", b"L", 2**30), b"") + END, "type b'L'"),
        (_with_data(_raw_header(b"p", b"x", 20), b"20 path=top/aaaaaaa\n")
         + _with_data(_raw_header(b"p", b"x", 20), b"20 path=top/aaaaaaa\n") + END,
         "two PAX headers in a row"),
        (_with_data(_raw_header(b"top", b"5", 0), b"") + b"junk" + bytes(508), "checksum"),
        (_with_data(_raw_header(b"top", b"5", 0), b"") + END + b"trailing", "after the end"),
        (_with_data(_raw_header(b"top", b"5", 0, magic=b"ustar  \x00"), b"") + END, "ustar"),
        (_raw_header(b"top", b"5", 0, size_field=b"\x80" + bytes(11)), "not an octal number"),
        (_with_data(_raw_header(b"top", b"5", 0), b"")
         + _raw_header(b"top/a", b"0", 10**6), "truncated"),
        (_with_data(_raw_header(b"top", b"5", 0), b""), "ends inside"),
    ],
    ids=["pax-bomb", "global-pax", "gnu-longname", "pax-hdrcharset", "sparse", "longlink-bomb",
         "pax-chain", "bad-checksum", "trailing-data", "gnu-magic", "base256-size", "truncated",
         "no-end"],
)  # fmt: skip
def test_unpack_reads_only_what_pack_writes_and_stops_early(
    tmp_path: Path, data: bytes, why: str
) -> None:
    archive = _gz(data, tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match=why):
        unpack(archive, tmp_path / "out")


def test_a_member_larger_than_the_bound_is_refused_before_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "MAX_MEMBER", 1000)
    archive = _archive(tmp_path, lambda t: (_dir(t, "top"), _file(t, "top/big", b"z" * 1001)))
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match="larger than 1000 bytes"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "top" / "big").exists()


def test_a_long_name_packs_as_one_pax_path_record_and_unpacks(tmp_path: Path) -> None:
    source = _export(tmp_path / "src")
    long = "n" * 150 + ".sigstore.json"
    (source / "evidence" / long).write_bytes(b"{}")
    archive = tmp_path / "long.tar.gz"
    archive.write_bytes(packed(source, "top"))
    (tmp_path / "out").mkdir()
    assert (unpack(archive, tmp_path / "out") / "evidence" / long).read_bytes() == b"{}"


# -- what an export names must stay inside it ----------------------------------------------------


@pytest.mark.parametrize(
    "key", ["/dev/zero", "../outside.pub", "link.pub", "fifo.pub", "big.pub", "dir.pub"]
)
def test_an_exports_trust_file_names_only_regular_files_inside_it(tmp_path: Path, key: str) -> None:
    import os

    from attest import keys
    from attest.errors import TrustError
    from attest.trust import parse_trust

    pem = keys.public_pem(keys.generate().public_key()).decode()
    (tmp_path / "outside.pub").write_text(pem)
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "link.pub").symlink_to(tmp_path / "outside.pub")
    os.mkfifo(export_dir / "fifo.pub")
    (export_dir / "big.pub").write_bytes(b"-" * (1024 * 1024))
    (export_dir / "dir.pub").mkdir()
    (export_dir / "ok.pub").write_text(pem)
    text = f"identities:\n  ci: {{key: {key}}}\nregistry: {{key: ok.pub}}\n"
    with pytest.raises(TrustError, match=r"not a file inside|larger than"):
        parse_trust(text, export_dir, confined=True)
    fine = parse_trust(text.replace(key, "ok.pub"), export_dir, confined=True)
    assert fine.registry_key is not None and len(fine.keys) == 1


def test_verify_evidence_refuses_a_link_or_a_pipe_in_the_export(tmp_path: Path) -> None:
    import os

    from attest.evidence import verify_evidence

    export_dir = _export(tmp_path / "export")
    (export_dir / "manifest.json").unlink()
    os.mkfifo(export_dir / "manifest.json")  # reading it would block forever
    verdict = verify_evidence(export_dir, trust=None, trust_export_keys=True)
    assert not verdict.ok
    assert any("not a regular file" in c.message for c in verdict.checks), verdict.checks
