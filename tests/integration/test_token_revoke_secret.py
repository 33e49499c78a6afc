"""``modelseal token revoke`` given a whole token: the secret never leaves the machine, and no
output shows more of it than the public ``ms_<id>``."""

from __future__ import annotations

import pytest

from registry.errors import RegistryError
from registry.sdk.client import public_token_id
from tests.support import Live, run_cli


def test_revoking_with_a_pasted_whole_token_never_echoes_its_secret(live: Live) -> None:
    """Attacker: anyone who reads the terminal or logs (docs/threat-model.md: leak a token or
    secret in any output). A user pastes the whole token instead of its id; the acceptance is
    that the token is revoked all the same."""
    with live.client() as admin:
        created = admin.create_token("ci", "deployer", "fraud")
    token = created.token
    assert token is not None
    secret = token.split("_", 2)[2]
    revoked = run_cli("token", "revoke", token, live=live)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert secret not in revoked.stdout + revoked.stderr
    assert public_token_id(token) in revoked.stderr, revoked.stderr
    with live.client() as admin:
        assert next(t for t in admin.list_tokens() if t.id == created.id).revoked
    # A whole token that does not exist (or no longer does): the error names the id only.
    for pasted in (token, f"ms_{'0' * 16}_{secret}", f"{secret}", f"ms_{created.id}_{secret}x"):
        missing = run_cli("token", "revoke", pasted, live=live)
        output = missing.stdout + missing.stderr
        assert secret not in output, output
    # The SDK as well: the secret is not sent, and no error carries it.
    with live.client() as admin:
        with pytest.raises(RegistryError) as caught:
            admin.revoke_token(f"ms_{'0' * 16}_{secret}")
    assert secret not in str(caught.value)
    with live.client() as admin:
        with pytest.raises(RegistryError) as caught:
            admin.revoke_token(secret)
    assert secret not in str(caught.value)
