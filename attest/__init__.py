"""Evidence about artifact versions: digests, statements, signatures and their verification.

This package is what an auditor runs. It never imports the registry service (``registry``),
FastAPI, SQLAlchemy or boto3, so that verifying evidence never depends on the server's code paths.
"""

from attest.digests import (
    OMS_IGNORE_PATHS,
    FileDigest,
    parse_sha256,
    root_digest,
    sha256_file,
)
from attest.errors import AttestError, InvalidDigestError

__all__ = [
    "OMS_IGNORE_PATHS",
    "AttestError",
    "FileDigest",
    "InvalidDigestError",
    "parse_sha256",
    "root_digest",
    "sha256_file",
]
