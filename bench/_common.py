"""Shared helpers of the benchmarks in bench/: the server stack, timed child processes, RSS.

Not a test module and not part of the package: the scripts beside it run as modules from the
repository root (``python3 -m bench.push_pull``) and import it as ``bench._common``, and the
services come from ``tests.services`` (importable because the repository root is the current
directory, which ``python -m`` puts on ``sys.path``).

* :class:`Stack` starts the services of ``tests.services``: a private SeaweedFS
  (``SeaweedServer``, optional), PostgreSQL (``PostgresServer``, optional; SQLite otherwise) and
  one or more ``modelseal serve`` processes (``ModelsealServer``) on free loopback ports, sharing
  one database, bucket and signing key; it waits for ``GET /health`` and reads the admin token;
  ``stop()`` ends everything, also after Ctrl-C.
* :func:`run_timed` runs a command, times it with ``time.perf_counter`` and takes its own peak
  RSS from ``os.wait4`` (``ru_maxrss`` of that one process, not of all children so far), through
  a tiny launcher so that this script's own RSS cannot leak into the number.
* :func:`read_hwm` / :func:`reset_hwm` read and reset a live process's peak RSS (``VmHWM``);
  the reset writes ``5`` to ``/proc/PID/clear_refs`` (Linux >= 4.0), so the peak of each phase
  can be measured separately.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.services import ModelsealServer, PostgresServer, SeaweedServer

REPO_ROOT = Path(__file__).resolve().parent.parent

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000

BUCKET = "modelseal-bench"
STORAGE_PREFIX = "bench"  # modelseal's blobs: s3://BUCKET/bench/blobs/sha256/...
BASELINE_PREFIX = "boto3-baseline"  # the raw boto3 baseline's keys, never under STORAGE_PREFIX
HASH_PIECE = 8 * MiB
BENCH_POLICY = "model:\n  require: {scan: clean}\n  dependencies: any\n"
# The same for files the scanner cannot identify (large_file_rss.py's raw blocks), which the
# fail-closed scanner reports as ``unknown``.
UNKNOWN_FORMAT_POLICY = (
    "model:\n  require: {scan: {allow_formats: [unknown]}}\n  dependencies: any\n"
)


# -- machine -----------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import boto3
    import botocore

    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "kernel": platform.release(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
    }
    try:
        from importlib.metadata import version

        info["modelseal"] = version("modelseal")
        info["httpx"] = version("httpx")
        info["uvicorn"] = version("uvicorn")
    except Exception:
        pass
    try:
        import awscrt  # noqa: F401

        info["awscrt"] = True
    except ImportError:
        info["awscrt"] = False
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_total_gib"] = round(int(line.split()[1]) * KiB / GiB, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def print_machine(info: dict[str, Any]) -> None:
    print(
        f"machine: nproc={info['nproc']} ({info.get('cpu_model', '?')}), "
        f"RAM {info.get('mem_total_gib', '?')} GiB, kernel {info['kernel']}"
    )
    print(
        f"python {info['python']}, boto3 {info['boto3']} (botocore {info['botocore']}, "
        f"awscrt {'yes' if info['awscrt'] else 'no'}), modelseal {info.get('modelseal', '?')}, "
        f"httpx {info.get('httpx', '?')}, uvicorn {info.get('uvicorn', '?')}"
    )


# -- processes ---------------------------------------------------------------------------------


def modelseal_cmd() -> list[str]:
    """How to run the ``modelseal`` CLI: the console script beside this interpreter (not a pyenv
    shim, which would add its own start-up time), else ``python -m registry``."""
    beside = Path(sys.executable).parent / "modelseal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "registry"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any MODELSEAL_* / AWS_* setting that could change the result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELSEAL_", "AWS_", "BOTO_"))}
    env.update(extra)
    return env


@dataclass
class ChildResult:
    cmd: list[str]
    seconds: float
    returncode: int
    maxrss_bytes: int
    cpu_seconds: float  # user + system
    stdout: str
    stderr: str

    def check(self) -> ChildResult:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.cmd)} exited with {self.returncode}:\n"
                f"{self.stderr[-3000:]}\n{self.stdout[-2000:]}"
            )
        return self


# Runs the measured command as ITS child and reports that child's wall time, exit code and peak
# RSS. Why not os.wait4 on a direct child: subprocess starts children with vfork/posix_spawn, and
# on exec Linux folds the peak RSS of the mm being left (the parent's!) into the child's
# ru_maxrss, so every direct child of this benchmark would "peak" at the benchmark's own RSS
# (several hundred MiB after generating tensors). This launcher is a bare `python -S`, a few MiB.
_LAUNCHER = """
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
with open(out, "w") as handle:
    cpu = usage.ru_utime + usage.ru_stime
    handle.write(f"{seconds!r} {usage.ru_maxrss} {code} {cpu!r}\\n")
