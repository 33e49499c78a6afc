"""Errors raised by :mod:`sbom`.

AttestError (attest.errors)
├── BomError    a BOM cannot be built or is not valid CycloneDX 1.6; an environment file is unusable
└── BomValidatorUnavailableError    the BOM child process failed (nothing about the BOM)
"""

from __future__ import annotations

from attest.errors import AttestError


class BomError(AttestError):
    """A BOM cannot be built, does not validate, or an environment file cannot be read.

    The message names what was wrong and where (a JSON path, a file name and line).
    """


class BomValidatorUnavailableError(AttestError):
    """The child process that builds and validates BOMs (:mod:`sbom.isolated`) could not start,
    died or answered nonsense. Says nothing about the BOM: try again later."""
