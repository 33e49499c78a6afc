"""The lineage graph of a version, walked through verified provenance and drawn as SVG.

The walk follows what the gate follows (:func:`attest.gate.dependencies`: ``modelseal:`` URIs
in SLSA provenance not signed by the registry key), breadth first, each version once, at most
:data:`attest.gate.MAX_DEPTH` levels deep, plus the leaves provenance names but the registry
does not hold (a git commit, dataset sources). Versions in namespaces the caller cannot read are
shown by the reference the provenance gives, and not walked further.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from attest.gate import MAX_DEPTH, dependencies
from attest.policy import ANY_SIGNER
from attest.predicates import SLSA_PROVENANCE
from attest.provenance import read_predicate
from registry.errors import RegistryError
from registry.names import parse_ref
from registry.server.services.auth import Principal
from registry.server.services.versions import VersionRecord, VersionService
from registry.server.ui.evidence import EvidenceCache

MAX_NODES = 200
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 230, 40, 70, 14, 10
LABEL_CHARS = 30


@dataclass
class Node:
    key: str
    label: str
    kind: str  # model | dataset | code | git | source | hidden | missing
    state: str  # a version's state, or what the node is
    href: str | None = None
    depth: int = 0
    note: str = ""
    row: int = 0
    record: VersionRecord | None = None  # walked further when set


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (dependent, dependency)
    truncated: bool = False


def version_href(ref: str) -> str:
    namespace, rest = ref.split("/", 1)
    name, version = rest.split("@", 1)
    return f"/ui/n/{quote(namespace)}/{quote(name)}/{quote(version)}"


def walk(
    root: VersionRecord,
    principal: Principal,
    versions: VersionService,
    evidence: EvidenceCache,
    visible: Callable[[VersionRecord], bool],
) -> Graph:
    graph = Graph()
    by_key: dict[str, Node] = {}

    def add(node: Node) -> Node:
        if node.key in by_key:
            return by_key[node.key]
        if len(by_key) >= MAX_NODES:
            graph.truncated = True
            return node
        by_key[node.key] = node
        graph.nodes.append(node)
        return node

    add(Node(root.ref, root.ref, root.kind, root.state, version_href(root.ref)))
    frontier = [root]
    for depth in range(1, MAX_DEPTH + 2):
        following: list[VersionRecord] = []
        for current in frontier:
            if depth > MAX_DEPTH:  # the gate stops here too
                by_key[current.ref].note = f"depth limit ({MAX_DEPTH}) reached"
                continue
            items = [i for i in evidence.items(current, SLSA_PROVENANCE) if i.ok]
            verified = [i.verified for i in items if i.verified is not None]
            for dep in dependencies(verified, (ANY_SIGNER,), evidence.registry_id):
                node = _dependency(dep.ref, dep.sha256, principal, versions, visible, depth)
                known = node.key in by_key
                node = add(node)
                if (current.ref, node.key) not in graph.edges:
                    graph.edges.append((current.ref, node.key))
                if not known and node.record is not None:
                    following.append(node.record)
            for item in items:
                if item.statement is None:
                    continue
                try:
                    read = read_predicate(item.statement.predicate)
                except Exception:  # noqa: S112 - unreadable provenance names nothing here
                    continue
                leaves = (
                    [
                        (
                            f"git:{read.git.url}@{read.git.commit}",
                            f"{read.git.url}@{read.git.commit[:12]}",
                            "git",
                        )
                    ]
                    if read.git
                    else []
                )
                leaves += [(f"source:{s}", s, "source") for s in read.sources]  # fmt: skip
                for key, label, kind in leaves:
                    add(Node(key, label, kind, "external", None, depth))
                    if (current.ref, key) not in graph.edges:
                        graph.edges.append((current.ref, key))
        frontier = following
        if not frontier:
            break
    _layout(graph)
    return graph


def _dependency(
    ref: str,
    digest: str,
    principal: Principal,
    versions: VersionService,
    visible: Callable[[VersionRecord], bool],
    depth: int,
) -> Node:
    try:
        parsed = parse_ref(ref)
    except (RegistryError, ValueError):
        return Node(ref, ref, "missing", "invalid reference", None, depth)
    if not principal.can_see(parsed.namespace):
        return Node(ref, ref, "hidden", "outside your namespaces", None, depth)
    try:
        record = versions.resolve(principal, parsed)
    except RegistryError:
        return Node(ref, ref, "missing", "not registered", None, depth)
    if record.root_digest != digest:
        return Node(ref, ref, record.kind, "digest mismatch", None, depth,
                    note=f"provenance names sha256:{digest}")  # fmt: skip
    shown = visible(record)
    href = version_href(ref) if shown else None
    return Node(ref, ref, record.kind, record.state, href, depth, record=record)


def _layout(graph: Graph) -> None:
    rows: dict[int, int] = {}
    for node in graph.nodes:
        node.row = rows.get(node.depth, 0)
        rows[node.depth] = node.row + 1


@dataclass(frozen=True, slots=True)
class Box:
    node: Node
    x: int
    y: int
    text: str


@dataclass(frozen=True, slots=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True)
class Drawing:
    width: int
    height: int
    boxes: list[Box]
    lines: list[Line]


def draw(graph: Graph) -> Drawing:
    """Coordinates for the template: the version on the left, what it is built on to the right
    (one column per level), arrows from each dependency to what is built on it."""
    place: dict[str, tuple[int, int]] = {}
    boxes = []
    for node in graph.nodes:
        x = PAD + node.depth * (NODE_W + GAP_X)
        y = PAD + node.row * (NODE_H + GAP_Y)
        place[node.key] = (x, y)
        text = node.label if len(node.label) <= LABEL_CHARS else node.label[: LABEL_CHARS - 1] + "…"
        boxes.append(Box(node, x, y, text))
    lines = []
    for dependent, dependency in graph.edges:
        if dependent not in place or dependency not in place:
            continue
        (x1, y1), (x2, y2) = place[dependency], place[dependent]
        if x1 > x2:
            lines.append(Line(x1, y1 + NODE_H // 2, x2 + NODE_W + 4, y2 + NODE_H // 2))
        else:  # an edge to a node drawn at the same level or left of it (a shared dependency)
            lines.append(Line(x1 + NODE_W // 2, y1 + NODE_H, x2 + NODE_W // 2, y2 + NODE_H + 4))
    width = max((b.x for b in boxes), default=0) + NODE_W + PAD
    height = max((b.y for b in boxes), default=0) + NODE_H + PAD + 6
    return Drawing(width, height, boxes, lines)
