from __future__ import annotations

import pytest

from registry.errors import InvalidNameError, InvalidPathError, InvalidReferenceError
from registry.names import (
    RefKind,
    parse_ref,
    validate_alias,
    validate_name,
    validate_path,
    validate_version,
)


@pytest.mark.parametrize("name", ["a", "team", "my-model.v2", "x_1", "0abc", "a" * 64])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "-a", ".a", "a/b", "a" * 65, "a..b", "ü", "a b", "a\x00", "..", "_a"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid name"):
        validate_name(name)


@pytest.mark.parametrize("version", ["1", "1.2.0", "v2", "2024-01-01", "1.0.0+build.5", "3rc1"])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


@pytest.mark.parametrize("version", ["", "prod", "v", "vx1", "1/2", "1 2", "1" * 66, "sha256:ab"])
def test_invalid_versions(version: str) -> None:
    with pytest.raises(InvalidNameError, match="a version starts with a digit"):
        validate_version(version)


@pytest.mark.parametrize("alias", ["prod", "staging", "canary-2"])
def test_valid_aliases(alias: str) -> None:
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["1", "v1", "v2.0", "sha256", "Prod", "-x", ""])
def test_invalid_aliases(alias: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid alias"):
        validate_alias(alias)


def test_parse_ref_kinds() -> None:
    assert parse_ref("ns/m@1.0").kind is RefKind.VERSION
    assert parse_ref("ns/m@prod").kind is RefKind.ALIAS
    digest = "sha256:" + "a" * 64
    ref = parse_ref(f"ns/m@{digest}")
    assert (ref.kind, ref.selector, str(ref)) == (RefKind.DIGEST, digest, f"ns/m@{digest}")


@pytest.mark.parametrize("ref", ["ns/m", "m@1", "a/b/c@1", "ns/m@", "@1", "ns/@1"])
def test_parse_ref_shape_errors(ref: str) -> None:
    with pytest.raises((InvalidReferenceError, InvalidNameError)):
        parse_ref(ref)


def test_parse_ref_bad_digest() -> None:
    with pytest.raises(InvalidReferenceError, match="expected sha256:<64 lowercase hex>"):
        parse_ref("ns/m@sha256:abc")


@pytest.mark.parametrize(
    "path", ["model.safetensors", "a/b/c.json", "tokenizer/vocab.txt", "é.txt", "a..b", ".hidden"]
)
def test_valid_paths(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..' segments"),
        ("a/../../x", "'..' segments"),
        ("a/./b", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\b", "backslashes"),
        ("a\x00b", "control characters"),
        ("a\nb", "control characters"),
        ("x" * 1025, "longer than 1024"),
        ("a/" + "x" * 256, "segment is longer"),
        ("e\u0301.txt", "NFC"),
        (".git/config", "ignored by model signatures"),
        (".gitattributes", "ignored by model signatures"),
        ("\ud800", "UTF-8"),
    ],
)
def test_invalid_paths(path: str, reason: str) -> None:
    with pytest.raises(InvalidPathError, match=reason):
        validate_path(path)
