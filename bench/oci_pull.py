#!/usr/bin/env python3
"""Pulling a released version three ways in one run: raw boto3 from the store, `modelseal pull`,
and an OCI pull with the ORAS Python SDK; and the registry's CPU per GiB it serves.

    python3 -m bench.oci_pull [--size 2GiB] [--shards 4] [--repeat 3] [--json out.json]

Starts a private SeaweedFS S3 server and a ``modelseal serve`` (SQLite metadata, blobs in
``s3://modelseal-bench/bench``, ``MODELSEAL_S3_PRESIGN_DOWNLOADS=false``: every download, the
SDK's and the OCI client's, streams through the registry unless ``--presign``), writes
``--shards`` safetensors files totalling ``--size``, pushes and releases them once (untimed),
then per cycle, interleaved:

1. **boto3 download_file** of the same objects the registry stores
   (``bench/blobs/sha256/<hex>``), fresh client with default settings, own process
   (``bench/_boto3_baseline.py``): the baseline, no registry involved;
2. **modelseal pull REF --to DIR --no-fsync** (verified: release attestation, signed status,
   every byte; no fsync, like the other two), then the default durable **modelseal pull**;
3. **oras pull** (``bench/_oras_pull.py``: ``OrasClient(insecure=True)``, the deployer-role
   API token as basic-auth password, ``pull`` of ``bench/model:1`` over ``/v2/``), own process.

Each phase is a child process timed from spawn to exit. Before and after each, the CPU time
(user + system, ``/proc/PID/stat``) of the registry server and of SeaweedFS is read, so the
table shows the server's CPU seconds per GiB pulled. Every downloaded tree is checked by sha256
against the source outside the timed regions. Medians over ``--repeat`` cycles (at least 3),
with the spread (min-max); ratios are against the boto3 baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common as c
    from bench.push_pull import make_model
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.oci_pull")

HERE = Path(__file__).resolve().parent
REF = "bench/model@1"
OCI_REFERENCE = "bench/model:1"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]i?B?)?", re.I)

PHASES = (
    ("boto3_download", "boto3 download_file (store)", None),
    ("modelseal_pull_nofsync", "modelseal pull --no-fsync", "boto3_download"),
    ("modelseal_pull", "modelseal pull (fsync)", "boto3_download"),
    ("oras_pull", "oras pull (/v2/)", "boto3_download"),
)


def parse_size(text: str) -> int:
    """``2GiB``, ``256MiB``, ``512M``, ``1.5G`` or a number of bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2GiB, 256MiB)")
    unit = (match.group(2) or "").upper().rstrip("B").rstrip("I")
    factor = {"": 1, "K": c.KiB, "M": c.MiB, "G": c.GiB}[unit]
    size = int(float(match.group(1)) * factor)
    if size < c.MiB:
        raise argparse.ArgumentTypeError("--size must be at least 1 MiB")
    return size


def verify_blobs(target: Path, names: list[str]) -> None:
    """Each downloaded object is named by its sha256 (the registry's blob keys)."""
    got = sorted(p.name for p in target.iterdir())
    if got != sorted(names):
        raise RuntimeError(f"boto3 download: {got} != {sorted(names)}")
    for name in names:
        if c.sha256_path(target / name) != name:
            raise RuntimeError(f"boto3 download: {name} does not hash to its name")


def deployer_token(stack: c.Stack) -> str:
    made = c.run_timed(
        [*c.modelseal_cmd(), "token", "create", "--role", "deployer", "--namespace", "bench"],
        stack.client_env(),
    ).check()
    return made.stdout.strip()


