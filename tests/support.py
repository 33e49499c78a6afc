"""What tests share besides fixtures: a live server in a thread, the command line run as a user
runs it, real model files, a self-signed TLS certificate (fixtures in ``conftest.py`` build on
these; test modules import them from here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvicorn
from safetensors.numpy import save_file

from registry.sdk.client import RegistryClient
from registry.server.api import httpproto
from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.services.bootstrap import bootstrap


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
def replica(settings: Settings, *, http: type | None = None) -> Iterator[str]:
    """Serve the API of ``settings`` (already bootstrapped) with uvicorn on a free port, in a
    thread, with the HTTP protocol ``modelseal serve`` uses unless ``http`` names another;
    yields its URL. Two of them over one database and store are two replicas."""
    app = create_app(settings, expiry_interval=None)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            http=http or httpproto.protocol())  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve(settings: Settings) -> Iterator[Live]:
    """Bootstrap ``settings`` and serve it (:func:`replica`); the admin token comes with it."""
    written = bootstrap(settings)
    assert written is not None
    with replica(settings) as url:
        yield Live(url, written.read_text().strip(), settings)


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
