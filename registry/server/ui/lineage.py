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

from attest.errors import AttestError
from attest.gate import MAX_DEPTH, Dependency, dependencies
from attest.policy import ANY_SIGNER
from attest.provenance import read_predicate
from registry.errors import RegistryError
from registry.names import parse_ref
from registry.server.services.auth import Action, Principal
from registry.server.services.versions import VersionRecord
from registry.server.ui.evidence import EvidenceCache
from registry.server.ui.queries import LineageReads, VersionFacts

MAX_NODES = 200
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 230, 40, 70, 14, 10
LABEL_CHARS = 30


@dataclass
class LineageNode:
    key: str
    label: str
    kind: str  # model | dataset | code | git | source | hidden | missing
    state: str  # a version's state, or what the node is
    href: str | None = None
    depth: int = 0
    note: str = ""
    row: int = 0


@dataclass
class Graph:
    nodes: list[LineageNode] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)  # (dependent, dependency)
    truncated: bool = False


def version_href(ref: str) -> str:
    namespace, rest = ref.split("/", 1)
    name, version = rest.split("@", 1)
    return f"/ui/n/{quote(namespace)}/{quote(name)}/{quote(version)}"


def walk(
    root: VersionRecord,
    principal: Principal,
    reads: LineageReads,
    evidence: EvidenceCache,
    visible: Callable[[str, str], bool],
) -> Graph:
    """The graph of ``root`` for ``principal``; ``visible(namespace, state)`` says whether a
    version's page may be linked. Two queries per level (versions named, their provenance)."""
    graph = Graph()
    by_key: dict[str, LineageNode] = {}
    trust = evidence.trust()

    def add(node: LineageNode) -> LineageNode:
        if node.key in by_key:
            return by_key[node.key]
        if len(by_key) >= MAX_NODES:
            graph.truncated = True
            return node
        by_key[node.key] = node
        graph.nodes.append(node)
        return node

    def edge(dependent: str, dependency: str) -> None:
        if dependency in by_key and (dependent, dependency) not in graph.edges:
            graph.edges.append((dependent, dependency))

    def readable(ref: str) -> bool:
        try:
            namespace = parse_ref(ref).namespace
        except (RegistryError, ValueError):
            return False
        return principal.can_see(namespace) and principal.allowed(Action.READ, namespace)

    add(LineageNode(root.ref, root.ref, root.kind, root.state, version_href(root.ref)))
    frontier = [VersionFacts(root.ref, root.kind, root.state, root.root_digest)]
    for depth in range(1, MAX_DEPTH + 2):
        if not frontier:
            break
        if depth > MAX_DEPTH:  # the gate stops here too
            for current in frontier:
                by_key[current.ref].note = f"depth limit ({MAX_DEPTH}) reached"
            break
        bundles = reads.provenance([f.ref for f in frontier])
        named: dict[str, tuple[list[Dependency], list[tuple[str, str, str]]]] = {}
        for current in frontier:
            verified = [
                v
                for v in (evidence.verified(raw, trust, current.root_digest)
                          for raw in bundles.get(current.ref, []))
                if v is not None and v.signer_id != evidence.registry_id
            ]  # fmt: skip
            leaves: list[tuple[str, str, str]] = []
            for item in verified:
                try:
                    read = read_predicate(item.statement.predicate)
                except AttestError:
                    continue
                if read.git is not None:
                    git = read.git
                    leaves.append((f"git:{git.url}@{git.commit}", f"{git.url}@{git.commit[:12]}",
                                   "git"))  # fmt: skip
                leaves += [(f"source:{s}", s, "source") for s in read.sources]
            named[current.ref] = (dependencies(verified, (ANY_SIGNER,), evidence.registry_id),
                                  leaves)  # fmt: skip
        wanted = {d.ref for deps, _ in named.values() for d in deps if readable(d.ref)}
        facts = reads.versions(sorted(wanted))
        following: list[VersionFacts] = []
        for current in frontier:
            deps, leaves = named[current.ref]
            for dep in deps:
                known = dep.ref in by_key
                node = add(_dependency(dep, facts, readable(dep.ref), visible, depth))
                edge(current.ref, node.key)
                found = facts.get(dep.ref)
                if not known and node.kind not in ("hidden", "missing") and found is not None:
                    if found.root_digest == dep.sha256:
                        following.append(found)
            for key, label, kind in leaves:
                add(LineageNode(key, label, kind, "external", None, depth))
                edge(current.ref, key)
        frontier = following
    _layout(graph)
    return graph


def _dependency(
    dep: Dependency,
    facts: dict[str, VersionFacts],
    readable: bool,
    visible: Callable[[str, str], bool],
    depth: int,
) -> LineageNode:
    ref = dep.ref
    if not readable:
        return LineageNode(ref, ref, "hidden", "outside your namespaces", None, depth)
    found = facts.get(ref)
    if found is None:
        return LineageNode(ref, ref, "missing", "not registered", None, depth)
    if not visible(ref.split("/", 1)[0], found.state):
        # A version this token may not see (pending, for a deployer): shown as an unknown
        # dependency, neither its state nor its kind, and not walked past.
        return LineageNode(ref, ref, "missing", "not registered", None, depth)
    if found.root_digest != dep.sha256:
        return LineageNode(ref, ref, found.kind, "digest mismatch", None, depth,
                    note=f"provenance names sha256:{dep.sha256}")  # fmt: skip
    return LineageNode(ref, ref, found.kind, found.state, version_href(ref), depth)


def _layout(graph: Graph) -> None:
    rows: dict[int, int] = {}
    for node in graph.nodes:
        node.row = rows.get(node.depth, 0)
        rows[node.depth] = node.row + 1


@dataclass(frozen=True, slots=True)
class Box:
    node: LineageNode
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
