"""A verified pull: nothing reaches the target before the version and its evidence check out.

    pull        :meth:`RegistryClient.pull <registry.sdk.client.RegistryClient.pull>`: refuse
                what is rejected, revoked, unreleased (unless ``pending``) or external; run the
                checks of :mod:`registry.sdk.trust` (release or pending evidence, the fresh
                signed status, the caller's own gate) and of :mod:`registry.sdk.logcheck` (the
                transparency log: the version's newest status event and an alias's newest move,
                proven in a fresh checkpoint that extends the one remembered); then download,
                and report a failed verification to the registry (a security event)
    _download   one file, streamed into the staging directory while it is hashed (written back
                to disk as it goes when durable); a digest or size mismatch refuses the pull
    _exchange   swap the verified copy for an existing directory in one step (``--replace``)
    _fsync_tree fsync every directory of the staging tree before it is renamed into place

Every file lands in a temporary directory beside the target, which is renamed to the target only
once every file matched its digest; on any failure the target is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from registry.errors import (
    InvalidRequestError,
    PullVerificationError,
    ResponseVerificationError,
)
from registry.names import Ref, RefKind, parse_ref
from registry.sdk import logcheck as _logcheck
from registry.sdk.pins import PinStore
from registry.sdk.trust import (
    check_status,
    verified_manifest,
    verify_locally,
    verify_pending,
    verify_release,
)

if TYPE_CHECKING:
    from attest.digests import FileDigest
    from attest.trust import Trust
    from registry.sdk.client import Progress, RegistryClient
    from registry.wire import VersionPublic

MiB = 1024 * 1024
SYNC_EVERY = 32 * MiB


def pull(
    client: RegistryClient,
    ref: str,
    target: Path,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    durable: bool = True,
    registry_key: bytes | None = None,
    pending: bool = False,
    allow_downgrade: bool = False,
    unsafe_skip_verify: bool = False,
    pins: PinStore | None = None,
    local_policy: str | None = None,
    local_trust: Trust | None = None,
    replace: bool = False,
) -> VersionPublic:
    """:meth:`RegistryClient.pull` (its docstring is the contract): the pull, and a verification
    failure reported to the registry before it is raised."""
    try:
        return _pull(client, ref, Path(target), progress=progress, on_total=on_total,
                     durable=durable, registry_key=registry_key, pending=pending,
                     allow_downgrade=allow_downgrade, unsafe_skip_verify=unsafe_skip_verify,
                     pins=pins, local_policy=local_policy, local_trust=local_trust,
                     replace=replace)  # fmt: skip
    except ResponseVerificationError as exc:
        # The checks shared with `verify`, the monitor and exports (trust, log proofs) raise
        # ResponseVerificationError; inside a pull, any of them is a pull that did not verify.
        failed = exc if isinstance(exc, PullVerificationError) else PullVerificationError(
            exc.detail, **exc.facts
        )  # fmt: skip
        # Asking a deployer's question of a pending version is a mistake, not an attack.
        mistake = failed.facts.get("state") == "pending" and not pending
        client.report_verification_failure(
            ref, failed.detail, kind="not-released" if mistake else "verification"
        )
        if failed is exc:
            raise
        raise failed from exc


def _pull(
    client: RegistryClient,
    ref: str,
    target: Path,
    *,
    progress: Progress | None,
    on_total: Callable[[int], None] | None,
    durable: bool,
    registry_key: bytes | None,
    pending: bool,
    allow_downgrade: bool,
    unsafe_skip_verify: bool,
    pins: PinStore | None,
    local_policy: str | None,
    local_trust: Trust | None,
    replace: bool = False,
) -> VersionPublic:
    from concurrent.futures import ThreadPoolExecutor

    from registry.wire import BATCH_BLOB_MAX_BYTES

    parsed = parse_ref(ref)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise InvalidRequestError(f"{target} exists and is not a directory")
    occupied = target.exists() and any(target.iterdir())
    if occupied and not replace:
        raise InvalidRequestError(
            f"{target} exists and is not an empty directory (pass --replace to swap it "
            "for the verified new copy in one step)",
            target=str(target),
        )
    version = client.show(ref, unsafe=unsafe_skip_verify)  # the registry audits the bypass
    if version.external:
        raise InvalidRequestError(
            f"{ref} is external: the registry holds no bytes of it (they live at "
            f"{', '.join(sorted({f.uri or '?' for f in version.files})[:3])} …)"
        )
    files = verified_manifest(parsed, version)
    if version.state in ("rejected", "revoked"):
        raise PullVerificationError(
            f"{ref} is {version.state}: {version.state_reason or 'no reason recorded'}",
            state=version.state,
        )
    pins = pins or PinStore()
    release_digests: list[str] | None = None
    if unsafe_skip_verify:
        warnings.warn(
            f"UNSAFE: pulling {ref} without verifying its release evidence nor the "
            "transparency log (file digests are still checked)",
            stacklevel=3,  # the caller of RegistryClient.pull
        )
    elif version.state == "released":
        release_digests = verify_release(client, parsed, version, files, registry_key, pins,
                                         allow_downgrade)  # fmt: skip
    elif version.state == "pending" and pending:
        verify_pending(client, parsed, version, files)
    else:
        raise PullVerificationError(
            f"{ref} is {version.state}; only released versions are pulled "
            "(evaluation jobs: --pending)",
            state=version.state,
        )
    if not unsafe_skip_verify:  # the current signed status and the log, before a byte lands
        check_status(client, version, registry_key, pins)
        check_log(client, parsed, version, pins, release_digests)
    if local_policy is not None and local_trust is not None:
        verify_locally(client, version, local_policy, local_trust, pins)
    if on_total:
        on_total(sum(f.size for f in files))
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{target.name}.modelseal-{uuid.uuid4().hex[:12]}"
    staging.mkdir(mode=0o700)
    # Versions are immutable: fetch by version name so a moving alias cannot switch content.
    pinned = Ref(parsed.namespace, parsed.name, version.version, RefKind.VERSION)
    try:
        with ThreadPoolExecutor(max_workers=client.workers) as pool:
            futures = [
                pool.submit(_download, client, pinned, item, staging, progress, durable)
                for item in files
                if item.size > BATCH_BLOB_MAX_BYTES
            ]
            futures += [
                pool.submit(_download_batch, client, pinned, batch, staging, progress, durable)
                for batch in _batches([f for f in files if f.size <= BATCH_BLOB_MAX_BYTES])
            ]
            for future in futures:
                future.result()
        if durable:
            _fsync_tree(staging)
        staging.chmod(0o755)
        if occupied:
            _exchange(staging, target)  # staging now holds the old copy
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if occupied:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def check_log(
    client: RegistryClient,
    ref: Ref,
    version: VersionPublic,
    pins: PinStore,
    release_digests: list[str] | None,
) -> None:
    """The transparency log's word on what is about to be pulled (:mod:`registry.sdk.logcheck`):
    the version's newest status event proven in a fresh checkpoint extending the remembered one
    (for a pending version, only the checkpoint), and behind an alias its newest logged move."""
    needs = _logcheck.requirements(client)
    _logcheck.check_version(client, version, pins, needs, release_digests=release_digests)
    if ref.kind is RefKind.ALIAS:
        _logcheck.check_alias(client, ref.namespace, ref.name, ref.selector, version.version,
                              pins, needs, on_rollback=client.on_notice)  # fmt: skip


def _download(
    client: RegistryClient,
    ref: Ref,
    item: FileDigest,
    staging: Path,
    progress: Progress | None,
    durable: bool,
) -> None:
    from registry.sdk.filesink import FileSink

    destination = staging / item.path
    destination.parent.mkdir(parents=True, exist_ok=True)
    path = f"{client._version_path(ref)}/files/{quote(item.path)}"
    hasher = hashlib.sha256()
    unsynced = 0
    # Durable: straight to the disk where the filesystem allows it (see registry.sdk.filesink).
    out = FileSink(destination, direct=durable)

    def sink(piece: memoryview) -> None:
        nonlocal unsynced
        hasher.update(piece)
        out.write(piece)
        if durable and not out.direct:
            unsynced += len(piece)
            if unsynced >= SYNC_EVERY:
                # Write back as we go: the disk works while the network does, and the
                # final fsync has little left to do.
                out.sync_data()
                unsynced = 0
        if progress:
            progress(len(piece))

    try:
        size, _ = client._raw.get(path, sink, limit=item.size, redirect=client.storage_redirects)
    finally:
        out.close(durable=durable)
    if size != item.size or hasher.hexdigest() != item.sha256:
        got = "more bytes than declared" if size > item.size else f"sha256:{hasher.hexdigest()}"
        raise PullVerificationError(
            f"{item.path}: downloaded bytes do not match sha256:{item.sha256} "
            f"({size} bytes, got {got}); nothing was written to the target",
            path=item.path,
            expected=item.sha256.prefixed,
            got=got,
        )


def _batches(files: list[FileDigest]) -> Iterator[list[FileDigest]]:
    """Small files in groups of at most 500 files or 8 MiB (a response held in memory)."""
    batch: list[FileDigest] = []
    size = 0
    for item in files:
        if batch and (len(batch) >= 500 or size + item.size > 8 * 1024 * 1024):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def _download_batch(
    client: RegistryClient,
    ref: Ref,
    items: list[FileDigest],
    staging: Path,
    progress: Progress | None,
    durable: bool,
) -> None:
    """Small files of the verified manifest in one request
    (``POST .../versions/{v}/files``); each is checked against the manifest's size and digest
    before a byte of it is written."""
    import json

    from registry.sdk.filesink import FileSink

    response = client._request(
        "POST", f"{client._version_path(ref)}/files",
        json={"paths": [item.path for item in items]}, idempotent=True,
    )  # fmt: skip
    body = memoryview(response.content)
    end = bytes(body[: 512 * 1024]).find(b"\n")
    try:
        index = json.loads(bytes(body[:end])) if end >= 0 else None
        listed = [(f["path"], f["digest"], f["size"]) for f in index["files"]]  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        listed = None
    expected = [(f.path, f.sha256.prefixed, f.size) for f in items]
    if listed != expected or len(body) != end + 1 + sum(f.size for f in items):
        raise PullVerificationError(
            f"the registry's answer for {len(items)} files does not list exactly the files of "
            "the verified manifest; nothing was written to the target",
            expected=len(items),
        )
    offset = end + 1
    for item in items:
        data = body[offset : offset + item.size]
        offset += item.size
        actual = hashlib.sha256(data).hexdigest()
        if actual != item.sha256:
            raise PullVerificationError(
                f"{item.path}: downloaded bytes do not match sha256:{item.sha256} "
                f"(got sha256:{actual}); nothing was written to the target",
                path=item.path,
                expected=item.sha256.prefixed,
                got=f"sha256:{actual}",
            )
        destination = staging / item.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        out = FileSink(destination, direct=durable)
        try:
            out.write(data)
        finally:
            out.close(durable=durable)
        if progress:
            progress(item.size)


def _exchange(new: Path, old: Path) -> None:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader of
    ``old`` sees the old copy or the new one, never neither. Where the kernel or file system
    cannot exchange, the old copy is moved aside first (a moment with no directory there)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    at_fdcwd, rename_exchange = -100, 2
    if renameat2 is not None and renameat2(at_fdcwd, os.fsencode(new), at_fdcwd,
                                           os.fsencode(old), rename_exchange) == 0:  # fmt: skip
        return
    aside = old.with_name(f".{old.name}.modelseal-old-{uuid.uuid4().hex[:12]}")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(aside, old)
        raise
    os.rename(aside, new)


def _fsync_tree(root: Path) -> None:
    for current, _dirs, _files in os.walk(root):
        fd = os.open(current, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