sys.exit(code if code >= 0 else 128 - code)
"""


def run_timed(cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> ChildResult:
    """Run ``cmd`` to completion: its wall time and its own peak RSS (``ru_maxrss`` from
    ``os.wait4`` in a small launcher process, see ``_LAUNCHER``)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", prefix="modelseal-bench-rusage-") as report,
    ):
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, report.name, *cmd]
        proc = subprocess.Popen(
            launcher,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            start_new_session=True,  # so that the whole group can be ended on Ctrl-C
        )
        try:
            proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        fields = report.read().split()
        if len(fields) != 4:
            raise RuntimeError(f"launcher of {list(cmd)} failed ({proc.returncode}):\n{stderr}")
        return ChildResult(
            cmd=list(cmd),
            seconds=float(fields[0]),
            returncode=int(fields[2]),
            maxrss_bytes=int(fields[1]) * KiB,  # Linux reports KiB
            cpu_seconds=float(fields[3]),
            stdout=stdout,
            stderr=stderr,
        )


def read_hwm(pid: int) -> dict[str, int]:
    """``VmHWM`` (peak RSS) and ``VmRSS`` of a live process, in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) * KiB
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid: int) -> bool:
    """Reset a process's peak RSS to its current RSS; False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def drop_dirty_pages() -> None:
    """Write back dirty pages (of the previous phase's downloads) outside any timed region, so
    that their write-back does not land in the next phase's time. (The page cache itself cannot
    be dropped reliably without privileges; phases are interleaved instead.)"""
    os.sync()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the duration, so ``finally`` blocks run."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- files -------------------------------------------------------------------------------------


def sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while piece := handle.read(HASH_PIECE):
            h.update(piece)
    return h.hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every regular file under ``root``."""
    return {
        p.relative_to(root).as_posix(): sha256_path(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def verify_tree(expected: dict[str, str], root: Path, what: str) -> None:
    got = tree_digests(root)
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        differ = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise RuntimeError(
            f"{what}: files differ from the source (missing {missing}, extra {extra}, "
            f"different {differ})"
        )


# -- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The services of ``tests.services`` + ``replicas`` ``modelseal serve`` processes, in
    ``workdir``.

    ``storage``: ``"s3"`` (a private SeaweedFS, bucket :data:`BUCKET`) or ``"local"`` (the first
    replica's data directory; one replica only). ``database``: ``"sqlite"`` (in the first
    replica's data directory; one replica only) or ``"postgres"`` (a private PostgreSQL). Every
    replica gets the same database, storage and ``MODELSEAL_SIGNING_KEY``, plus ``server_env``;
    :meth:`add_replica` starts one more. ``url``, ``token``, ``server`` and ``data_dir`` are the
    first replica's.
    """

    workdir: Path
    storage: str = "s3"  # "s3" or "local"
    startup_timeout: float = 60.0
    seaweed_volume_max: int = 100  # SeaweedFS volumes of 256 MB each: the S3 capacity
    # S3: downloads go straight from SeaweedFS (307 + URL); None: MODELSEAL_S3_PRESIGN_DOWNLOADS
    # left unset, the server's default (on S3: the SDK's downloads presigned, OCI's streamed)
    presign_downloads: bool | None = True
    database: str = "sqlite"  # "sqlite" or "postgres"
    replicas: int = 1
    server_env: dict[str, str] = field(default_factory=dict)  # extra MODELSEAL_* settings
    seaweed: SeaweedServer | None = None
    postgres: PostgresServer | None = None
    servers: list[ModelsealServer] = field(default_factory=list)
    url: str = ""
    token: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)
    database_url: str = ""
    release_policy: str = BENCH_POLICY  # the namespace policy release() sets

    @property
    def data_dir(self) -> Path:
        return self.workdir / "server-data"

    @property
    def server_log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def server(self) -> subprocess.Popen[bytes] | None:
        return self.servers[0].process if self.servers else None

    @property
    def server_pid(self) -> int:
        return self.servers[0].pid

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def server_pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    @property
    def postgres_pid(self) -> int | None:
        """The postmaster's pid (its backends are its children)."""
        if self.postgres is None or self.postgres.tmpdir is None:
            return None
        pidfile = self.postgres.datadir / "postmaster.pid"
        return int(pidfile.read_text().split()[0])

    def start(self) -> Self:
        if self.storage not in ("s3", "local"):
            raise ValueError(f"storage must be s3 or local, not {self.storage!r}")
        if self.database not in ("sqlite", "postgres"):
            raise ValueError(f"database must be sqlite or postgres, not {self.database!r}")
        if self.replicas > 1 and (self.storage, self.database) != ("s3", "postgres"):
            raise ValueError("replicas share a store and a database: storage s3, database postgres")
        try:
            if self.storage == "s3":
                self._start_seaweed()
            if self.database == "postgres":
                self._start_postgres()
            for _ in range(self.replicas):
                self.add_replica()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_seaweed(self) -> None:
        self.seaweed = SeaweedServer(volume_max=self.seaweed_volume_max).start()
        self.seaweed.create_bucket(BUCKET)
        self.s3_env = {
            "AWS_ACCESS_KEY_ID": self.seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": self.seaweed.secret_key,
            "AWS_DEFAULT_REGION": self.seaweed.region,
        }

    def _start_postgres(self) -> None:
        self.postgres = PostgresServer().start()
        self.database_url = self.postgres.create_database("modelseal_bench")

    def _server_env(self) -> dict[str, str]:
        env = clean_env(**self.server_env)
        if self.seaweed is not None:
            env.update(self.s3_env)
            env["MODELSEAL_S3_ENDPOINT_URL"] = self.seaweed.endpoint_url
            if self.presign_downloads is not None:
                env["MODELSEAL_S3_PRESIGN_DOWNLOADS"] = str(self.presign_downloads).lower()
            env["MODELSEAL_STORAGE"] = f"s3://{BUCKET}/{STORAGE_PREFIX}"
        if self.database_url:
            env["MODELSEAL_DATABASE_URL"] = self.database_url
        if self.servers:  # the key the first replica generated; every replica must share it
            env.setdefault("MODELSEAL_SIGNING_KEY", str(self.data_dir / "registry.key"))
        return env

    def add_replica(self) -> ModelsealServer:
        """Start one more ``modelseal serve`` on the same database, storage and signing key
        (the first one migrates the database and writes the admin token)."""
        index = len(self.servers)
        data_dir = self.data_dir if index == 0 else self.workdir / f"server-data-{index}"
        log = self.server_log if index == 0 else self.workdir / f"server-{index}.log"
        server = ModelsealServer(
            data_dir,
            env=self._server_env(),
            command=modelseal_cmd(),
            logfile=log,
            cwd=self.workdir,
            startup_timeout=self.startup_timeout,
        )
        self.servers.append(server)
        server.start()
        if index == 0:
            self.url = server.url
            self.token = server.token or ""
        return server

    def tail_log(self, lines: int = 40) -> str:
        return self.servers[0].tail_log(lines) if self.servers else ""

    def client_env(self) -> dict[str, str]:
        """Environment of a ``modelseal push/pull`` child (its own pinned-key store)."""
        return clean_env(
            MODELSEAL_URL=self.url,
            MODELSEAL_TOKEN=self.token,
            MODELSEAL_CONFIG_DIR=str(self.workdir / "client-config"),
        )

    def release(self, ref: str) -> None:
        """Release ``ref`` (not timed) under a policy that needs only the registry's clean scan,
        so the measured pull is a real verified pull of a released version."""
        policy = self.workdir / "bench-policy.yaml"
        policy.write_text(self.release_policy)
        env = self.client_env()
        for args in (("policy", "set", ref.split("/")[0], str(policy)), ("release", ref)):
            subprocess.run([*modelseal_cmd(), *args], env=env, check=True, capture_output=True)

    def server_hwm(self) -> dict[str, int]:
        return read_hwm(self.server_pid)

    @property
    def weed_pid(self) -> int | None:
        process = None if self.seaweed is None else self.seaweed.process
        return None if process is None else int(process.pid)

    def run_phase(self, cmd: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
        """Run one measured child: its time, peak RSS and CPU; the modelseal server's peak RSS
        during it (VmHWM reset before) and the CPU the server and SeaweedFS spent meanwhile."""
        hwm_reset = reset_hwm(self.server_pid)
        server_cpu = cpu_seconds(self.server_pid)
        weed_cpu = cpu_seconds(self.weed_pid) if self.weed_pid else 0.0
        result = run_timed(cmd, env).check()
        server = self.server_hwm()
        phase: dict[str, Any] = {
            "seconds": result.seconds,
            "client_rss": result.maxrss_bytes,
            "client_cpu": result.cpu_seconds,
            "server_hwm": server["VmHWM"],
            "server_rss_after": server["VmRSS"],
            "server_hwm_reset": hwm_reset,
            "server_cpu": cpu_seconds(self.server_pid) - server_cpu,
            "stdout": result.stdout.strip(),
        }
        if self.weed_pid:
            phase["seaweedfs_cpu"] = cpu_seconds(self.weed_pid) - weed_cpu
        return phase

    def boto3(self, action: str, prefix: str, directory: Path, names: Sequence[str] = ()) -> Any:
        """The raw-boto3 baseline (``bench/_boto3_baseline.py``: ``upload`` every file of
        ``directory`` under ``prefix``, or ``download`` ``names`` from it), measured by
        :meth:`run_phase`; ``inprocess_seconds`` and ``import_seconds`` are its own timings."""
        assert self.seaweed is not None, "the boto3 baseline needs the S3 store"
        cmd = [
            sys.executable, str(Path(__file__).resolve().parent / "_boto3_baseline.py"), action,
            self.seaweed.endpoint_url, BUCKET, prefix, str(directory), *names,
        ]  # fmt: skip
        phase = self.run_phase(cmd, clean_env(**self.s3_env))
        inner = json.loads(phase.pop("stdout").splitlines()[-1])
        for key in ("server_hwm", "server_rss_after", "server_hwm_reset"):
            del phase[key]  # the modelseal server takes no part in the baseline
        phase["inprocess_seconds"] = inner["seconds"]
        phase["import_seconds"] = inner["import_seconds"]
        return phase

    def modelseal(self, *args: str) -> dict[str, Any]:
        """``modelseal ARGS`` as a client of this server, measured by :meth:`run_phase`."""
        return self.run_phase([*modelseal_cmd(), *args], self.client_env())

    def stop(self) -> None:
        servers, self.servers = self.servers, []
        seaweed, self.seaweed = self.seaweed, None
        postgres, self.postgres = self.postgres, None
        try:
            for server in reversed(servers):
                server.stop()
        finally:
            try:
                if seaweed is not None:
                    seaweed.stop()
            finally:
                if postgres is not None:
                    postgres.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def scratch_dir(base: str | None, keep: bool = False) -> Iterator[Path]:
    """A private temporary directory, removed afterwards (also after Ctrl-C) unless ``keep``.

    ``base`` also becomes this process's default temporary directory, so that SeaweedFS's data
    (``SeaweedServer`` uses ``tempfile.mkdtemp()``) lands there too."""
    if base:
        tempfile.tempdir = base
    path = Path(tempfile.mkdtemp(prefix="modelseal-bench-", dir=base))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


# -- formatting ----------------------------------------------------------------------------------


def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:.0f}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