def cycle_once(
    stack: c.Stack, source: dict[str, str], blobs: list[str], work: Path, cycle: int, token: str
) -> dict[str, Any]:
    run: dict[str, Any] = {"cycle": cycle}
    env = {**stack.client_env(), "MODELSEAL_TOKEN": token}

    target = work / f"boto3-{cycle}"
    c.drop_dirty_pages()
    phase = stack.boto3("download", f"{c.STORAGE_PREFIX}/blobs/sha256", target, blobs)
    run["boto3_download"] = phase
    verify_blobs(target, blobs)
    shutil.rmtree(target)

    for key, extra in (("modelseal_pull_nofsync", ["--no-fsync"]), ("modelseal_pull", [])):
        target = work / f"{key}-{cycle}"
        c.drop_dirty_pages()
        run[key] = stack.run_phase(
            [*c.modelseal_cmd(), "pull", REF, "--to", str(target), "--no-progress", *extra], env
        )
        run[key].pop("stdout")
        c.verify_tree(source, target, key)
        shutil.rmtree(target)

    target = work / f"oras-{cycle}"
    c.drop_dirty_pages()
    host = stack.url.removeprefix("http://")
    phase = stack.run_phase(
        [sys.executable, str(HERE / "_oras_pull.py"), host, OCI_REFERENCE, str(target)], env
    )
    inner = json.loads(phase.pop("stdout").splitlines()[-1])
    phase["inprocess_seconds"] = inner["seconds"]
    phase["import_seconds"] = inner["import_seconds"]
    run["oras_pull"] = phase
    c.verify_tree(source, target, "oras pull")
    shutil.rmtree(target)
    c.drop_dirty_pages()
    return run


def summarize(runs: list[dict[str, Any]], total_bytes: int) -> dict[str, Any]:
    gib = total_bytes / c.GiB
    summary: dict[str, Any] = {}
    for key, _label, _base in PHASES:
        rows = [r[key] for r in runs]
        seconds = [r["seconds"] for r in rows]
        median = c.median(seconds)
        phase: dict[str, Any] = {
            "seconds_median": median,
            "seconds_min": min(seconds),
            "seconds_max": max(seconds),
            "seconds_all": seconds,
            "mb_per_s": total_bytes / c.MB / median,
            "client_rss_max": max(r["client_rss"] for r in rows),
            "client_cpu_median": c.median([r["client_cpu"] for r in rows]),
            "server_cpu_median": c.median([r["server_cpu"] for r in rows]),
            "server_cpu_per_gib_median": c.median([r["server_cpu"] / gib for r in rows]),
            "seaweedfs_cpu_median": c.median([r.get("seaweedfs_cpu", 0.0) for r in rows]),
        }
        if "inprocess_seconds" in rows[0]:
            phase["inprocess_seconds_median"] = c.median([r["inprocess_seconds"] for r in rows])
            phase["import_seconds_median"] = c.median([r["import_seconds"] for r in rows])
        summary[key] = phase
    for key, _label, base in PHASES:
        if base:
            summary[key]["ratio_vs_baseline"] = (
                summary[key]["seconds_median"] / summary[base]["seconds_median"]
            )
    return summary


