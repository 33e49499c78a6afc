"""Evidence on the registry: identities, verified attachments, byte-exact storage, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from attest import keys
from attest.keys import KeyType
from attest.oms import oms_statement
from attest.predicates import CYCLONEDX_BOM, OMS_SIGNATURE, SCAN
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.errors import (
    ConflictError,
    EvidenceRejectedError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from registry.server.services import Role, TokenService
from tests.support import Live, make_model_dir

TEST_RESULT = "https://in-toto.io/attestation/test-result/v0.1"


@pytest.fixture
def signer() -> KeySigner:
    return KeySigner(keys.generate())


@pytest.fixture
def trusted(live: Live, signer: KeySigner) -> KeySigner:
    with live.client() as client:
        client.add_key_identity("training-ci", keys.public_pem(signer.public_key).decode())
    return signer


def _evaluation(version_digest: str, accuracy: float = 0.93) -> object:
    return make_statement(
        name="vision/tiny",
        root_digest=version_digest.removeprefix("sha256:"),
        predicate_type=TEST_RESULT,
        predicate={"result": "PASSED", "metrics": {"accuracy": accuracy}},
    )


def test_push_with_sign_key_attaches_a_verified_oms_signature(
    live: Live, model_dir: Path, trusted: KeySigner
) -> None:
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1", signer=trusted)
        listed = client.list_attestations("vision/tiny@1", OMS_SIGNATURE)
        assert [(a.predicate_type, a.signer) for a in listed] == [(OMS_SIGNATURE, "training-ci")]
        assert listed[0].subject_digest == version.root_digest
        raw = client.get_attestation("vision/tiny@1", listed[0].id)
    assert f"sha256:{__import__('hashlib').sha256(raw).hexdigest()}" == listed[0].bundle_digest


def test_attach_is_byte_exact_and_idempotent(
    live: Live, model_dir: Path, trusted: KeySigner
) -> None:
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
        bundle = trusted.sign(_evaluation(version.root_digest))  # type: ignore[arg-type]
        # re-serialize with other whitespace: still valid, and stored exactly as sent
        pretty = json.dumps(json.loads(bundle.raw), indent=2).encode()
        first = client.attach("vision/tiny@1", pretty)
        again = client.attach("vision/tiny@1", pretty)
        assert again.id == first.id
        assert client.get_attestation("vision/tiny@1", first.id) == pretty
        assert [a.id for a in client.list_attestations("vision/tiny@1", TEST_RESULT)] == [first.id]
        assert client.list_attestations("vision/tiny@1", "https://example.com/other") == []


def test_a_re_serialised_bundle_is_the_same_evidence(
    live: Live, model_dir: Path, trusted: KeySigner
) -> None:
    """Attacker: a publisher re-attaching a bundle it has seen with new JSON bytes (key order,
    whitespace) to make it count twice or land "last". Same statement and signature: the same
    attestation, stored once (the byte-exact acceptance is the test above)."""
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
        bundle = trusted.sign(_evaluation(version.root_digest))  # type: ignore[arg-type]
        first = client.attach("vision/tiny@1", bundle.raw)
        for indent, keys_sorted in ((1, True), (None, True), (4, False)):
            relaid = json.dumps(json.loads(bundle.raw), indent=indent, sort_keys=keys_sorted)
            assert relaid.encode() != bundle.raw
            assert client.attach("vision/tiny@1", relaid.encode()).id == first.id
        assert [a.id for a in client.list_attestations("vision/tiny@1", TEST_RESULT)] == [first.id]
        assert client.get_attestation("vision/tiny@1", first.id) == bundle.raw
        # Another signature by the same signer over the same statement is that evidence again
        # (ECDSA signs with a fresh nonce each time, and a signature can be re-encoded).
        again = trusted.sign(_evaluation(version.root_digest))  # type: ignore[arg-type]
        assert again.raw != bundle.raw
        assert client.attach("vision/tiny@1", again.raw).id == first.id


def test_refusals_name_the_reason(
    live: Live, model_dir: Path, tmp_path: Path, trusted: KeySigner
) -> None:
    stranger = KeySigner(keys.generate())
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
        other = client.push(make_model_dir(tmp_path / "o", seed=9), "vision/tiny@2")

        with pytest.raises(EvidenceRejectedError, match="not a trusted key") as unknown:
            client.attach("vision/tiny@1", stranger.sign(_evaluation(version.root_digest)).raw)  # type: ignore[arg-type]
        assert unknown.value.facts["reason"] == "UnknownSignerError"

        about_other = trusted.sign(_evaluation(other.root_digest)).raw  # type: ignore[arg-type]
        with pytest.raises(EvidenceRejectedError, match="the bundle is about sha256:"):
            client.attach("vision/tiny@1", about_other)

        files = [f for f in version.files]
        from attest.digests import FileDigest

        fewer = [FileDigest(f.path, f.size, f.digest[7:]) for f in files[1:]]
        partial = oms_statement("vision/tiny", fewer)
        forged = partial.__class__(
            (partial.subjects[0].__class__("vision/tiny", version.root_digest[7:]),),
            partial.predicate_type,
            partial.predicate,
        )
        with pytest.raises(EvidenceRejectedError, match="not signed: ") as mismatch:
            client.attach("vision/tiny@1", trusted.sign(forged).raw)
        assert mismatch.value.facts["reason"] == "ManifestMismatchError"

        raw = bytearray(trusted.sign(_evaluation(version.root_digest)).raw)  # type: ignore[arg-type]
        with pytest.raises(EvidenceRejectedError, match="not valid JSON"):
            client.attach("vision/tiny@1", bytes(raw[:-10]))

        # only the registry's own scan attestation and ML-BOM are there (the BOM is built off
        # the request path: listing it waits while it is pending)
        assert len(client.list_attestations("vision/tiny@1", CYCLONEDX_BOM)) == 1
        stored = client.list_attestations("vision/tiny@1")
        assert [(a.signer, a.predicate_type) for a in stored] == [
            ("registry", SCAN),
            ("registry", CYCLONEDX_BOM),
        ]
        with pytest.raises(NotFoundError):
            client.attach("vision/tiny@9", about_other)


def test_without_identities_nothing_verifies(
    live: Live, model_dir: Path, signer: KeySigner
) -> None:
    with live.client() as client:
        version = client.push(model_dir, "vision/tiny@1")
        with pytest.raises(EvidenceRejectedError, match="no signer identity is registered"):
            client.attach("vision/tiny@1", signer.sign(_evaluation(version.root_digest)).raw)  # type: ignore[arg-type]


def test_identities(live: Live, signer: KeySigner) -> None:
    pem = keys.public_pem(signer.public_key).decode()
    with live.client() as client:
        added = client.add_key_identity("training-ci", pem)
        assert added.fingerprint == signer.identity
        client.add_sigstore_identity(
            "eval-ci", issuer="https://token.actions.githubusercontent.com",
            identity=r"https://github\.com/acme/.*", regex=True,
        )  # fmt: skip
        ed = KeySigner(keys.generate(KeyType.ED25519))
        client.add_key_identity("ed", keys.public_pem(ed.public_key).decode())
        assert [i.name for i in client.list_identities()] == ["ed", "eval-ci", "training-ci"]
        with pytest.raises(ConflictError, match="already registered"):
            client.add_key_identity("again", pem)
        with pytest.raises(ConflictError):
            client.add_key_identity("training-ci", keys.public_pem(ed.public_key).decode())
        with pytest.raises(InvalidRequestError, match="not a supported PEM public key"):
            client.add_key_identity(
                "bad", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            )
        with pytest.raises(InvalidRequestError, match="invalid identity regex"):
            client.add_sigstore_identity("re", issuer="https://x.example", identity="(", regex=True)


def test_only_admins_manage_identities(live: Live, signer: KeySigner) -> None:
    from registry.server.db import make_engine, make_sessionmaker

    engine = make_engine(live.settings.resolved_database_url)
    tokens = TokenService(make_sessionmaker(engine))
    publisher = tokens.create(name="pub", role=Role.PUBLISHER, namespace="vision").secret
    engine.dispose()
    with live.client(token=publisher) as client, pytest.raises(PermissionDeniedError):
        client.add_key_identity("x", keys.public_pem(signer.public_key).decode())
    with httpx.Client(timeout=60, base_url=live.url) as http:
        assert http.get("/v1/identities").status_code == 401
