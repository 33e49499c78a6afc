"""The service scans a stored blob exactly as the scanner reads the same file from a directory,
whichever way it opens it: small blobs read whole into memory, larger ones through windowed
ranged reads (``registry.server.storage.reader.BlobFile``)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from attest.digests import Digest
from attest.scan import ScanVerdict
from attest.scan.core import scan_directory
from registry.server.services.scanning import ScanService
from registry.server.storage import LocalBlobStore
from registry.server.storage.reader import WINDOW
from tests import scan_corpus


def _store(store: LocalBlobStore, data: bytes) -> Digest:
    digest = Digest(hashlib.sha256(data).hexdigest())
    handle = store.start_upload(digest)
    part = store.put_part(handle, digest, 1, io.BytesIO(data), len(data))
    store.complete_upload(handle, digest, [part])
    return digest


def test_the_service_judges_small_and_large_blobs_as_the_scanner_judges_files(
    tmp_path: Path,
) -> None:
    sentinel = tmp_path / "pwned"
    files = {f"corpus/{name}": data for name, data in scan_corpus.bypass_corpus(sentinel).items()}
    files |= {f"pickles/{n}.pkl": d for n, d in scan_corpus.malicious_pickles(sentinel).items()}
    files |= {f"repo/{name}": data for name, data in scan_corpus.hf_repo().items()}
    evil = next(iter(scan_corpus.malicious_pickles(sentinel).values()))
    big = scan_corpus.zip_bytes({"archive/data.pkl": evil, "archive/data/0": bytes(2 * WINDOW)},
                                compress=False)  # fmt: skip
    files["big/model.pt"] = big
    tensor = {"w": {"dtype": "F32", "shape": [WINDOW // 2], "data_offsets": [0, 2 * WINDOW]}}
    files["big/model.safetensors"] = scan_corpus.safetensors_raw(tensor, bytes(2 * WINDOW))
    assert any(len(d) <= WINDOW for d in files.values())
    assert sum(len(d) > WINDOW for d in files.values()) == 2

    directory = tmp_path / "model"
    for path, data in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    store = LocalBlobStore(tmp_path / "store")
    record: Any = types.SimpleNamespace(files=[
        types.SimpleNamespace(path=path, size=len(data), sha256=_store(store, data))
        for path, data in sorted(files.items())
    ])  # fmt: skip
    service = ScanService(sessions=None, store=store, signer=None)  # type: ignore[arg-type]

    served = {v.path: (v.verdict, v.format, v.findings) for v in service.scan(record).files}
    read = {v.path: (v.verdict, v.format, v.findings) for v in scan_directory(directory).files}
    assert served == read
    assert served["big/model.pt"][0] is ScanVerdict.UNSAFE
    assert served["big/model.safetensors"][0] is ScanVerdict.CLEAN
    assert all(served[p][0] is ScanVerdict.UNSAFE for p in files if p.startswith("pickles/"))
    assert not sentinel.exists()


class _BrokenMidway:
    """A store whose reads past the first MiB of a blob fail the way an HTTP stack may let an
    error through (not an OSError, not a RegistryError: urllib3's SSLError on a corrupted TLS
    record is one)."""

    class TlsBroke(Exception):
        pass

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner

    def read(self, digest: str, *, start: int = 0, length: int | None = None) -> Any:
        if start >= WINDOW:
            raise self.TlsBroke("DECRYPTION_FAILED_OR_BAD_RECORD_MAC")
        return self.inner.read(digest, start=start, length=length)


def test_a_store_failing_under_the_scanner_is_an_error_never_a_verdict(tmp_path: Path) -> None:
    """Whatever a store raises while the scanner reads a large blob is the store failing: the
    scan raises (its caller retries), the file is not called unscannable."""
    from registry.errors import StorageUnavailableError

    evil = next(iter(scan_corpus.malicious_pickles(tmp_path / "pwned").values()))
    big = scan_corpus.zip_bytes({"archive/data/0": bytes(2 * WINDOW), "archive/data.pkl": evil},
                                compress=False)  # fmt: skip
    store = LocalBlobStore(tmp_path / "store")
    record: Any = types.SimpleNamespace(files=[
        types.SimpleNamespace(path="model.pt", size=len(big), sha256=_store(store, big))
    ])  # fmt: skip
    healthy = ScanService(sessions=None, store=store, signer=None)  # type: ignore[arg-type]
    assert healthy.scan(record).files[0].verdict is ScanVerdict.UNSAFE
    broken = ScanService(sessions=None, store=_BrokenMidway(store), signer=None)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailableError, match="TlsBroke"):
        broken.scan(record)


def test_the_scanners_own_disk_failing_is_an_error_never_a_verdict(tmp_path: Path) -> None:
    """A stream that inflates past what the scanner keeps in memory is spilled to a temporary
    file; that file failing (here: the file size limit, as a full disk would) raises out of
    the scan instead of calling the stream malformed."""
    script = f"""
