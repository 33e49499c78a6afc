"""How long does scanning take on large models, against reading them once, in the same run?

    python3 -m bench.scan [--safetensors-mib 2048] [--torch-mib 1024] [--hdf5-mib 256]
                          [--repeat 3] [--compare-rev GIT_REV]

Three models are written once: a safetensors model (four shards), a PyTorch-style zip
checkpoint (``archive/data.pkl`` with allowlisted globals plus one stored member per tensor, as
``torch.save`` writes it) and a Keras-2-style HDF5 file written with h5py (a ``model_config``,
float32 weights, uint8 and int16 arrays of small integers such as labels; the HDF5 reading
searches every byte, so it is the slow case). Each is scanned in-process with
``attest.scan.scan_directory`` (median of ``--repeat``), and the baseline is one sha256 pass
over the same files (what a push pays anyway), so the ratio says what scanning adds. With
``--compare-rev``, the scanner of that git revision scans the same files in a child process (a
temporary worktree), so old and new rules are timed in one run. The files stay in the page
cache: this measures the scanner, not the disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def make_safetensors(root: Path, total_mib: int, shards: int = 4) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    for i in range(shards):
        floats = total_mib * MiB // shards // 4
        save_file({"w": rng.standard_normal(floats, dtype=np.float32)},
                  str(root / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))  # fmt: skip


def make_torch_zip(path: Path, total_mib: int, tensors: int = 16) -> None:
    from tests.scan_corpus import benign_torch_pickle

    piece = os.urandom(total_mib * MiB // tensors)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", benign_torch_pickle())
        archive.writestr("archive/byteorder", "little")
        for i in range(tensors):
            archive.writestr(f"archive/data/{i}", piece)
        archive.writestr("archive/version", "3\n")


def make_hdf5(path: Path, total_mib: int) -> None:
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    quarter = total_mib * MiB // 4
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "Dense", "config": {"units": 4}}]}}  # fmt: skip
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f["model_weights/dense/kernel:0"] = rng.standard_normal(quarter // 2, dtype=np.float32)
        f["labels/uint8"] = rng.integers(0, 10, quarter, dtype=np.uint8)
        f["labels/int16"] = rng.integers(0, 10, quarter // 2, dtype=np.int16)


def sha256_pass(root: Path) -> float:
    started = time.perf_counter()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(8 * MiB):
                    digest.update(chunk)
    return time.perf_counter() - started


_CHILD = """
import sys, time
from pathlib import Path
from attest.scan import scan_directory
import attest.scan.core
started = time.perf_counter()
report = scan_directory(Path(sys.argv[1]))
print(time.perf_counter() - started)
"""


def scan_here(root: Path) -> tuple[float, str]:
    import attest.scan.readings  # noqa: F401  (imports are not part of the scan's time)
    from attest.scan import scan_directory

    started = time.perf_counter()
    report = scan_directory(root)
    elapsed = time.perf_counter() - started
    verdicts = sorted({f"{f.format}:{f.verdict}" for f in report.files})
    return elapsed, ",".join(verdicts)


def scan_at(worktree: Path, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root)], env=env, check=True,
                          capture_output=True, text=True, cwd=worktree)  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--safetensors-mib", type=int, default=2048)
    parser.add_argument("--torch-mib", type=int, default=1024)
    parser.add_argument("--hdf5-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare-rev", help="also time the scanner of this git revision")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="modelseal-scan-bench-") as tmp:
        models = {"safetensors": Path(tmp) / "safetensors", "pytorch-zip": Path(tmp) / "torch",
                  "hdf5": Path(tmp) / "hdf5"}  # fmt: skip
        for path in models.values():
            path.mkdir()
        make_safetensors(models["safetensors"], args.safetensors_mib)
        make_torch_zip(models["pytorch-zip"] / "pytorch_model.bin", args.torch_mib)
        make_hdf5(models["hdf5"] / "model.h5", args.hdf5_mib)
        worktree = None
        if args.compare_rev:
            worktree = Path(tmp) / "old"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                            args.compare_rev], check=True, capture_output=True)  # fmt: skip
        try:
            for name, root in models.items():
                sha, scans, old = [], [], []
                verdicts = ""
                for _ in range(args.repeat):
                    sha.append(sha256_pass(root))
                    elapsed, verdicts = scan_here(root)
                    scans.append(elapsed)
                    if worktree is not None:
                        old.append(scan_at(worktree, root))
                row: dict[str, object] = {
                    "sha256_s": statistics.median(sha),
                    "scan_s": statistics.median(scans),
                    "scan_spread_s": [min(scans), max(scans)],
                    "scan_vs_sha256": statistics.median(scans) / statistics.median(sha),
                    "verdicts": verdicts,
                }
                if old:
                    row["old_scan_s"] = statistics.median(old)
                    row["scan_vs_old"] = statistics.median(scans) / max(statistics.median(old),
                                                                         1e-9)  # fmt: skip
                results[name] = row
        finally:
            if worktree is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(worktree)], check=False, capture_output=True)  # fmt: skip
    for name, row in results.items():
        line = (f"{name:12} scan {row['scan_s']:.3f} s  sha256 pass {row['sha256_s']:.3f} s  "
                f"scan/sha256 {row['scan_vs_sha256']:.3f}x")  # fmt: skip
        if "old_scan_s" in row:
            line += f"  old scanner {row['old_scan_s']:.3f} s  new/old {row['scan_vs_old']:.2f}x"
        print(f"{line}  [{row['verdicts']}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
