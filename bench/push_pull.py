#!/usr/bin/env python3
"""Push/pull throughput of modelseal over S3 against raw boto3 on the same S3, in one run.

    python3 -m bench.push_pull [--size-mib 2048] [--shards 4] [--repeat 1] [--json out.json]

Starts a private SeaweedFS S3 server and a ``modelseal serve`` (SQLite metadata, blobs in
``s3://modelseal-bench/bench``), writes a model of ``--shards`` safetensors files totalling
``--size-mib``, then per cycle, interleaved (the page cache cannot be dropped reliably):

1. boto3 ``upload_file`` of each shard       (default settings, fresh client, own process)
2. ``modelseal push DIR bench/model@N``       (CLI subprocess)
3. boto3 ``download_file`` of each shard     (default settings, fresh client, own process)
4. ``modelseal pull bench/model@N --to T``    (CLI subprocess), then again with ``--no-fsync``
   and with ``--no-fsync --via-registry``

The server runs in its default configuration (``MODELSEAL_S3_PRESIGN_DOWNLOADS`` unset: on S3
the pulls are redirected to presigned URLs; ``--presign`` sets it to ``true`` instead, which
also redirects OCI blob GETs); ``--via-registry`` makes the client stream
the bytes through the registry whatever the server offers (the path for clients that cannot
reach the store). The push is signed (``--sign-key``, OMS signature + SLSA provenance, with a
key registered as an identity outside the timed region) unless ``--unsigned``.

Each phase is a child process timed by wall clock from spawn to exit (interpreter start-up
included on both sides); its peak RSS comes from ``os.wait4``. The server's peak RSS
(``VmHWM``) is reset before and read after each modelseal phase. Downloads are checked
byte for byte (sha256) against the source outside the timed regions. With ``--repeat N`` the
cycle runs N times (each time with fresh shard bytes, so that no blob is deduplicated) and
the table shows the median times and the highest RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

try:
    from bench import _common as c
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.push_pull")

TENSOR_FLOATS = 4096 * 1024  # 16 MiB float32 tensors, 4096 x 1024
HERE = Path(__file__).resolve().parent


def make_model(directory: Path, size_mib: int, shards: int, seed: int) -> list[Path]:
    """``shards`` safetensors files of random float32 tensors, ``size_mib`` MiB in total.

    One shard is in memory at a time (its tensors plus the serialized copy)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    total_floats = size_mib * c.MiB // 4
    paths = []
    for i in range(shards):
        floats = total_floats // shards + (total_floats % shards if i == shards - 1 else 0)
        tensors: dict[str, np.ndarray] = {}
        j = 0
        while floats > 0:
            n = min(TENSOR_FLOATS, floats)
            data = rng.random(n, dtype=np.float32)
            if n % 1024 == 0:
                data = data.reshape(n // 1024, 1024)
            tensors[f"model.layers.{i}.block.{j}.weight"] = data
            floats -= n
            j += 1
        path = directory / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, str(path), metadata={"format": "pt"})
        del tensors
        paths.append(path)
    return paths


def freshen(paths: list[Path], seed: int, cycle: int) -> None:
    """Overwrite the last 16 bytes of each shard (inside its last tensor's data, so the file
    stays valid safetensors): every cycle pushes blobs the registry has never seen. Without
    this a repeated push finds every blob already in the namespace and uploads nothing."""
    for k, path in enumerate(paths):
        tail = np.random.default_rng([seed, cycle, k]).random(4, dtype=np.float32).tobytes()
        with path.open("r+b") as handle:
            handle.seek(-len(tail), 2)
            handle.write(tail)


def cycle_once(
    stack: c.Stack,
    model: Path,
    shards: list[Path],
    work: Path,
    cycle: int,
    seed: int,
    push_args: list[str],
) -> dict[str, Any]:
    freshen(shards, seed, cycle)
    source = c.tree_digests(model)
    names = sorted(source)
    ref = f"bench/model@{cycle}"
    run: dict[str, Any] = {"cycle": cycle, "ref": ref}

    c.drop_dirty_pages()
    run["boto3_upload"] = stack.boto3("upload", f"{c.BASELINE_PREFIX}/r{cycle}", model)

    c.drop_dirty_pages()
    run["modelseal_push"] = stack.modelseal("push", str(model), ref, "--no-progress", *push_args)
    stack.release(ref)  # untimed: the pulls below verify a real release

    target = work / f"boto3-download-{cycle}"
    c.drop_dirty_pages()
    run["boto3_download"] = stack.boto3("download", f"{c.BASELINE_PREFIX}/r{cycle}", target, names)
    c.verify_tree(source, target, "boto3 download_file")
    shutil.rmtree(target)

    target = work / f"modelseal-pull-{cycle}"
    c.drop_dirty_pages()
    run["modelseal_pull"] = stack.modelseal("pull", ref, "--to", str(target), "--no-progress")
    c.verify_tree(source, target, "modelseal pull")
    shutil.rmtree(target)

    target = work / f"modelseal-pull-nofsync-{cycle}"
    c.drop_dirty_pages()
    run["modelseal_pull_nofsync"] = stack.modelseal(
        "pull", ref, "--to", str(target), "--no-progress", "--no-fsync"
    )
    c.verify_tree(source, target, "modelseal pull --no-fsync")
    shutil.rmtree(target)

    target = work / f"modelseal-pull-streamed-{cycle}"
    c.drop_dirty_pages()
    run["modelseal_pull_streamed"] = stack.modelseal(
        "pull", ref, "--to", str(target), "--no-progress", "--no-fsync", "--via-registry"
    )
    c.verify_tree(source, target, "modelseal pull --no-fsync --via-registry")
    shutil.rmtree(target)
    c.drop_dirty_pages()
    return run