import gzip, io, random, resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[4])!r})
from attest.scan.core import ScratchFailure, scan_stream
data = gzip.compress(random.Random(1).randbytes(12 * 1024 * 1024), compresslevel=1)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4 * 1024 * 1024, 4 * 1024 * 1024))
try:
    verdict = scan_stream("x.gz", io.BytesIO(data), len(data))
    print("verdict", verdict.verdict, verdict.findings)
except ScratchFailure as exc:
    print("raised", exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    assert done.stdout.startswith("raised the scanner's temporary file failed"), done.stdout


def test_a_store_answering_other_bytes_than_the_range_asked_is_an_error(tmp_path: Path) -> None:
    """A store that ignores the range (an S3-compatible server answering 200 with the whole
    object) or cuts it short would have the scanner judge misaligned bytes: refused."""
    from registry.errors import StorageUnavailableError

    class WholeObject:
        def __init__(self, inner: LocalBlobStore) -> None:
            self.inner = inner

        def read(self, digest: str, *, start: int = 0, length: int | None = None) -> Any:
            return self.inner.read(digest)  # the range ignored

    big = scan_corpus.zip_bytes({"archive/data/0": bytes(2 * WINDOW)}, compress=False)
    store = LocalBlobStore(tmp_path / "store")
    record: Any = types.SimpleNamespace(files=[
        types.SimpleNamespace(path="model.pt", size=len(big), sha256=_store(store, big))
    ])  # fmt: skip
    assert ScanService(sessions=None, store=store, signer=None).scan(record)  # type: ignore[arg-type]
    ignoring = ScanService(sessions=None, store=WholeObject(store), signer=None)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailableError, match="bytes came back"):
        ignoring.scan(record)


def test_a_pickle_padded_past_the_opcode_limit_rejects_its_version() -> None:
    """Attacker: a malicious uploader. Harmless opcodes before the call exhaust the walk: the
    file is unscannable, and that rejects the version as an unsafe file would (pending, its
    files would be served to producers and evaluation jobs)."""
    from attest.scan import ScanLimits, scan_files
    from registry.server.services.scanning import _rejection

    padded = b"\x80\x04" + b"N0" * 600 + b"cos\nsystem\n(S'id'\ntR."
    report = scan_files([("m.pkl", len(padded))], lambda _path: io.BytesIO(padded),
                        limits=ScanLimits(max_pickle_ops=1000))  # fmt: skip
    [verdict] = report.files
    assert verdict.verdict is ScanVerdict.UNSCANNABLE
    assert _rejection(report) == (
        "scan: unscannable files: m.pkl (pickle scan stopped: the pickle has more opcodes "
        "than the scan limit)"
    )
    whole = scan_files([("m.pkl", len(padded))], lambda _path: io.BytesIO(padded))
    assert whole.files[0].verdict is ScanVerdict.UNSAFE  # read to the end, the call is found
    assert (_rejection(whole) or "").startswith("scan: unsafe files: m.pkl")
    clean = scan_files([("m.pkl", 4)], lambda _path: io.BytesIO(b"\x80\x04N."))
    assert _rejection(clean) is None
