"""The service scans a stored blob exactly as the scanner reads the same file from a directory,
whichever way it opens it: small blobs read whole into memory, larger ones through windowed
ranged reads (``registry.server.storage.reader.BlobFile``)."""

from __future__ import annotations

import hashlib
import io
import types
from pathlib import Path
from typing import Any

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
