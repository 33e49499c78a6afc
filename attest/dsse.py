"""DSSE (Dead Simple Signing Envelope) pre-authentication encoding."""

from __future__ import annotations

#: The only payload type modelseal signs or accepts.
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body`` (lengths in bytes, ASCII decimal)."""
    encoded_type = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(encoded_type), encoded_type, len(payload), payload)
