"""Metadata reads per second with one and with two replicas, against ``GET /health``, same run.

    python3 -m bench.metadata_reads [--seconds 20] [--clients 16] [--procs 2] [--json out.json]

Starts PostgreSQL, SeaweedFS and one ``modelseal serve`` (``bench._common.Stack``: the services
of ``tests.services``), seeds namespace ``bench`` with ``--versions`` small versions of
``bench/model`` (every other one released), and gives each client its own read-only token
(role ``deployer``, so no client shares a per-token rate limit). Then, per configuration
(1 replica; then a second replica on the same database, bucket and signing key, the clients
split between the two):

* **baseline**: every client sends ``GET /health`` (no authentication, no database) in a loop;
* **metadata**: every client sends a mix of metadata reads in a loop, a random version each
  time: ``GET .../versions/V`` (40%), the first page of ``GET .../versions`` (20%),
  ``GET .../versions/V/attestations`` (20%) and ``GET .../versions/V/status`` (20%).

Clients are closed loops (the next request when the previous answers, one keep-alive
connection each), ``--clients`` threads spread over ``--procs`` load-generator processes
(``httpx``). Each phase warms up for ``--warmup`` seconds, then counts for ``--seconds``:
requests started in that window and answered, per second; p50/p99 latency; errors (any
status other than 200, or no answer). The CPU seconds of every process during the window are
printed too (each replica, the load generator, PostgreSQL, SeaweedFS, the rest of the machine):
on a 2-core machine the load generator and PostgreSQL compete with the replicas for the same
cores, which bounds what a second replica can add.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

try:
    from bench import _common as c
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.metadata_reads")

NAMESPACE = "bench"
ARTIFACT = "model"
MIX = (("get_version", 0.4), ("list_versions", 0.2), ("list_attestations", 0.2), ("status", 0.2))


# -- the load generator (a child process) ---------------------------------------------------------


def _paths(kind: str, version: int) -> str:
    base = f"/v1/namespaces/{NAMESPACE}/artifacts/{ARTIFACT}/versions"
    return {
        "health": "/health",
        "get_version": f"{base}/{version}",
        "list_versions": base,
        "list_attestations": f"{base}/{version}/attestations",
        "status": f"{base}/{version}/status",
    }[kind]


def _client_loop(
    url: str,
    token: str,
    workload: str,
    versions: int,
    seed: int,
    window: tuple[float, float],
    stop_at: float,
    out: list[tuple[str, float, int]],
) -> None:
    """One closed-loop client until ``stop_at``: (kind, latency, status) of each request
    started inside ``window``; status 0 when no answer came."""
    import httpx

    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while True:
            started = time.monotonic()
            if started >= stop_at:
                return
            kind = "health" if workload == "health" else rng.choices(kinds, weights)[0]
            path = _paths(kind, rng.randint(1, versions))
            try:
                status = http.get(path).status_code
            except httpx.HTTPError:
                status = 0
            if window[0] <= started < window[1]:
                out.append((kind, time.monotonic() - started, status))


def load_process(
    conn: Connection, jobs: list[dict[str, Any]], workload: str, versions: int
) -> None:
    """Runs ``jobs`` (one per client) as threads; sends back every sample and this process's
    CPU seconds inside the window."""
    import httpx  # noqa: F401  (imported before the clock starts)

    window_start, window_end, stop_at = conn.recv()
    samples: list[list[tuple[str, float, int]]] = [[] for _ in jobs]
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(
                job["url"],
                job["token"],
                workload,
                versions,
                job["seed"],
                (window_start, window_end),
                stop_at,
                samples[i],
            ),
            daemon=True,
        )
        for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, window_start - time.monotonic()))
    cpu_start = time.process_time()
    time.sleep(max(0.0, window_end - time.monotonic()))
    cpu = time.process_time() - cpu_start
    for thread in threads:
        thread.join()
    conn.send({"samples": [s for per in samples for s in per], "cpu": cpu})
    conn.close()


# -- CPU accounting -------------------------------------------------------------------------------


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; not idle, not iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _tree_cpu(root: int | None) -> float:
    """CPU seconds of ``root`` and its live descendants, including the children they have
    reaped (``cutime``/``cstime``): PostgreSQL's backends that exited meanwhile still count."""
    if root is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            used[int(entry.name)] = sum(int(f) for f in fields[11:15]) / ticks
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def _cpu_snapshot(stack: c.Stack) -> dict[str, float]:
    snap = {f"replica{i + 1}": c.cpu_seconds(pid) for i, pid in enumerate(stack.server_pids)}
    snap["postgres"] = _tree_cpu(stack.postgres_pid)
    snap["seaweedfs"] = _tree_cpu(stack.weed_pid)
    snap["machine"] = _machine_busy()
    snap["bench"] = c.cpu_seconds(os.getpid())
    return snap


