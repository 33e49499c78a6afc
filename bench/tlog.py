"""The release log's Merkle tree: appending, tiles, proofs, against plain SHA-256 in the same run.

    python3 -m bench.tlog [--entries 100000] [--checkpoint-every 1000] [--proofs 1000]
                          [--entry-bytes 300] [--seed 21] [--json out.json]

In one process, with ``attest.tlog`` and ``attest.note`` only (no server, no database):

* **baseline**: SHA-256 of every entry (what storing the entries content-addressed costs
  anyway), and per proof, one SHA-256 of one entry.
* **append**: every entry appended to a :class:`attest.tlog.MemoryTree` (its leaf hash and the
  node hashes each append completes); **tiles**: at every ``--checkpoint-every`` entries, the
  tiles that changed (:func:`attest.tlog.new_tiles`) built and stored in a dict, with their
  entry bundles, as a log writing tiles to its blob store would. Reported per entry and as a
  ratio to the baseline.
* **storage**: the bytes of the final full and partial hash tiles per entry, what was written in
  all (partial tiles are rewritten as they widen), and the entry bundles' overhead.
* **proofs** (``--proofs`` random ones against the final tree, median and p99 per proof):
  inclusion and consistency generation on the server (from the in-memory tree), generation by a
  client from tiles alone (a fresh :class:`attest.tlog.TileHashReader` per proof, so the tile
  look-ups count; dict reads, no network), and verification. Consistency proofs start from a
  random earlier checkpoint size. A signed checkpoint's verification (one Ed25519 signature, the
  note parsed) is timed too, as the other half of what a client checks per pull.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    sys.exit("run it as a module from the repository root: python3 -m bench.tlog")

from cryptography.hazmat.primitives.asymmetric import ed25519

from attest import note, tlog
from bench._common import print_table


def _timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Seconds of each of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=1000)
    parser.add_argument("--entry-bytes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    n = args.entries
    entries = [rng.randbytes(args.entry_bytes) for _ in range(n)]

    # -- baseline: one SHA-256 per entry
    t0 = time.perf_counter()
    for entry in entries:
        hashlib.sha256(entry).digest()
    baseline = time.perf_counter() - t0

    # -- append and tiles, checkpoint by checkpoint
    tree = tlog.MemoryTree()
    store: dict[str, bytes] = {}
    written = 0
    append_s = tiles_s = 0.0
    checkpoints = [0]
    for start in range(0, n, args.checkpoint_every):
        batch = entries[start : start + args.checkpoint_every]
        t0 = time.perf_counter()
        for entry in batch:
            tree.append(entry)
        t1 = time.perf_counter()
        for tile in tlog.new_tiles(checkpoints[-1], tree.size):
            data = tlog.tile_data(tile, tree)
            store[tile.path()] = data
            written += len(data)
            if tile.level == 0:
                first = tile.index * tlog.TILE_WIDTH
                bundle = tlog.entry_bundle(entries[first : first + tile.width])
                store[tile.entries_path()] = bundle
        tiles_s += time.perf_counter() - t1
        append_s += t1 - t0
        checkpoints.append(tree.size)
    final = tlog.tiles_for_size(n)
    tile_bytes = sum(t.byte_size for t in final)
    bundle_bytes = sum(len(store[t.entries_path()]) for t in final if t.level == 0)

    # -- proofs against the final tree
    root = tree.root()
    leaves = tree.read_leaf_hashes(0, n)
    indexes = [rng.randrange(n) for _ in range(args.proofs)]
    olds = [rng.choice(checkpoints[1:-1] or [1]) for _ in range(args.proofs)]

    def source(tile: tlog.Tile) -> bytes:
        return store[tile.path()]

    server_incl, client_incl, verify_incl, tiles_read = [], [], [], []
    for index in indexes:
        t0 = time.perf_counter()
        proof = tree.inclusion_proof(index, n)
        t1 = time.perf_counter()
        reader = tlog.TileHashReader(n, source)
        from_tiles = tlog.inclusion_proof(index, n, reader)
        t2 = time.perf_counter()
        tlog.verify_inclusion(index, n, leaves[index], from_tiles, root)
        t3 = time.perf_counter()
        assert proof == from_tiles
        server_incl.append(t1 - t0)
        client_incl.append(t2 - t1)
        verify_incl.append(t3 - t2)
        tiles_read.append(reader.fetched)
    server_cons, client_cons, verify_cons = [], [], []
    old_roots = {old: tree.root(old) for old in set(olds)}
    for old in olds:
        t0 = time.perf_counter()
        proof = tree.consistency_proof(old, n)
        t1 = time.perf_counter()
        from_tiles = tlog.consistency_proof(old, n, tlog.TileHashReader(n, source))
        t2 = time.perf_counter()
        tlog.verify_consistency(old, n, old_roots[old], root, from_tiles)
        t3 = time.perf_counter()
        assert proof == from_tiles
        server_cons.append(t1 - t0)
        client_cons.append(t2 - t1)
        verify_cons.append(t3 - t2)
    one_hash = _timed(lambda: hashlib.sha256(entries[0]).digest(), args.proofs)

    signer = note.NoteSigner("bench.example/log", ed25519.Ed25519PrivateKey.generate())
    signed = note.sign_checkpoint(note.Checkpoint(signer.name, n, root, int(time.time())), signer)
    checkpoint_verify = _timed(
        lambda: note.verify_checkpoint(signed, [signer.verifier], max_age=86400),
        args.proofs // 4 or 1,
    )

    # -- report
    us = 1e6
    base_hash = statistics.median(one_hash)
    print(
        f"tlog bench: {n} entries of {args.entry_bytes} B, a checkpoint every "
        f"{args.checkpoint_every}, {args.proofs} proofs; python {platform.python_version()}, "
        f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}"
    )
    print()
    print_table(
        ["bulk", "seconds", "us/entry", "vs SHA-256"],
        [
            ["SHA-256 of each entry (baseline)", f"{baseline:.3f}", f"{baseline / n * us:.2f}",
             "1.00"],
            ["append (leaf + node hashes)", f"{append_s:.3f}", f"{append_s / n * us:.2f}",
             f"{append_s / baseline:.2f}"],
            ["tiles + entry bundles", f"{tiles_s:.3f}", f"{tiles_s / n * us:.2f}",
             f"{tiles_s / baseline:.2f}"],
            ["append + tiles", f"{append_s + tiles_s:.3f}", f"{(append_s + tiles_s) / n * us:.2f}",
             f"{(append_s + tiles_s) / baseline:.2f}"],
        ],
    )  # fmt: skip
    print()
    rows = []
    for name, values in (
        ("SHA-256 of one entry (baseline)", one_hash),
        ("inclusion: server, in memory", server_incl),
        ("inclusion: client, from tiles", client_incl),
        ("inclusion: verify", verify_incl),
        ("consistency: server, in memory", server_cons),
        ("consistency: client, from tiles", client_cons),
        ("consistency: verify", verify_cons),
        ("checkpoint: open + Ed25519 verify", checkpoint_verify),
    ):
        median = statistics.median(values)
        rows.append([name, f"{median * us:.1f}", f"{_p99(values) * us:.1f}",
                     f"{median / base_hash:.0f}"])  # fmt: skip
    print_table(["per proof", "median us", "p99 us", "vs one SHA-256"], rows)
    print()
    print(
        f"storage: {tile_bytes / n:.2f} B of hash tiles per entry ({len(final)} tiles, "
        f"{tile_bytes / 2**20:.2f} MiB; {written / n:.2f} B/entry written in all, partial tiles "
        f"included); entry bundles {bundle_bytes / n:.2f} B/entry for {args.entry_bytes} B "
        f"entries; a client reads {statistics.median(tiles_read):.0f} tiles per inclusion proof"
    )
    if args.json:
        figures: dict[str, Any] = {
            "entries": n,
            "entry_bytes": args.entry_bytes,
            "checkpoint_every": args.checkpoint_every,
            "baseline_s": baseline,
            "append_s": append_s,
            "tiles_s": tiles_s,
            "tile_bytes_per_entry": tile_bytes / n,
            "written_bytes_per_entry": written / n,
            "bundle_bytes_per_entry": bundle_bytes / n,
            "per_proof_median_us": {row[0]: float(row[1]) for row in rows},
        }
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
