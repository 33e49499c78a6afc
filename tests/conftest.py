"""Shared fixtures: settings on the embedded default, real PostgreSQL + SeaweedFS, live servers.

Backends are parametrized: ``backend`` yields a ready ``Settings`` for ``sqlite-local`` (unit
speed, no services) and ``postgres-s3`` (the real PostgreSQL and SeaweedFS started here, marked
``integration``). Schema always comes from the Alembic migrations.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from safetensors.numpy import save_file

from registry.sdk.client import RegistryClient
from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.db import migrate
from registry.server.services.bootstrap import bootstrap
from tests.services import PostgresServer, SeaweedServer

MiB = 1024 * 1024


# -- real services (session scoped) ----------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database migrated to head, copied for every test that needs PostgreSQL."""
    url = pg_server.create_database("modelseal_template")
    migrate(url)
    return "modelseal_template"


@pytest.fixture
def pg_url(pg_server: PostgresServer, pg_template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=pg_template)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedServer]:
    with SeaweedServer(stop_grace=1.0) as server:
        server.create_bucket("modelseal-test")
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> SeaweedServer:
    """The standard AWS credential chain pointed at the test server (as production uses it)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_storage_url() -> str:
    return f"s3://modelseal-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _client_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test pins registry keys in its own client config, never the user's."""
    monkeypatch.setenv("MODELSEAL_CONFIG_DIR", str(tmp_path / "client-config"))


# -- settings per backend ----------------------------------------------------------------------


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)


@pytest.fixture(
    params=[
        pytest.param("sqlite-local", id="sqlite-local"),
        pytest.param("postgres-s3", id="postgres-s3", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend, database migrated."""
    if request.param == "sqlite-local":
        settings = Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)
        settings.data_dir.mkdir()
        migrate(settings.resolved_database_url)
        return settings
    pg_url = request.getfixturevalue("pg_url")
    s3 = request.getfixturevalue("s3_env")
    return Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        storage=request.getfixturevalue("s3_storage_url"),
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        min_chunk_bytes=5 * MiB,
    )


# -- a live server in a thread -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    url: str
    admin_token: str
    settings: Settings

    def client(self, token: str | None = None, **kwargs: object) -> RegistryClient:
        return RegistryClient(self.url, token if token is not None else self.admin_token, **kwargs)  # type: ignore[arg-type]


@contextmanager
def serve(settings: Settings) -> Iterator[Live]:
    """Bootstrap ``settings`` and serve the API with uvicorn on a free port, in a thread."""
    written = bootstrap(settings)
    assert written is not None
    token = written.read_text().strip()
    app = create_app(settings, expiry_interval=None)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", token, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live(backend: Settings) -> Iterator[Live]:
    """The API served by uvicorn on a free loopback port, in a thread."""
    with serve(backend) as running:
        yield running


# -- the command line, run as a user runs it ------------------------------------------------------


def run_cli(
    *args: str,
    live: Live | None = None,
    token: str | None = None,
    cwd: Path | None = None,
    columns: int | None = None,
    netns: bool = False,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``modelseal ARGS`` in a subprocess, against ``live`` (admin token unless ``token``).

    It runs in ``cwd``, by default a temporary directory outside any git checkout (signed pushes
    record the checkout they run in), without the caller's ``MODELSEAL_*``/``GIT_*`` settings, and
    with ``COLUMNS`` only when given (rich renders 80 columns when output is not a terminal).
    ``netns``: inside a network namespace with no interfaces."""
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith(("MODELSEAL_", "GIT_")) and k != "COLUMNS")
        or k == "MODELSEAL_CONFIG_DIR"
    }
    if live is not None:
        env["MODELSEAL_URL"] = live.url
        env["MODELSEAL_TOKEN"] = token if token is not None else live.admin_token
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env.update(extra_env or {})
    command = [sys.executable, "-m", "registry", *args]
    if netns:
        command = ["unshare", "--net", *command]
    return subprocess.run(
        command,
        cwd=cwd or tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- real model files ------------------------------------------------------------------------------


def make_model_dir(root: Path, *, seed: int = 0, shards: int = 2, rows: int = 64) -> Path:
    """A small but real model directory: safetensors shards, config and tokenizer files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        tensors = {
            f"layer{i}.weight": rng.standard_normal((rows, 32), dtype=np.float32),
            f"layer{i}.bias": rng.standard_normal((32,), dtype=np.float32),
        }
        save_file(tensors, str(root / f"model-{i:05d}-of-{shards:05d}.safetensors"))
    (root / "config.json").write_text(f'{{"architectures": ["Tiny"], "seed": {seed}}}\n')
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\nc\n")
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return make_model_dir(tmp_path / "model")


# -- TLS ------------------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made here."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelseal test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
