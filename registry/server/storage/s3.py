"""Blob store on S3-compatible object storage (AWS S3, SeaweedFS, MinIO) through boto3.

Every blob is written as a multipart upload targeting its final key ``PREFIX/blobs/sha256/<hex>``:
S3 makes a multipart object visible only on ``CompleteMultipartUpload``, which the service calls
after it has verified the digest of every byte, and ``AbortMultipartUpload`` drops the parts of a
failed upload, so no partial object is ever readable. Completion lists each part's ETag, so the
object is assembled from exactly the parts whose bytes were hashed.

A blob that arrives whole (one request carrying every byte) skips the parts: :meth:`put_blob`
streams it in one ``PutObject`` to the final key. The object must not appear before the bytes are
verified, so the last piece of the body is held back until the service's check of the digest
of everything before it (and of itself) has passed: a mismatch breaks the request before
its declared length is reached, and S3 stores nothing. The request also declares the blob's
SHA-256 (``x-amz-checksum-sha256``): the store itself refuses a body that hashes otherwise.

Our own SHA-256 checks every byte end to end, so botocore's per-request payload SHA-256 and CRC32
are switched off (they cost about one CPU-second per GB on plain http).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    UnseekableStreamError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from attest.digests import is_sha256_hex
from registry.errors import NotFoundError, RegistryError, StorageUnavailableError
from registry.server.storage.base import (
    READ_SIZE,
    Part,
    Readable,
    StagedUpload,
    StoredBlob,
    blob_key,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_NOT_FOUND = {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}


class _WholePieces:
    """Hands botocore the body's pieces whole: urllib3 asks for 16 KiB at a time and sends each
    read with its own ``sendall``; a pipe's pieces (a request body as it arrives, ~256 KiB) go
    out in one call each instead of being cut up and copied (measured: about half the CPU)."""

    def __init__(self, body: Readable) -> None:
        self._body = body
        self._read1: Callable[[int], bytes] | None = getattr(body, "read1", None)

    def read(self, size: int = -1, /) -> bytes:
        return self._body.read(size) if self._read1 is None else self._read1(-1)


class _CheckedBeforeLast:
    """A body whose last piece is handed over only after ``check`` passed (see the module
    docstring): one piece is read ahead, and at the end of the body ``check`` runs before the
    piece that completes it is returned. ``check`` raising ends the request short."""

    def __init__(self, body: Readable, check: Callable[[], None]) -> None:
        self._pieces = _WholePieces(body)
        self._check = check
        self._next: bytes | None = None

    def read(self, size: int = -1, /) -> bytes:
        piece = self._pieces.read(size) if self._next is None else self._next
        if not piece:
            return b""
        self._next = self._pieces.read(size)
        if not self._next:
            self._check()  # every byte has been read (and hashed): verify, then let go
        return piece


class S3BlobStore:
    """A :class:`~registry.server.storage.base.BlobStore` on one bucket and key prefix."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        max_pool_connections: int = 32,
        public_endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError("S3 storage URL must look like s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._blobs = f"{self.prefix}/blobs/sha256/" if self.prefix else "blobs/sha256/"
        self.description = f"s3://{self.bucket}/{self.prefix}" + (
            f" at {endpoint_url}" if endpoint_url else ""
        )
        self._sse: dict[str, str] = {}
        if sse:
            self._sse["ServerSideEncryption"] = sse
            if sse == "aws:kms" and sse_kms_key_id:
                self._sse["SSEKMSKeyId"] = sse_kms_key_id
        # One session for every client of this store: each session loads and keeps its own
        # copy of the S3 service model (~12 MiB).
        session = boto3.session.Session()
        if client is None:
            config = Config(
                s3={"payload_signing_enabled": False, "addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=max_pool_connections,
                retries={"mode": "standard", "max_attempts": 5},
                signature_version="s3v4",
            )
            client = session.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        self._s3 = client
        self._presigner = client
        if public_endpoint_url and public_endpoint_url != endpoint_url:
            # Same credentials and settings; only the host the URLs name differs. Presigning
            # is computed locally: this client never sends a request.
            self._presigner = session.client(
                "s3",
                endpoint_url=public_endpoint_url,
                region_name=region,
                config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
            )

    @property
    def client(self) -> Any:
        """The store's S3 client (thread-safe), for other data kept beside the blobs (the
        transparency log's tiles): another client would load the S3 service model again."""
        return self._s3

    def _key(self, digest: str) -> str:
        key = blob_key(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise NotFoundError(f"{what}: not found in the blob store") from exc
            raise StorageUnavailableError(
                f"{what}: the blob store refused the request ({code or 'error'})", code=code
            ) from exc
        except BotoCoreError as exc:
            # botocore's text names internals (the endpoint URL, or the repr of the body being
            # sent: "Need to rewind the stream <…_WholePieces object at 0x…>"): it goes to the
            # log, and the error, which clients see, says what failed in words.
            log.warning("%s: %s", what, exc)
            raise StorageUnavailableError(
                f"{what}: {_explain(exc)}", code=type(exc).__name__
            ) from exc

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    def size(self, digest: str) -> int | None:
        try:
            head = self._call(
                "head blob", lambda: self._s3.head_object(Bucket=self.bucket, Key=self._key(digest))
            )
        except NotFoundError:
            return None
        return int(head["ContentLength"])

    def read(self, digest: str, *, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(digest)}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            kwargs["Range"] = f"bytes={start}-{end}"
        response = self._call(f"read blob sha256:{digest}", lambda: self._s3.get_object(**kwargs))
        return self._stream(response["Body"], digest)

    def presigned_read_url(self, digest: str, *, expires: int) -> str:
        url: str = self._call(
            f"presign blob sha256:{digest}",
            lambda: self._presigner.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(digest)},
                ExpiresIn=expires,
            ),
        )
        return url

    def _stream(self, body: Any, digest: str) -> Iterator[bytes]:
        what = f"read blob sha256:{digest}"
        try:
            while True:
                try:
                    piece = self._call(what, lambda: body.read(READ_SIZE))
                except RegistryError:
                    raise
                except Exception as exc:
                    # The connection broke under the body in a way botocore does not wrap
                    # (urllib3's SSLError on a corrupted TLS record): still the store failing.
                    log.warning("%s: %s", what, exc)
                    raise StorageUnavailableError(
                        f"{what}: the connection to the blob store broke ({type(exc).__name__})",
                        code=type(exc).__name__,
                    ) from exc
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    def start_upload(self, digest: str) -> str:
        response = self._call(
            "start upload",
            lambda: self._s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(digest),
                ContentType="application/octet-stream",
                **self._sse,
            ),
        )
        return str(response["UploadId"])

    def put_part(self, handle: str, digest: str, number: int, body: Readable, size: int) -> Part:
        # The body is a one-pass stream (the request still arriving): botocore cannot rewind it
        # to retry, so a failed part fails the chunk and the client resends it.
        response = self._call(
            f"store part {number}",
            lambda: self._s3.upload_part(
                Bucket=self.bucket,
                Key=self._key(digest),
                UploadId=handle,
                PartNumber=number,
                Body=_WholePieces(body),
                ContentLength=size,
            ),
        )
        return Part(number=number, etag=str(response["ETag"]))

    def put_blob(self, digest: str, body: Readable, size: int, check: Callable[[], None]) -> None:
        """Store a whole blob of ``size`` bytes from ``body`` in one request, at its final key.

        ``check`` is called once every byte has been read from ``body``, before the last of
        them is sent; when it raises, the request is cut short and no object is written (its
        exception propagates). An existing blob is not rewritten: the body is read and checked.
        """
        if self.exists(digest):
            while body.read(READ_SIZE):
                pass
            check()
            return
        self._put_object(digest, _CheckedBeforeLast(body, check), size)

    def put_verified(self, digest: str, data: bytes) -> None:
        self._put_object(digest, data, len(data))

    def _put_object(self, digest: str, body: object, size: int) -> None:
        """One PutObject at the blob's key; S3 checks the SHA-256 it is told as well."""
        self._call(
            "store blob",
            lambda: self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(digest),
                Body=body,
                ContentLength=size,
                ContentType="application/octet-stream",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                **self._sse,
            ),
        )

    def complete_upload(self, handle: str, digest: str, parts: Sequence[Part]) -> None:
        if self.exists(digest):
            # Identical content is stored once; the verified duplicate is simply dropped.
            self.abort_upload(handle, digest)
            return
        if not parts:
            self.abort_upload(handle, digest)
            self._call(
                "store empty blob",
                lambda: self._s3.put_object(
                    Bucket=self.bucket, Key=self._key(digest), Body=b"", **self._sse
                ),
            )
            return
        self._call(
            "complete upload",
            lambda: self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(digest),
                UploadId=handle,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]
                },
            ),
        )

    def abort_upload(self, handle: str, digest: str) -> None:
        try:
            self._call(
                "abort upload",
                lambda: self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(digest), UploadId=handle
                ),
            )
        except NotFoundError:
            pass  # NoSuchUpload: already completed or aborted

    def delete(self, digest: str) -> None:
        self._call(
            "delete blob",
            lambda: self._s3.delete_object(Bucket=self.bucket, Key=self._key(digest)),
        )

    def _digest_of(self, key: str) -> str | None:
        """The digest a key under ``PREFIX/blobs/sha256/`` names, else ``None`` (not ours)."""
        name = key.removeprefix(self._blobs)
        return name if key.startswith(self._blobs) and is_sha256_hex(name) else None

    def _pages(self, operation: str, what: str) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator(operation)
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._blobs))
        while True:
            page = self._call(what, lambda: next(pages, None))
            if page is None:
                return
            yield page

    def list_blobs(self) -> Iterator[StoredBlob]:
        for page in self._pages("list_objects_v2", "list blobs"):
            for item in page.get("Contents", ()):
                digest = self._digest_of(item["Key"])
                if digest is not None:
                    yield StoredBlob(digest, int(item["Size"]), item["LastModified"])

    def list_uploads(self) -> Iterator[StagedUpload]:
        for page in self._pages("list_multipart_uploads", "list staged uploads"):
            for item in page.get("Uploads", ()):
                digest = self._digest_of(item["Key"])
                if digest is not None:
                    yield StagedUpload(str(item["UploadId"]), digest, item["Initiated"])

    def abort_staged(self, upload: StagedUpload) -> None:
        if upload.digest is None:
            raise ValueError("an S3 staged upload names its blob")
        self.abort_upload(upload.handle, upload.digest)


def _explain(exc: BotoCoreError) -> str:
    if isinstance(exc, UnseekableStreamError):
        return "the blob store failed while the body was being sent, and it cannot be resent"
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return f"the blob store is unreachable ({type(exc).__name__})"
    return f"the request to the blob store failed ({type(exc).__name__})"