PHASES = (
    ("boto3_upload", "boto3 upload_file", None),
    ("modelseal_push", "modelseal push", "boto3_upload"),
    ("boto3_download", "boto3 download_file", None),
    ("modelseal_pull", "modelseal pull", "boto3_download"),
    ("modelseal_pull_nofsync", "modelseal pull --no-fsync", "boto3_download"),
    ("modelseal_pull_streamed", "  ... --via-registry", "boto3_download"),
)


def summarize(runs: list[dict[str, Any]], total_bytes: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, _label, _base in PHASES:
        rows = [r[key] for r in runs]
        seconds = c.median([r["seconds"] for r in rows])
        phase: dict[str, Any] = {
            "seconds_median": seconds,
            "seconds_all": [r["seconds"] for r in rows],
            "mb_per_s": total_bytes / c.MB / seconds,
            "client_rss_max": max(r["client_rss"] for r in rows),
        }
        for cpu in ("client_cpu", "server_cpu", "seaweedfs_cpu"):
            if cpu in rows[0]:
                phase[f"{cpu}_median"] = c.median([r[cpu] for r in rows])
        if "server_hwm" in rows[0]:
            phase["server_hwm_max"] = max(r["server_hwm"] for r in rows)
        if "inprocess_seconds" in rows[0]:
            phase["inprocess_seconds_median"] = c.median([r["inprocess_seconds"] for r in rows])
        summary[key] = phase
    for key, _label, base in PHASES:
        if base:
            summary[key]["ratio_vs_baseline"] = (
                summary[key]["seconds_median"] / summary[base]["seconds_median"]
            )
    return summary


def print_results(
    summary: dict[str, Any], total_bytes: int, repeat: int, extra: dict[str, Any]
) -> None:
    print()
    print(
        f"{total_bytes / c.MiB:.0f} MiB ({total_bytes} bytes) in {extra['shards']} safetensors "
        f"shards; median of {repeat} cycle(s); RSS = highest over the cycles"
    )
    print(
        f"push {'signed (--sign-key)' if extra['signed_push'] else 'unsigned'}; server "
        f"MODELSEAL_S3_PRESIGN_DOWNLOADS={presign_label(extra['presign_downloads'])}"
    )
    headers = ["phase", "seconds", "MB/s", "vs baseline", "client peak RSS MiB",
               "server peak RSS MiB"]  # fmt: skip
    rows = []
    for key, label, base in PHASES:
        s = summary[key]
        rows.append([
            label,
            f"{s['seconds_median']:.2f}",
            f"{s['mb_per_s']:.0f}",
            f"{s['ratio_vs_baseline']:.2f}x" if base else "(baseline)",
            c.mib(s["client_rss_max"]),
            c.mib(s.get("server_hwm_max")),
        ])  # fmt: skip
    c.print_table(headers, rows)
    print()
    cpu_rows = []
    for key, label, _base in PHASES:
        s = summary[key]
        parts = [s["client_cpu_median"], s.get("server_cpu_median", 0.0), s["seaweedfs_cpu_median"]]
        cpu_rows.append([
            label,
            f"{parts[0]:.2f}",
            f"{s['server_cpu_median']:.2f}" if "server_cpu_median" in s else "-",
            f"{parts[2]:.2f}",
            f"{sum(parts):.2f}",
            f"{s['seconds_median']:.2f}",
        ])  # fmt: skip
    c.print_table(
        ["CPU seconds (user+sys)", "client", "modelseal server", "SeaweedFS", "total", "wall"],
        cpu_rows,
    )
    print()
    up, down = summary["boto3_upload"], summary["boto3_download"]
    print("MB/s = 10^6 bytes/s; 'vs baseline' = modelseal seconds / boto3 seconds (>1 is slower).")
    print(
        f"boto3 in-process (fresh client + transfers, no interpreter start / import): "
        f"upload {up['inprocess_seconds_median']:.2f} s "
        f"({total_bytes / c.MB / up['inprocess_seconds_median']:.0f} MB/s), "
        f"download {down['inprocess_seconds_median']:.2f} s "
        f"({total_bytes / c.MB / down['inprocess_seconds_median']:.0f} MB/s)"
    )
    print(f"modelseal CLI start-up (`modelseal --help`): {extra['cli_startup_seconds']:.2f} s")
    print(
        f"server RSS idle (after start-up): {c.mib(extra['server_idle']['VmRSS'])} MiB; "
        f"server peak over the whole run: {c.mib(extra['server_peak_overall'])} MiB"
        + ("" if extra["hwm_reset"] else " (VmHWM could not be reset: peaks are cumulative)")
    )
    print(
        "server peak RSS per row = VmHWM reset before the phase and read after it; "
        "modelseal pull fsyncs every file, boto3 download_file does not."
    )


def presign_default() -> bool:
    """Whether a server on S3 whose user set nothing presigns the SDK's downloads (it does since
    #19; ``bool`` of the tri-state field's default, None, would wrongly say no)."""
    from registry.server.config import Settings

    unset = Settings.model_construct(
        s3_presign_downloads=Settings.model_fields["s3_presign_downloads"].default
    )
    return unset.presigned_downloads(store_presigns=True, client_falls_back=True)


def presign_label(setting: bool | None) -> str:
    """How the server was told about presigned downloads: ``None`` left the variable unset."""
    if setting is None:
        return "unset (the default: the SDK's downloads presigned on S3)"
    return str(setting).lower()


def signing_args(stack: c.Stack, work: Path) -> list[str]:
    """A key registered as an identity (untimed) and the push options that sign with it. The
    code is named explicitly, so the provenance does not depend on the bench's own checkout."""
    key = work / "bench-signer"
    env = stack.client_env()
    for args in (
        ("keygen", str(key)),
        ("identity", "add", "bench-ci", "--key", f"{key}.pub"),
    ):
        c.run_timed([*c.modelseal_cmd(), *args], env).check()
    return [
        "--sign-key", f"{key}.key",
        "--git-repo", "https://example.com/bench/model.git",
        "--git-commit", "0" * 40,
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="model size (default 2048)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors files (default 4)")
    parser.add_argument("--repeat", type=int, default=1, help="cycles; medians are reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the tensor data")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--presign",
        action="store_true",
        help="server presigns downloads (MODELSEAL_S3_PRESIGN_DOWNLOADS=true); "
        "default: the server's default configuration",
    )
    parser.add_argument(
        "--unsigned", action="store_true", help="push without --sign-key (default: signed)"
    )
    args = parser.parse_args()
    if args.size_mib < 1 or args.shards < 1 or args.repeat < 1:
        parser.error("--size-mib, --shards and --repeat must be >= 1")
    if args.size_mib * c.MiB // 4 < args.shards:
        parser.error("too many shards for that size")

    machine = c.machine_info()
    c.print_machine(machine)
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        model = work / "model"
        started = time.perf_counter()
        shards = make_model(model, args.size_mib, args.shards, args.seed)
        total_bytes = sum(p.stat().st_size for p in shards)
        print(
            f"wrote {len(shards)} shards, {total_bytes} bytes in "
            f"{time.perf_counter() - started:.1f} s under {work}"
        )

        cli = c.run_timed([*c.modelseal_cmd(), "--help"], c.clean_env())  # warm the cache
        cli = c.run_timed([*c.modelseal_cmd(), "--help"], c.clean_env()).check()

        # each cycle stores the model twice (baseline + modelseal) in 256 MB volumes
        volumes = 40 + 3 * (2 * total_bytes * args.repeat) // (256 * c.MB)
        stack = c.Stack(work, storage="s3", seaweed_volume_max=volumes,
                        presign_downloads=True if args.presign else None)  # fmt: skip
        with stack:
            print(f"SeaweedFS S3 at {stack.seaweed.endpoint_url}, modelseal at {stack.url}")
            push_args = [] if args.unsigned else signing_args(stack, work)
            idle = stack.server_hwm()
            runs = []
            for cycle in range(1, args.repeat + 1):
                run = cycle_once(stack, model, shards, work, cycle, args.seed, push_args)
                runs.append(run)
                print(
                    f"cycle {cycle}: "
                    + ", ".join(f"{label} {run[key]['seconds']:.2f} s" for key, label, _ in PHASES),
                    flush=True,
                )
            peak_overall = max(
                idle["VmHWM"], stack.server_hwm()["VmHWM"],
                *(r[k]["server_hwm"] for r in runs for k in ("modelseal_push", "modelseal_pull")),
            )  # fmt: skip

    summary = summarize(runs, total_bytes)
    extra = {
        "shards": len(shards),
        "presign_downloads": stack.presign_downloads,
        "signed_push": not args.unsigned,
        "cli_startup_seconds": cli.seconds,
        "server_idle": idle,
        "server_peak_overall": peak_overall,
        "hwm_reset": all(
            r[k]["server_hwm_reset"] for r in runs for k in ("modelseal_push", "modelseal_pull")
        ),
    }
    print_results(summary, total_bytes, args.repeat, extra)
    if args.json:
        result = {
            "benchmark": "push_pull",
            "machine": machine,
            "params": {
                "size_mib": args.size_mib,
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
