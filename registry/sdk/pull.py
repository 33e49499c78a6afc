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
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from registry.errors import (
    ConnectionFailedError,
    InvalidRequestError,
    PullVerificationError,
    ResponseVerificationError,
    ScanPendingError,
    ServiceUnavailableError,
    StorageUnavailableError,
)
from registry.names import Ref, RefKind, parse_ref
from registry.sdk import logcheck as _logcheck
from registry.sdk.pins import PinStore
from registry.sdk.push import SEND_BATCH_BLOBS, SEND_BATCH_BYTES
from registry.sdk.trust import (
    check_status,
    verified_manifest,
    verify_locally,
    verify_pending,
    verify_release,
)

#: How long a pull or a release waits for the registry to scan a version of many files.
SCAN_WAIT_SECONDS = 1800.0

if TYPE_CHECKING:
    import httpx

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
        mistake = failed.facts.get("state") in ("pending", "scanning") and not pending
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
    if version.state == "scanning" and (pending or unsafe_skip_verify):
        # Committed, not scanned yet (a version of many files): nothing of it is served yet.
        wait_scanned(client, ref, timeout=SCAN_WAIT_SECONDS)
        version = client.show(ref, unsafe=unsafe_skip_verify)  # (audited as the first was)
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
                pool.submit(_download_batch,
                            _BatchFetch(client, pinned, batch, staging, progress, durable))
                for batch in _batches([f for f in files if f.size <= BATCH_BLOB_MAX_BYTES])
            ]  # fmt: skip
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


#: A download batch as the client asks for it: as many files and bytes as an upload batch
#: (:data:`registry.sdk.push.SEND_BATCH_BLOBS`, ``SEND_BATCH_BYTES``), and at most this many
#: bytes of index (estimated from the paths; the registry's own limits are 1,000 files, 16 MiB
#: and 256 KiB of index).
BATCH_INDEX_BYTES = 128 * 1024
#: What one file's entry in the index takes besides its path (digest, size, JSON punctuation).
_ENTRY_BYTES = 120


def _batches(files: list[FileDigest]) -> Iterator[list[FileDigest]]:
    """Small files in groups a download batch carries (see :data:`BATCH_INDEX_BYTES`)."""
    batch: list[FileDigest] = []
    size = index = 0
    for item in files:
        entry = len(item.path.encode()) + _ENTRY_BYTES
        if batch and (len(batch) >= SEND_BATCH_BLOBS or size + item.size > SEND_BATCH_BYTES
                      or index + entry > BATCH_INDEX_BYTES):  # fmt: skip
            yield batch
            batch, size, index = [], 0, 0
        batch.append(item)
        size += item.size
        index += entry
    if batch:
        yield batch