def print_results(summary: dict[str, Any], total_bytes: int, extra: dict[str, Any]) -> None:
    print()
    print(
        f"{total_bytes / c.MiB:.0f} MiB ({total_bytes} bytes) in {extra['shards']} safetensors "
        f"shards, released; median of {extra['repeat']} cycles (spread = min-max); server "
        f"MODELSEAL_S3_PRESIGN_DOWNLOADS={str(extra['presign_downloads']).lower()}"
    )
    rows = []
    for key, label, base in PHASES:
        s = summary[key]
        rows.append([
            label,
            f"{s['seconds_median']:.2f}",
            f"{s['seconds_min']:.2f}-{s['seconds_max']:.2f}",
            f"{s['mb_per_s']:.0f}",
            f"{s['ratio_vs_baseline']:.2f}x" if base else "(baseline)",
            c.mib(s["client_rss_max"]),
        ])  # fmt: skip
    c.print_table(["phase", "seconds", "spread", "MB/s", "vs baseline", "client peak RSS MiB"],
                  rows)  # fmt: skip
    print()
    cpu_rows = []
    for key, label, _base in PHASES:
        s = summary[key]
        cpu_rows.append([
            label,
            f"{s['client_cpu_median']:.2f}",
            f"{s['server_cpu_median']:.2f}",
            f"{s['server_cpu_per_gib_median']:.2f}",
            f"{s['seaweedfs_cpu_median']:.2f}",
        ])  # fmt: skip
    c.print_table(
        ["CPU seconds (user+sys)", "client", "registry server", "server per GiB", "SeaweedFS"],
        cpu_rows,
    )
    print()
    print("MB/s = 10^6 bytes/s; 'vs baseline' = seconds / boto3 seconds (>1 is slower);")
    print("'server per GiB' = the registry's CPU seconds during the phase / GiB pulled.")
    boto3, oras = summary["boto3_download"], summary["oras_pull"]
    print(
        f"in-process (client + transfers): boto3 {boto3['inprocess_seconds_median']:.2f} s "
        f"(import {boto3['import_seconds_median']:.2f} s), oras "
        f"{oras['inprocess_seconds_median']:.2f} s (import {oras['import_seconds_median']:.2f} s); "
        f"modelseal CLI start-up (`modelseal --help`): {extra['cli_startup_seconds']:.2f} s"
    )
    print(
        "modelseal pull verifies the release attestation, the signed status and every byte; "
        "oras-py checks nothing it downloads; boto3 reads the store directly."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=2 * c.GiB,
                        help="model size, e.g. 2GiB (default), 256MiB")  # fmt: skip
    parser.add_argument("--shards", type=int, default=4, help="safetensors files (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="cycles, at least 3 (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the tensor data")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--presign",
        action="store_true",
        help="the server presigns downloads (MODELSEAL_S3_PRESIGN_DOWNLOADS=true)",
    )
    args = parser.parse_args()
    if args.repeat < 3 or args.shards < 1:
        parser.error("--repeat must be >= 3 (a median and a spread) and --shards >= 1")
    size_mib = max(1, args.size // c.MiB)
    if size_mib * c.MiB // 4 < args.shards:
        parser.error("too many shards for that size")

    machine = c.machine_info()
    c.print_machine(machine)
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        model = work / "model"
        started = time.perf_counter()
        shards = make_model(model, size_mib, args.shards, args.seed)
        total_bytes = sum(p.stat().st_size for p in shards)
        source = c.tree_digests(model)
        print(f"wrote {len(shards)} shards, {total_bytes} bytes in "
              f"{time.perf_counter() - started:.1f} s under {work}")  # fmt: skip
        c.run_timed([*c.modelseal_cmd(), "--help"], c.clean_env())  # warm the cache
        cli = c.run_timed([*c.modelseal_cmd(), "--help"], c.clean_env()).check()

        volumes = 40 + 3 * total_bytes // (256 * c.MB)  # the model is stored once
        stack = c.Stack(work, storage="s3", seaweed_volume_max=volumes,
                        presign_downloads=args.presign)  # fmt: skip
        with stack:
            print(f"SeaweedFS S3 at {stack.seaweed.endpoint_url}, modelseal at {stack.url}")
            c.run_timed([*c.modelseal_cmd(), "push", str(model), REF, "--no-progress"],
                        stack.client_env()).check()  # fmt: skip
            stack.release(REF)
            token = deployer_token(stack)
            blobs = sorted(source.values())
            runs = []
            for cycle in range(1, args.repeat + 1):
                run = cycle_once(stack, source, blobs, work, cycle, token)
                runs.append(run)
                print(f"cycle {cycle}: " + ", ".join(
                    f"{label} {run[key]['seconds']:.2f} s" for key, label, _ in PHASES),
                    flush=True)  # fmt: skip

    summary = summarize(runs, total_bytes)
    extra = {"shards": len(shards), "repeat": args.repeat, "presign_downloads": args.presign,
             "cli_startup_seconds": cli.seconds}  # fmt: skip
    print_results(summary, total_bytes, extra)
    if args.json:
        result = {
            "benchmark": "oci_pull",
            "machine": machine,
            "params": {
                "size_bytes": args.size,
                "shards": args.shards,
                "repeat": args.repeat,
                "seed": args.seed,
                "total_bytes": total_bytes,
                "storage": f"s3://{c.BUCKET}/{c.STORAGE_PREFIX} (SeaweedFS)",
                "metadata": "sqlite",
            },
            "summary": summary,
            "runs": runs,
            **extra,
        }
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped and scratch files removed", file=sys.stderr)
        sys.exit(130)
