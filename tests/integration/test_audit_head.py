"""The audit head a pull relies on is recomputed by the registry, not read from a column: rows a
database attacker removes or edits after the checkpoint a client remembers refuse the pull."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, update

from attest import keys
from attest.signing import KeySigner
from registry.errors import RegistryError
from registry.server.models import AuditEntry
from tests.integration.test_audit import _checkpoint, _db
from tests.support import Live


@pytest.mark.parametrize("attack", ["delete", "edit"])
def test_entries_tampered_after_the_remembered_checkpoint_refuse_the_pull(
    live: Live, model_dir: Path, tmp_path: Path, attack: str
) -> None:
    signer = KeySigner(keys.generate())
    with live.client() as client:
        client.add_key_identity("ci", keys.public_pem(signer.public_key).decode())
        client.set_policy("ns", "model:\n  require:\n    signature: [ci]\n    scan: clean\n")
        client.push(model_dir, "ns/m@0", signer=signer)
        client.release("ns/m@0")
        seen, _head = _checkpoint(live)
        client.pull("ns/m@0", tmp_path / "first")  # remembers the checkpoint through the status
        for n in range(3):
            client.create_token(f"d{n}", "deployer", "ns")  # entries after the checkpoint
    engine = _db(live)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        if attack == "delete":
            conn.execute(delete(AuditEntry).where(AuditEntry.seq == seen + 2))
        else:
            conn.execute(update(AuditEntry).where(AuditEntry.seq == seen + 2)
                         .values(actor="mallory"))  # fmt: skip
    engine.dispose()  # type: ignore[attr-defined]
    with live.client() as client, pytest.raises(RegistryError) as refused:
        client.pull("ns/m@0", tmp_path / "second")
    message = str(refused.value)
    assert (f"entry {seen + 3} does not follow" in message if attack == "delete"
            else f"entry {seen + 2} was modified" in message), message  # fmt: skip
    assert not (tmp_path / "second").exists()
