"""modelseal: a registry for machine-learning models that only releases what it can prove.

The package has three rooms and a few shared modules:

    registry.sdk      the Python client (what ``RegistryClient`` and ``TrainingRun`` come from)
    registry.cli      the ``modelseal`` command line, over the SDK
    registry.server   the service: API, business logic, database, blob storage
    registry.errors   the error tree both sides raise; registry.names: references and paths;
    registry.wire     the request and response models the SDK and the server share

This module is the public surface: the names in ``__all__`` are stable, the rest may move. They
load on first use, so importing one room (``registry.server…``, say) never loads another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from registry.errors import (
        AuthenticationError,
        ConfigurationError,
        ConflictError,
        ConnectionFailedError,
        DatabaseUnavailableError,
        DigestMismatchError,
        DirtyTreeError,
        EvidenceRejectedError,
        InvalidManifestError,
        InvalidNameError,
        InvalidPathError,
        InvalidReferenceError,
        InvalidRequestError,
        MissingBlobsError,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        PullVerificationError,
        RateLimitedError,
        RegistryError,
        ReleaseRefusedError,
        ResponseVerificationError,
        ScanPendingError,
        ServiceUnavailableError,
        StorageUnavailableError,
        UploadExpiredError,
        UploadIncompleteError,
        UploadOffsetError,
        VersionConflictError,
        VersionUnavailableError,
    )
    from registry.sdk.client import RegistryClient
    from registry.sdk.training import TrainingRun

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "DatabaseUnavailableError",
    "DigestMismatchError",
    "DirtyTreeError",
    "EvidenceRejectedError",
    "InvalidManifestError",
    "InvalidNameError",
    "InvalidPathError",
    "InvalidReferenceError",
    "InvalidRequestError",
    "MissingBlobsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PullVerificationError",
    "RateLimitedError",
    "RegistryClient",
    "RegistryError",
    "ReleaseRefusedError",
    "ResponseVerificationError",
    "ScanPendingError",
    "ServiceUnavailableError",
    "StorageUnavailableError",
    "TrainingRun",
    "UploadExpiredError",
    "UploadIncompleteError",
    "UploadOffsetError",
    "VersionConflictError",
    "VersionUnavailableError",
    "__version__",
]

_SDK = {"RegistryClient": "registry.sdk.client", "TrainingRun": "registry.sdk.training"}


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from importlib import import_module

        value = getattr(import_module(_SDK.get(name, "registry.errors")), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'registry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
