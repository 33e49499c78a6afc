"""What the transparency log's checks add to a verified pull, on loopback (#21: < 20 ms).

    python3 -m bench.tlog_pull [--pulls 30] [--alias] [--json out.json]

Starts one ``modelseal serve`` (SQLite, local store) in a scratch directory, pushes and releases
a small model (a few hundred KiB: the pull's fixed costs dominate, as in a deploy job that pulls
a model already cached elsewhere), then in this one process, interleaved, ``--pulls`` times
each:

* **checked**: :meth:`RegistryClient.pull` as a deploy job runs it, with the log checks
  (:func:`registry.sdk.pull.check_log`: the version's ``/log`` answer, the checkpoint's
  signature and freshness, a consistency proof when the tree grew, the inclusion proof, the
  entry against the release bundle; with ``--alias`` the pull is of ``@prod`` and the alias's
  newest logged move is checked too);
* **bypassed**: the same pull with ``registry.sdk.pull.check_log`` replaced by a no-op (a
  monkeypatch in this bench only; the product has no such switch);
* **checks alone**: ``check_log`` by itself, as the pull calls it.

Every pull goes to a fresh target with ``durable=False`` (fsync would dominate and is the same
on both sides). The first pull of each kind is a warm-up (TOFU pinning, connection set-up) and
is not counted. Reported: median and p90 per kind, the difference, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

try:
    from bench import _common as c
except ModuleNotFoundError as missing:
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.tlog_pull")


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pulls", type=int, default=30)
    parser.add_argument("--alias", action="store_true", help="pull @prod (alias checks too)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", help="scratch directory base (default: a temporary one)")
    args = parser.parse_args()

    from registry.names import parse_ref
    from registry.sdk import pull as pull_module
    from registry.sdk.client import RegistryClient
    from registry.sdk.pins import PinStore

    with c.scratch_dir(args.workdir) as work, c.Stack(work, storage="local") as stack:
        model = work / "model"
        model.mkdir()
        (model / "config.json").write_text('{"architectures": ["Tiny"]}\n')
        import numpy as np
        from safetensors.numpy import save_file

        rng = np.random.default_rng(21)
        save_file({"w": rng.standard_normal((256, 256), dtype=np.float32)},
                  str(model / "model.safetensors"))  # fmt: skip
        env = stack.client_env()
        import subprocess

        subprocess.run([*c.modelseal_cmd(), "push", str(model), "bench/m@1", "--no-progress"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        stack.release("bench/m@1")
        ref = "bench/m@1"
        if args.alias:
            subprocess.run([*c.modelseal_cmd(), "alias", "set", "bench/m", "prod", "1"],
                           env=env, check=True, capture_output=True)  # fmt: skip
            ref = "bench/m@prod"
        client = RegistryClient(stack.url, stack.token)
        pins = PinStore(work / "client-config" / "pins.json")
        real_check = pull_module.check_log
        targets = work / "targets"
        targets.mkdir()
        times: dict[str, list[float]] = {"checked": [], "bypassed": [], "checks alone": []}

        def one(kind: str, n: int) -> float:
            target = targets / f"{kind.split()[0]}-{n}"
            t0 = time.perf_counter()
            if kind == "checks alone":
                version = client.show(ref)
                files = pull_module.verified_manifest(parse_ref(ref), version)
                digests = pull_module.verify_release(client, parse_ref(ref), version, files,
                                                     None, pins)  # fmt: skip
                t0 = time.perf_counter()
                real_check(client, parse_ref(ref), version, pins, digests)
            else:
                client.pull(ref, target, durable=False, pins=pins)
            seconds = time.perf_counter() - t0
            shutil.rmtree(target, ignore_errors=True)
            return seconds

        for n in range(args.pulls + 1):
            for kind in times:
                if kind == "bypassed":
                    pull_module.check_log = lambda *a, **k: None  # type: ignore[assignment]
                try:
                    seconds = one(kind, n)
                finally:
                    pull_module.check_log = real_check
                if n:  # the first round warms up (pins, connections)
                    times[kind].append(seconds)
        client.close()

    rows = []
    result: dict[str, Any] = {"pulls": args.pulls, "ref": ref, "machine": c.machine_info()}
    for kind, values in times.items():
        result[kind] = {"median_ms": statistics.median(values) * 1000,
                        "p90_ms": _p90(values) * 1000}  # fmt: skip
        rows.append([kind, f"{result[kind]['median_ms']:.1f}", f"{result[kind]['p90_ms']:.1f}"])
    added = result["checked"]["median_ms"] - result["bypassed"]["median_ms"]
    result["added_ms"] = added
    result["ratio"] = result["checked"]["median_ms"] / result["bypassed"]["median_ms"]
    c.print_machine(result["machine"])
    c.print_table(["pull of " + ref, "median ms", "p90 ms"], rows)
    print(f"added by the log checks: {added:.1f} ms per pull (median); checked/bypassed "
          f"ratio {result['ratio']:.2f}; target < 20 ms")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
