"""Verify a local model directory against its OMS bundle: modelseal vs the model_signing CLI.

    python3 -m bench.verify_oms [--size-mib 2048] [--files 8] [--repeat 3]

Both tools run as child processes on the same directory, same bundle, same key, in one run, in
alternating order (the files stay in the page cache, so this measures hashing + verification, not
the disk). Also timed in-process: verifying one bundle's signature and statement, and building +
signing an OMS statement from known digests (what a signed push does: no file is read again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from attest import keys
from attest.bundle import Bundle
from attest.files import file_set, hash_files
from attest.keys import TrustedKey
from attest.oms import oms_statement
from attest.signing import KeySigner
from attest.verifying import Verifier

try:
    from bench import _common as c
except ModuleNotFoundError as missing:  # run as a file: the repository root is not importable
    if missing.name != "bench":
        raise
    sys.exit("run it from the repository root as a module: python3 -m bench.verify_oms")


def make_files(root: Path, total_mib: int, count: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    per_file = total_mib * c.MiB // count
    for i in range(count):
        floats = per_file // 4
        save_file(
            {"w": rng.standard_normal(floats, dtype=np.float32)},
            str(root / f"model-{i:05d}-of-{count:05d}.safetensors"),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp-dir", help="scratch location (default: $TMPDIR)")
    args = parser.parse_args()
    c.print_machine(c.machine_info())
    with c.scratch_dir(args.tmp_dir) as work:
        model = work / "model"
        model.mkdir()
        make_files(model, args.size_mib, args.files)
        private, public = keys.write_keypair(work / "signer", keys.generate())
        signer = KeySigner.from_file(private)

        started = time.perf_counter()
        digests = hash_files(file_set(model).files)
        first_hash = time.perf_counter() - started
        signature = work / "model.sig"
        signature.write_bytes(signer.sign(oms_statement("bench/model", digests)).raw)

        env = c.clean_env()
        ms_cmd = [sys.executable, "-m", "model_signing", "verify", "key",
                  "--public_key", str(public), "--signature", str(signature),
                  str(model)]  # fmt: skip
        ours_cmd = [*c.modelseal_cmd(), "verify-signature", str(model),
                    "--signature", str(signature), "--key", str(public)]  # fmt: skip
        theirs, ours = [], []
        for _ in range(args.repeat):
            theirs.append(c.run_timed(ms_cmd, env).check().seconds)
            ours.append(c.run_timed(ours_cmd, env).check().seconds)

        verifier = Verifier(keys=[TrustedKey("signer", signer.public_key)])
        raw = signature.read_bytes()
        rounds = 300
        started = time.perf_counter()
        for _ in range(rounds):
            verifier.verify(Bundle.parse(raw))
        per_bundle_ms = (time.perf_counter() - started) / rounds * 1000
        started = time.perf_counter()
        for _ in range(rounds):
            signer.sign(oms_statement("bench/model", digests))
        per_sign_ms = (time.perf_counter() - started) / rounds * 1000

    total = args.size_mib * c.MiB
    t_ms, t_ours = statistics.median(theirs), statistics.median(ours)
    print(
        f"\n{args.files} files, {args.size_mib} MiB; median of {args.repeat}; files in page cache"
    )
    c.print_table(
        ["verifier", "seconds", "MB/s", "vs model_signing"],
        [
            ["model_signing verify key", f"{t_ms:.2f}", f"{total / t_ms / c.MB:.0f}", "(baseline)"],
            ["modelseal verify-signature", f"{t_ours:.2f}", f"{total / t_ours / c.MB:.0f}",
             f"{t_ours / t_ms:.2f}x"],
        ],
    )  # fmt: skip
    print(f"in-process hash of the directory (first read, {os.cpu_count()} threads): "
          f"{first_hash:.2f} s")  # fmt: skip
    print(f"verify one bundle (parse + signature + statement): {per_bundle_ms:.2f} ms")
    print(f"sign an OMS statement from known digests (no file read): {per_sign_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
