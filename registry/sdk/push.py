"""Pushing: a directory's files hashed and uploaded as blobs, then committed as a version.

    collect_files       the regular files under a directory, validated as version paths
    push                hash (two threads, in order) while the pool uploads what is hashed, commit,
                        check the root digest the registry reports, attach the signature
    upload_blob         one blob through a resumable upload session, journalled in
                        ``client.uploads`` (:mod:`registry.sdk.resume`) so that a push run again
                        continues where an interrupted one stopped
    upload_batch        many small files in one request (a push sends every file of at most
                        1 MiB this way, up to 500 files or 8 MiB a request)
    check_signer        refuse a signer the registry would refuse, before a byte is sent
    register_external   a version by manifest only (bytes elsewhere), optionally signed

The functions take the :class:`~registry.sdk.client.RegistryClient` that sends; its methods of
the same names are the public way in (their docstrings are the contract), and
:func:`collect_files` is also importable from :mod:`registry.sdk.client`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from attest.digests import FileDigest, parse_sha256, root_digest
from attest.errors import FileSetError
from registry.errors import (
    ConnectionFailedError,
    EvidenceRejectedError,
    InvalidManifestError,
    InvalidPathError,
    InvalidRequestError,
    NotFoundError,
    RegistryError,
    ResponseVerificationError,
    ServiceUnavailableError,
    UploadExpiredError,
    UploadOffsetError,
)
from registry.names import Kind, parse_ref, validate_external_uri, validate_path

#: What one batch of small files carries at most, as the client sends them (below the
#: registry's limits, :data:`registry.wire.BATCH_MAX_BLOBS` and ``BATCH_MAX_BYTES``): the
#: request's body is held in memory while it is sent.
SEND_BATCH_BLOBS = 500
SEND_BATCH_BYTES = 8 * 1024 * 1024

if TYPE_CHECKING:
    # Imported where they are used (see registry.sdk.client): loading this module must not load
    # the hashing and signing machinery.
    from attest.files import FileSet, LocalFile
    from attest.signing import Signer
    from registry.sdk.client import Progress, RegistryClient
    from registry.wire import UploadPublic, VersionPublic


def collect_files(directory: Path, *, follow_symlinks_within: Path | None = None) -> FileSet:
    """The regular files under ``directory``, validated as version paths (symlinks followed
    only to regular files inside ``follow_symlinks_within``; see
    :func:`attest.files.file_set`).

    Raises:
        InvalidPathError: a symlink, special file or invalid name was found.
        InvalidRequestError: ``directory`` is not a directory, or holds no file.
    """
    from attest.files import file_set

    try:
        found = file_set(directory, follow_symlinks_within=follow_symlinks_within)
    except FileSetError as exc:
        if "path" in exc.facts:
            raise InvalidPathError(str(exc), path=exc.facts["path"]) from None
        raise InvalidRequestError(str(exc)) from None
    for item in found.files:
        validate_path(item.path)
    return found


def upload_blob(
    client: RegistryClient,
    namespace: str,
    item: LocalFile,
    digest: str,
    *,
    progress: Progress | None = None,
) -> None:
    """:meth:`RegistryClient.upload_blob` (its docstring is the contract)."""
    for _ in range(3):
        try:
            _upload_once(client, namespace, item, digest, progress)
            return
        except (NotFoundError, UploadExpiredError):
            client.uploads.forget(namespace, digest)
    _upload_once(client, namespace, item, digest, progress)


def _upload_once(
    client: RegistryClient, namespace: str, item: LocalFile, digest: str, progress: Progress | None
) -> None:
    from registry.wire import UploadPublic

    journal = client.uploads
    upload_id = journal.recall(namespace, digest, item.size)
    status = _resumable(client, upload_id, namespace, digest, item.size) if upload_id else None
    if status is None:
        journal.forget(namespace, digest)
        status = UploadPublic.model_validate(
            client._request(
                "POST",
                f"/v1/namespaces/{namespace}/uploads",
                json={"digest": f"sha256:{digest}", "size": item.size},
            ).json()
        )
        if status.exists or status.id is None:
            if progress:
                progress(item.size)
            return
        journal.remember(namespace, digest, item.size, status.id)
    elif progress and status.offset:
        progress(status.offset)
    upload_id = status.id
    assert upload_id is not None
    chunk = max(status.min_chunk_bytes, min(client.chunk_size, status.max_chunk_bytes))
    offset = status.offset
    attempts = 0
    while True:
        try:
            _send_chunks(client, upload_id, item, offset, chunk, progress)
            break
        except (ConnectionFailedError, ServiceUnavailableError, UploadOffsetError):
            attempts += 1
            if attempts > 3:
                raise  # the session stays recorded: the next push resumes it
            moved_on = UploadPublic.model_validate(
                client._request("GET", f"/v1/uploads/{upload_id}").json()
            ).offset
            if moved_on > offset:  # progress (ours or a concurrent push's): not stuck
                attempts = 0
            offset = moved_on
        except (NotFoundError, UploadExpiredError):
            raise  # gone: the caller starts anew
        except RegistryError:
            with contextlib.suppress(RegistryError):
                client._request("DELETE", f"/v1/uploads/{upload_id}")
            journal.forget(namespace, digest)
            raise
    journal.forget(namespace, digest)


def upload_batch(
    client: RegistryClient,
    namespace: str,
    files: Mapping[str, LocalFile],
    *,
    progress: Progress | None = None,
) -> None:
    """Upload small files (each at most :data:`~registry.wire.BATCH_BLOB_MAX_BYTES`) in one
    request, keyed by the sha256 hex they were hashed to; the registry checks every one against
    that digest before it holds any of them (a file rewritten since it was hashed fails the
    whole batch with its digest-mismatch). Content-addressed, so sent again when a connection
    fails."""
    import json

    from registry.wire import BATCH_MEDIA_TYPE, BlobBatchPublic

    index = [{"digest": f"sha256:{hex_}", "size": item.size} for hex_, item in files.items()]
    body = bytearray(json.dumps({"blobs": index}, separators=(",", ":")).encode() + b"\n")
    for item in files.values():
        with item.source.open("rb") as handle:
            data = handle.read(item.size + 1)
        if len(data) != item.size:
            raise InvalidRequestError(
                f"{item.path} changed while it was pushed ({len(data)} bytes now, "
                f"{item.size} when listed); nothing of it was uploaded",
                path=item.path,
            )
        body += data
    response = client._request(
        "POST",
        f"/v1/namespaces/{namespace}/blobs",
        content=bytes(body),
        headers={"Content-Type": BATCH_MEDIA_TYPE},
        idempotent=True,
    )
    held = {(b.digest, b.size) for b in BlobBatchPublic.model_validate(response.json()).blobs}
    sent = {(entry["digest"], entry["size"]) for entry in index}
    if held != sent:
        raise ResponseVerificationError(
            f"the registry's answer to a batch of {len(sent)} blobs names other blobs",
            expected=len(sent),
            got=len(held),
        )
    if progress:
        progress(sum(item.size for item in files.values()))


def _resumable(
    client: RegistryClient, upload_id: str, namespace: str, digest: str, size: int
) -> UploadPublic | None:
    """The registry's state of a recorded session, or None when it cannot be resumed
    (finished, expired, cancelled, or not this blob). Outages propagate: the record stays."""
    from registry.wire import UploadPublic

    try:
        status = UploadPublic.model_validate(
            client._request("GET", f"/v1/uploads/{quote(upload_id, safe='')}").json()
        )
    except (ConnectionFailedError, ServiceUnavailableError):
        raise
    except RegistryError:
        return None
    if (status.id, status.namespace, status.digest, status.size) != (
        upload_id,
        namespace,
        f"sha256:{digest}",
        size,
    ):
        return None  # another blob's, or another namespace's (a planted record): start anew
    return status


def _send_chunks(
    client: RegistryClient,
    upload_id: str,
    item: LocalFile,
    offset: int,
    chunk: int,
    progress: Progress | None,
) -> int:
    while True:
        length = min(chunk, item.size - offset)
        last = offset + length >= item.size
        headers = {"Content-Type": "application/octet-stream"}
        if length > 0:
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}"
        client._raw.send_file(
            "PUT" if last else "PATCH",
            f"/v1/uploads/{upload_id}",
            item.source,
            offset=offset,
            length=length,
            headers=headers,
            progress=progress,
        )
        offset += length
        if last:
            return offset


def push(
    client: RegistryClient,
    directory: Path,
    ref: str,
    *,
    kind: Kind = Kind.MODEL,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    signer: Signer | None = None,
    signature: bytes | None = None,
    follow_symlinks_within: Path | None = None,
) -> VersionPublic:
    """:meth:`RegistryClient.push` (its docstring is the contract)."""
    from concurrent.futures import ThreadPoolExecutor

    from attest.bundle import Bundle
    from attest.files import hash_file, hash_files
    from attest.oms import check_oms, oms_statement
    from registry.wire import BATCH_BLOB_MAX_BYTES

    parsed = parse_ref(ref)
    if parsed.kind.value != "version":
        raise InvalidRequestError(f"push needs NS/NAME@VERSION, not {ref!r}")
    if signer is not None:
        client.check_signer(signer)  # before a byte is uploaded
    scan = collect_files(directory, follow_symlinks_within=follow_symlinks_within)
    if on_total:
        on_total(sum(f.size for f in scan.files))
    known: dict[str, FileDigest] = {}
    if signature is not None:  # checked to cover exactly these files before any upload
        known = {d.path: d for d in hash_files(scan.files, workers=2)}
        check_oms(Bundle.parse(signature).statement(), list(known.values()))

    # Pipelined: two threads hash the files in order while the pool uploads the files
    # already hashed, so the first upload starts after one file's hash, not all of them,
    # and the second core is not idle meanwhile. (The server hashes the bytes it receives.)
    def digest_of(item: LocalFile) -> FileDigest:
        return known.get(item.path) or hash_file(item)

    # Small files travel many to a request (upload_batch); the others one resumable session
    # each: those larger than a batch takes, or than one chunk of this client's.
    small = min(BATCH_BLOB_MAX_BYTES, client.chunk_size)
    digests: list[FileDigest] = []
    batch: dict[str, LocalFile] = {}
    batch_bytes = 0
    with (
        ThreadPoolExecutor(max_workers=2) as hashers,
        ThreadPoolExecutor(max_workers=client.workers) as pool,
    ):
        uploads = []

        def send_batch() -> None:
            nonlocal batch, batch_bytes
            if batch:
                uploads.append(pool.submit(upload_batch, client, parsed.namespace, batch,
                                           progress=progress))  # fmt: skip
                batch, batch_bytes = {}, 0

        try:
            for item, digest in zip(scan.files, hashers.map(digest_of, scan.files), strict=True):
                digests.append(digest)
                if item.size > small:
                    uploads.append(pool.submit(client.upload_blob, parsed.namespace, item,
                                               digest.sha256, progress=progress))  # fmt: skip
                    continue
                if len(batch) >= SEND_BATCH_BLOBS or batch_bytes + item.size > SEND_BATCH_BYTES:
                    send_batch()
                if digest.sha256.hex in batch:  # the same bytes twice: sent once
                    if progress:
                        progress(item.size)
                    continue
                batch[digest.sha256.hex] = item
                batch_bytes += item.size
            send_batch()
        except BaseException:
            hashers.shutdown(wait=False, cancel_futures=True)  # hash nothing more
            raise
        finally:
            for upload in uploads:
                upload.result()
    version = client.commit_version(ref, kind, digests)
    expected = root_digest(digests)
    if parse_sha256(version.root_digest) != expected:
        raise ResponseVerificationError(
            f"the registry reports root digest {version.root_digest} but the pushed files "
            f"have sha256:{expected}",
            expected=expected.prefixed,
            got=version.root_digest,
        )
    if signer is not None:
        statement = oms_statement(f"{parsed.namespace}/{parsed.name}", digests)
        signature = signer.sign(statement).raw
    if signature is not None:
        client.attach(f"{parsed.namespace}/{parsed.name}@{parsed.selector}", signature)
    return version


def check_signer(
    client: RegistryClient, signer: Signer, *, public_key_file: str = "PUBLIC_KEY.pem"
) -> None:
    """:meth:`RegistryClient.check_signer` (its docstring is the contract)."""
    identity = signer.identity
    registered = client.list_identities()
    if identity.startswith("sigstore:"):
        if not any(i.kind == "sigstore" for i in registered):
            raise EvidenceRejectedError(
                f"{identity} signs keylessly, but no Sigstore identity is registered in this "
                "registry: nothing was uploaded. An admin registers it with `modelseal "
                "identity add NAME --sigstore-issuer URL --sigstore-identity ID`"
            )
        return
    if not any(i.fingerprint == identity for i in registered):
        raise EvidenceRejectedError(
            f"signing key {identity} is not a registered identity of this registry: "
            "nothing was uploaded. An admin registers it with `modelseal identity add NAME "
            f"--key {public_key_file}`, then push again",
            signer=identity,
        )


def register_external(
    client: RegistryClient,
    ref: str,
    files: Sequence[Mapping[str, Any]],
    *,
    kind: Kind = Kind.DATASET,
    signer: Signer | None = None,
) -> VersionPublic:
    """:meth:`RegistryClient.register_external` (its docstring is the contract)."""
    from attest.oms import oms_statement
    from registry.wire import VersionPublic

    parsed = parse_ref(ref)
    if parsed.kind.value != "version":
        raise InvalidRequestError(f"register needs NS/NAME@VERSION, not {ref!r}")
    if signer is not None:
        client.check_signer(signer)
    digests, entries = [], []
    for item in files:
        try:
            path = validate_path(str(item["path"]))
            sha = str(item["sha256"])
            sha = sha if sha.startswith("sha256:") else f"sha256:{sha}"
            digest = FileDigest(path, int(item["size"]), parse_sha256(sha))
            uri = validate_external_uri(str(item["uri"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidManifestError(
                f"a manifest entry needs path, size, sha256 and uri: {exc}"
            ) from None
        digests.append(digest)
        entries.append({"path": path, "size": digest.size,
                        "digest": digest.sha256.prefixed, "uri": uri})  # fmt: skip
    body = {"kind": str(kind), "external": True, "files": entries}
    response = client._request("PUT", client._version_path(parsed), json=body, idempotent=True)
    version = VersionPublic.model_validate(response.json())
    if parse_sha256(version.root_digest) != root_digest(digests):
        raise ResponseVerificationError("the registry reports another root digest")
    if signer is not None:
        statement = oms_statement(f"{parsed.namespace}/{parsed.name}", digests)
        client.attach(ref, signer.sign(statement).raw)
    return version
