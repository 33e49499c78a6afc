"""OMS model signatures: our statements against model_signing's CLI, and its bundles against ours;
keyless bundles from the public-good Sigstore instance verified offline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from attest import keys
from attest.bundle import Bundle
from attest.digests import FileDigest, root_digest, sha256_file
from attest.errors import (
    ManifestMismatchError,
    SignatureError,
    SubjectMismatchError,
    UnknownSignerError,
)
from attest.keys import TrustedKey
from attest.oms import check_oms, oms_statement
from attest.predicates import OMS_SIGNATURE
from attest.signing import KeySigner
from attest.verifying import SigstoreIdentity, Verifier
from tests.peers import model_signing
from tests.support import make_model_dir

DATA = Path(__file__).resolve().parents[2] / "data"
KEYLESS = DATA / "oms-sigstore-v1.1.0"
SIGNER = ("https://sigstore.verify.ibm.com/oauth2", "stefanb@us.ibm.com")


def _files(directory: Path) -> list[FileDigest]:
    out = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest, size = sha256_file(path)
        out.append(FileDigest(path.relative_to(directory).as_posix(), size, digest))
    return out


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    return keys.write_keypair(tmp_path / "signer", keys.generate())


def test_our_oms_bundle_passes_model_signing_verify(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    model = make_model_dir(tmp_path / "model")
    statement = oms_statement("vision/tiny", _files(model))
    assert statement.subject.sha256 == root_digest(_files(model))
    signature = tmp_path / "model.sig"
    signature.write_bytes(KeySigner.from_file(keypair[0]).sign(statement).raw)
    ok = model_signing("verify", "key", "--public_key", str(keypair[1]),
                        "--signature", str(signature), str(model))  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr

    shard = next(model.glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    tampered = model_signing("verify", "key", "--public_key", str(keypair[1]),
                              "--signature", str(signature), str(model))  # fmt: skip
    assert tampered.returncode != 0


def test_model_signing_bundle_verifies_here_and_covers_the_files(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    model = make_model_dir(tmp_path / "model")
    signature = tmp_path / "model.sig"
    made = model_signing("sign", "key", "--private_key", str(keypair[0]),
                          "--signature", str(signature), str(model))  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    verifier = Verifier(keys=[TrustedKey.from_pem("ci", keypair[1].read_bytes())])
    verified = verifier.verify(Bundle.parse(signature.read_bytes()))
    assert verified.statement.predicate_type == OMS_SIGNATURE
    check_oms(verified.statement, _files(model))

    (model / "extra.bin").write_bytes(b"smuggled")
    with pytest.raises(ManifestMismatchError, match=r"not signed: extra\.bin"):
        check_oms(verified.statement, _files(model))


def test_check_oms_names_every_difference(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    files = _files(model)
    statement = oms_statement("ns/m", files)
    check_oms(statement, files)
    changed = [FileDigest(f.path, f.size, "0" * 64) if f.path == "config.json" else f
               for f in files]  # fmt: skip
    with pytest.raises(ManifestMismatchError, match=r"different: config\.json"):
        check_oms(statement, changed)
    with pytest.raises(ManifestMismatchError, match="not pushed: " + re.escape(files[0].path)):
        check_oms(statement, files[1:])
    # Resources that match, under a subject that names something else.
    other_subject = oms_statement("ns/m", changed).subjects
    forged = statement.__class__(other_subject, statement.predicate_type, statement.predicate)
    with pytest.raises(SubjectMismatchError, match="signature subject is sha256:"):
        check_oms(forged, files)


def test_keyless_public_good_bundle_verifies_offline() -> None:
    bundle = Bundle.parse((KEYLESS / "model.sig").read_bytes())
    assert bundle.is_keyless
    exact = Verifier(identities=[SigstoreIdentity("ibm", *SIGNER)])
    verified = exact.verify(bundle)
    assert verified.signer == "ibm"
    assert verified.signer_id == f"sigstore:{SIGNER[0]}|{SIGNER[1]}"
    check_oms(verified.statement, _files(KEYLESS / "model"))

    pattern = Verifier(
        identities=[SigstoreIdentity("ibm-any", SIGNER[0], r".*@us\.ibm\.com", regex=True)]
    )
    assert pattern.verify(bundle).signer == "ibm-any"


@pytest.mark.parametrize(
    "identity",
    [
        SigstoreIdentity("wrong-email", SIGNER[0], "mallory@example.com"),
        SigstoreIdentity("wrong-issuer", "https://accounts.google.com", SIGNER[1]),
        SigstoreIdentity("partial-regex", SIGNER[0], r"stefanb", regex=True),
    ],
)
def test_keyless_bundle_from_an_untrusted_identity_is_refused(identity: SigstoreIdentity) -> None:
    bundle = Bundle.parse((KEYLESS / "model.sig").read_bytes())
    with pytest.raises(UnknownSignerError, match="not a trusted identity"):
        Verifier(identities=[identity]).verify(bundle)


def test_keyless_bundle_with_a_tampered_payload_is_refused() -> None:
    document = json.loads((KEYLESS / "model.sig").read_bytes())
    import base64

    payload = base64.b64decode(document["dsseEnvelope"]["payload"])
    payload = re.sub(rb'"sha256": "[0-9a-f]{64}"', b'"sha256": "' + b"0" * 64 + b'"', payload, 1)
    document["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle = Bundle.parse(json.dumps(document).encode())
    with pytest.raises(SignatureError):
        Verifier(identities=[SigstoreIdentity("ibm", *SIGNER)]).verify(bundle)


def test_keyless_bundle_against_the_wrong_trusted_root(tmp_path: Path) -> None:
    """Pinned roots matter: the staging root does not vouch for public-good certificates."""
    import sigstore

    staging = Path(sigstore.__file__).parent / "_store"
    roots = list(staging.glob("*sigstage*/trusted_root.json"))
    if not roots:
        pytest.skip("sigstore-python ships no staging root here")
    copy = tmp_path / "trusted_root.json"
    shutil.copy(roots[0], copy)
    bundle = Bundle.parse((KEYLESS / "model.sig").read_bytes())
    verifier = Verifier(identities=[SigstoreIdentity("ibm", *SIGNER)], trusted_root=copy)
    with pytest.raises(SignatureError):
        verifier.verify(bundle)
