"""Errors raised by :mod:`attest`.

AttestError
└── InvalidDigestError      a digest string is not ``sha256:<64 lowercase hex>``
"""


class AttestError(Exception):
    """Base class of every error :mod:`attest` raises."""

    def diagnostics(self) -> str:
        """A human-readable explanation, suitable for a CLI."""
        return str(self)


class InvalidDigestError(AttestError, ValueError):
    """A digest is malformed."""

    def __init__(self, value: str, *, expected: str = "sha256:<64 lowercase hex digits>") -> None:
        self.value = value
        self.expected = expected
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"invalid digest {shown!r}: expected {expected}")
