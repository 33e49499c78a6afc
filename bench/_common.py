"""Shared helpers of the benchmarks in bench/: the server stack, timed child processes, RSS.

Not a test module and not part of the package: the scripts beside it import it as ``_common``.

* :class:`Stack` starts a private SeaweedFS (``tests.services.SeaweedServer``, optional) and one
  ``modelseal serve`` process on a free loopback port with SQLite metadata, waits for
  ``GET /health`` and reads the admin token; ``stop()`` ends both, also after Ctrl-C.
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
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.services

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000

BUCKET = "modelseal-bench"
STORAGE_PREFIX = "bench"  # modelseal's blobs: s3://BUCKET/bench/blobs/sha256/...
BASELINE_PREFIX = "boto3-baseline"  # the raw boto3 baseline's keys, never under STORAGE_PREFIX
HASH_PIECE = 8 * MiB
BENCH_POLICY = "model:\n  require: {scan: clean}\n  dependencies: any\n"


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
    """SeaweedFS (when ``storage == "s3"``) + one ``modelseal serve`` process, in ``workdir``."""

    workdir: Path
    storage: str = "s3"  # "s3" or "local"
    startup_timeout: float = 60.0
    seaweed_volume_max: int = 100  # SeaweedFS volumes of 256 MB each: the S3 capacity
    presign_downloads: bool = True  # S3: downloads go straight from SeaweedFS (307 + URL)
    seaweed: Any = None
    server: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    s3_env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "server-data"

    @property
    def server_log(self) -> Path:
        return self.workdir / "server.log"

    @property
    def server_pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def start(self) -> Self:
        if self.storage not in ("s3", "local"):
            raise ValueError(f"storage must be s3 or local, not {self.storage!r}")
        try:
            if self.storage == "s3":
                self._start_seaweed()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_seaweed(self) -> None:
        from tests.services import SeaweedServer

        self.seaweed = SeaweedServer(volume_max=self.seaweed_volume_max).start()
        self.seaweed.create_bucket(BUCKET)
        self.s3_env = {
            "AWS_ACCESS_KEY_ID": self.seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": self.seaweed.secret_key,
            "AWS_DEFAULT_REGION": self.seaweed.region,
        }

    def _start_server(self) -> None:
        from tests.services import free_ports

        env = clean_env()
        if self.seaweed is not None:
            env.update(self.s3_env)
            env["MODELSEAL_S3_ENDPOINT_URL"] = self.seaweed.endpoint_url
            env["MODELSEAL_S3_PRESIGN_DOWNLOADS"] = str(self.presign_downloads).lower()
        error = ""
        for _attempt in range(3):  # a free port can be taken before the server binds it
            port = free_ports(1)[0]
            cmd = [
                *modelseal_cmd(), "serve",
                "--data-dir", str(self.data_dir),
                "--host", "127.0.0.1",
                "--port", str(port),
            ]  # fmt: skip
            if self.storage == "s3":
                cmd += ["--storage", f"s3://{BUCKET}/{STORAGE_PREFIX}"]
            with self.server_log.open("ab") as log:
                log.write(f"$ {' '.join(cmd)}\n".encode())
                log.flush()
                self.server = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,  # Ctrl-C reaches us; we stop it ourselves
                )
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_healthy():
                token_file = self.data_dir / "admin-token"
                self.token = token_file.read_text().strip()
                return
            error = self.tail_log()
            self._stop_server()
            if "address already in use" not in error.lower():
                break
        raise RuntimeError(f"modelseal serve did not start; log tail:\n{error}")

    def _wait_healthy(self) -> bool:
        assert self.server is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        json.loads(response.read())
                        return True
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        return False

    def tail_log(self, lines: int = 40) -> str:
        try:
            text = self.server_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

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
        policy.write_text(BENCH_POLICY)
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

    def modelseal(self, *args: str) -> dict[str, Any]:
        """``modelseal ARGS`` as a client of this server, measured by :meth:`run_phase`."""
        return self.run_phase([*modelseal_cmd(), *args], self.client_env())

    def _stop_server(self) -> None:
        proc, self.server = self.server, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def stop(self) -> None:
        try:
            self._stop_server()
        finally:
            seaweed, self.seaweed = self.seaweed, None
            if seaweed is not None:
                seaweed.stop()

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
