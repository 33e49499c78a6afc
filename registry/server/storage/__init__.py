"""Blob stores: local directory (embedded default) and S3-compatible object storage.

The S3 store (and with it boto3, ~30 MiB of memory) is imported only when it is used.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import unquote, urlparse

from registry.server.config import Settings
from registry.server.storage.base import (
    READ_SIZE,
    BlobStore,
    Part,
    StagedUpload,
    StoredBlob,
    blob_key,
)
from registry.server.storage.local import LocalBlobStore

if TYPE_CHECKING:
    from registry.server.storage.s3 import S3BlobStore

__all__ = [
    "READ_SIZE",
    "BlobStore",
    "LocalBlobStore",
    "Part",
    "S3BlobStore",
    "StagedUpload",
    "StoredBlob",
    "blob_key",
    "is_s3",
    "open_blob_store",
]


def __getattr__(name: str) -> Any:
    if name == "S3BlobStore":
        from registry.server.storage.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_s3(store: object) -> TypeGuard[S3BlobStore]:
    """Whether ``store`` is an :class:`S3BlobStore` (without importing it when none exists)."""
    module = sys.modules.get("registry.server.storage.s3")
    return module is not None and isinstance(store, module.S3BlobStore)


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name (the data dir when none is named)."""
    if settings.storage is None:
        return LocalBlobStore(settings.data_dir)
    parsed = urlparse(settings.storage)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    from registry.server.storage.s3 import S3BlobStore

    return S3BlobStore(
        settings.storage,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
        max_pool_connections=settings.s3_max_pool_connections,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )
