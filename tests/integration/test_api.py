"""The HTTP API and SDK on both backends: SQLite + local disk, and PostgreSQL + SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from registry.errors import (
    AuthenticationError,
    ConflictError,
    DigestMismatchError,
    InvalidNameError,
    InvalidPathError,
    NotFoundError,
    PullVerificationError,
    VersionConflictError,
)
from registry.server.db import make_engine
from registry.server.models import Blob, UploadSession, Version, VersionFile
from registry.server.storage import open_blob_store
from tests.support import Live, make_model_dir

MiB = 1024 * 1024


def _count(live: Live, model: type) -> int:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


def _http(live: Live, token: str | None = "admin") -> httpx.Client:
    headers = {}
    if token == "admin":
        headers["Authorization"] = f"Bearer {live.admin_token}"
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=live.url, headers=headers, timeout=60)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- auth and errors ----------------------------------------------------------------------------


def test_health_needs_no_token(live: Live) -> None:
    with _http(live, token=None) as http:
        response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("token", [None, "garbage", "ms_0123456789abcdef_wrongsecret"])
def test_everything_else_needs_a_valid_token(live: Live, token: str | None) -> None:
    with _http(live, token=token) as http:
        response = http.get("/v1/namespaces")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "https://modelseal.dev/problems/unauthenticated"
    assert body["status"] == 401
    assert "valid API token is required" in body["detail"]
    with pytest.raises(AuthenticationError):
        live.client(token=token or "").list_namespaces()


def test_unknown_route_is_a_problem(live: Live) -> None:
    with _http(live) as http:
        response = http.get("/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


# -- push and pull ----------------------------------------------------------------------------


def test_push_pull_roundtrip_is_byte_identical(live: Live, model_dir: Path, tmp_path: Path) -> None:
    with live.client() as client:
        pushed = client.push(model_dir, "vision/tiny@1.0.0")
        assert pushed.state == "pending"
        assert pushed.file_count == 4
        target = tmp_path / "pulled"
        pulled = client.pull("vision/tiny@1.0.0", target, unsafe_skip_verify=True)
        assert pulled.root_digest == pushed.root_digest
        assert _tree(target) == _tree(model_dir)
        by_digest = tmp_path / "by-digest"
        client.pull(f"vision/tiny@{pushed.root_digest}", by_digest, unsafe_skip_verify=True)
        assert _tree(by_digest) == _tree(model_dir)
        shown = client.show(f"vision/tiny@{pushed.root_digest}")
        assert shown.version == "1.0.0"
        assert [a.name for a in client.list_artifacts("vision")] == ["tiny"]
        assert [v.version for v in client.list_versions("vision", "tiny")] == ["1.0.0"]
        assert client.list_namespaces() == ["vision"]


def test_chunked_upload_of_a_multi_chunk_file(live: Live, tmp_path: Path) -> None:
    data = os.urandom(12 * MiB + 5)
    src = tmp_path / "big"
    src.mkdir()
    (src / "weights.bin").write_bytes(data)
    with live.client(chunk_size=5 * MiB) as client:
        client.push(src, "big/one@1")
        client.pull("big/one@1", tmp_path / "out", unsafe_skip_verify=True)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data


def test_repush_identical_is_idempotent(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        first = client.push(model_dir, "ns/m@1")
        counts = [_count(live, m) for m in (Version, VersionFile, Blob)]
        again = client.push(model_dir, "ns/m@1")
    assert again.root_digest == first.root_digest
    assert [_count(live, m) for m in (Version, VersionFile, Blob)] == counts
    assert _count(live, UploadSession) == 0


def test_repush_different_content_is_409(live: Live, model_dir: Path, tmp_path: Path) -> None:
    other = make_model_dir(tmp_path / "other", seed=1)
    with live.client() as client:
        first = client.push(model_dir, "ns/m@1")
        with pytest.raises(VersionConflictError, match="already exists with other content"):
            client.push(other, "ns/m@1")
        assert client.show("ns/m@1").root_digest == first.root_digest
    with _http(live) as http:
        manifest = {
            "kind": "model",
            "files": [
                {"path": f.path, "size": f.size, "digest": f.digest} for f in first.files[:1]
            ],
        }
        response = http.put("/v1/namespaces/ns/artifacts/m/versions/1", json=manifest)
    assert response.status_code == 409
    assert response.json()["type"].endswith("/version-conflict")


def test_kind_is_fixed_per_artifact(live: Live, model_dir: Path) -> None:
    from registry.names import Kind

    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        with pytest.raises(ConflictError, match="is a model, not a dataset"):
            client.push(model_dir, "ns/m@2", kind=Kind.DATASET)


def test_unknown_versions_are_404(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        for ref in ["ns/m@2", "ns/x@1", "nope/m@1", "ns/m@prod", "ns/m@sha256:" + "0" * 64]:
            with pytest.raises(NotFoundError):
                client.show(ref)


# -- bad input ----------------------------------------------------------------------------------


def test_symlink_in_pushed_directory_is_refused(live: Live, model_dir: Path) -> None:
    (model_dir / "link").symlink_to("/etc/passwd")
    with live.client() as client, pytest.raises(InvalidPathError, match="symbolic link"):
        client.push(model_dir, "ns/m@1")
    assert _count(live, Blob) == 0


@pytest.mark.parametrize(
    ("path", "reason"),
    [("../escape", "'..'"), ("/abs", "absolute"), ("a\\b", "backslash"), ("a\u0000b", "control")],
)
def test_bad_manifest_paths_are_400(live: Live, path: str, reason: str) -> None:
    body = {"kind": "model", "files": [{"path": path, "size": 1, "digest": "sha256:" + "0" * 64}]}
    with _http(live) as http:
        response = http.put("/v1/namespaces/ns/artifacts/m/versions/1", json=body)
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert _count(live, Version) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/v1/namespaces/Bad/artifacts/m/versions/1",
        "/v1/namespaces/ns/artifacts/" + "x" * 65 + "/versions/1",
        "/v1/namespaces/ns/artifacts/m/versions/prod",
        "/v1/namespaces/ns/artifacts/m..x/versions/1",
    ],
)
def test_bad_names_are_400(live: Live, url: str) -> None:
    body = {"kind": "model", "files": [{"path": "a", "size": 1, "digest": "sha256:" + "0" * 64}]}
    with _http(live) as http:
        response = http.put(url, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/invalid-name")
    with pytest.raises(InvalidNameError):
        live.client().show("Bad/m@1")


def test_manifest_with_missing_blobs_is_400(live: Live) -> None:
    body = {"kind": "model", "files": [{"path": "a", "size": 1, "digest": "sha256:" + "1" * 64}]}
    with _http(live) as http:
        response = http.put("/v1/namespaces/ns/artifacts/m/versions/1", json=body)
    assert response.status_code == 400
    problem = response.json()
    assert problem["type"].endswith("/missing-blobs")
    assert problem["facts"]["missing"] == ["sha256:" + "1" * 64]
    assert _count(live, Version) == 0


def test_knowing_a_digest_grants_nothing_in_another_namespace(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        version = client.push(model_dir, "alice/m@1")
        manifest = [type(f)(path=f.path, size=f.size, digest=f.digest) for f in version.files]
    body = {"kind": "model", "files": [f.model_dump() for f in manifest]}
    with _http(live) as http:
        stolen = http.put("/v1/namespaces/mallory/artifacts/m/versions/1", json=body)
        assert stolen.status_code == 400
        assert stolen.json()["type"].endswith("/missing-blobs")
        start = http.post(
            "/v1/namespaces/mallory/uploads",
            json={"digest": version.files[0].digest, "size": version.files[0].size},
        )
    assert start.status_code == 201
    assert start.json()["exists"] is False


def test_digest_mismatch_discards_the_upload(live: Live) -> None:
    claimed = hashlib.sha256(b"the real bytes").hexdigest()
    store = open_blob_store(live.settings)
    with _http(live) as http:
        start = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": f"sha256:{claimed}", "size": 14}
        )
        upload_id = start.json()["id"]
        response = http.put(
            f"/v1/uploads/{upload_id}",
            content=b"evil bytes!!!!",
            headers={"Content-Range": "bytes 0-13"},
        )
        assert response.status_code == 400
        assert response.json()["type"].endswith("/digest-mismatch")
        assert f"not the declared sha256:{claimed}" in response.json()["detail"]
        assert http.get(f"/v1/uploads/{upload_id}").status_code == 404
    assert not store.exists(claimed)
    assert _count(live, Blob) == 0
    assert _count(live, UploadSession) == 0
    with live.client() as client, pytest.raises(DigestMismatchError):
        from attest.files import LocalFile

        path = live.settings.data_dir / "evil"
        path.write_bytes(b"evil bytes!!!!")
        client.upload_blob("ns", LocalFile("evil", path, 14), claimed)


def test_blob_over_the_size_limit_is_413_up_front(live: Live) -> None:
    too_big = live.settings.max_blob_bytes + 1
    with _http(live) as http:
        response = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": "sha256:" + "0" * 64, "size": too_big}
        )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]
    assert _count(live, UploadSession) == 0


def test_chunk_over_the_limit_is_413_before_the_body_is_read(live: Live) -> None:
    """Only headers are sent: the answer must come without waiting for the body."""
    with _http(live) as http:
        upload_id = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": "sha256:" + "0" * 64, "size": 10}
        ).json()["id"]
    limit = live.settings.max_chunk_bytes
    host, port = live.url.removeprefix("http://").split(":")
    request = (
        f"PATCH /v1/uploads/{upload_id} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {live.admin_token}\r\n"
        f"Content-Length: {limit + 1}\r\nContent-Range: bytes 0-{limit}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "application/problem+json" in answer


def test_json_body_over_the_limit_is_413(live: Live) -> None:
    with _http(live) as http:
        response = http.put(
            "/v1/namespaces/ns/artifacts/m/versions/1",
            content=b"x" * (live.settings.max_json_bytes + 1),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413


@pytest.mark.parametrize("chunked", [False, True])
def test_json_nested_too_deep_is_400_before_parsing(live: Live, chunked: bool) -> None:
    deep = b'{"kind":"model","files":' + b"[" * 64 + b"]" * 64 + b"}"  # 65 levels
    content: bytes | Iterator[bytes] = iter([deep[:10], deep[10:]]) if chunked else deep
    with _http(live) as http:
        response = http.put(
            "/v1/namespaces/ns/artifacts/m/versions/1",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert "nested deeper than 64 levels" in response.json()["detail"]
        # 64 levels pass the limit and reach the schema check instead
        shallow = b'{"kind":"model","files":' + b"[" * 63 + b"]" * 63 + b"}"
        response = http.put("/v1/namespaces/ns/artifacts/m/versions/1", content=shallow,
                            headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 400
        assert "nested deeper" not in response.json()["detail"]


def test_resumable_upload_protocol(live: Live) -> None:
    min_chunk = live.settings.min_chunk_bytes
    data = os.urandom(2 * min_chunk + 100)
    digest = hashlib.sha256(data).hexdigest()
    with _http(live) as http:
        upload_id = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": f"sha256:{digest}", "size": len(data)}
        ).json()["id"]
        first = http.patch(
            f"/v1/uploads/{upload_id}",
            content=data[:min_chunk],
            headers={"Content-Range": f"bytes 0-{min_chunk - 1}"},
        )
        assert first.status_code == 202
        assert first.json()["offset"] == min_chunk
        # a retry of the same chunk (client lost the answer) is told where the upload stands
        dup = http.patch(
            f"/v1/uploads/{upload_id}",
            content=data[:min_chunk],
            headers={"Content-Range": f"bytes 0-{min_chunk - 1}"},
        )
        assert dup.status_code == 416
        assert dup.json()["facts"]["offset"] == min_chunk
        # a too-small chunk that is not the last one
        small = http.patch(
            f"/v1/uploads/{upload_id}",
            content=b"x" * 10,
            headers={"Content-Range": f"bytes {min_chunk}-{min_chunk + 9}"},
        )
        assert small.status_code == 400
        assert "at least" in small.json()["detail"]
        # finishing early is refused and keeps the session
        early = http.put(f"/v1/uploads/{upload_id}")
        assert early.status_code == 400
        assert early.json()["type"].endswith("/upload-incomplete")
        status = http.get(f"/v1/uploads/{upload_id}").json()
        assert status["offset"] == min_chunk
        second = http.patch(
            f"/v1/uploads/{upload_id}",
            content=data[min_chunk : 2 * min_chunk],
            headers={"Content-Range": f"bytes {min_chunk}-{2 * min_chunk - 1}"},
        )
        assert second.status_code == 202
        done = http.put(
            f"/v1/uploads/{upload_id}",
            content=data[2 * min_chunk :],
            headers={"Content-Range": f"bytes {2 * min_chunk}-{len(data) - 1}"},
        )
        assert done.status_code == 201, done.text
        assert done.json() == {"digest": f"sha256:{digest}", "size": len(data)}
        again = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": f"sha256:{digest}", "size": len(data)}
        )
        assert again.status_code == 200
        assert again.json()["exists"] is True


def test_chunk_past_declared_size_or_short_body_is_refused(live: Live) -> None:
    with _http(live) as http:
        upload_id = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": "sha256:" + "0" * 64, "size": 4}
        ).json()["id"]
        past = http.patch(
            f"/v1/uploads/{upload_id}", content=b"12345", headers={"Content-Range": "bytes 0-4"}
        )
        assert past.status_code == 413
        assert "past the declared size" in past.json()["detail"]
        bad_range = http.patch(
            f"/v1/uploads/{upload_id}", content=b"12", headers={"Content-Range": "bytes 0-3"}
        )
        assert bad_range.status_code == 400
        assert "does not match Content-Length" in bad_range.json()["detail"]


def test_cancel_upload(live: Live) -> None:
    with _http(live) as http:
        upload_id = http.post(
            "/v1/namespaces/ns/uploads", json={"digest": "sha256:" + "0" * 64, "size": 4}
        ).json()["id"]
        assert http.delete(f"/v1/uploads/{upload_id}").status_code == 204
        assert http.get(f"/v1/uploads/{upload_id}").status_code == 404


def test_file_stream_headers(live: Live, model_dir: Path) -> None:
    with live.client() as client:
        version = client.push(model_dir, "ns/m@1")
    item = next(f for f in version.files if f.path == "config.json")
    with _http(live) as http:
        response = http.get("/v1/namespaces/ns/artifacts/m/versions/1/files/config.json")
        missing = http.get("/v1/namespaces/ns/artifacts/m/versions/1/files/nope.json")
        # Asking for a redirect: on a local store, which cannot presign, the bytes as usual;
        # a registry on S3 presigns by default (tests/integration/test_presigned.py).
        asked = http.get(
            "/v1/namespaces/ns/artifacts/m/versions/1/files/config.json",
            params={"redirect": "true"},
        )
    if live.settings.storage is None:
        assert asked.status_code == 200 and asked.content == response.content
    else:
        assert asked.status_code == 307 and asked.headers["x-modelseal-digest"] == item.digest
    assert response.status_code == 200
    assert response.headers["x-modelseal-digest"] == item.digest
    assert int(response.headers["content-length"]) == item.size
    assert response.content == (model_dir / "config.json").read_bytes()
    assert missing.status_code == 404


# -- verified pull ------------------------------------------------------------------------------


def test_pull_refuses_a_tampered_blob_and_leaves_no_trace(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    with live.client() as client:
        version = client.push(model_dir, "ns/m@1")
    victim = next(f for f in version.files if f.path.endswith(".safetensors"))
    digest = victim.digest.removeprefix("sha256:")
    original = (model_dir / victim.path).read_bytes()
    tampered = bytearray(original)
    tampered[-1] ^= 0xFF
    _overwrite_blob(live, digest, bytes(tampered))
    target = tmp_path / "deploy"
    with live.client() as client, pytest.raises(PullVerificationError, match=victim.path):
        client.pull("ns/m@1", target, unsafe_skip_verify=True)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".deploy")] == []


def test_pull_into_a_non_empty_directory_is_refused(
    live: Live, model_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "deploy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with live.client() as client:
        client.push(model_dir, "ns/m@1")
        with pytest.raises(Exception, match="not an empty directory"):
            client.pull("ns/m@1", target, unsafe_skip_verify=True)
    assert _tree(target) == {"keep.txt": b"mine"}


def _overwrite_blob(live: Live, digest: str, data: bytes) -> None:
    """Simulate an attacker with write access to the bucket or the disk."""
    store = open_blob_store(live.settings)
    from registry.server.storage import LocalBlobStore, S3BlobStore

    if isinstance(store, LocalBlobStore):
        path = store.root / "blobs" / "sha256" / digest
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        assert isinstance(store, S3BlobStore)
        store._s3.put_object(Bucket=store.bucket, Key=store._key(digest), Body=data)
