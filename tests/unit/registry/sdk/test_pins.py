"""The client's pin file is trust data: a damaged one is a named error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.sdk.pins import PinStore


@pytest.mark.parametrize("text", ["[" * 100_000, "[]", "not json"])
def test_a_damaged_pin_file_is_named(tmp_path: Path, text: str) -> None:
    path = tmp_path / "pins.json"
    path.write_text(text)
    with pytest.raises(ValueError):  # callers name the file (logcheck._damaged)
        PinStore(path).registry_key("http://registry.example")
