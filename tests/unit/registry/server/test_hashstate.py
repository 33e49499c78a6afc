from __future__ import annotations

import hashlib
import itertools
import os

import pytest

from registry.server.storage.hashstate import ResumableSha256


def test_resumed_state_gives_the_same_digest() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    hasher = ResumableSha256()
    cut = [0, 5, 64, 1_000_003, len(data)]
    for start, end in itertools.pairwise(cut):
        hasher = ResumableSha256.from_state(hasher.state())  # as another replica would
        hasher.update(memoryview(data)[start:end])
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hexdigest_does_not_finalize() -> None:
    hasher = ResumableSha256()
    hasher.update(b"ab")
    assert hasher.hexdigest() == hashlib.sha256(b"ab").hexdigest()
    hasher.update(bytearray(b"c"))
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()


def test_empty_digest() -> None:
    assert ResumableSha256().hexdigest() == hashlib.sha256(b"").hexdigest()


def test_state_size_is_checked() -> None:
    with pytest.raises(ValueError, match="112 bytes"):
        ResumableSha256.from_state(b"short")
