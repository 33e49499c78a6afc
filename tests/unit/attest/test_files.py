from __future__ import annotations

import os
from pathlib import Path

import pytest

from attest import keys
from attest.errors import FileSetError, ManifestMismatchError, UnknownSignerError
from attest.files import file_set, hash_file, hash_files, verify_directory
from attest.keys import TrustedKey
from attest.oms import oms_statement
from attest.signing import KeySigner
from attest.verifying import Verifier
from tests.support import make_model_dir


def test_scan_skips_git_and_refuses_links_and_fifos(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("x")
    (model / ".gitignore").write_text("*.pyc")
    found = file_set(model)
    assert found.ignored == [".git", ".gitignore"]
    assert [f.path for f in found.files] == sorted(f.path for f in found.files)
    assert "tokenizer/vocab.txt" in [f.path for f in found.files]

    (model / "tokenizer" / "link").symlink_to(model / "config.json")
    with pytest.raises(FileSetError, match="'tokenizer/link' is a symbolic link"):
        file_set(model)
    (model / "tokenizer" / "link").unlink()
    os.mkfifo(model / "pipe")
    with pytest.raises(FileSetError, match="'pipe' is not a regular file"):
        file_set(model)


def test_scan_refuses_non_directories(tmp_path: Path) -> None:
    with pytest.raises(FileSetError, match="is not a directory"):
        file_set(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileSetError, match="holds no file"):
        file_set(tmp_path / "empty")


def test_verify_directory(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    signer = KeySigner(keys.generate())
    digests = hash_files(file_set(model).files)
    bundle = signer.sign(oms_statement("ns/m", digests))
    verifier = Verifier(keys=[TrustedKey("ci", signer.public_key)])
    assert verify_directory(model, bundle, verifier).signer == "ci"

    (model / "config.json").write_text('{"poisoned": true}')
    with pytest.raises(ManifestMismatchError, match=r"different: config\.json"):
        verify_directory(model, bundle, verifier)

    stranger = Verifier(keys=[TrustedKey("other", keys.generate().public_key())])
    with pytest.raises(UnknownSignerError):
        verify_directory(model, bundle, stranger)


def test_a_file_that_changes_size_after_the_scan_is_refused(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "m")
    files = file_set(model).files
    assert hash_file(files[0]).size == files[0].size
    files[0].source.write_bytes(files[0].source.read_bytes() + b"appended")
    with pytest.raises(FileSetError, match="changed while it was being read"):
        hash_file(files[0])
    with pytest.raises(FileSetError, match="changed while it was being read"):
        hash_files(files)