# -- one phase ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # nearest rank


def run_phase(
    stack: c.Stack, tokens: list[str], workload: str, args: argparse.Namespace
) -> dict[str, Any]:
    urls = stack.urls
    jobs = [
        {"url": urls[i % len(urls)], "token": tokens[i], "seed": 1000 * len(urls) + i}
        for i in range(args.clients)
    ]
    procs = max(1, min(args.procs, args.clients))
    ctx = multiprocessing.get_context("spawn")
    workers = []
    for p in range(procs):
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=load_process, args=(child, jobs[p::procs], workload, args.versions), daemon=True
        )
        process.start()
        workers.append((process, parent))
    try:
        time.sleep(1.0)  # let the children import httpx before the clock starts
        window_start = time.monotonic() + args.warmup
        window_end = window_start + args.seconds
        for _, parent in workers:
            parent.send((window_start, window_end, window_end + 0.05))
        time.sleep(max(0.0, window_start - time.monotonic()))
        before = _cpu_snapshot(stack)
        time.sleep(max(0.0, window_end - time.monotonic()))
        after = _cpu_snapshot(stack)
        results = [parent.recv() for _, parent in workers]
    finally:
        for process, parent in workers:
            parent.close()
            process.join(timeout=40)
            if process.is_alive():
                process.kill()
    samples = [tuple(s) for r in results for s in r["samples"]]
    ok = [lat for _, lat, status in samples if status == 200]
    statuses: dict[str, int] = {}
    for _, _, status in samples:
        if status != 200:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
    per_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({k for k, _, _ in samples}):
        lats = [lat for k, lat, status in samples if k == kind and status == 200]
        per_kind[kind] = {
            "count": len(lats),
            "p50_ms": percentile(lats, 0.5) * 1000,
            "p99_ms": percentile(lats, 0.99) * 1000,
        }
    cpu = {k: after[k] - before[k] for k in after if k != "bench"}
    cpu["load_generator"] = sum(r["cpu"] for r in results)
    named = sum(v for k, v in cpu.items() if k != "machine")
    cpu["other"] = max(0.0, cpu["machine"] - named)
    return {
        "workload": workload,
        "replicas": len(urls),
        "clients": args.clients,
        "load_processes": procs,
        "seconds": args.seconds,
        "requests": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "error_statuses": statuses,
        "req_per_s": len(ok) / args.seconds,
        "p50_ms": percentile(ok, 0.5) * 1000,
        "p99_ms": percentile(ok, 0.99) * 1000,
        "mean_ms": statistics.fmean(ok) * 1000 if ok else float("nan"),
        "per_kind": per_kind,
        "cpu_seconds": cpu,
    }


# -- setup ----------------------------------------------------------------------------------------


def make_model(directory: Path, seed: int) -> Path:
    """A small real model: one safetensors file (64 KiB) and a config."""
    directory.mkdir(parents=True)
    payload = random.Random(seed).randbytes(64 * 1024)
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}
    ).encode()
    raw = len(header).to_bytes(8, "little") + header + payload
    (directory / "model.safetensors").write_bytes(raw)
    (directory / "config.json").write_text(json.dumps({"architectures": ["Tiny"], "seed": seed}))
    return directory


def seed_registry(stack: c.Stack, work: Path, versions: int, clients: int) -> list[str]:
    """``versions`` versions of bench/model (every other one released); one deployer token per
    client, returned."""
    from registry.sdk.client import RegistryClient

    with RegistryClient(stack.url, stack.token) as admin:
        admin.set_policy(NAMESPACE, c.BENCH_POLICY)
        for v in range(1, versions + 1):
            ref = f"{NAMESPACE}/{ARTIFACT}@{v}"
            admin.push(make_model(work / "models" / str(v), v), ref)
            if v % 2:
                admin.release(ref)
        tokens = []
        for i in range(clients):
            issued = admin.create_token(f"bench-reader-{i}", "deployer", NAMESPACE)
            assert issued.token is not None
            tokens.append(issued.token)
        attestations = len(admin.list_attestations(f"{NAMESPACE}/{ARTIFACT}@1"))
    print(
        f"seeded {versions} versions of {NAMESPACE}/{ARTIFACT} ({versions // 2 + versions % 2} "
        f"released; version 1 has {attestations} attestations), {clients} deployer tokens"
    )
    return tokens


# -- output ---------------------------------------------------------------------------------------


