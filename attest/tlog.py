"""A transparency log's Merkle tree: RFC 9162 hashing and proofs, and C2SP tlog-tiles.

Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1), SHA-256 throughout::

    leaf hash   SHA-256(0x00 || entry)
    node hash   SHA-256(0x01 || left || right)
    MTH(D[n])   the Merkle Tree Hash of n leaves: SHA-256("") for n = 0, the leaf hash for n = 1,
                else node(MTH(D[0:k]), MTH(D[k:n])) with k the largest power of two below n

A :class:`Node` ``(level, index)`` names a complete subtree: the MTH of the ``2**level`` leaves
from ``index * 2**level``. Every proof is made of such subtrees (or right edges folded from
them), so proofs are generated from a :class:`HashReader`, which hands out the hashes of
complete subtrees by node: :class:`MemoryTree` keeps all of them in memory,
:class:`LeafHashesReader` computes them from leaf hashes read by range (a database table of leaf
hashes, say), and :class:`TileHashReader` reads them from C2SP tlog-tiles, so that a client or a
static server can prove from tiles alone. Hashes a reader returns are not trusted by anything in
this module: a proof built from them only counts once it verifies against a signed root.

Proofs (RFC 9162 §2.1.3 inclusion, §2.1.4 consistency) are lists of 32-byte hashes in the
RFC's order; :func:`verify_inclusion` and :func:`verify_consistency` follow the RFC's
verification algorithms and raise :class:`ProofError`, naming the proof and the cause, when a
proof does not verify. Consistency from the empty tree, and between equal sizes, is the empty
proof (C2SP tlog-witness relies on both).

Tiles (C2SP tlog-tiles): tile ``(L, N)`` holds up to 256 hashes of level ``8 * L`` nodes, those
of nodes ``N * 256 ...``; it is full with 256 of them and partial (``.p/<W>``) otherwise.
:func:`tiles_for_size` lists the tiles of a tree, :func:`new_tiles` those that change when it
grows, :func:`tile_data` reads a tile's bytes from a reader, :func:`parse_tile_path` reads a
path back strictly, and entry bundles (``tile/entries/...``, uint16-length-prefixed entries)
are built and parsed by :func:`entry_bundle` and :func:`parse_entry_bundle`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from attest.errors import AttestError, VerificationError

HASH_SIZE = 32
TILE_HEIGHT = 8  # levels of the tree per tile level (C2SP tlog-tiles)
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes in a full tile
MAX_TILE_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # entry bundles prefix each entry with a big-endian uint16 length
MAX_TREE_SIZE = (1 << 63) - 1  # tree sizes and indexes are uint64 on the wire; keep them signed
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH of the empty tree (RFC 9162 §2.1.1)


class LogError(AttestError):
    """Base class of the errors of this module."""


class LogRequestError(LogError, ValueError):
    """A proof or tile was asked for that the tree cannot have (an index past its size…)."""


class ProofError(LogError, VerificationError):
    """An inclusion or consistency proof does not verify; the message names both sizes."""


class TileError(LogError):
    """A tile path, a tile's bytes or an entry bundle is malformed, or a tile is missing."""


# -- hashing -----------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given (any count, SHA-256("") for none)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        # Pairing left to right and carrying an odd last hash up unchanged gives the RFC's
        # split at the largest power of two: that carried hash is the right edge's subtree.
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


@dataclass(frozen=True, slots=True)
class Node:
    """A complete subtree: the MTH of leaves ``[index * 2**level, (index + 1) * 2**level)``."""

    level: int
    index: int

    def __str__(self) -> str:
        return f"node (level {self.level}, index {self.index})"

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


