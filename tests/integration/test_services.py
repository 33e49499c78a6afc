"""Smoke tests for the throwaway PostgreSQL / SeaweedFS servers in tests/services.py."""

from __future__ import annotations

import secrets
from typing import Any

import boto3
import psycopg
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.services import PostgresServer, SeaweedServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def pg_service(pg_server: PostgresServer) -> PostgresServer:
    return pg_server  # the session's server (tests/conftest.py)


@pytest.fixture(scope="module")
def s3_service(s3_server: SeaweedServer) -> SeaweedServer:
    return s3_server


@pytest.fixture(scope="module")
def s3(s3_service: SeaweedServer) -> Any:
    return s3_service.client()


@pytest.fixture(scope="module")
def bucket(s3_service: SeaweedServer) -> str:
    name = f"smoke-{secrets.token_hex(4)}"
    s3_service.create_bucket(name)
    return name


def _databases(pg: PostgresServer) -> set[str]:
    with pg.connect() as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_postgres_connect_create_drop(pg_service: PostgresServer) -> None:
    assert pg_service.host == "127.0.0.1"
    assert pg_service.url("x") == f"postgresql+psycopg://postgres@127.0.0.1:{pg_service.port}/x"
    with pg_service.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)

    url = pg_service.create_database("smoke_db")
    assert url == pg_service.url("smoke_db")
    with pg_service.connect("smoke_db") as conn:
        conn.execute("CREATE TABLE t (id int primary key, name text)")
        conn.execute("INSERT INTO t VALUES (1, 'ünïcode')")
    # a copy from a template keeps the data; an open connection does not block the drop
    pg_service.create_database("smoke_copy", template="smoke_db")
    lingering = pg_service.connect("smoke_copy")
    try:
        assert lingering.execute("SELECT name FROM t").fetchone() == ("ünïcode",)
        pg_service.drop_database("smoke_copy")
    finally:
        lingering.close()
    pg_service.drop_database("smoke_db")
    pg_service.drop_database("smoke_db")  # IF EXISTS: dropping twice is fine
    assert not {"smoke_db", "smoke_copy"} & _databases(pg_service)


def test_postgres_stop_is_idempotent() -> None:
    server = PostgresServer().start()
    assert server.tmpdir is not None
    tmpdir, port = server.tmpdir, server.port
    server.stop()
    server.stop()
    assert not tmpdir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2")


def test_s3_put_get_roundtrip(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello world")
    assert s3.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == b"hello world"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]]
    assert keys == ["dir/hello.txt"]
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert err.value.response["Error"]["Code"] in {"404", "NoSuchKey"}
    with pytest.raises(ClientError) as err:  # no auto-creation of buckets
        s3.put_object(Bucket=f"missing-{secrets.token_hex(4)}", Key="k", Body=b"x")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_s3_multipart_upload(s3: Any, bucket: str) -> None:
    parts_data = [secrets.token_bytes(5 * MIB), secrets.token_bytes(5 * MIB)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        resp = s3.upload_part(
            Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"], PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert done["ETag"].strip('"').endswith("-2")
    got = s3.get_object(Bucket=bucket, Key="big.bin")
    assert got["ContentLength"] == 10 * MIB
    assert got["Body"].read() == b"".join(parts_data)


def _at_rest(s3_service: SeaweedServer) -> bytes:
    """Raw bytes of all volume files (SeaweedFS stores object data in <collection>_<id>.dat)."""
    assert s3_service.tmpdir is not None
    return b"".join(p.read_bytes() for p in (s3_service.tmpdir / "data").glob("*.dat"))


def test_s3_sse_s3(s3: Any, bucket: str, s3_service: SeaweedServer) -> None:
    # random filler: SeaweedFS gzips compressible data, which would hide plaintext anyway
    control = b"CONTROL-MARKER-" + secrets.token_hex(16).encode()
    s3.put_object(Bucket=bucket, Key="control.bin", Body=control + secrets.token_bytes(4096))
    assert control in _at_rest(s3_service)  # the at-rest check below can see plaintext

    marker = b"PLAINTEXT-MARKER-" + secrets.token_hex(16).encode()
    body = marker + secrets.token_bytes(4096)
    put = s3.put_object(Bucket=bucket, Key="secret.bin", Body=body, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="secret.bin")["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="secret.bin")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == body
    assert marker not in _at_rest(s3_service)  # really encrypted at rest


def test_s3_refuses_wrong_credentials(s3_service: SeaweedServer, bucket: str) -> None:
    wrong_secret = s3_service.client(secret_key="not-" + s3_service.secret_key, max_attempts=1)
    with pytest.raises(ClientError) as err:
        wrong_secret.list_buckets()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError):
        wrong_secret.put_object(Bucket=bucket, Key="evil", Body=b"x")

    unknown_key = s3_service.client(access_key="AKIAUNKNOWNKEY000000", max_attempts=1)
    with pytest.raises(ClientError) as err:
        unknown_key.get_object(Bucket=bucket, Key="anything")
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    anonymous = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_service.endpoint_url,
        region_name=s3_service.region,
        config=Config(
            signature_version=UNSIGNED, s3={"addressing_style": "path"}, retries={"max_attempts": 1}
        ),
    )
    with pytest.raises(ClientError) as err:
        anonymous.list_objects_v2(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "AccessDenied"
