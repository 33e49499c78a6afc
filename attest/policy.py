"""Release policies: which evidence a version needs, who may sign it, which thresholds hold.

A policy is YAML, one section per artifact kind::

    model:
      require:
        signature: [training-ci]          # who may sign the OMS file manifest
        provenance: [training-ci]         # who may sign the SLSA provenance
        evaluation:
          signers: [eval-ci]
          metrics: {accuracy: ">= 0.90"}
        scan: clean                       # or {allow_formats: [pickle]}
      dependencies: released              # or: any
      release:
        separate_from_pusher: true

Names refer to registered identities; ``"*"`` admits any registered identity. The registry's
own key is never one: it signs scans, ML-BOMs, releases and revocations, and evidence it signed
satisfies no signer list, ``"*"`` included (a stolen registry key cannot release a model).

Evaluation is judged over *every* result about the version signed by an accepted signer: each
must meet every threshold. No result counts more for having been uploaded last (upload order is
the uploader's to choose, so "the latest" would let a publisher replay an older, better run), and
attaching the same signed statement again, however re-serialised, adds nothing. A version with a
failing run is not released; evaluate a new version instead.

A kind without a section gets :data:`DEFAULT_POLICY`'s (strict) section. Parsing refuses unknown
keys, wrong types and malformed thresholds, naming the line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from attest.errors import PolicyError
from attest.scan.rules import ALLOWABLE

ANY_SIGNER = "*"
KINDS = ("model", "dataset", "code")
_THRESHOLD = re.compile(r"^\s*(>=|<=|==|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class KindPolicy:
    signature: tuple[str, ...] | None = (ANY_SIGNER,)
    provenance: tuple[str, ...] | None = (ANY_SIGNER,)
    evaluation_signers: tuple[str, ...] | None = None
    thresholds: tuple[Threshold, ...] = ()
    scan: bool = True
    allow_formats: frozenset[str] = frozenset()
    dependencies_released: bool = True
    separate_from_pusher: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    kinds: dict[str, KindPolicy] = field(default_factory=dict)
    source: str = ""

    def for_kind(self, kind: str) -> KindPolicy:
        return self.kinds.get(kind) or DEFAULT_POLICY.kinds[kind]


DEFAULT_POLICY_YAML = """\
# modelseal's default: signature and provenance by registered identities, a clean scan
# (pickle-family formats quarantined), and released dependencies.
model:
  require: {signature: ["*"], provenance: ["*"], scan: clean}
  dependencies: released
dataset:
  require: {signature: ["*"], provenance: ["*"], scan: clean}
  dependencies: released
code:
  require: {signature: ["*"], provenance: ["*"], scan: clean}
  dependencies: released
"""


POLICY_TEMPLATE = """\
# A modelseal release policy: what a version of each kind (model, dataset, code) needs before
# it can be released. Set it with `modelseal policy set NAMESPACE policy.yaml` (admins); every
# revision is kept and audited. A kind left out gets the built-in default (signature and
# provenance by any registered identity, a clean scan, released dependencies).
#
# Signer lists name registered identities (`modelseal identity list`); "*" admits any of them.
# The registry's own key never counts as a signer of user evidence.
model:
  require:
    # The OMS signature of the files (push --sign-key / --sigstore / --signature).
    signature: [training-ci]
    # SLSA provenance naming the datasets, code and base models by digest (push --sign-key).
    provenance: [training-ci]
    # Evaluation results (`modelseal attest REF --evaluation metrics.json --sign-key KEY`).
    # Every result signed by these identities must meet every threshold: a failing run is
    # not outvoted by a better one. Operators: >=, >, <=, <, ==.
    evaluation:
      signers: [eval-ci]
      metrics:
        accuracy: ">= 0.90"
    # The registry's scan of every file: "clean", or a mapping naming what else may pass:
    #   scan: {allow_formats: [pickle]}    clean pickles (or one format, e.g. pytorch-zip)
    #   scan: {allow_formats: [unknown]}   files the scanner could not identify
    #   scan: {allow_formats: [external]}  external data the registry never held
    # unsafe and unscannable files never pass.
    scan: clean
  # Versions the provenance names: "released" (not revoked, same digest) or "any".
  dependencies: released
  release:
    # Separation of duties: whoever pushed the version cannot release it.
    separate_from_pusher: true
dataset:
  require:
    signature: ["*"]
    provenance: ["*"]
    scan: clean
  dependencies: released
