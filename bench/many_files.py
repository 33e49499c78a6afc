"""How long do the push, the commit and the ML-BOM of a model of many small files take?

    python3 -m bench.many_files [--files 20000] [--repeat 3] [--storage local|s3]
                                [--database sqlite|postgres] [--json FILE]

Starts one ``modelseal serve`` (``bench._common.Stack``; by default the embedded default, SQLite
and a local blob directory, as users get it), then per cycle pushes a new version
``bench/many@N`` of ``--files`` small JSON files (about 100 bytes each, 200 per directory; each
file names its cycle, so every push uploads blobs the registry has not seen) with the SDK in this
process, unsigned, and measures:

* **push**: ``RegistryClient.push`` from start to return (hashing, the uploads: files of at
  most 1 MiB many to a request, ``POST /v1/namespaces/{ns}/blobs``; the commit);
* **commit**: the ``PUT .../versions/V`` request inside it (the manifest, and whatever the
  server does before it answers; a version of more than ``scan_inline_max_files`` files, 1,000
  by default, is committed ``scanning`` and scanned after the answer);
* **scan recorded after commit**: the ``created_at`` of the version's registry scan report
  (a scan inside the commit request: 0);
* **BOM after commit** / **BOM after push start**: until the BOM was recorded: the
  ``created_at`` of the version's first BOM attestation (the server's clock, the same machine's),
  found by asking ``GET .../versions/V/attestations?predicate_type=https://cyclonedx.org/bom``
  with a bare ``httpx`` client as clients do: again after ``Retry-After`` while it answers 503
  (pending). A BOM built inside the commit request is there before the commit answered: 0. Each
  ask reads the version, which for 20,000 files is not free: asking every few milliseconds
  would slow the build it waits for;
* **baseline, same run**: the same manifest committed again right after the BOM is there
  (answered 200: the version exists, nothing is scanned or built), i.e. what the manifest itself
  costs the commit request. **commit / baseline** is the ratio printed;
* **server CPU** seconds from the commit's start until the BOM was found (the commit, the scan,
  the BOM, and the asks);
* **pull**: ``RegistryClient.pull(..., unsafe_skip_verify=True)`` of the version just pushed
  (it is unsigned, so there is no evidence to verify; every file's size and digest is still
  checked against the manifest): the files of at most 1 MiB many to a request,
  ``POST .../versions/{v}/files``, written durably;
  **baseline, same run**: ``shutil.copytree`` of the pushed directory on the same disk, and
  **pull / copy** is the ratio printed.

Each figure is the median of ``--repeat`` cycles (default 3), with the spread (min-max). The
first cycle also pays the server's first use of the CycloneDX schema validator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

try:
    from bench import _common as c
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.many_files")

NAMESPACE = "bench"
ARTIFACT = "many"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
SCAN = "https://modelseal.dev/attestation/scan/v1"
PER_DIRECTORY = 200
POLL_SECONDS = 1.0
BOM_TIMEOUT = 1800.0


def write_model(root: Path, files: int, cycle: int) -> None:
    for i in range(files):
        directory = root / f"layer-{i // PER_DIRECTORY:04d}"
        if i % PER_DIRECTORY == 0:
            directory.mkdir(parents=True, exist_ok=True)
        body = {"cycle": cycle, "index": i, "weights": [i % 7, i % 11, i % 13], "bias": 0.5}
        (directory / f"part-{i:06d}.json").write_text(json.dumps(body) + "\n")


def wait_for_bom(http: Any, path: str) -> tuple[float, int]:
    """Ask until the version's BOM is listed, as a client does (after ``Retry-After`` while
    pending); (wall-clock time it was recorded, asks)."""
    deadline = time.monotonic() + BOM_TIMEOUT
    asks = 0
    while time.monotonic() < deadline:
        asks += 1
        response = http.get(path, params={"predicate_type": CYCLONEDX_BOM})
        if response.status_code == 200 and response.json():
            return datetime.fromisoformat(response.json()[0]["created_at"]).timestamp(), asks
        if response.status_code == 503:
            time.sleep(float(response.headers.get("Retry-After", POLL_SECONDS)))
        elif response.status_code == 200:  # listed, none yet (no pending status to wait on)
            time.sleep(POLL_SECONDS)
        else:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
    raise RuntimeError(f"no ML-BOM after {BOM_TIMEOUT:.0f} s")


def cycle(stack: c.Stack, work: Path, files: int, number: int) -> dict[str, Any]:
    import httpx

    from registry.names import Kind
    from registry.sdk.client import RegistryClient

    root = work / f"model-{number}"
    write_model(root, files, number)
    version = str(number)
    ref = f"{NAMESPACE}/{ARTIFACT}@{version}"
    path = f"/v1/namespaces/{NAMESPACE}/artifacts/{ARTIFACT}/versions/{version}/attestations"
    timings: dict[str, float] = {}
    with (
        RegistryClient(stack.url, stack.token) as client,
        httpx.Client(base_url=stack.url, timeout=600,
                     headers={"Authorization": f"Bearer {stack.token}"}) as http,
    ):  # fmt: skip
        commit = client.commit_version
        manifest: list[Any] = []

        def timed_commit(ref: str, kind: Kind, digests: Any) -> Any:
            manifest[:] = list(digests)
            timings["cpu_before"] = c.cpu_seconds(stack.server_pid)
            timings["commit_start"] = time.time()
            try:
                return commit(ref, kind, digests)
            finally:
                timings["commit_end"] = time.time()

        client.commit_version = timed_commit  # type: ignore[method-assign]
        started = time.time()
        client.push(root, ref)
        pushed = time.time()
        recorded, asks = wait_for_bom(http, path)
        scans = http.get(path, params={"predicate_type": SCAN}).json()
        scanned = datetime.fromisoformat(scans[0]["created_at"]).timestamp()
        server_cpu = c.cpu_seconds(stack.server_pid) - timings["cpu_before"]
        again = time.perf_counter()
        commit(ref, Kind.MODEL, manifest)  # the version exists: answered 200, nothing built
        baseline = time.perf_counter() - again
        pulling = time.perf_counter()
        with warnings.catch_warnings():  # the UNSAFE warning: the push was unsigned
            warnings.simplefilter("ignore")
            client.pull(ref, work / f"pulled-{number}", unsafe_skip_verify=True)
        pulled = time.perf_counter() - pulling
    copying = time.perf_counter()
    shutil.copytree(root, work / f"copied-{number}")
    copied = time.perf_counter() - copying
    shutil.rmtree(work / f"pulled-{number}")
    shutil.rmtree(work / f"copied-{number}")
    return {
        "push": pushed - started,
        "commit": timings["commit_end"] - timings["commit_start"],
        "scan_after_commit": max(0.0, scanned - timings["commit_end"]),
        "bom_after_commit": max(0.0, recorded - timings["commit_end"]),
        "bom_after_push_start": max(recorded, timings["commit_end"]) - started,
        "bom_asks": asks,
        "baseline_commit": baseline,
        "server_cpu": server_cpu,
        "pull": pulled,
        "copy": copied,
    }


KEYS = (
    ("push", "push (hash + upload + commit)"),
    ("commit", "commit request"),
    ("scan_after_commit", "scan recorded, after the commit answered"),
    ("bom_after_commit", "BOM there, after the commit answered"),
    ("bom_after_push_start", "BOM there, after the push started"),
    ("baseline_commit", "baseline: the same manifest again"),
    ("server_cpu", "server CPU, commit to BOM"),
    ("pull", "pull (digests checked, durable)"),
    ("copy", "baseline: copytree of the pushed directory"),
)


def report(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    rows = []
    for key, label in KEYS:
        values = [cy[key] for cy in cycles]
        summary[key] = {"median": c.median(values), "min": min(values), "max": max(values)}
        rows.append([label, f"{c.median(values):.2f}", f"{min(values):.2f}-{max(values):.2f}"])
    ratios = [cy["commit"] / cy["baseline_commit"] for cy in cycles]
    summary["commit_vs_baseline"] = {"median": c.median(ratios), "min": min(ratios),
                                     "max": max(ratios)}  # fmt: skip
    rows.append(["commit / baseline", f"{c.median(ratios):.1f}x",
                 f"{min(ratios):.1f}-{max(ratios):.1f}x"])  # fmt: skip
    pulls = [cy["pull"] / cy["copy"] for cy in cycles]
    summary["pull_vs_copy"] = {"median": c.median(pulls), "min": min(pulls), "max": max(pulls)}
    rows.append(["pull / copy", f"{c.median(pulls):.1f}x",
                 f"{min(pulls):.1f}-{max(pulls):.1f}x"])  # fmt: skip
    c.print_table(["seconds", "median", "spread"], rows)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="cycles (median and spread)")
    parser.add_argument("--storage", choices=("local", "s3"), default="local")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--tmp-dir", help="where the scratch directory goes (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    if args.files < 1 or args.repeat < 1:
        parser.error("--files and --repeat must be positive")

    machine = c.machine_info()
    c.print_machine(machine)
    cycles: list[dict[str, Any]] = []
    with c.terminate_as_interrupt(), c.scratch_dir(args.tmp_dir, args.keep) as work:
        os.environ["MODELSEAL_CONFIG_DIR"] = str(work / "client-config")  # pins of this run
        stack = c.Stack(work, storage=args.storage, database=args.database)
        with stack:
            print(f"{args.files} files, {args.storage} storage, {args.database}; "
                  f"{stack.url}", flush=True)  # fmt: skip
            for number in range(1, args.repeat + 1):
                try:
                    result = cycle(stack, work, args.files, number)
                except Exception:
                    print(stack.tail_log(), file=sys.stderr)
                    raise
                cycles.append(result)
                shown = (f"{k} {v:.2f}" for k, v in result.items() if k != "bom_asks")
                print(f"  cycle {number}: " + ", ".join(shown), flush=True)
    summary = report(cycles)
    if args.json:
        args.json.write_text(json.dumps({
            "machine": machine, "cycles": cycles, "summary": summary,
            "options": {k: str(v) for k, v in vars(args).items()},
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