def subtrees(start: int, end: int) -> list[Node]:
    """The complete subtrees that make up the range ``[start, end)``, left to right, largest
    first, each as large as its alignment allows. For the ranges RFC 9162 proofs use (and for
    ``[0, size)``) the range's MTH is these nodes' hashes folded from the right."""
    if not 0 <= start <= end:
        raise LogRequestError(f"no leaf range [{start}, {end})")
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Fold subtree hashes from the right: ``node(h0, node(h1, … node(hn-1, hn)))``."""
    if not hashes:
        raise LogRequestError("nothing to fold")
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        shown = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise LogRequestError(f"{what} must be {HASH_SIZE} bytes, not {shown}")


def _check_size(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TREE_SIZE:
        raise LogRequestError(f"{what} must be an integer in [0, 2**63), not {value!r}")


# -- hash sources ------------------------------------------------------------------------------


class HashReader(Protocol):
    """Where proofs and tiles get their hashes: the hash of each complete subtree asked for.

    Implementations may raise :class:`LogError` (or a subclass) for a node they cannot give;
    they must return exactly one 32-byte hash per node, in the order asked."""

    def read_node_hashes(self, nodes: Sequence[Node]) -> Sequence[bytes]: ...


class LeafReader(Protocol):
    """A store of leaf hashes readable by range (``end`` exclusive)."""

    def read_leaf_hashes(self, start: int, end: int) -> Sequence[bytes]: ...


def _read(reader: HashReader, nodes: Sequence[Node]) -> list[bytes]:
    hashes = list(reader.read_node_hashes(nodes))
    if len(hashes) != len(nodes):
        raise LogError(f"the hash reader returned {len(hashes)} hashes for {len(nodes)} nodes")
    for node, value in zip(nodes, hashes, strict=True):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise LogError(f"the hash reader returned a malformed hash for {node}")
    return hashes


class LeafHashesReader:
    """A :class:`HashReader` over a :class:`LeafReader`: each node's hash is computed from its
    leaves (a node at level ``l`` reads ``2**l`` leaf hashes). Fine for small trees and tests;
    a large log should store tiles or node hashes."""

    def __init__(self, leaves: LeafReader) -> None:
        self._leaves = leaves

    def read_node_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        out = []
        for node in nodes:
            hashes = list(self._leaves.read_leaf_hashes(node.start, node.end))
            if len(hashes) != node.end - node.start:
                raise LogError(
                    f"leaves [{node.start}, {node.end}) are not all stored ({len(hashes)} read)"
                )
            out.append(root_of(hashes))
        return out


class MemoryTree:
    """A whole tree in memory: every complete subtree's hash, kept as leaves are appended
    (about two hashes per leaf). A :class:`HashReader` and :class:`LeafReader`."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append_leaf_hash(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, entry: bytes) -> int:
        """Append an entry; returns its index."""
        return self.append_leaf_hash(leaf_hash(entry))

    def append_leaf_hash(self, value: bytes) -> int:
        """Append a leaf by its hash; returns its index."""
        _check_hash(value, "a leaf hash")
        index = len(self._levels[0])
        self._levels[0].append(bytes(value))
        level = 0
        while len(self._levels[level]) % 2 == 0:  # a subtree of this level just completed
            row = self._levels[level]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1
        return index

    def read_node_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        out = []
        for node in nodes:
            level, index = node.level, node.index
            if not 0 <= level < len(self._levels) or not 0 <= index < len(self._levels[level]):
                raise LogRequestError(f"{node} is not in a tree of size {self.size}")
            out.append(self._levels[level][index])
        return out

    def read_leaf_hashes(self, start: int, end: int) -> list[bytes]:
        if not 0 <= start <= end <= self.size:
            raise LogRequestError(f"leaves [{start}, {end}) are not in a tree of size {self.size}")
        return self._levels[0][start:end]

    def root(self, size: int | None = None) -> bytes:
        return root_hash(self.size if size is None else size, self, stored_size=self.size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        return inclusion_proof(index, size, self, stored_size=self.size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        return consistency_proof(old_size, new_size, self, stored_size=self.size)


# -- proofs: generation ------------------------------------------------------------------------


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up the inclusion proof of ``index`` in a tree of ``size``
    (RFC 9162 §2.1.3.1 PATH), in the proof's order (from the leaf up)."""
    _check_size(index, "the leaf index")
    _check_size(size, "the tree size")
    if index >= size:
        raise LogRequestError(f"inclusion proof of index {index}: not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up the consistency proof from ``old_size`` to
    ``new_size`` (RFC 9162 §2.1.4.1 SUBPROOF), in the proof's order. Empty when
    ``old_size`` is 0 or equal to ``new_size``."""
    _check_size(old_size, "the old tree size")
    _check_size(new_size, "the new tree size")
    if old_size > new_size:
        raise LogRequestError(
            f"consistency proof from size {old_size} to {new_size}: the new tree is smaller"
        )
    if old_size == 0 or old_size == new_size:
        return []
    ranges: list[tuple[int, int]] = []
    start, m, n, complete = 0, old_size, new_size, True
    while m != n:
        k = _largest_power_of_two_below(n)
        if m <= k:
            ranges.append((start + k, start + n))
            n = k
        else:
            ranges.append((start, start + k))
            start, m, n, complete = start + k, m - k, n - k, False
    if not complete:
        ranges.append((start, start + m))
    ranges.reverse()
    return ranges


def _range_hashes(ranges: Sequence[tuple[int, int]], reader: HashReader) -> list[bytes]:
    parts = [subtrees(a, b) for a, b in ranges]
    flat = [node for nodes in parts for node in nodes]
    hashes = _read(reader, flat)
    out, at = [], 0
    for nodes in parts:
        out.append(fold(hashes[at : at + len(nodes)]))
        at += len(nodes)
    return out


def _check_stored(size: int, stored_size: int | None, what: str) -> None:
    if stored_size is not None and size > stored_size:
        raise LogRequestError(f"{what}: the log holds only {stored_size} entries")


def root_hash(size: int, reader: HashReader, *, stored_size: int | None = None) -> bytes:
    """MTH of the first ``size`` leaves, from complete-subtree hashes."""
    _check_size(size, "the tree size")
    _check_stored(size, stored_size, f"root of size {size}")
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes([(0, size)], reader)[0]


def inclusion_proof(
    index: int, size: int, reader: HashReader, *, stored_size: int | None = None
) -> list[bytes]:
    """RFC 9162 §2.1.3.1: the inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    ranges = inclusion_ranges(index, size)
    _check_stored(size, stored_size, f"inclusion proof of index {index} in size {size}")
    return _range_hashes(ranges, reader)


def consistency_proof(
    old_size: int, new_size: int, reader: HashReader, *, stored_size: int | None = None
) -> list[bytes]:
    """RFC 9162 §2.1.4.1: the consistency proof from the tree of ``old_size`` leaves to the
    tree of ``new_size`` leaves."""
    ranges = consistency_ranges(old_size, new_size)
    _check_stored(new_size, stored_size, f"consistency proof from {old_size} to {new_size}")
    return _range_hashes(ranges, reader)


# -- proofs: verification ----------------------------------------------------------------------


def _check_proof_hashes(proof: Sequence[bytes], expected: int, what: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{what}: {len(proof)} hashes, a valid proof has {expected}")
    for i, value in enumerate(proof):
        if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
            raise ProofError(f"{what}: hash {i} is not {HASH_SIZE} bytes")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2, steps 1-3).

    Raises:
        ProofError: the index is not in the tree, or the proof has the wrong shape.
    """
    what = f"inclusion proof of index {index} in tree of size {size}"
    try:
        _check_size(index, "the leaf index")
        _check_size(size, "the tree size")
        _check_hash(leaf, "the leaf hash")
    except LogRequestError as exc:
        raise ProofError(f"{what}: {exc}") from None
    if index >= size:
        raise ProofError(f"{what}: the index is not in the tree")
    _check_proof_hashes(proof, len(inclusion_ranges(index, size)), what)
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError(f"{what}: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what}: the proof is shorter than the path to the root")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`ProofError` unless ``proof`` shows the leaf whose hash is
    ``leaf`` at ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    try:
        _check_hash(root, "the root hash")
    except LogRequestError as exc:
        raise ProofError(
            f"inclusion proof of index {index} in tree of size {size}: {exc}"
        ) from None
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof of index {index} in tree of size {size}: it leads to root "
            f"{computed.hex()[:16]}…, not the expected {bytes(root).hex()[:16]}…"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ProofError` unless ``proof`` shows that the tree of
    ``new_size`` leaves with root ``new_root`` extends the tree of ``old_size`` leaves with root
    ``old_root``. From size 0 (root SHA-256("")) and between equal sizes (equal roots) the only
    valid proof is the empty one."""
    what = f"consistency proof from size {old_size} to {new_size}"
    try:
        _check_size(old_size, "the old tree size")
        _check_size(new_size, "the new tree size")
        _check_hash(old_root, "the old root hash")
        _check_hash(new_root, "the new root hash")
    except LogRequestError as exc:
        raise ProofError(f"{what}: {exc}") from None
    if old_size > new_size:
        raise ProofError(f"{what}: the new tree is smaller")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(f"{what}: {len(proof)} hashes, a valid proof has none")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError(f"{what}: the old root is not the empty tree's")
        if old_size == new_size and old_root != new_root:
            raise ProofError(f"{what}: the two trees have the same size and different roots")
        return
    _check_proof_hashes(proof, len(consistency_ranges(old_size, new_size)), what)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"{what}: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what}: the proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError(f"{what}: it does not lead to the old root (not a prefix of the log)")
    if sr != new_root:
        raise ProofError(f"{what}: it does not lead to the new root")


# -- C2SP tlog-tiles ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tile:
    """Tile ``index`` at tile level ``level``, ``width`` hashes wide (256: full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if isinstance(self.level, bool) or not 0 <= self.level <= MAX_TILE_LEVEL:
            raise TileError(f"tile level {self.level!r} is not in [0, {MAX_TILE_LEVEL}]")
        if isinstance(self.index, bool) or not 0 <= self.index <= MAX_TREE_SIZE:
            raise TileError(f"tile index {self.index!r} is out of range")
        if isinstance(self.width, bool) or not 1 <= self.width <= TILE_WIDTH:
            raise TileError(f"tile width {self.width!r} is not in [1, {TILE_WIDTH}]")

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def byte_size(self) -> int:
        return self.width * HASH_SIZE

    @property
    def nodes(self) -> list[Node]:
        """The nodes whose hashes the tile holds, in order."""
        level = self.level * TILE_HEIGHT
        first = self.index * TILE_WIDTH
        return [Node(level, first + i) for i in range(self.width)]

    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` (C2SP tlog-tiles)."""
        return f"tile/{self.level}/{_index_path(self.index)}{self._suffix()}"

    def entries_path(self) -> str:
        """``tile/entries/<N>[.p/<W>]``: the entry bundle of a level-0 tile."""
        if self.level != 0:
            raise TileError(f"only level-0 tiles have entry bundles, not level {self.level}")
        return f"tile/entries/{_index_path(self.index)}{self._suffix()}"

    def _suffix(self) -> str:
        return f".p/{self.width}" if self.is_partial else ""


def _index_path(index: int) -> str:
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


_TILE_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def parse_tile_path(path: str) -> tuple[Tile, bool]:
    """Read a tile path back: the tile, and whether it names the entry bundle (``entries``)
    rather than the hash tile. Strict: no leading zeros in the level or width, every index
    element three digits, all but the last ``x``-prefixed, no leading ``x000`` elements.

    Raises:
        TileError: not such a path.
    """
    match = _TILE_PATH.fullmatch(path)
    if match is None:
        raise TileError(f"{path[:120]!r} is not a tile path (tile/<L>/<N>[.p/<W>])")
    elements = match["index"].split("/")
    if len(elements) > 1 and elements[0] == "x000":
        raise TileError(f"{path!r}: the tile index has a leading zero element")
    index = int("".join(e.removeprefix("x") for e in elements))
    width = TILE_WIDTH if match["width"] is None else int(match["width"])
    if match["width"] is not None and width >= TILE_WIDTH:
        raise TileError(f"{path!r}: a partial tile is 1 to 255 hashes wide")
    entries = match["level"] == "entries"
    return Tile(0 if entries else int(match["level"]), index, width), entries


def _tile_widths(size: int, level: int) -> tuple[int, int]:
    """Full tiles and the partial tile's width at ``level`` for a tree of ``size``."""
    hashes = size >> (TILE_HEIGHT * level)
    return hashes >> TILE_HEIGHT, hashes & (TILE_WIDTH - 1)


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile of a tree of ``size`` leaves, full ones and the partial rightmost ones
    (C2SP tlog-tiles: 70,000 leaves are 273 full and one 112-wide level-0 tile, a full and a
    17-wide level-1 tile, and a 1-wide level-2 tile), lowest level first."""
    _check_size(size, "the tree size")
    tiles: list[Tile] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        full, partial = _tile_widths(size, level)
        tiles.extend(Tile(level, n) for n in range(full))
        if partial:
            tiles.append(Tile(level, full, partial))
        level += 1
    return tiles


def new_tiles(old_size: int, new_size: int) -> list[Tile]:
    """The tiles a log writes when it grows from ``old_size`` to ``new_size`` leaves: every
    tile that is new or wider at ``new_size``, lowest level first."""
    _check_size(old_size, "the old tree size")
    _check_size(new_size, "the new tree size")
    if old_size > new_size:
        raise LogRequestError(f"the tree cannot shrink from {old_size} to {new_size}")
    tiles: list[Tile] = []
    level = 0
    while new_size >> (TILE_HEIGHT * level):
        shift = TILE_HEIGHT * level
        old_hashes, new_hashes = old_size >> shift, new_size >> shift
        for n in range(old_hashes >> TILE_HEIGHT, ((new_hashes - 1) >> TILE_HEIGHT) + 1):
            old_width = min(TILE_WIDTH, max(0, old_hashes - n * TILE_WIDTH))
            new_width = min(TILE_WIDTH, new_hashes - n * TILE_WIDTH)
            if new_width > old_width:
                tiles.append(Tile(level, n, new_width))
        level += 1
    return tiles


def tile_data(tile: Tile, reader: HashReader) -> bytes:
    """The bytes of ``tile``: its hashes, read from ``reader``, concatenated."""
    return b"".join(_read(reader, tile.nodes))


def tile_for_node(node: Node, size: int) -> tuple[Tile, int]:
    """The tile of a tree of ``size`` leaves from which ``node``'s hash is computed, and the
    offset of the first of the ``2**(level % 8)`` tile hashes it spans.

    Raises:
        LogRequestError: the node is not complete in a tree of that size.
    """
    _check_size(size, "the tree size")
    if node.level < 0 or node.index < 0 or node.end > size:
        raise LogRequestError(f"{node} is not in a tree of size {size}")
    tile_level, sub = divmod(node.level, TILE_HEIGHT)
    first = node.index << sub  # index of the first hash among the tile level's hashes
    n, offset = divmod(first, TILE_WIDTH)
    full, partial = _tile_widths(size, tile_level)
    width = TILE_WIDTH if n < full else partial
    return Tile(tile_level, n, width), offset


TileSource = Callable[[Tile], bytes]
"""Fetches a tile's bytes (from a blob store, a static server, a dict in tests)."""


class TileHashReader:
    """A :class:`HashReader` that reads from the tiles of a tree of ``size`` leaves.

    A node at level ``8 * L + s`` is computed from the ``2**s`` level-``8 * L`` hashes of tile
    level ``L`` below it. Tiles are fetched once per reader and checked for their length only:
    verify what is built from them against a signed root.
    """

    def __init__(self, size: int, source: TileSource) -> None:
        _check_size(size, "the tree size")
        self.size = size
        self._source = source
        self._tiles: dict[Tile, bytes] = {}
        self.fetched = 0

    def _tile(self, tile: Tile) -> bytes:
        data = self._tiles.get(tile)
        if data is None:
            try:
                data = bytes(self._source(tile))
            except (KeyError, FileNotFoundError) as exc:
                raise TileError(f"tile {tile.path()} is not available") from exc
            if len(data) != tile.byte_size:
                raise TileError(
                    f"tile {tile.path()} has {len(data)} bytes, expected {tile.byte_size}"
                )
            self.fetched += 1
            self._tiles[tile] = data
        return data

    def read_node_hashes(self, nodes: Sequence[Node]) -> list[bytes]:
        out = []
        for node in nodes:
            tile, offset = tile_for_node(node, self.size)
            data = self._tile(tile)
            count = 1 << (node.level % TILE_HEIGHT)
            hashes = [
                data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(offset, offset + count)
            ]
            out.append(root_of(hashes))
        return out


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle (C2SP tlog-tiles): each entry prefixed by its big-endian uint16 length."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for i, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(f"entry {i} is {len(entry)} bytes, over the {MAX_ENTRY_SIZE} limit")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_entry_bundle(data: bytes, width: int = TILE_WIDTH) -> list[bytes]:
    """The ``width`` entries of an entry bundle, strictly: nothing missing, nothing after.

    Raises:
        TileError: a truncated entry, fewer or more entries than ``width``.
    """
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {width}")
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if len(entries) == width:
            raise TileError(f"the entry bundle has {len(data) - at} bytes after {width} entries")
        if at + 2 > len(data):
            raise TileError(f"the entry bundle ends inside entry {len(entries)}'s length")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise TileError(f"entry {len(entries)} of the bundle is truncated")
        entries.append(bytes(data[at + 2 : at + 2 + length]))
        at += 2 + length
    if len(entries) != width:
        raise TileError(f"the entry bundle has {len(entries)} entries, expected {width}")
    return entries


def check_entry_bundle(entries: Sequence[bytes], tile_bytes: bytes) -> None:
    """Raise :class:`TileError` unless ``entries`` hash to the level-0 tile ``tile_bytes``."""
    if len(tile_bytes) != len(entries) * HASH_SIZE:
        raise TileError(
            f"{len(entries)} entries against a tile of {len(tile_bytes) // HASH_SIZE} hashes"
        )
    for i, entry in enumerate(entries):
        if leaf_hash(entry) != tile_bytes[i * HASH_SIZE : (i + 1) * HASH_SIZE]:
            raise TileError(f"entry {i} of the bundle does not hash to the tile's hash {i}")


# -- a prefix's hashes and a suffix's entries: a whole tree without its early leaves --------------


def left_siblings(index: int, size: int, proof: Sequence[bytes]) -> list[bytes]:
    """The hashes an inclusion proof of leaf ``index`` in a tree of ``size`` combines on the
    left: those of the complete subtrees that make up ``[0, index)`` (:func:`subtrees`), largest
    first. With them and the leaves ``[index, size)`` the tree's root can be rebuilt
    (:func:`root_from_prefix`), which shows those leaves are all of the tree after ``index``.

    Raises:
        ProofError: the proof has the wrong shape for ``index`` and ``size``.
    """
    what = f"inclusion proof of index {index} in tree of size {size}"
    if not 0 <= index < size:
        raise ProofError(f"{what}: the index is not in the tree")
    _check_proof_hashes(proof, len(inclusion_ranges(index, size)), what)
    fn, sn = index, size - 1
    left: list[bytes] = []
    for p in proof:
        if sn == 0:
            raise ProofError(f"{what}: the proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # combined on the left, as root_from_inclusion_proof does
            left.append(bytes(p))
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    left.reverse()
    if len(left) != len(subtrees(0, index)):
        raise ProofError(f"{what}: {len(left)} left hashes, [0, {index}) has "
                         f"{len(subtrees(0, index))} subtrees")  # fmt: skip
    return left


def root_from_prefix(prefix: Sequence[bytes], start: int, entries: Sequence[bytes]) -> bytes:
    """The root of the tree whose leaves ``[0, start)`` make up the complete subtrees hashed in
    ``prefix`` (:func:`subtrees` order) and whose leaves from ``start`` on are ``entries``.

    Raises:
        LogRequestError: ``prefix`` does not fit ``start``, or the tree is empty.
    """
    nodes = subtrees(0, start)
    if len(prefix) != len(nodes):
        raise LogRequestError(f"{len(prefix)} prefix hashes for the {len(nodes)} subtrees of "
                              f"[0, {start})")  # fmt: skip
    stack: list[tuple[int, bytes]] = []
    for node, value in zip(nodes, prefix, strict=True):
        _check_hash(value, f"the hash of {node}")
        stack.append((node.level, bytes(value)))
    for entry in entries:
        level, value = 0, leaf_hash(entry)
        while stack and stack[-1][0] == level:
            value = node_hash(stack.pop()[1], value)
            level += 1
        stack.append((level, value))
    if not stack:
        raise LogRequestError("an empty tree has no leaves to rebuild")
    return fold([value for _level, value in stack])
