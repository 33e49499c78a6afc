"""attest.tlog: RFC 9162 hashing and proofs, C2SP tlog-tiles.

Vectors written in as data: the Certificate Transparency 8-leaf corpus (leaf inputs, the node
hashes of its tree, roots of sizes 0-8, inclusion and consistency proofs), the RFC 6962 hasher
vectors, and the golden roots of trees of 10 to 65,535 leaves whose leaf i is ``i`` as 2 bytes
little-endian, as Certificate Transparency implementations publish them. The oracle is pymerkle
(PyPI, test extra): its roots and inclusion paths must match bit for bit; its consistency paths
have another layout, so consistency proofs are compared with a naive recursive transcription of
RFC 9162 §2.1.4.1 written here, and verified against pymerkle's roots.
"""

from __future__ import annotations

import base64
import itertools
import random

import pytest
from pymerkle import InmemoryTree

from attest import tlog
from attest.errors import AttestError, VerificationError
from attest.tlog import (
    EMPTY_ROOT,
    LogRequestError,
    MemoryTree,
    Node,
    ProofError,
    Tile,
    TileError,
    TileHashReader,
)

h = bytes.fromhex

CT_LEAVES = [
    b"",
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
CT_ROOTS = [  # size 0 .. 8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_NODES = {  # (level, index) -> hash, the complete subtrees of the 8-leaf tree
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_INCLUSION = [  # (index, size, proof), indexes from 0
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# Roots of trees whose leaf i is bytes([i & 0xff, (i >> 8) & 0xff]), base64.
GOLDEN_U16LE_ROOTS = {
    10: "VjWMPSYNtCuCNlF/RLnQy6HcwSk6CIipfxm+hettA+4=",
    15: "j4SulYmocFuxdeyp12xXCIgK6PekBcxzAIj4zbQzNEI=",
    16: "c+4Uc6BCMOZf/v3NZK1kqTUJe+bBoFtOhP+P3SayKRE=",
    100: "dUh9hYH88p0CMoHkdr1wC2szbhcLAXOejWpINIooKUY=",
    255: "SmdsuKUqiod3RX2jyF2M6JnbdE4QuTwwipfAowI4/i0=",
    256: "qFI0t/tZ1MdOYgyPpPzHFiZVw86koScXy9q3FU5casA=",
    1000: "RXrgb8xHd55Y48FbfotJwCbV82Kx22LZfEbmBGAvwlQ=",
    4095: "cWRFdQhPcjn9WyBXE/r1f04ejxIm5lvg40DEpRBVS0w=",
    4096: "6uU/phfHg1n/GksYT6TO9aN8EauMCCJRl3dIK0HDs2M=",
    10000: "VZcav65F9haHVRk3wre2axFoBXRNeUh/1d9d5FQfxIg=",
    65535: "iPuVYJhP6SEE4gUFp8qbafd2rYv9YTCDYqAxCj8HdLM=",
}


def u16le(i: int) -> bytes:
    return bytes([i & 0xFF, (i >> 8) & 0xFF])


@pytest.fixture(scope="module")
def ct_tree() -> MemoryTree:
    tree = MemoryTree()
    for entry in CT_LEAVES:
        tree.append(entry)
    return tree


@pytest.fixture(scope="module")
def golden_tree() -> MemoryTree:
    return MemoryTree(tlog.leaf_hash(u16le(i)) for i in range(65535))


# -- naive RFC 9162 transcription (test oracle for consistency proofs) -----------------------


def naive_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return tlog.node_hash(naive_mth(leaves[:k]), naive_mth(leaves[k:]))


def naive_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], complete), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


# -- hashing ---------------------------------------------------------------------------------


def test_rfc6962_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert tlog.leaf_hash(b"").hex() == CT_ROOTS[1]
    assert (
        tlog.leaf_hash(b"L123456").hex()
        == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert (
        tlog.node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_ct_roots_and_nodes(ct_tree: MemoryTree) -> None:
    hashes = [tlog.leaf_hash(e) for e in CT_LEAVES]
    for size, expected in enumerate(CT_ROOTS):
        assert ct_tree.root(size).hex() == expected
        assert tlog.root_of(hashes[:size]).hex() == expected
    nodes = [Node(level, index) for level, index in CT_NODES]
    got = ct_tree.read_node_hashes(nodes)
    assert [g.hex() for g in got] == list(CT_NODES.values())


def test_golden_roots_of_large_trees(golden_tree: MemoryTree) -> None:
    for size, expected in GOLDEN_U16LE_ROOTS.items():
        assert base64.b64encode(golden_tree.root(size)).decode() == expected, size
    wrong = base64.b64encode(golden_tree.root(65534)).decode()
    assert wrong != GOLDEN_U16LE_ROOTS[65535]  # the check can fail


def test_root_of_matches_the_naive_definition_for_every_size_to_300() -> None:
    leaves = [tlog.leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    tree = MemoryTree(leaves)
    for size in range(301):
        expected = naive_mth(leaves[:size])
        assert tlog.root_of(leaves[:size]) == expected
        assert tree.root(size) == expected


def test_subtrees_decompose_ranges() -> None:
    assert tlog.subtrees(0, 7) == [Node(2, 0), Node(1, 2), Node(0, 6)]
    assert tlog.subtrees(4, 7) == [Node(1, 2), Node(0, 6)]
    assert tlog.subtrees(8, 8) == []
    with pytest.raises(LogRequestError):
        tlog.subtrees(5, 4)


# -- proofs: published vectors ----------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_inclusion_vectors(ct_tree: MemoryTree, index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in ct_tree.inclusion_proof(index, size)] == proof
    leaf = tlog.leaf_hash(CT_LEAVES[index])
    tlog.verify_inclusion(index, size, leaf, [h(p) for p in proof], h(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_ct_consistency_vectors(ct_tree: MemoryTree, old: int, new: int, proof: list[str]) -> None:
    assert [p.hex() for p in ct_tree.consistency_proof(old, new)] == proof
    tlog.verify_consistency(old, new, h(CT_ROOTS[old]), h(CT_ROOTS[new]), [h(p) for p in proof])


def corruptions(proof: list[bytes], root: bytes) -> list[tuple[str, list[bytes]]]:
    out = [
        ("trailing garbage", [*proof, b""]),
        ("trailing root", [*proof, root]),
        ("preceding garbage", [b"", *proof]),
        ("preceding root", [root, *proof]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        out.append((f"bit flipped in hash {i}", flipped))
    if proof:
        out.append(("truncated", proof[:-1]))
    if len(proof) > 1:
        out.append(("inserted", [proof[0], b"\xab" * 32, *proof[1:]]))
        out.append(("reversed", proof[::-1]))
    return out


@pytest.mark.parametrize(("index", "size", "proof"), [v for v in CT_INCLUSION if v[1] > 1])
def test_ct_inclusion_vectors_corrupted_are_refused(
    index: int, size: int, proof: list[str]
) -> None:
    leaf, root, good = tlog.leaf_hash(CT_LEAVES[index]), h(CT_ROOTS[size]), [h(p) for p in proof]
    probes = [
        (index - 1, size, leaf, good, root),
        (index + 1, size, leaf, good, root),
        (index ^ 2, size, leaf, good, root),
        (index, size * 2, leaf, good, root),
        (index, size // 2, leaf, good, root),
        (index, size, tlog.leaf_hash(b"WrongLeaf"), good, root),
        (index, size, leaf, good, EMPTY_ROOT),
        (index, size, leaf, good, b"\xab" * 32),
    ]
    probes += [(index, size, leaf, bad, root) for _, bad in corruptions(good, root)]
    for probe in probes:
        with pytest.raises(ProofError):
            tlog.verify_inclusion(*probe)


def test_messages_name_the_cause() -> None:
    root = h(CT_ROOTS[5])
    with pytest.raises(ProofError, match="from size 7 to 5: the new tree is smaller"):
        tlog.verify_consistency(7, 5, h(CT_ROOTS[7]), root, [])
    with pytest.raises(ProofError, match="index 8 in tree of size 8: the index is not in"):
        tlog.verify_inclusion(8, 8, h(CT_ROOTS[1]), [], h(CT_ROOTS[8]))
    with pytest.raises(ProofError, match="2 hashes, a valid proof has 3"):
        tlog.verify_inclusion(0, 8, h(CT_ROOTS[1]), [h(CT_ROOTS[1])] * 2, h(CT_ROOTS[8]))
    with pytest.raises(ProofError, match="same size and different roots"):
        tlog.verify_consistency(5, 5, h(CT_ROOTS[5]), h(CT_ROOTS[4]), [])
    with pytest.raises(ProofError, match="not a prefix"):
        proof = [h(p) for p in CT_CONSISTENCY[2][2]]
        tlog.verify_consistency(6, 8, h(CT_ROOTS[5]), h(CT_ROOTS[8]), proof)
    with pytest.raises(LogRequestError, match="the new tree is smaller"):
        tlog.consistency_proof(7, 5, MemoryTree())
    error = ProofError("x")
    assert isinstance(error, VerificationError) and isinstance(error, AttestError)


def test_consistency_edge_cases(ct_tree: MemoryTree) -> None:
    root8 = h(CT_ROOTS[8])
    tlog.verify_consistency(0, 8, EMPTY_ROOT, root8, [])
    tlog.verify_consistency(8, 8, root8, root8, [])
    assert ct_tree.consistency_proof(0, 8) == []
    assert ct_tree.consistency_proof(8, 8) == []
    with pytest.raises(ProofError, match="empty tree"):
        tlog.verify_consistency(0, 8, root8, root8, [])
    with pytest.raises(ProofError, match="a valid proof has none"):
        tlog.verify_consistency(0, 8, EMPTY_ROOT, root8, [root8])
    with pytest.raises(ProofError, match="a valid proof has none"):
        tlog.verify_consistency(8, 8, root8, root8, [root8])
    with pytest.raises(ProofError, match="old tree size must be"):
        tlog.verify_consistency(-1, 8, EMPTY_ROOT, root8, [])
    with pytest.raises(ProofError, match="old root hash must be 32 bytes"):
        tlog.verify_consistency(1, 8, b"short", root8, [])
    with pytest.raises(ProofError, match="leaf index must be"):
        tlog.verify_inclusion(-1, 8, root8, [], root8)


# -- proofs: the oracle and the RFC's definitions, every size ---------------------------------


@pytest.fixture(scope="module")
def oracle() -> tuple[InmemoryTree, MemoryTree, list[bytes]]:
    theirs = InmemoryTree(algorithm="sha256")
    ours = MemoryTree()
    for i in range(64):
        entry = b"entry %d" % i
        theirs.append_entry(entry)
        ours.append(entry)
    return theirs, ours, ours.read_leaf_hashes(0, 64)


def test_pymerkle_roots_and_inclusion_paths_match_for_all_sizes_to_64(
    oracle: tuple[InmemoryTree, MemoryTree, list[bytes]],
) -> None:
    theirs, ours, leaves = oracle
    assert ours.root(0) == EMPTY_ROOT
    for size in range(1, 65):
        root = ours.root(size)
        assert theirs.get_root(size) == root
        for index in range(size):
            proof = ours.inclusion_proof(index, size)
            their_path = theirs.prove_inclusion(index + 1, size).path  # pymerkle counts from 1
            assert their_path[0] == leaves[index]
            assert their_path[1:] == proof, (index, size)
            assert proof == naive_path(index, leaves[:size])
            tlog.verify_inclusion(index, size, leaves[index], proof, theirs.get_root(size))


def test_consistency_proofs_match_the_rfc_and_verify_against_pymerkle_roots(
    oracle: tuple[InmemoryTree, MemoryTree, list[bytes]],
) -> None:
    theirs, ours, leaves = oracle
    for new in range(1, 65):
        for old in range(1, new + 1):
            proof = ours.consistency_proof(old, new)
            assert proof == naive_subproof(old, leaves[:new], True), (old, new)
            tlog.verify_consistency(old, new, theirs.get_root(old), theirs.get_root(new), proof)


def test_random_pairs_in_a_larger_tree() -> None:
    rng = random.Random(9162)
    theirs = InmemoryTree(algorithm="sha256")
    ours = MemoryTree()
    for i in range(1500):
        entry = rng.randbytes(rng.randrange(0, 40)) + i.to_bytes(2, "big")
        theirs.append_entry(entry)
        ours.append(entry)
    leaves = ours.read_leaf_hashes(0, ours.size)
    for _ in range(150):
        new = rng.randrange(1, ours.size + 1)
        old = rng.randrange(1, new + 1)
        index = rng.randrange(new)
        root_new = theirs.get_root(new)
        assert ours.root(new) == root_new
        proof = ours.inclusion_proof(index, new)
        assert theirs.prove_inclusion(index + 1, new).path[1:] == proof
        tlog.verify_inclusion(index, new, leaves[index], proof, root_new)
        consistency = ours.consistency_proof(old, new)
        tlog.verify_consistency(old, new, theirs.get_root(old), root_new, consistency)


def test_every_corruption_of_every_proof_is_refused_up_to_size_40() -> None:
    tree = MemoryTree(tlog.leaf_hash(i.to_bytes(2, "big")) for i in range(40))
    leaves = tree.read_leaf_hashes(0, 40)
    refused = 0
    for size in range(1, 41):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            for other in {index - 1, index + 1, index ^ 1, index ^ 2} - {index}:
                if 0 <= other < size:  # another real leaf's position, or out of the tree
                    with pytest.raises(ProofError):
                        tlog.verify_inclusion(other, size, leaves[index], proof, root)
            with pytest.raises(ProofError):
                tlog.verify_inclusion(size, size, leaves[index], proof, root)
            with pytest.raises(ProofError):
                tlog.verify_inclusion(index, size, leaves[(index + 1) % 40], proof, root)
            for _, bad in corruptions(proof, root):
                with pytest.raises(ProofError):
                    tlog.verify_inclusion(index, size, leaves[index], bad, root)
                refused += 1
        for old in range(1, size):
            proof = tree.consistency_proof(old, size)
            old_root = tree.root(old)
            for _, bad in corruptions(proof, root):
                with pytest.raises(ProofError):
                    tlog.verify_consistency(old, size, old_root, root, bad)
                refused += 1
            with pytest.raises(ProofError):
                tlog.verify_consistency(old, size, tree.root(old - 1), root, proof)
            with pytest.raises(ProofError):
                tlog.verify_consistency(old, size, old_root, tree.root(size - 1), proof)
            with pytest.raises(ProofError):  # the roots swapped
                tlog.verify_consistency(old, size, root, old_root, proof)
            with pytest.raises(ProofError):
                tlog.verify_consistency(size, old, root, old_root, proof)
    assert refused > 10_000


def test_generation_refuses_what_the_tree_cannot_have(ct_tree: MemoryTree) -> None:
    with pytest.raises(LogRequestError, match="not in a tree of size 8"):
        ct_tree.inclusion_proof(8, 8)
    with pytest.raises(LogRequestError, match="holds only 8 entries"):
        ct_tree.inclusion_proof(3, 9)
    with pytest.raises(LogRequestError, match="holds only 8 entries"):
        ct_tree.consistency_proof(3, 9)
    with pytest.raises(LogRequestError):
        ct_tree.root(9)
    with pytest.raises(LogRequestError):
        ct_tree.inclusion_proof(-1, 8)
    with pytest.raises(LogRequestError):
        ct_tree.append_leaf_hash(b"\x00" * 31)


def test_leaf_reader_adapter_gives_the_same_proofs(ct_tree: MemoryTree) -> None:
    reader = tlog.LeafHashesReader(ct_tree)
    for size in range(1, 9):
        assert tlog.root_hash(size, reader) == ct_tree.root(size)
        for index in range(size):
            assert tlog.inclusion_proof(index, size, reader) == ct_tree.inclusion_proof(index, size)
        for old in range(size + 1):
            assert tlog.consistency_proof(old, size, reader) == ct_tree.consistency_proof(old, size)


def test_a_lying_reader_is_caught() -> None:
    class Short:
        def read_node_hashes(self, nodes: object) -> list[bytes]:
            return [b"\x00" * 32]

    class Malformed:
        def read_node_hashes(self, nodes: list[Node]) -> list[bytes]:
            return [b"\x00" * 31 for _ in nodes]

    with pytest.raises(tlog.LogError, match="returned 1 hashes for 3 nodes"):
        tlog.inclusion_proof(4, 7, Short())
    with pytest.raises(tlog.LogError, match="malformed hash"):
        tlog.root_hash(5, Malformed())


# -- C2SP tlog-tiles --------------------------------------------------------------------------


def test_tile_paths() -> None:
    assert Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert Tile(0, 0).path() == "tile/0/000"
    assert Tile(3, 1000).path() == "tile/3/x001/000"
    assert Tile(1, 7, 17).path() == "tile/1/007.p/17"
    assert Tile(0, 1234067, 8).entries_path() == "tile/entries/x001/x234/067.p/8"
    assert Tile(63, 10**12).path() == "tile/63/x001/x000/x000/x000/000"
    for tile in (Tile(0, 0), Tile(5, 999, 255), Tile(2, 1000), Tile(0, 10**15 + 7, 3)):
        assert tlog.parse_tile_path(tile.path()) == (tile, False)
        if tile.level == 0:
            assert tlog.parse_tile_path(tile.entries_path()) == (tile, True)
    with pytest.raises(TileError):
        Tile(1, 0).entries_path()


@pytest.mark.parametrize(
    "path",
    [
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/1",
        "tile/0/0001",
        "tile/0/x000/001",
        "tile/0/x1/000",
        "tile/0/001/000",
        "tile/0/x001",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/012",
        "tile/0/000.p/",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/000\n",
        "tile/data/000",
        "tile/entries/x001",
        "tile/8/0/000",
    ],
)
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(TileError):
        tlog.parse_tile_path(path)


def test_tile_coordinates_are_checked() -> None:
    for args in ((64, 0), (-1, 0), (0, -1), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(TileError):
            Tile(*args)


def test_the_spec_examples_of_partial_tiles() -> None:
    tiles = tlog.tiles_for_size(70_000)
    assert sum(1 for t in tiles if t.level == 0 and not t.is_partial) == 273
    assert [t for t in tiles if t.is_partial or t.level > 0] == [
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]
    assert tlog.tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tlog.tiles_for_size(0) == []
    assert tlog.tiles_for_size(1) == [Tile(0, 0, 1)]


def test_new_tiles_cover_every_tile_as_the_log_grows() -> None:
    rng = random.Random(6962)
    size, written = 0, {}
    while size < 70_000:
        grown = size + rng.choice([1, 3, 255, 256, 257, 1000, 4000])
        for tile in tlog.new_tiles(size, grown):
            assert tile not in written
            written[tile] = grown
        assert set(tlog.tiles_for_size(grown)) <= set(written), grown
        size = grown
    assert tlog.new_tiles(size, size) == []
    with pytest.raises(LogRequestError):
        tlog.new_tiles(5, 4)


def test_tiles_rebuild_the_golden_tree_and_its_proofs(golden_tree: MemoryTree) -> None:
    size = 65535
    store = {t.path(): tlog.tile_data(t, golden_tree) for t in tlog.tiles_for_size(size)}
    assert sum(len(data) for data in store.values()) == 32 * (size + 255 + 0)
    reader = TileHashReader(size, lambda t: store[t.path()])
    assert base64.b64encode(tlog.root_hash(size, reader)).decode() == GOLDEN_U16LE_ROOTS[65535]
    assert reader.fetched == 2  # the root needs only the two partial tiles
    rng = random.Random(8)
    for _ in range(30):
        index = rng.randrange(size)
        proof = tlog.inclusion_proof(index, size, reader)
        assert proof == golden_tree.inclusion_proof(index, size)
        old = rng.randrange(1, size)
        assert tlog.consistency_proof(old, size, reader) == golden_tree.consistency_proof(old, size)


def test_a_client_proves_from_tiles_written_at_each_checkpoint() -> None:
    rng = random.Random(21)
    tree, store = MemoryTree(), {}
    checkpoints = [0]
    while tree.size < 3000:
        for _ in range(rng.choice([1, 7, 200, 256, 513])):
            tree.append(rng.randbytes(16))
        for tile in tlog.new_tiles(checkpoints[-1], tree.size):
            store[tile.path()] = tlog.tile_data(tile, tree)
        checkpoints.append(tree.size)
    leaves = tree.read_leaf_hashes(0, tree.size)
    for old, new in itertools.pairwise(checkpoints[1:]):
        reader = TileHashReader(new, lambda t: store[t.path()])
        root = tlog.root_hash(new, reader)
        assert root == tree.root(new)
        index = rng.randrange(new)
        tlog.verify_inclusion(
            index, new, leaves[index], tlog.inclusion_proof(index, new, reader), root
        )
        old_root = tlog.root_hash(old, TileHashReader(old, lambda t: store[t.path()]))
        tlog.verify_consistency(old, new, old_root, root, tlog.consistency_proof(old, new, reader))


def test_missing_short_or_tampered_tiles() -> None:
    tree = MemoryTree(tlog.leaf_hash(bytes([i])) for i in range(200))
    store = {t.path(): tlog.tile_data(t, tree) for t in tlog.tiles_for_size(200)}
    with pytest.raises(TileError, match="not available"):
        tlog.root_hash(256, TileHashReader(256, lambda t: store[t.path()]))
    short = dict(store, **{"tile/0/000.p/200": store["tile/0/000.p/200"][:-1]})
    with pytest.raises(TileError, match="6399 bytes, expected 6400"):
        tlog.root_hash(200, TileHashReader(200, lambda t: short[t.path()]))
    tampered = bytearray(store["tile/0/000.p/200"])
    tampered[32 * 7] ^= 1
    evil = dict(store, **{"tile/0/000.p/200": bytes(tampered)})
    reader = TileHashReader(200, lambda t: evil[t.path()])
    proof = tlog.inclusion_proof(6, 200, reader)
    with pytest.raises(ProofError):  # tile hashes are not trusted: the signed root decides
        tlog.verify_inclusion(6, 200, tree.read_leaf_hashes(6, 7)[0], proof, tree.root())
    with pytest.raises(LogRequestError):
        tlog.tile_for_node(Node(3, 25), 200)


def test_entry_bundles() -> None:
    entries = [b"", b"a", b"x" * 300, bytes(range(256))]
    data = tlog.entry_bundle(entries)
    assert data[:3] == b"\x00\x00\x00"
    assert tlog.parse_entry_bundle(data, 4) == entries
    tile = b"".join(tlog.leaf_hash(e) for e in entries)
    tlog.check_entry_bundle(entries, tile)
    with pytest.raises(TileError, match="entry 1 of the bundle"):
        tlog.check_entry_bundle([entries[0], b"b", *entries[2:]], tile)
    with pytest.raises(TileError, match="expected 5"):
        tlog.parse_entry_bundle(data, 5)
    with pytest.raises(TileError, match="after 3 entries"):
        tlog.parse_entry_bundle(data, 3)
    with pytest.raises(TileError, match="truncated"):
        tlog.parse_entry_bundle(data[:-1], 4)
    with pytest.raises(TileError, match="length"):
        tlog.parse_entry_bundle(data + b"\x00", 5)
    with pytest.raises(TileError, match="over the 65535 limit"):
        tlog.entry_bundle([b"x" * 65536])
    with pytest.raises(TileError):
        tlog.entry_bundle([])
    with pytest.raises(TileError):
        tlog.entry_bundle([b""] * 257)
