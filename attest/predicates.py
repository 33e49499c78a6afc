"""Every in-toto predicate type modelseal signs, reads or judges, in one place.

Importing this module loads nothing else, so a client that only needs to recognise a statement
(the SDK's start-up) does not pay for the gate, the policy parser or the scanner.

================================  ===================================================  =========
name                              URI                                                  signed by
================================  ===================================================  =========
OMS_SIGNATURE                     https://model_signing/signature/v1.0                 producer
SLSA_PROVENANCE                   https://slsa.dev/provenance/v1                       producer
TEST_RESULT                       https://in-toto.io/attestation/test-result/v0.1      evaluator
CYCLONEDX_BOM                     https://cyclonedx.org/bom                            registry
SCAN                              https://modelseal.dev/attestation/scan/v1            registry
RELEASE                           https://in-toto.io/attestation/release/v0.1          registry
OCI_RELEASE                       https://modelseal.dev/attestation/oci-release/v1     registry
REVOCATION                        https://modelseal.dev/attestation/revocation/v1      registry
STATUS                            https://modelseal.dev/attestation/status/v1          registry
AUDIT_CHECKPOINT                  https://modelseal.dev/attestation/audit-checkpoint/v1 registry
================================  ===================================================  =========
"""

from __future__ import annotations

#: An OpenSSF Model Signing (OMS) signature: the manifest of every file's digest.
OMS_SIGNATURE = "https://model_signing/signature/v1.0"
#: SLSA provenance v1: how a version was built, naming its dependencies' digests.
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
#: An evaluation's result and metrics (in-toto test-result).
TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"
#: The CycloneDX 1.6 ML-BOM the registry builds for a version.
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
#: The registry's scan verdict of every file of a version.
SCAN = "https://modelseal.dev/attestation/scan/v1"
#: The registry's release of a version (what the gate judged, under which policy).
RELEASE = "https://in-toto.io/attestation/release/v0.1"
#: The registry's release of a version's OCI artifact: the same release, with the OCI manifest
#: digest as the subject (what OCI tools such as cosign check against the artifact they pull).
OCI_RELEASE = "https://modelseal.dev/attestation/oci-release/v1"
#: The registry-signed revocation of a version (the registry signs it on revocation).
REVOCATION = "https://modelseal.dev/attestation/revocation/v1"
#: The registry-signed current state of a version and its dependencies (a pull asks for one
#: before writing a byte and accepts it only within its freshness window).
STATUS = "https://modelseal.dev/attestation/status/v1"
#: A registry-signed head of its audit log (count and chain hash).
AUDIT_CHECKPOINT = "https://modelseal.dev/attestation/audit-checkpoint/v1"
#: The registry key vouching for its transparency log's key (origin and note vkey): a client
#: holding the registry key anchors the log key on it, not on first use.
LOG_KEY = "https://modelseal.dev/attestation/log-key/v1"
