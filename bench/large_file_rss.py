#!/usr/bin/env python3
"""Peak memory of modelseal while pushing and pulling ONE large file: it should stay flat.

    python3 -m bench.large_file_rss [--size-gib 4] [--storage s3|local] [--json out.json]

Writes one file of ``--size-gib`` GiB (64 MiB random blocks, each stamped with its block
number every MiB, so that no two blocks are alike), starts ``modelseal serve`` (SQLite
metadata; blobs in a private SeaweedFS S3 bucket with ``--storage s3``, the default, or in the
server's data directory with ``--storage local``), then runs ``modelseal push`` and ``modelseal
pull`` as child processes. Prints their times, each client's peak RSS (``os.wait4``) and the
server's peak RSS (``VmHWM``, reset before each phase), and checks the pulled file's sha256.
With S3, the same file also goes up and down through raw boto3 (``upload_file`` /
``download_file``, as users call them, in child processes) in the same run: the push's and the
pull's times are printed as ratios of those. Exits 1 if any peak exceeds ``--rss-limit-mib``
(default 300): memory must not grow with the file size, so the same limit holds for 0.5 GiB
and for 64 GiB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common as c
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.large_file_rss")

BLOCK = 64 * c.MiB
FILE_NAME = "weights.raw"
REF = "big/file@1"
BASELINE = f"{c.BASELINE_PREFIX}/large"  # the raw boto3 baseline's keys


def make_file(path: Path, size: int) -> str:
    """``size`` bytes of random-looking data; returns their sha256 (computed while writing)."""
    block = bytearray(os.urandom(BLOCK))
    digest = hashlib.sha256()
    written = 0
    with path.open("wb") as handle:
        number = 0
        while written < size:
            for offset in range(0, BLOCK, c.MiB):
                struct.pack_into("<QQ", block, offset, number, offset)
            piece = memoryview(block)[: min(BLOCK, size - written)]
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
            number += 1
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=4.0, help="file size (default 4)")
    parser.add_argument(
        "--storage", choices=("s3", "local"), default="s3", help="blob store (default s3)"
    )
    parser.add_argument("--rss-limit-mib", type=float, default=300.0, help="default 300")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    size = int(args.size_gib * c.GiB)
    if size < 1:
        parser.error("--size-gib must be > 0")

    machine = c.machine_info()
    c.print_machine(machine)
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        source_dir = work / "source"
        source_dir.mkdir()
        started = time.perf_counter()
        expected = make_file(source_dir / FILE_NAME, size)
        print(f"wrote {size} bytes in {time.perf_counter() - started:.1f} s under {work}")

        volumes = 40 + 3 * size // (256 * c.MB)
        # Downloads stream through the server (no presigned redirects): its memory is measured.
        with c.Stack(
            work,
            storage=args.storage,
            seaweed_volume_max=volumes,
            presign_downloads=False,
            release_policy=c.UNKNOWN_FORMAT_POLICY,
        ) as stack:
            where = (
                f"SeaweedFS S3 at {stack.seaweed.endpoint_url}"
                if stack.seaweed
                else f"local blobs in {stack.data_dir}"
            )
            print(f"modelseal at {stack.url}, {where}")
            idle = stack.server_hwm()
            baseline: dict[str, Any] = {}
            if stack.seaweed:  # the same file through raw boto3, same store, same run
                c.drop_dirty_pages()
                baseline["upload"] = stack.boto3("upload", BASELINE, source_dir)
            c.drop_dirty_pages()
            push = stack.modelseal("push", str(source_dir), REF, "--no-progress")
            stack.release(REF)  # untimed: the pull verifies a real release
            target = work / "pulled"
            c.drop_dirty_pages()
            pull = stack.modelseal("pull", REF, "--to", str(target), "--no-progress")
            got = c.sha256_path(target / FILE_NAME)
            if got != expected:
                raise RuntimeError(f"pulled file has sha256 {got}, expected {expected}")
            shutil.rmtree(target)
            if stack.seaweed:
                c.drop_dirty_pages()
                baseline["download"] = stack.boto3("download", BASELINE, target, [FILE_NAME])
                if c.sha256_path(target / FILE_NAME) != expected:
                    raise RuntimeError("the boto3 baseline downloaded other bytes")
                shutil.rmtree(target)

    limit = args.rss_limit_mib * c.MiB
    rows = []
    for label, result in (("modelseal push", push), ("modelseal pull", pull)):
        rows.append([
            label,
            f"{result['seconds']:.2f}",
            f"{size / c.MB / result['seconds']:.0f}",
            c.mib(result["client_rss"]),
            c.mib(result["server_hwm"]),
        ])  # fmt: skip
    print()
    print(
        f"one file of {size / c.GiB:g} GiB ({size} bytes), storage {args.storage}; "
        f"pulled file verified (sha256)"
    )
    for label, key in (("boto3 upload_file", "upload"), ("boto3 download_file", "download")):
        if key in baseline:
            seconds = baseline[key]["seconds"]
            rows.append([label, f"{seconds:.2f}", f"{size / c.MB / seconds:.0f}",
                         c.mib(baseline[key]["client_rss"]), "-"])  # fmt: skip
    c.print_table(["phase", "seconds", "MB/s", "client peak RSS MiB", "server peak RSS MiB"], rows)
    if baseline:
        print(
            f"same run, same store: push {push['seconds'] / baseline['upload']['seconds']:.2f}x "
            f"boto3 upload_file's time, pull (streamed through the registry, verified) "
            f"{pull['seconds'] / baseline['download']['seconds']:.2f}x download_file's"
        )
    print()
    print(
        f"server RSS idle (after start-up): {c.mib(idle['VmRSS'])} MiB; "
        f"server peak per row = VmHWM reset before the phase"
        + ("" if push["server_hwm_reset"] else " (reset not possible: cumulative)")
    )
    for label, result in (("push", push), ("pull", pull)):
        print(
            f"CPU seconds during {label}: client {result['client_cpu']:.2f}, "
            f"modelseal server {result['server_cpu']:.2f}"
            + (f", SeaweedFS {result['seaweedfs_cpu']:.2f}" if "seaweedfs_cpu" in result else "")
            + f" (wall {result['seconds']:.2f})"
        )
    peaks = {
        "push client": push["client_rss"],
        "pull client": pull["client_rss"],
        "server during push": push["server_hwm"],
        "server during pull": pull["server_hwm"],
    }
    over = {k: v for k, v in peaks.items() if v >= limit}
    verdict = (
        f"OK: every peak RSS is below {args.rss_limit_mib:g} MiB"
        if not over
        else "OVER THE LIMIT: "
        + ", ".join(f"{k} {c.mib(v)} MiB" for k, v in over.items())
        + f" (limit {args.rss_limit_mib:g} MiB)"
    )
    print(verdict)
    if args.json:
        result = {
            "benchmark": "large_file_rss",
            "machine": machine,
            "params": {
                "size_bytes": size,
                "size_gib": args.size_gib,
                "storage": args.storage,
                "rss_limit_mib": args.rss_limit_mib,
                "metadata": "sqlite",
            },
            "server_idle": idle,
            "push": push,
            "pull": pull,
            "boto3": baseline,
            "within_limit": not over,
        }
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 1 if over else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped and scratch files removed", file=sys.stderr)
        sys.exit(130)
