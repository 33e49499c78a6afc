"""The release gate's server time on a three-level chain, against verifying its bundles alone.

    python3 -m bench.gate [--repeat 30] [--releases 5] [--postgres] [--json out.json]

Builds, in a private registry (SQLite + local directory by default; ``--postgres`` uses the
test suite's PostgreSQL server), the chain a real release walks:

    bench/m@N (model)  <-  bench/tx@1 (dataset)  <-  bench/raw@1 (dataset)

each level pushed with an OMS signature and SLSA provenance naming the level below, the model
with an evaluation (test-result) too, and the registry's own scan, ML-BOM and (for the two
datasets) release attestations: about ten bundles, three levels. The policy is the README's
(signers per kind, provenance, evaluation threshold, clean scan, released dependencies,
separation of duties).

Measured, in the same process and run:

* **gate**: ``ReleaseService.check`` on ``bench/m@1`` (what ``POST .../release`` runs before it
  signs): load the subject and its dependencies, verify every bundle, evaluate the policy.
  ``--repeat`` times; median, min and max.
* **baseline**: verifying the same bundles with :class:`attest.verifying.Verifier` alone (the
  signatures the gate cannot skip): the gate's ratio to it is its overhead over the crypto.
* **release**: ``--releases`` versions ``bench/m@2…`` released over HTTP, one ``POST`` each,
  timed at the client (gate + signing + commit + the HTTP round trip on loopback).

The issue's target is a gate of at most 50 ms server time on such a chain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.exit("run it as a module from the repository root: python3 -m bench.gate")

from attest import keys
from attest.bundle import Bundle
from attest.predicates import SLSA_PROVENANCE, TEST_RESULT
from attest.signing import KeySigner
from attest.statement import make_statement
from attest.verifying import Verifier
from bench import _common as c
from registry.names import Kind, parse_ref
from registry.sdk.client import RegistryClient
from registry.server.app import create_app
from registry.server.config import Settings
from registry.server.services.auth import Principal, Role
from tests.integration.test_release import POLICY as RELEASE_POLICY
from tests.support import make_model_dir, serve

# The README's policy, as the release tests use it, plus released dependencies for datasets.
POLICY = RELEASE_POLICY + "  dependencies: released\n"


def _attest(client: RegistryClient, ref: str, predicate_type: str, predicate: dict[str, Any],
            signer: KeySigner) -> None:  # fmt: skip
    version = client.show(ref)
    statement = make_statement(
        name=f"{version.namespace}/{version.name}",
        root_digest=version.root_digest.removeprefix("sha256:"),
        predicate_type=predicate_type,
        predicate=predicate,
    )
    client.attach(ref, signer.sign(statement).raw)


def _provenance(deps: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "buildDefinition": {
            "buildType": "https://modelseal.dev/training/v1",
            "externalParameters": {},
            "resolvedDependencies": [
                {"uri": f"modelseal:{ref}", "digest": {"sha256": digest.removeprefix("sha256:")}}
                for ref, digest in deps
            ],
        },
        "runDetails": {"builder": {"id": "https://ci.example/bench"}},
    }


class Chain:
    def __init__(self, admin: RegistryClient, releaser: RegistryClient, work: Path) -> None:
        self.admin, self.releaser, self.work = admin, releaser, work
        self.training = KeySigner(keys.generate())
        self.evaluation = KeySigner(keys.generate())
        self.data = KeySigner(keys.generate())
        for name, signer in (("training-ci", self.training), ("eval-ci", self.evaluation),
                             ("data-pipeline", self.data)):  # fmt: skip
            admin.add_key_identity(name, keys.public_pem(signer.public_key).decode())
        admin.set_policy("bench", POLICY)

    def dataset(self, ref: str, deps: list[tuple[str, str]]) -> str:
        root = self.work / ref.replace("/", "_").replace("@", "_")
        root.mkdir()
        (root / "rows.csv").write_text(f"id,amount,source\n1,10,{ref}\n2,20,{ref}\n")
        version = self.admin.push(root, ref, kind=Kind.DATASET, signer=self.data)
        _attest(self.admin, ref, SLSA_PROVENANCE, _provenance(deps), self.data)
        self.releaser.release(ref)
        return version.root_digest

    def model(self, ref: str, deps: list[tuple[str, str]], seed: int) -> None:
        root = make_model_dir(self.work / ref.replace("/", "_").replace("@", "_"), seed=seed)
        self.admin.push(root, ref, signer=self.training)
        _attest(self.admin, ref, SLSA_PROVENANCE, _provenance(deps), self.training)
        _attest(self.admin, ref, TEST_RESULT,
                {"result": "PASSED", "metrics": {"accuracy": 0.93}}, self.evaluation)  # fmt: skip


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
    }


@contextlib.contextmanager
def _settings(work: Path, postgres: bool) -> Iterator[Settings]:
    if not postgres:
        yield Settings(data_dir=work / "registry")
        return
    from tests.services import PostgresServer

    with PostgresServer() as server:
        url = server.create_database("gate_bench")
        yield Settings(data_dir=work / "registry", database_url=url)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="modelseal-gate-") as tmp:
        work = Path(tmp)
        with _settings(work, args.postgres) as settings, serve(settings) as live:
            from registry.server.db import make_engine, make_sessionmaker
            from registry.server.services import TokenService

            engine = make_engine(settings.resolved_database_url)
            tokens = TokenService(make_sessionmaker(engine))
            secret = tokens.create(name="bench-releaser", role=Role.RELEASER,
                                   namespace="bench").secret  # fmt: skip
            engine.dispose()
            admin, releaser = live.client(), live.client(token=secret)
            chain = Chain(admin, releaser, work)
            raw = chain.dataset("bench/raw@1", [])
            tx = chain.dataset("bench/tx@1", [("bench/raw@1", raw)])
            for n in range(1, args.releases + 2):
                chain.model(f"bench/m@{n}", [("bench/tx@1", tx)], seed=n)

            # The gate, in-process, on a second app instance over the same database and store
            # (a replica): exactly what the release route runs before it signs.
            app = create_app(settings, expiry_interval=None)
            services = app.state.services
            principal = Principal(token_id="-", name="bench-releaser", role=Role.RELEASER,
                                  namespace="bench")  # fmt: skip
            record = services.versions.resolve(principal, parse_ref("bench/m@1"))
            reasons, evidence, _policy = services.releases.check(
                principal, record, releaser="bench-releaser"
            )
            if reasons:
                raise SystemExit("the bench chain does not pass the gate:\n"
                                 + "\n".join(str(r) for r in reasons))  # fmt: skip
            bundles: list[Bundle] = []
            for ref in ("bench/m@1", "bench/tx@1", "bench/raw@1"):
                for item in admin.list_attestations(ref):
                    bundles.append(Bundle.parse(admin.get_attestation(ref, item.id)))
            verifier: Verifier = services.releases._verifier()

            gate: list[float] = []
            base: list[float] = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                for bundle in bundles:
                    with contextlib.suppress(Exception):  # unknown signers still cost a check
                        verifier.verify(bundle)
                base.append(time.perf_counter() - start)
                start = time.perf_counter()
                services.releases.check(principal, record, releaser="bench-releaser")
                gate.append(time.perf_counter() - start)

            releases: list[float] = []
            for n in range(2, args.releases + 2):
                start = time.perf_counter()
                releaser.release(f"bench/m@{n}")
                releases.append(time.perf_counter() - start)
            levels = 3
            return {
                "machine": c.machine_info(),
                "database": "postgresql" if args.postgres else "sqlite",
                "bundles": len(bundles),
                "levels": levels,
                "evidence_relied_on": len(evidence),
                "gate": _summary(gate),
                "baseline_verify_only": _summary(base),
                "ratio_gate_to_verify": statistics.median(gate) / statistics.median(base),
                "release_http": _summary(releases),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="gate runs (default 30)")
    parser.add_argument("--releases", type=int, default=5, help="HTTP releases (default 5)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args)
    c.print_machine(result["machine"])
    print(f"chain: {result['levels']} levels, {result['bundles']} bundles "
          f"({result['database']})")  # fmt: skip
    rows = (("gate (ReleaseService.check)", result["gate"]),
            ("baseline: verify the bundles only", result["baseline_verify_only"]),
            ("release over HTTP (client wall)", result["release_http"]))  # fmt: skip
    print(f"{'what':<36} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, row in rows:
        print(f"{name:<36} {row['median_ms']:>10.1f} {row['min_ms']:>8.1f} {row['max_ms']:>8.1f}")
    print(f"gate / verify-only: {result['ratio_gate_to_verify']:.2f}x   (target: gate <= 50 ms)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
