"""Following symlinks for Hugging Face cache snapshots: only to regular files inside the root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from attest.errors import FileSetError
from attest.files import file_set, hash_files, hf_cache_root


def hf_cache(tmp_path: Path) -> Path:
    """A Hugging Face hub cache laid out as huggingface_hub writes it; returns the snapshot."""
    repo = tmp_path / "hub" / "models--acme--tiny"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    snapshot = repo / "snapshots" / ("a" * 40)
    (snapshot / "sub").mkdir(parents=True)
    for name, data in {"config.json": b'{"a": 1}\n', "model.safetensors": b"weights",
                       "sub/tok.txt": b"hello\n"}.items():  # fmt: skip
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot


def test_a_snapshot_is_refused_without_following_and_pushed_with_it(tmp_path: Path) -> None:
    snapshot = hf_cache(tmp_path)
    with pytest.raises(FileSetError, match="push it with --follow-symlinks"):
        file_set(snapshot)
    root = hf_cache_root(snapshot)
    assert root == (tmp_path / "hub" / "models--acme--tiny").resolve()
    found = file_set(snapshot, follow_symlinks_within=root)
    assert [f.path for f in found.files] == ["config.json", "model.safetensors", "sub/tok.txt"]
    digests = {d.path: d.sha256 for d in hash_files(found.files)}
    assert digests["model.safetensors"] == hashlib.sha256(b"weights").hexdigest()


@pytest.mark.parametrize("case", ["outside", "directory", "dangling", "chain-outside"])
def test_links_that_leave_the_root_or_name_no_regular_file_are_refused(
    tmp_path: Path, case: str
) -> None:
    snapshot = hf_cache(tmp_path)
    root = hf_cache_root(snapshot)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    link = snapshot / "extra"
    if case == "outside":
        os.symlink(secret, link)
        message = "outside"
    elif case == "directory":
        os.symlink(root / "blobs", link)
        message = "not a regular file"
    elif case == "dangling":
        os.symlink(root / "blobs" / "missing", link)
        message = "dangling"
    else:  # a link inside the root that links out again
        hop = root / "blobs" / "hop"
        os.symlink(secret, hop)
        os.symlink(hop, link)
        message = "outside"
    with pytest.raises(FileSetError, match=message):
        file_set(snapshot, follow_symlinks_within=root)


def test_a_plain_directory_follows_links_only_within_itself(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w")
    os.symlink("weights.bin", model / "alias.bin")
    assert hf_cache_root(model) == model.resolve()
    found = file_set(model, follow_symlinks_within=hf_cache_root(model))
    assert [(f.path, f.size) for f in found.files] == [("alias.bin", 1), ("weights.bin", 1)]
