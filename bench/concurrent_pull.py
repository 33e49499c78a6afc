"""A fleet of deploy jobs pulling one released model at once, against as many raw boto3
downloads of the same files, in the same run.

    python3 -m bench.concurrent_pull                          # 32 clients, 1 GiB in 4 shards
    python3 -m bench.concurrent_pull --clients 8 --size-mib 256 --repeat 3

Setup as ``bench.push_pull`` (a private SeaweedFS, ``modelseal serve`` on SQLite in its
default configuration unless ``--presign``/``--no-presign`` is given); the model is pushed
and released once, untimed. Each cycle then runs, one phase after the other:

1. **boto3**: ``--clients`` processes start at once, each a fresh ``boto3.client`` calling
   ``download_file`` for every shard into its own directory (``bench/_boto3_baseline.py``).
2. **modelseal pull**: ``--clients`` ``modelseal pull NS/NAME@VERSION --to DIR --no-progress``
   at once, each with its own client configuration directory (as separate pods have): every
   one verifies the release, the log proofs and every byte, and fsyncs (the default).
3. **modelseal pull --via-registry**: the same with every byte streamed through the registry
   (clients that cannot reach the store), which is what the registry's CPU per GiB is about.

Reported per phase: wall time from the first spawn to the last exit, aggregate MB/s (all bytes
all clients wrote / wall), the ratio of aggregate throughput to the boto3 phase's (>= 1 is as
fast or faster), the slowest and median client, and the CPU seconds the registry and SeaweedFS
spent during the phase, per GiB delivered. Every client's files are compared with the source
by SHA-256 after the phase (outside the timed region) and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.exit("run it as a module from the repository root: python3 -m bench.concurrent_pull")

from bench import _common as c
from bench.push_pull import HERE, make_model, presign_label


def _spawn_all(cmds: list[list[str]], envs: list[dict[str, str]]) -> dict[str, Any]:
    """Start every command at once; wait for all; wall time, per-client times and CPU."""
    logs = [tempfile.TemporaryFile() for _ in cmds]  # not pipes: nobody reads them meanwhile
    started = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        for cmd, env, log in zip(cmds, envs, logs, strict=True)
    ]
    ends: dict[int, float] = {}
    cpu = 0.0  # (no peak RSS: a child's ru_maxrss keeps this process's from before its exec)
    codes: dict[int, int] = {}
    pending = {p.pid: p for p in procs}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pending:
            continue
        ends[pid] = time.perf_counter() - started
        codes[pid] = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        pending.pop(pid)
    wall = time.perf_counter() - started
    failed = []
    for proc, log in zip(procs, logs, strict=True):
        proc.returncode = codes[proc.pid]
        if proc.returncode != 0:
            log.seek(0)
            err = log.read(65536).decode(errors="replace")
            failed.append(f"{proc.args!r} -> {proc.returncode}:\n{err}")
        log.close()
    if failed:
        raise RuntimeError(f"{len(failed)} client(s) failed; first:\n{failed[0]}")
    times = sorted(ends.values())
    return {
        "seconds": wall,
        "client_seconds_median": statistics.median(times),
        "client_seconds_max": times[-1],
        "client_cpu_total": cpu,
    }


def run_phase(stack: c.Stack, cmds: list[list[str]], envs: list[dict[str, str]]) -> dict[str, Any]:
    server_cpu = c.cpu_seconds(stack.server_pid)
    weed_cpu = c.cpu_seconds(stack.weed_pid) if stack.weed_pid else 0.0
    phase = _spawn_all(cmds, envs)
    phase["server_cpu"] = c.cpu_seconds(stack.server_pid) - server_cpu
    phase["seaweedfs_cpu"] = (c.cpu_seconds(stack.weed_pid) - weed_cpu) if stack.weed_pid else 0.0
    return phase


def check_and_clear(source: dict[str, str], targets: list[Path], what: str) -> None:
    for target in targets:
        c.verify_tree(source, target, what)
        shutil.rmtree(target)
    c.drop_dirty_pages()


def cycle_once(
    stack: c.Stack, work: Path, ref: str, names: list[str], source: dict[str, str], clients: int,
    cycle: int,
) -> dict[str, Any]:  # fmt: skip
    run: dict[str, Any] = {"cycle": cycle}
    assert stack.seaweed is not None
    baseline = [
        sys.executable, str(HERE / "_boto3_baseline.py"), "download",
        stack.seaweed.endpoint_url, c.BUCKET, f"{c.BASELINE_PREFIX}/fleet",
    ]  # fmt: skip
    targets = [work / f"boto3-{cycle}-{i}" for i in range(clients)]
    env = c.clean_env(**stack.s3_env)
    run["boto3"] = run_phase(stack, [[*baseline, str(t), *names] for t in targets], [env] * clients)
    check_and_clear(source, targets, "boto3 download_file")

    for key, extra in (("modelseal_pull", []), ("modelseal_pull_streamed", ["--via-registry"])):
        targets = [work / f"{key}-{cycle}-{i}" for i in range(clients)]
        envs = []
        for i in range(clients):
            env = stack.client_env()
            env["MODELSEAL_CONFIG_DIR"] = str(work / f"client-config-{i}")
            envs.append(env)
        cmds = [
            [*c.modelseal_cmd(), "pull", ref, "--to", str(t), "--no-progress", *extra]
            for t in targets
        ]
        run[key] = run_phase(stack, cmds, envs)
        check_and_clear(source, targets, f"modelseal pull {' '.join(extra)}".strip())
    return run


PHASES = (
    ("boto3", "boto3 download_file", None),
    ("modelseal_pull", "modelseal pull", "boto3"),
    ("modelseal_pull_streamed", "  ... --via-registry", "boto3"),
)


def summarize(runs: list[dict[str, Any]], delivered: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, _label, _base in PHASES:
        rows = [r[key] for r in runs]
        seconds = c.median([r["seconds"] for r in rows])
        summary[key] = {
            "seconds_median": seconds,
            "seconds_all": [r["seconds"] for r in rows],
            "aggregate_mb_per_s": delivered / c.MB / seconds,
            "client_seconds_median": c.median([r["client_seconds_median"] for r in rows]),
            "client_seconds_max": max(r["client_seconds_max"] for r in rows),
            "server_cpu_per_gib": c.median([r["server_cpu"] for r in rows]) / (delivered / c.GiB),
            "seaweedfs_cpu_per_gib": c.median([r["seaweedfs_cpu"] for r in rows])
            / (delivered / c.GiB),
            "client_cpu_per_gib": c.median([r["client_cpu_total"] for r in rows])
            / (delivered / c.GiB),
        }
    for key, _label, base in PHASES:
        if base:
            # aggregate throughput relative to the baseline's: >= 1 is as fast or faster
            summary[key]["throughput_vs_baseline"] = (
                summary[base]["seconds_median"] / summary[key]["seconds_median"]
            )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--size-mib", type=int, default=1024, help="model size (default 1024)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors files (default 4)")
    parser.add_argument("--repeat", type=int, default=1, help="cycles; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    presign = parser.add_mutually_exclusive_group()
    presign.add_argument(
        "--presign",
        dest="presign",
        action="store_true",
        default=None,
        help="server presigns downloads (default: the server's default)",
    )
    presign.add_argument("--no-presign", dest="presign", action="store_false",
                         help="server streams every download itself")  # fmt: skip
    args = parser.parse_args()
    if min(args.clients, args.size_mib, args.shards, args.repeat) < 1:
        parser.error("--clients, --size-mib, --shards and --repeat must be >= 1")

    machine = c.machine_info()
    c.print_machine(machine)
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        model = work / "model"
        shards = make_model(model, args.size_mib, args.shards, 0)
        total = sum(p.stat().st_size for p in shards)
        source = c.tree_digests(model)
        names = sorted(source)
        delivered = total * args.clients
        print(f"{len(shards)} shards, {total} bytes; {args.clients} clients -> "
              f"{delivered / c.GiB:.1f} GiB delivered per phase")  # fmt: skip
        chosen = args.presign  # None: the variable unset, the server's default
        stack = c.Stack(work, storage="s3", seaweed_volume_max=60, presign_downloads=chosen)
        with stack:
            assert stack.seaweed is not None
            ref = "bench/fleet@1"
            subprocess.run(
                [*c.modelseal_cmd(), "push", str(model), ref, "--no-progress"],
                env=stack.client_env(), check=True, capture_output=True,
            )  # fmt: skip
            stack.release(ref)
            subprocess.run(
                [sys.executable, str(HERE / "_boto3_baseline.py"), "upload",
                 stack.seaweed.endpoint_url, c.BUCKET, f"{c.BASELINE_PREFIX}/fleet", str(model)],
                env=c.clean_env(**stack.s3_env), check=True, capture_output=True,
            )  # fmt: skip
            c.drop_dirty_pages()
            runs = []
            for cycle in range(1, args.repeat + 1):
                run = cycle_once(stack, work, ref, names, source, args.clients, cycle)
                runs.append(run)
                print(f"cycle {cycle}: " + ", ".join(
                    f"{label.strip()} {run[key]['seconds']:.2f} s" for key, label, _ in PHASES
                ), flush=True)  # fmt: skip

    summary = summarize(runs, delivered)
    print()
    print(f"{args.clients} concurrent clients x {total / c.MiB:.0f} MiB in {len(shards)} shards; "
          f"median of {args.repeat} cycle(s); server MODELSEAL_S3_PRESIGN_DOWNLOADS="
          f"{presign_label(chosen)}; SQLite metadata, SeaweedFS on loopback")  # fmt: skip
    rows = []
    for key, label, base in PHASES:
        s = summary[key]
        rows.append([
            label, f"{s['seconds_median']:.2f}", f"{s['aggregate_mb_per_s']:.0f}",
            f"{s['throughput_vs_baseline']:.2f}x" if base else "(baseline)",
            f"{s['client_seconds_median']:.2f} / {s['client_seconds_max']:.2f}",
            f"{s['server_cpu_per_gib']:.2f}", f"{s['seaweedfs_cpu_per_gib']:.2f}",
            f"{s['client_cpu_per_gib']:.2f}",
        ])  # fmt: skip
    c.print_table(
        ["phase", "wall s", "aggregate MB/s", "throughput vs boto3", "client median/max s",
         "registry CPU s/GiB", "SeaweedFS CPU s/GiB", "clients CPU s/GiB"],
        rows,
    )  # fmt: skip
    print(
        "throughput vs boto3 = boto3 wall / phase wall (>= 1: as fast or faster); CPU per GiB "
        "delivered to all clients together; modelseal pull fsyncs, download_file does not."
    )
    if args.json:
        args.json.write_text(json.dumps({
            "benchmark": "concurrent_pull", "machine": machine,
            "params": {"clients": args.clients, "size_mib": args.size_mib, "shards": args.shards,
                       "repeat": args.repeat, "presign_downloads": chosen},
            "summary": summary, "runs": runs,
        }, indent=2, sort_keys=True) + "\n")  # fmt: skip
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped and scratch files removed", file=sys.stderr)
        sys.exit(130)
