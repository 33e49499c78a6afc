"""In-toto interop: a layout and links for a released version, signed by the registry key.

The registry is the only functionary: it vouches, as links, for what the signed evidence it
verified at release says. Steps: ``dataset-N`` (product: the dataset version, by root digest),
``training`` (materials: datasets, code, base models; products: the model files), ``evaluation``
(materials: the model files; product: the metrics, when evaluated), then in-toto's ``release``
step for the final products. Each link's byproducts name the bundles it stands for.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from attest.bundle import Bundle
from attest.intoto import EvidenceStep, LinkArtifact, export_layout
from attest.predicates import OMS_SIGNATURE, SLSA_PROVENANCE, TEST_RESULT
from attest.provenance import Provenance, read_predicate
from attest.signing import KeySigner, UriSigner
from registry.errors import ConflictError, InvalidRequestError
from registry.names import Ref, parse_ref
from registry.server.services.attestations import READER, AttestationService
from registry.server.services.auth import Principal
from registry.server.services.common import Clock, utcnow
from registry.server.services.versions import State, VersionRecord, VersionService

LAYOUT_LIFETIME = timedelta(days=365)


class IntotoService:
    def __init__(
        self,
        versions: VersionService,
        attestations: AttestationService,
        signer: KeySigner | UriSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._versions = versions
        self._attestations = attestations
        self._signer = signer
        self._clock = clock

    def in_toto(self, principal: Principal, ref: Ref) -> dict[str, str]:
        """``{filename: text}`` of ``root.layout`` and the links, for a released version.

        Raises:
            ConflictError: the version is not released.
            InvalidRequestError: the registry key is not a local key (a KMS/HSM URI).
        """
        record = self._versions.resolve(principal, ref)
        if record.state != State.RELEASED:
            raise ConflictError(f"{record.ref} is {record.state}; in-toto exports are for releases")
        if not isinstance(self._signer, KeySigner):
            raise InvalidRequestError("in-toto export needs the registry key as a PEM file")
        verified = self._attestations.verified_evidence(record)
        newest = {v.statement.predicate_type: v.bundle for v in verified}
        provenance = _provenance(newest.get(SLSA_PROVENANCE))
        steps: list[EvidenceStep] = []
        materials: list[LinkArtifact] = []
        for index, dep in enumerate(provenance.dependencies, start=1):
            target = self._versions.resolve(READER, parse_ref(dep.ref))
            folder = {"dataset": "datasets", "base-model": "base-models", "code": "code"}[dep.role]
            artifact = LinkArtifact(name=f"{folder}/{target.ref}", sha256=target.root_digest)
            materials.append(artifact)
            if dep.role == "dataset":
                evidence = self._newest(target)
                steps.append(
                    EvidenceStep(
                        name=f"dataset-{index}",
                        products=(artifact,),
                        evidence=tuple(f"sha256:{b.digest}" for b in evidence.values()),
                    )
                )
        if provenance.git is not None:
            git = provenance.git
            materials.append(
                LinkArtifact(
                    name=f"code/git/{git.commit}",
                    sha256=hashlib.sha256(f"{git.url}@{git.commit}".encode()).hexdigest(),
                )
            )
        model = tuple(LinkArtifact(name=f"model/{f.path}", sha256=f.sha256) for f in record.files)
        training_evidence = [newest[t] for t in (OMS_SIGNATURE, SLSA_PROVENANCE) if t in newest]
        steps.append(
            EvidenceStep(
                name="training",
                materials=tuple(materials),
                products=model,
                command=("modelseal", "push", record.ref),
                evidence=tuple(f"sha256:{b.digest}" for b in training_evidence),
            )
        )
        # Every evaluation, not the newest: the gate requires each one to pass, and upload
        # order is the uploader's to choose.
        evaluations = sorted(
            (v.bundle for v in verified if v.statement.predicate_type == TEST_RESULT),
            key=lambda b: b.digest,
        )
        if evaluations:
            results = [b.statement().predicate.get("metrics", {}) for b in evaluations]
            metrics = json.dumps(results[0] if len(results) == 1 else results,
                                 sort_keys=True).encode()  # fmt: skip
            steps.append(
                EvidenceStep(
                    name="evaluation",
                    materials=model,
                    products=(
                        LinkArtifact(
                            name="evaluation/metrics.json",
                            sha256=hashlib.sha256(metrics).hexdigest(),
                        ),
                    ),
                    evidence=tuple(f"sha256:{b.digest}" for b in evaluations),
                )
            )
        files = export_layout(
            key=self._signer.private_key,
            steps=steps,
            expires=self._clock() + LAYOUT_LIFETIME,
            final_products=model,
            readme=f"modelseal release of {record.ref} (sha256:{record.root_digest})",
        )
        return {name: data.decode() for name, data in files.items()}

    def _newest(self, record: VersionRecord) -> dict[str, Bundle]:
        """The newest verifying bundle per predicate type about ``record`` (the signers' own
        evidence: the registry's scan, BOM and release are not links of the chain)."""
        evidence = self._attestations.verified_evidence(record)
        return {v.statement.predicate_type: v.bundle for v in evidence}


def _provenance(bundle: Bundle | None) -> Provenance:
    return read_predicate(bundle.statement().predicate) if bundle is not None else Provenance()
