"""A push interrupted part-way resumes its upload sessions on the next run, through any replica;
a refused upload is cancelled; identical re-pushes add no evidence."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from attest import keys
from attest.predicates import OMS_SIGNATURE
from attest.signing import KeySigner
from registry.errors import ConnectionFailedError, DigestMismatchError
from registry.sdk.client import RegistryClient
from registry.sdk.resume import UploadJournal
from tests.support import Live, free_port, replica, run_cli

MiB = 1024 * 1024


class Interrupted(Exception):
    """Stands for the process dying mid-push."""


def one_file_model(root: Path, chunk: int) -> Path:
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(2 * chunk + 1234))  # three chunks
    return root


def audit_targets(client: RegistryClient, action: str) -> list[str]:
    return [e["target"] for e in client.audit_entries() if e["action"] == action]


def test_an_interrupted_push_resumes_its_session_on_another_replica(
    live: Live, tmp_path: Path
) -> None:
    chunk = live.settings.min_chunk_bytes
    model = one_file_model(tmp_path / "m", chunk)
    first = live.client(chunk_size=chunk)
    sent = 0

    def die_in_the_second_chunk(n: int) -> None:
        nonlocal sent
        sent += n
        if sent > chunk:
            raise Interrupted

    with pytest.raises(Interrupted):
        first.push(model, "team/resumed@1", progress=die_in_the_second_chunk)
    recorded = list(first.uploads.open_uploads())
    assert len(recorded) == 1
    session = recorded[0].upload_id
    status = httpx.get(f"{live.url}/v1/uploads/{session}",
                       headers={"Authorization": f"Bearer {live.admin_token}"}).json()  # fmt: skip
    # the chunks sent whole landed (a chunk cut mid-body would not): some, not all
    assert status["offset"] in (chunk, 2 * chunk)

    with replica(live.settings) as other:
        second = RegistryClient(other, live.admin_token, chunk_size=chunk)
        seen: list[int] = []
        version = second.push(model, "team/resumed@1", progress=seen.append)
        # resumed: the first report is the bytes already there (a chunk whose body was sent
        # whole may have landed after the look above)
        assert seen[0] in (chunk, 2 * chunk) and seen[0] >= status["offset"]
        assert sum(seen) == model.joinpath("weights.bin").stat().st_size
        assert f"/v1/uploads/{session}" in audit_targets(second, "finish_upload")
        assert (
            audit_targets(second, "start_upload").count("/v1/namespaces/team/uploads") == 1
        )  # one session for the whole push, not two
        assert list(second.uploads.open_uploads()) == []
        target = tmp_path / "pulled"
        second.pull(f"team/resumed@{version.root_digest}", target, unsafe_skip_verify=True)
        assert (target / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()


def test_a_session_the_registry_no_longer_knows_is_started_again(
    live: Live, tmp_path: Path
) -> None:
    chunk = live.settings.min_chunk_bytes
    model = one_file_model(tmp_path / "m", chunk)
    client = live.client(chunk_size=chunk)
    digest = hashlib.sha256((model / "weights.bin").read_bytes()).hexdigest()
    size = (model / "weights.bin").stat().st_size
    journal = client.uploads
    journal.remember("team", digest, size, "00000000-0000-4000-8000-000000000000")
    assert journal.recall("team", digest, size + 1) is None  # another size: not this blob
    assert journal.recall("other", digest, size) is None
    assert UploadJournal(journal.directory).recall("team", digest, size) is not None
    version = client.push(model, "team/fresh@1")
    assert version.file_count == 1
    assert list(journal.open_uploads()) == []
    # a damaged record is no record
    journal.remember("team", digest, size, "x")
    next(journal.directory.glob("*.json")).write_text("{not json")
    assert journal.recall("team", digest, size) is None
    assert client.push(model, "team/fresh@1").root_digest == version.root_digest


def test_a_refused_upload_is_cancelled_and_forgotten(live: Live, tmp_path: Path) -> None:
    chunk = live.settings.min_chunk_bytes
    model = one_file_model(tmp_path / "m", chunk)
    client = live.client(chunk_size=chunk)
    weights = model / "weights.bin"
    sessions: list[str] = []

    def change_the_file_under_the_upload(n: int) -> None:
        if not sessions:
            sessions.extend(u.upload_id for u in client.uploads.open_uploads())
            data = bytearray(weights.read_bytes())
            data[-1] ^= 0xFF  # same size, other bytes: only the registry's hash can tell
            weights.write_bytes(bytes(data))

    with pytest.raises(DigestMismatchError):
        client.push(model, "team/changed@1", progress=change_the_file_under_the_upload)
    assert len(sessions) == 1
    assert list(client.uploads.open_uploads()) == []
    gone = httpx.get(f"{live.url}/v1/uploads/{sessions[0]}",
                     headers={"Authorization": f"Bearer {live.admin_token}"})  # fmt: skip
    assert gone.status_code == 404


def test_an_unreachable_registry_keeps_the_record_and_the_cli_says_run_it_again(
    tmp_path: Path,
) -> None:
    model = one_file_model(tmp_path / "m", 1024)
    dead = f"http://127.0.0.1:{free_port()}"
    client = RegistryClient(dead, "ms_0000000000000000_" + "x" * 43)
    with pytest.raises(ConnectionFailedError):
        client.push(model, "team/m@1")
    done = run_cli("push", str(model), "team/m@1", "--no-progress",
                   extra_env={"MODELSEAL_URL": dead,
                              "MODELSEAL_TOKEN": "ms_0000000000000000_" + "x" * 43})  # fmt: skip
    assert done.returncode == 1
    assert "run the same push again to resume" in done.stderr
    assert "Traceback" not in done.stderr


def test_identical_signed_pushes_leave_one_signature(live: Live, tmp_path: Path) -> None:
    private, public = keys.write_keypair(tmp_path / "ci", keys.generate())
    client = live.client()
    client.add_key_identity("ci", public.read_text())
    signer = KeySigner.from_file(private)
    model = one_file_model(tmp_path / "m", 1024)
    for _ in range(3):
        client.push(model, "team/signed@1", signer=signer)
    assert len(client.list_attestations("team/signed@1", OMS_SIGNATURE)) == 1


def test_an_outage_in_the_middle_is_resumed_within_the_same_push(
    live: Live, tmp_path: Path
) -> None:
    """A chunk that breaks in transit is resent from the registry's offset, not from zero."""
    chunk = live.settings.min_chunk_bytes
    model = one_file_model(tmp_path / "m", chunk)
    client = live.client(chunk_size=chunk)
    sent = 0
    broke = False
    original = client._raw.send_file

    def flaky(*args: object, **kwargs: object) -> object:
        nonlocal broke
        if not broke and kwargs.get("offset") == chunk:
            broke = True
            client._raw._drop_connection()
            raise ConnectionFailedError("upload interrupted: connection reset by peer")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    client._raw.send_file = flaky  # type: ignore[method-assign]

    def count(n: int) -> None:
        nonlocal sent
        sent += n

    client.push(model, "team/flaky@1", progress=count)
    assert broke
    assert sent == (model / "weights.bin").stat().st_size  # nothing sent twice
