"""Statements, DSSE and bundles: acceptance next to every rejection (the tamper corpus)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from sigstore_models.bundle import v1 as bundle_pb

from attest import keys
from attest.bundle import Bundle
from attest.errors import (
    DocumentTooLargeError,
    InvalidStatementError,
    MalformedDocumentError,
    NestingTooDeepError,
    SignatureCountError,
    SignatureError,
    UnknownSignerError,
    VerificationError,
    WrongMediaTypeError,
    WrongPayloadTypeError,
)
from attest.keys import KeyType, TrustedKey
from attest.signing import KeySigner
from attest.statement import Statement, make_statement
from attest.verifying import Verifier

ROOT = "ab" * 32
OTHER = "cd" * 32


def _statement(digest: str = ROOT) -> Statement:
    return make_statement(
        name="vision/resnet",
        root_digest=digest,
        predicate_type="https://in-toto.io/attestation/test-result/v0.1",
        predicate={"result": "PASSED", "metrics": {"accuracy": 0.93}},
    )


@pytest.fixture(params=[KeyType.ECDSA_P256, KeyType.ED25519])
def signer(request: pytest.FixtureRequest) -> KeySigner:
    return KeySigner(keys.generate(request.param))


def _verifier(*signers: KeySigner) -> Verifier:
    return Verifier(keys=[TrustedKey(f"k{i}", s.public_key) for i, s in enumerate(signers)])


def test_sign_and_verify(signer: KeySigner) -> None:
    bundle = signer.sign(_statement())
    verified = _verifier(signer).verify(Bundle.parse(bundle.raw))
    assert verified.statement == _statement()
    assert verified.signer == "k0"
    assert verified.signer_id == signer.identity
    # sigstore's own models accept the bundle shape
    parsed = bundle_pb.Bundle.from_json(bundle.raw)
    assert parsed.verification_material.public_key.hint == signer.identity.removeprefix("sha256:")


def test_statement_bytes_are_canonical() -> None:
    payload = _statement().to_bytes()
    assert (
        payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    )
    assert Statement.parse(payload) == _statement()


def test_unknown_key_is_refused(signer: KeySigner) -> None:
    stranger = KeySigner(keys.generate())
    with pytest.raises(UnknownSignerError, match="which is not a trusted key"):
        _verifier(stranger).verify(signer.sign(_statement()))


def test_a_verifier_that_trusts_nothing_is_an_error() -> None:
    with pytest.raises(VerificationError, match="nothing is trusted"):
        Verifier()


# -- the tamper corpus ----------------------------------------------------------------------------


def _edit(bundle: Bundle, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(bundle.raw)
    change(document)
    return json.dumps(document).encode()


def _payload(document: dict[str, Any]) -> bytes:
    return base64.b64decode(document["dsseEnvelope"]["payload"])


def _set_payload(document: dict[str, Any], payload: bytes) -> None:
    document["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()


def test_flipped_payload_byte(signer: KeySigner) -> None:
    def flip(document: dict[str, Any]) -> None:
        payload = bytearray(_payload(document))
        payload[payload.index(b"PASSED")] ^= 0x01
        _set_payload(document, bytes(payload))

    with pytest.raises(SignatureError, match="does not verify"):
        _verifier(signer).verify(Bundle.parse(_edit(signer.sign(_statement()), flip)))


def test_signature_swapped_in_from_another_bundle(signer: KeySigner) -> None:
    other = signer.sign(_statement(OTHER))

    def swap(document: dict[str, Any]) -> None:
        document["dsseEnvelope"]["signatures"] = json.loads(other.raw)["dsseEnvelope"]["signatures"]

    with pytest.raises(SignatureError):
        _verifier(signer).verify(Bundle.parse(_edit(signer.sign(_statement()), swap)))


def test_changed_key_hint(signer: KeySigner) -> None:
    stranger = KeySigner(keys.generate())

    def rehint(document: dict[str, Any]) -> None:
        document["verificationMaterial"]["publicKey"]["hint"] = stranger.identity[7:]

    # the hint now names a trusted key that did not make the signature
    with pytest.raises(SignatureError):
        _verifier(signer, stranger).verify(Bundle.parse(_edit(signer.sign(_statement()), rehint)))


def test_swapped_subject(signer: KeySigner) -> None:
    def swap(document: dict[str, Any]) -> None:
        statement = json.loads(_payload(document))
        statement["subject"][0]["digest"]["sha256"] = OTHER
        _set_payload(document, json.dumps(statement).encode())

    with pytest.raises(SignatureError):
        _verifier(signer).verify(Bundle.parse(_edit(signer.sign(_statement()), swap)))


def test_changed_payload_type(signer: KeySigner) -> None:
    def retype(document: dict[str, Any]) -> None:
        document["dsseEnvelope"]["payloadType"] = "application/json"

    with pytest.raises(WrongPayloadTypeError, match="payloadType must be"):
        Bundle.parse(_edit(signer.sign(_statement()), retype))


@pytest.mark.parametrize("count", [0, 2])
def test_signature_count(signer: KeySigner, count: int) -> None:
    def resign(document: dict[str, Any]) -> None:
        signatures = document["dsseEnvelope"]["signatures"]
        document["dsseEnvelope"]["signatures"] = (signatures * 2)[:count]

    with pytest.raises(SignatureCountError, match=f"exactly one signature, found {count}"):
        Bundle.parse(_edit(signer.sign(_statement()), resign))


def test_empty_signature(signer: KeySigner) -> None:
    def empty(document: dict[str, Any]) -> None:
        document["dsseEnvelope"]["signatures"][0]["sig"] = ""

    with pytest.raises(SignatureCountError, match="empty"):
        Bundle.parse(_edit(signer.sign(_statement()), empty))


def test_truncated_bundle(signer: KeySigner) -> None:
    raw = signer.sign(_statement()).raw
    with pytest.raises(MalformedDocumentError, match="not valid JSON"):
        Bundle.parse(raw[: len(raw) // 2])


def test_wrong_media_type(signer: KeySigner) -> None:
    def old(document: dict[str, Any]) -> None:
        document["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1"

    with pytest.raises(WrongMediaTypeError, match="mediaType must be"):
        Bundle.parse(_edit(signer.sign(_statement()), old))


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b"\xff\xfe", MalformedDocumentError, "not valid UTF-8"),
        (b"{not json", MalformedDocumentError, "not valid JSON"),
        (b'{"a":1,"a":2}', MalformedDocumentError, "duplicate key"),
        (b"[1]", InvalidStatementError, "must be a JSON object"),
        (
            b'{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":'
            b'{"sha512":"00"}}],"predicateType":"t","predicate":{}}',
            InvalidStatementError,
            "has no sha256 digest",
        ),
        (
            b'{"_type":"https://in-toto.io/Statement/v0.1","subject":[],"predicateType":"t"}',
            InvalidStatementError,
            "_type must be",
        ),
        (b"[" * 70 + b"]" * 70, NestingTooDeepError, "nested deeper"),
        (b'{"x": NaN}', MalformedDocumentError, "NaN"),
    ],
)
def test_bad_payloads_are_refused_after_a_valid_signature(
    signer: KeySigner, payload: bytes, error: type[Exception], message: str
) -> None:
    """Even a correctly signed payload must be a valid statement."""
    from attest.bundle import build_key_bundle
    from attest.dsse import IN_TOTO_PAYLOAD_TYPE, pae

    signature = keys.sign(signer._key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
    bundle = build_key_bundle(payload, signature, signer.identity[7:])
    with pytest.raises(error, match=message):
        _verifier(signer).verify(Bundle.parse(bundle.raw))


def test_oversized_bundle_is_refused_before_parsing(signer: KeySigner) -> None:
    raw = signer.sign(_statement()).raw
    with pytest.raises(DocumentTooLargeError, match="the limit is 100"):
        Bundle.parse(raw, max_bytes=100)


def test_key_with_loose_permissions_is_refused(tmp_path: Any) -> None:
    from attest.errors import SigningError

    private, _ = keys.write_keypair(tmp_path / "ci", keys.generate())
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    KeySigner.from_file(private)
    private.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        KeySigner.from_file(private)


def test_signer_uri_makes_the_same_bundles(tmp_path: Any) -> None:
    """securesystemslib signer URIs (here file2:, the same path KMS/HSM URIs take)."""
    from attest.errors import SigningError
    from attest.signing import UriSigner

    key = keys.generate()
    private, _ = keys.write_keypair(tmp_path / "k", key)
    signer = UriSigner(f"file2:{private}", key.public_key())
    bundle = signer.sign(_statement())
    verified = Verifier(keys=[TrustedKey("kms", key.public_key())]).verify(bundle)
    assert verified.signer_id == signer.identity == f"sha256:{keys.fingerprint(key.public_key())}"
    with pytest.raises(SigningError, match="unknown signer URI scheme"):
        UriSigner("nope:thing", key.public_key())
    with pytest.raises(SigningError, match="cannot use signer"):
        UriSigner(f"file2:{private}", keys.generate().public_key())  # mismatched public key