def print_results(phases: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    by = {(p["replicas"], p["workload"]): p for p in phases}
    headers = [
        "replicas",
        "workload",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs /health req/s",
        "vs /health p50",
        "req/s per replica",
    ]
    rows = []
    ratios: dict[str, Any] = {}
    for (replicas, workload), p in sorted(
        by.items(), key=lambda kv: (kv[0][0], kv[0][1] != "health")
    ):
        base = by.get((replicas, "health"))
        vs_rate = vs_p50 = "-"
        if workload != "health" and base:
            ratios[f"{replicas}_replica"] = {
                "req_per_s_vs_health": p["req_per_s"] / base["req_per_s"],
                "p50_vs_health": p["p50_ms"] / base["p50_ms"],
            }
            vs_rate = f"{p['req_per_s'] / base['req_per_s']:.2f}x"
            vs_p50 = f"{p['p50_ms'] / base['p50_ms']:.1f}x"
        rows.append(
            [
                str(replicas),
                "GET /health" if workload == "health" else "metadata mix",
                f"{p['req_per_s']:.0f}",
                f"{p['p50_ms']:.1f}",
                f"{p['p99_ms']:.1f}",
                str(p["errors"]),
                vs_rate,
                vs_p50,
                f"{p['req_per_s'] / replicas:.0f}",
            ]
        )
    print()
    print(
        f"{args.clients} closed-loop clients in {phases[0]['load_processes']} load-generator "
        f"processes; {args.seconds:g} s counted per phase after {args.warmup:g} s warm-up"
    )
    c.print_table(headers, rows)
    one, two = by.get((1, "metadata")), by.get((2, "metadata"))
    if one and two:
        ratios["metadata_2_vs_1_replicas"] = two["req_per_s"] / one["req_per_s"]
        print(f"metadata req/s, 2 replicas vs 1: {ratios['metadata_2_vs_1_replicas']:.2f}x")
    print()
    print("per request kind (metadata mix): count, p50 / p99 ms")
    for (replicas, workload), p in sorted(by.items()):
        if workload == "metadata":
            kinds = ", ".join(
                f"{k} {v['count']} {v['p50_ms']:.0f}/{v['p99_ms']:.0f}"
                for k, v in p["per_kind"].items()
            )
            print(f"  {replicas} replica(s): {kinds}")
    print()
    print(
        "CPU seconds during each counted window (machine = all cores busy; "
        f"{len(os.sched_getaffinity(0))} cores x {args.seconds:g} s available)"
    )
    names = ["replica1", "replica2", "load_generator", "postgres", "seaweedfs", "other", "machine"]
    rows = []
    for (replicas, workload), p in sorted(
        by.items(), key=lambda kv: (kv[0][0], kv[0][1] != "health")
    ):
        cpu = p["cpu_seconds"]
        ok = max(1, p["ok"])
        servers = sum(v for k, v in cpu.items() if k.startswith("replica"))
        rows.append(
            [
                f"{replicas} {workload}",
                *(f"{cpu[n]:.1f}" if n in cpu else "-" for n in names),
                f"{servers / ok * 1000:.2f}",
                f"{cpu['postgres'] / ok * 1000:.2f}",
                f"{cpu['load_generator'] / ok * 1000:.2f}",
            ]
        )
    c.print_table(
        [*["phase", *names], "replicas ms/req", "postgres ms/req", "loadgen ms/req"], rows
    )
    print("(ms/req: CPU milliseconds per answered request; 'other' is everything else running)")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="counted seconds per phase")
    parser.add_argument("--warmup", type=float, default=3, help="uncounted seconds first")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--versions", type=int, default=20, help="versions seeded")
    parser.add_argument("--max-replicas", type=int, default=2, choices=(1, 2, 3, 4))
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or args.versions < 1:
        parser.error("--clients, --seconds and --versions must be positive")

    machine = c.machine_info()
    c.print_machine(machine)
    phases: list[dict[str, Any]] = []
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        from attest import keys

        key, _ = keys.write_keypair(work / "registry", keys.generate())
        stack = c.Stack(
            work, storage="s3", database="postgres", server_env={"MODELSEAL_SIGNING_KEY": str(key)}
        )
        with stack:
            assert stack.seaweed is not None
            print(f"PostgreSQL {stack.database_url}, SeaweedFS {stack.seaweed.endpoint_url}")
            tokens = seed_registry(stack, work, args.versions, args.clients)
            for replicas in range(1, args.max_replicas + 1):
                while len(stack.servers) < replicas:
                    stack.add_replica()
                print(f"replicas: {', '.join(stack.urls)}")
                for workload in ("health", "metadata"):
                    phase = run_phase(stack, tokens, workload, args)
                    phases.append(phase)
                    print(
                        f"  {workload:8} {phase['req_per_s']:7.1f} req/s  p50 "
                        f"{phase['p50_ms']:6.1f} ms  p99 {phase['p99_ms']:6.1f} ms  "
                        f"errors {phase['errors']} {phase['error_statuses'] or ''}",
                        flush=True,
                    )
    ratios = print_results(phases, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "phases": phases,
                    "ratios": ratios,
                    "options": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 1 if any(p["errors"] for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
