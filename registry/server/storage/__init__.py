"""Blob stores: local directory (embedded default) and S3-compatible object storage."""

from __future__ import annotations

from pathlib import Path
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
    "open_blob_store",
]


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name (the data dir when none is named)."""
    if settings.storage is None:
        return LocalBlobStore(settings.data_dir)
    parsed = urlparse(settings.storage)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    return S3BlobStore(
        settings.storage,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
        max_pool_connections=settings.s3_max_pool_connections,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )
