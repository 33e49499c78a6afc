"""A Sigstore identity's id binds its regex flag: a trust file cannot turn an exact identity into
a pattern and keep its id (and with it what the id was recorded for)."""

from __future__ import annotations

from pathlib import Path

from attest.bundle import Bundle
from attest.verifying import SigstoreIdentity, Verifier

KEYLESS = Path(__file__).resolve().parents[2] / "data" / "oms-sigstore-v1.1.0"
ISSUER, SAN = "https://sigstore.verify.ibm.com/oauth2", "stefanb@us.ibm.com"


def test_the_regex_flag_is_part_of_the_identity_id() -> None:
    exact = SigstoreIdentity("ibm", ISSUER, SAN)
    pattern = SigstoreIdentity("ibm", ISSUER, SAN, regex=True)  # "." matches any character
    assert exact.signer_id == f"sigstore:{ISSUER}|{SAN}"  # unchanged for exact identities
    assert pattern.signer_id != exact.signer_id
    assert pattern != exact


def test_a_bundle_verified_under_a_pattern_does_not_carry_the_exact_identitys_id() -> None:
    """Attacker: a malicious export (or any trust file) declaring ``regex: true`` for the
    identity string a release recorded as exact: the pattern admits other certificates
    (``stefanbXus.ibm.com``), so what it verifies must not pass for the exact identity. The
    acceptance: the exact identity verifies the public-good bundle under its usual id."""
    bundle = Bundle.parse((KEYLESS / "model.sig").read_bytes())
    exact = Verifier(identities=[SigstoreIdentity("ibm", ISSUER, SAN)]).verify(bundle)
    assert exact.signer_id == f"sigstore:{ISSUER}|{SAN}"
    widened = Verifier(identities=[SigstoreIdentity("ibm", ISSUER, SAN, regex=True)]).verify(bundle)
    assert widened.signer == "ibm"
    assert widened.signer_id != exact.signer_id
    assert "regex" in widened.signer_id
