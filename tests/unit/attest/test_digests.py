from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from model_signing import hashing

from attest.digests import Digest, FileDigest, parse_sha256, root_digest, sha256_file
from attest.errors import InvalidDigestError
from tests.support import make_model_dir


def _oms_root(directory: Path) -> str:
    """The subject digest that model_signing itself computes for a directory."""
    from model_signing._signing import signing

    manifest = hashing.Config().hash(directory)
    statement = signing.Payload(manifest).statement.pb
    return str(statement.subject[0].digest["sha256"])


def _digests(directory: Path) -> list[FileDigest]:
    out = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel.split("/")[0] in {".git", ".github", ".gitignore", ".gitattributes"}:
            continue
        digest, size = sha256_file(path)
        out.append(FileDigest(rel, size, digest))
    return out


def test_root_digest_matches_model_signing(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    # Names whose byte order differs from a naive per-directory walk order.
    (model / "a-b").write_bytes(b"1")
    (model / "a.b").write_bytes(b"2")
    (model / "a").mkdir()
    (model / "a" / "b").write_bytes(b"3")
    (model / "empty").write_bytes(b"")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: x")
    assert root_digest(_digests(model)) == _oms_root(model)


def test_root_digest_changes_with_any_byte(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    before = root_digest(_digests(model))
    shard = next(model.glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert root_digest(_digests(model)) != before


def test_root_digest_is_order_independent_of_input() -> None:
    a = FileDigest("a", 1, "0" * 64)
    b = FileDigest("b", 1, "1" * 64)
    assert root_digest([a, b]) == root_digest([b, a])
    expected = hashlib.sha256(bytes.fromhex("0" * 64) + bytes.fromhex("1" * 64)).hexdigest()
    assert root_digest([b, a]) == expected


def test_root_digest_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one file"):
        root_digest([])
    with pytest.raises(ValueError, match="appears twice"):
        root_digest([FileDigest("a", 1, "0" * 64), FileDigest("a", 1, "1" * 64)])
    with pytest.raises(InvalidDigestError, match="64 lowercase hex"):
        root_digest([FileDigest("a", 1, "ABC")])


@pytest.mark.parametrize(
    "value",
    ["", "sha256:", "sha256:" + "g" * 64, "sha512:" + "0" * 64, "sha256:" + "A" * 64, "0" * 64],
)
def test_parse_sha256_rejects(value: str) -> None:
    with pytest.raises(InvalidDigestError, match="expected sha256:<64 lowercase hex digits>"):
        parse_sha256(value)


def test_parse_sha256_accepts() -> None:
    assert parse_sha256("sha256:" + "ab" * 32) == "ab" * 32


def test_sha256_file_streams(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert sha256_file(path, buffer_size=4096) == (hashlib.sha256(data).hexdigest(), len(data))


# -- Digest: one type, two written forms ---------------------------------------------------------


def test_a_digest_is_its_hex_and_writes_itself_prefixed() -> None:
    hexpart = "ab" * 32
    digest = Digest(hexpart)
    assert digest == hexpart and hash(digest) == hash(hexpart) and f"{digest}" == hexpart
    assert digest.hex == hexpart and type(digest.hex) is str
    assert digest.prefixed == "sha256:" + hexpart
    assert json.dumps({"d": digest}) == json.dumps({"d": hexpart})
    assert repr(digest) == f"Digest('sha256:{hexpart}')"
    assert Digest(digest) is digest
    assert Digest.parse("sha256:" + hexpart) == digest
    assert isinstance(parse_sha256("sha256:" + hexpart), Digest)
    assert Digest.of(b"x") == hashlib.sha256(b"x").hexdigest()
    assert isinstance(root_digest([FileDigest("a", 1, digest)]), Digest)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * 63,
        "0" * 65,
        "A" * 64,
        "g" * 64,
        "sha256:" + "0" * 64,
        " " + "0" * 63,
        "0" * 63 + "\n",
    ],
)
def test_a_digest_refuses_what_is_not_64_lowercase_hex_digits(value: str) -> None:
    with pytest.raises(InvalidDigestError, match="expected 64 lowercase hex digits"):
        Digest(value)


def test_a_digest_is_not_made_from_other_types() -> None:
    with pytest.raises(InvalidDigestError):
        Digest(b"0" * 64)  # type: ignore[arg-type]
    with pytest.raises(InvalidDigestError):
        Digest.parse("0" * 64)  # the API's form has its prefix
