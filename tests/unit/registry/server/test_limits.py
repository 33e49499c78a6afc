"""The JSON nesting check counts structure only, never brackets inside strings."""

from __future__ import annotations

import json

import pytest

from registry.server.api.middleware.limits import json_depth


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),
        (b'{"a": "\\"[[[\\\\"}', 1),  # escaped quote and backslash inside a string
        (b'["\\\\", ["x"]]', 2),
        (json.dumps({"k": [[[["]]]]"]]]]}).encode(), 5),
    ],
)
def test_json_depth(text: bytes, depth: int) -> None:
    json.loads(text)  # the cases are valid JSON
    assert json_depth(text) == depth