"""


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}"


def _mapping(node: yaml.Node, what: str, allowed: set[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{_where(node)}: {what} must be a mapping")
    out: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in allowed:
            raise PolicyError(
                f"{_where(key_node)}: unknown key {key!r} in {what} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        if key in out:
            raise PolicyError(f"{_where(key_node)}: {key!r} appears twice in {what}")
        out[key] = value_node
    return out


def _names(node: yaml.Node, what: str) -> tuple[str, ...]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise PolicyError(f"{_where(node)}: {what} must be a non-empty list of identity names")
    names = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not item.value:
            raise PolicyError(f"{_where(item)}: {what} entries must be identity names")
        names.append(str(item.value))
    return tuple(names)


def _scalar(node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise PolicyError(f"{_where(node)}: {what} must be a single value")
    return str(node.value)


def _bool(node: yaml.Node, what: str) -> bool:
    value = _scalar(node, what).lower()
    if value not in {"true", "false"}:
        raise PolicyError(f"{_where(node)}: {what} must be true or false")
    return value == "true"


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy document.

    Raises:
        PolicyError: invalid YAML or an invalid rule, with the line number.
    """
    if len(text) > 256 * 1024:
        raise PolicyError("a policy document may be at most 256 KiB")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PolicyError(f"{where}not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise PolicyError("the policy is empty")
    kinds = {}
    for kind, section in _mapping(root, "the policy", set(KINDS)).items():
        kinds[kind] = _kind(section, kind)
    return Policy(kinds, text)


def _kind(node: yaml.Node, kind: str) -> KindPolicy:
    parts = _mapping(node, kind, {"require", "dependencies", "release"})
    rules: dict[str, Any] = {
        "signature": None, "provenance": None, "scan": False, "allow_formats": frozenset(),
    }  # fmt: skip
    evaluation_signers: tuple[str, ...] | None = None
    thresholds: list[Threshold] = []
    if "require" in parts:
        require = _mapping(
            parts["require"], f"{kind}.require", {"signature", "provenance", "evaluation", "scan"}
        )
        for link in ("signature", "provenance"):
            if link in require:
                rules[link] = _names(require[link], f"{kind}.require.{link}")
        if "evaluation" in require:
            evaluation = _mapping(
                require["evaluation"], f"{kind}.require.evaluation", {"signers", "metrics"}
            )
            if "signers" not in evaluation:
                raise PolicyError(f"{_where(require['evaluation'])}: evaluation needs signers")
            evaluation_signers = _names(evaluation["signers"], f"{kind}.require.evaluation.signers")
            if "metrics" in evaluation:
                metrics = evaluation["metrics"]
                if not isinstance(metrics, yaml.MappingNode):
                    raise PolicyError(f"{_where(metrics)}: metrics must map names to thresholds")
                for key_node, value_node in metrics.value:
                    rule = _scalar(value_node, f"threshold of {key_node.value}")
                    match = _THRESHOLD.match(rule)
                    if match is None:
                        raise PolicyError(
                            f"{_where(value_node)}: threshold {rule!r} for {key_node.value!r} "
                            "must look like '>= 0.9' (operators >=, >, <=, <, ==)"
                        )
                    thresholds.append(
                        Threshold(str(key_node.value), match.group(1), float(match.group(2)))
                    )
        if "scan" in require:
            scan = require["scan"]
            if isinstance(scan, yaml.ScalarNode):
                if scan.value != "clean":
                    raise PolicyError(f"{_where(scan)}: scan must be 'clean' or a mapping")
                rules["scan"] = True
            else:
                allow = _mapping(scan, f"{kind}.require.scan", {"allow_formats"})
                rules["scan"] = True
                if "allow_formats" in allow:
                    names = _names(allow["allow_formats"], "allow_formats")
                    unknown = sorted(set(names) - ALLOWABLE)
                    if unknown:
                        raise PolicyError(
                            f"{_where(allow['allow_formats'])}: allow_formats names "
                            f"{', '.join(unknown)}; known: {', '.join(sorted(ALLOWABLE))}"
                        )
                    rules["allow_formats"] = frozenset(names)
    dependencies_released = True
    if "dependencies" in parts:
        value = _scalar(parts["dependencies"], f"{kind}.dependencies")
        if value not in {"released", "any"}:
            raise PolicyError(
                f"{_where(parts['dependencies'])}: dependencies must be released or any"
            )
        dependencies_released = value == "released"
    separate = False
    if "release" in parts:
        release = _mapping(parts["release"], f"{kind}.release", {"separate_from_pusher"})
        if "separate_from_pusher" in release:
            separate = _bool(release["separate_from_pusher"], "separate_from_pusher")
    return KindPolicy(
        signature=rules["signature"],
        provenance=rules["provenance"],
        evaluation_signers=evaluation_signers,
        thresholds=tuple(thresholds),
        scan=rules["scan"],
        allow_formats=rules["allow_formats"],
        dependencies_released=dependencies_released,
        separate_from_pusher=separate,
    )


DEFAULT_POLICY = parse_policy(DEFAULT_POLICY_YAML)