class _Body:
    """A streamed answer read in exact amounts, never past ``limit`` bytes."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._left = limit  # bytes the answer may still hold beyond the buffer

    def _fill(self, want: int) -> None:
        while len(self._buffer) < want:
            piece = next(self._chunks, b"")
            if not piece:
                return
            if len(piece) > self._left:
                raise _Overlong
            self._left -= len(piece)
            self._buffer += piece

    def line(self, limit: int) -> bytes | None:
        """Bytes up to and including the first newline within ``limit``, else None."""
        while True:
            end = self._buffer.find(b"\n", 0, limit)
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) >= limit:
                return None
            before = len(self._buffer)
            self._fill(before + 1)
            if len(self._buffer) == before:
                return None

    def take(self, size: int) -> bytes | None:
        """Exactly ``size`` bytes, or None when the answer ends first."""
        self._fill(size)
        if len(self._buffer) < size:
            return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def ended(self) -> bool:
        self._fill(1)
        return not self._buffer


class _Overlong(Exception):
    """The answer holds more bytes than the files asked for."""


def _download_batch(fetch: _BatchFetch) -> None:
    """Small files of the verified manifest in one request (``POST .../versions/{v}/files``):
    the answer's index must list exactly these files, each file's bytes must hash to its
    manifest digest before any of it is written, and nothing past the last file is read
    (memory stays within one file and one index whatever the answer holds). A request that
    fails before its first file was written (503, a broken connection) is asked again."""
    from registry.sdk.transfer import Retry

    started = time.monotonic()
    for attempt in range(1, Retry.attempts + 1):
        try:
            fetch.run()
            return
        except (ServiceUnavailableError, ConnectionFailedError) as exc:
            if fetch.written or attempt == Retry.attempts:
                exc.detail = f"{exc.detail} {Retry.gave_up(attempt, started)}"
                exc.args = (exc.detail,)
                raise
            time.sleep(Retry.delay(attempt))


@dataclass
class _BatchFetch:
    """One download batch's request and the checks on its answer (:func:`_download_batch`)."""

    client: RegistryClient
    ref: Ref
    items: list[FileDigest]
    staging: Path
    progress: Progress | None
    durable: bool
    written: int = 0

    def refused(self, why: str) -> PullVerificationError:
        return PullVerificationError(
            f"the registry's answer for {len(self.items)} files {why}; nothing was written to "
            "the target",
            expected=len(self.items),
        )

    def run(self) -> None:
        import httpx

        from registry.sdk.transfer import redact_secrets

        client = self.client
        path = f"{client._version_path(self.ref)}/files"
        paths = [f.path for f in self.items]
        try:
            with client._http.stream("POST", path, json={"paths": paths}) as response:
                client._check(response)
                self._read(response)
        except httpx.TransportError as exc:
            raise ConnectionFailedError(
                f"the registry's answer for {len(self.items)} files broke off "
                f"({redact_secrets(str(exc))}): the network, or its blob store failing (see "
                "the registry's log)"
            ) from exc
        except _Overlong:
            raise self.refused("holds more bytes than the files asked for") from None

    def _read(self, response: httpx.Response) -> None:
        import json

        from registry.sdk.filesink import FileSink
        from registry.wire import BATCH_INDEX_MAX_BYTES

        items = self.items
        total = sum(f.size for f in items)
        body = _Body(response.iter_bytes(), limit=BATCH_INDEX_MAX_BYTES + 1 + total)
        line = body.line(BATCH_INDEX_MAX_BYTES + 1)
        try:
            index = json.loads(line) if line is not None else None
            listed = [(f["path"], f["digest"], f["size"]) for f in index["files"]]  # type: ignore[index]
        except (ValueError, TypeError, KeyError):
            listed = None
        if line is None or listed != [(f.path, f.sha256.prefixed, f.size) for f in items]:
            raise self.refused("does not list exactly the files of the verified manifest")
        declared = response.headers.get("content-length")
        if declared is not None and declared != str(len(line) + total):
            raise self.refused(f"declares {declared} bytes, not {len(line) + total}")
        for item in items:
            data = body.take(item.size)
            if data is None:
                raise StorageUnavailableError(
                    f"the registry's answer for {len(items)} files ended inside {item.path} "
                    "(its blob store may be failing; see the registry's log); nothing was "
                    "written to the target",
                    path=item.path,
                )
            actual = hashlib.sha256(data).hexdigest()
            if actual != item.sha256:
                raise PullVerificationError(
                    f"{item.path}: downloaded bytes do not match sha256:{item.sha256} "
                    f"(got sha256:{actual}); nothing was written to the target",
                    path=item.path,
                    expected=item.sha256.prefixed,
                    got=f"sha256:{actual}",
                )
            destination = self.staging / item.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            out = FileSink(destination, direct=self.durable)
            try:
                out.write(memoryview(data))
            finally:
                out.close(durable=self.durable)
            self.written += 1
            if self.progress:
                self.progress(item.size)
        if not body.ended():
            raise self.refused("holds more bytes than the files asked for")


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


def wait_scanned(client: RegistryClient, ref: str, *, timeout: float) -> VersionPublic:
    """The version once the registry has recorded its scan: a version of many files is committed
    ``scanning`` and scanned after the commit answered, and until then none of its files is
    served and it cannot be released. Asks again with growing pauses (at most 5 s apart).

    Raises:
        ScanPendingError: still ``scanning`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pause = 0.25
    while True:
        version = client.show(ref)
        if version.state != "scanning":
            return version
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScanPendingError(
                f"{ref} is still being scanned after {timeout:.0f} s; the registry scans it in "
                "the background (an operator sees its job in the bom_jobs table)",
                state="scanning",
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 5.0)
