"""Settings refuse what cannot work, at start-up; presigned URLs name the endpoint clients use."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from registry.server.config import Settings
from registry.server.storage import LocalBlobStore, S3BlobStore

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("storage", "gs://bucket/x", "storage must be s3://bucket/prefix or file:///path"),
        ("storage", "s3:///prefix-only", "s3 storage needs a bucket"),
        ("s3_endpoint_url", "seaweedfs:8333", "an S3 endpoint must be an http:// or https://"),
        ("s3_public_endpoint_url", "ftp://s3.example", "an S3 endpoint must be"),
        ("s3_presign_seconds", 0, "greater than or equal to 1"),
        ("s3_presign_seconds", 7200, "less than or equal to 3600"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variable", "setting", "sdk", "oci", "local"),
    [
        (None, None, True, False, False),  # unset: on for S3, for the SDK (it falls back)
        ("auto", None, True, False, False),
        ("true", True, True, True, False),
        ("false", False, False, False, False),
    ],
)
def test_presigned_downloads_are_decided_by_the_store_unless_set(
    monkeypatch: pytest.MonkeyPatch,
    variable: str | None,
    setting: bool | None,
    sdk: bool,
    oci: bool,
    local: bool,
) -> None:
    if variable is None:
        monkeypatch.delenv("MODELSEAL_S3_PRESIGN_DOWNLOADS", raising=False)
    else:
        monkeypatch.setenv("MODELSEAL_S3_PRESIGN_DOWNLOADS", variable)
    settings = Settings()
    assert settings.s3_presign_downloads is setting
    assert settings.presigned_downloads(store_presigns=True, client_falls_back=True) is sdk
    assert settings.presigned_downloads(store_presigns=True, client_falls_back=False) is oci
    assert settings.presigned_downloads(store_presigns=False, client_falls_back=True) is local


def test_a_local_store_has_no_urls_to_hand_out(tmp_path: Path) -> None:
    assert LocalBlobStore(tmp_path).presigned_read_url(DIGEST, expires=60) is None


def test_presigned_urls_name_the_public_endpoint_and_the_blob_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Presigning is computed locally (no request is sent), so this needs no server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = S3BlobStore(
        "s3://models/registry",
        endpoint_url="http://seaweedfs.internal:8333",
        public_endpoint_url="https://s3.example.com",
        region="eu-west-1",
    )
    url = urlsplit(store.presigned_read_url(DIGEST, expires=45))
    assert (url.scheme, url.netloc) == ("https", "s3.example.com")
    assert url.path == f"/models/registry/blobs/sha256/{DIGEST}"
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["45"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "secret" not in url.query  # the URL carries a signature, never the key
    internal = S3BlobStore("s3://models/registry", endpoint_url="http://seaweedfs.internal:8333",
                           region="eu-west-1")  # fmt: skip
    assert urlsplit(internal.presigned_read_url(DIGEST, expires=45)).netloc == (
        "seaweedfs.internal:8333"
    )


def test_presigning_on_a_local_store_says_it_has_no_effect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from registry.server.app import create_app
    from registry.server.db import migrate

    settings = Settings(data_dir=tmp_path, s3_presign_downloads=True)
    migrate(settings.resolved_database_url)
    with caplog.at_level(logging.WARNING, logger="registry.server.app"):
        create_app(settings, expiry_interval=None)
        create_app(
            settings.model_copy(update={"s3_presign_downloads": False}), expiry_interval=None
        )
        create_app(settings.model_copy(update={"s3_presign_downloads": None}),
                   expiry_interval=None)  # fmt: skip
    [record] = [r for r in caplog.records if r.name == "registry.server.app"]
    assert "cannot hand out URLs: downloads are streamed" in record.getMessage()
