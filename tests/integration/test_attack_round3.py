"""Holes an independent attacker found in pagination, proxy headers and CLI output; each test
failed before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from registry.errors import InvalidRequestError
from tests.integration.test_concurrency import _wait_healthy
from tests.support import Live, free_port, run_cli

ESC = "\x1b"


def test_the_sdk_refuses_a_link_cycle_of_two_cursors(live: Live) -> None:
    client = live.client()
    pages = 0

    def cycling(*args: object, **kwargs: object) -> httpx.Response:
        nonlocal pages
        pages += 1
        cursor = "c1.YQ" if pages % 2 else "c1.Yg"
        link = f'</v1/namespaces?cursor={cursor}>; rel="next"'
        return httpx.Response(200, json=[{"name": str(pages)}], headers={"Link": link})

    client._request = cycling  # type: ignore[method-assign,assignment]
    with pytest.raises(InvalidRequestError, match="does not move on"):
        client.list_namespaces()
    assert pages == 3  # the third page named a cursor already followed


def test_a_scoped_token_lists_its_namespace_from_one_bounded_query(
    live: Live, tmp_path: Path
) -> None:
    admin = live.client()
    for ns in ("aa", "bb", "cc"):
        model = tmp_path / ns
        model.mkdir()
        (model / "w.bin").write_bytes(ns.encode() * 8)
        admin.push(model, f"{ns}/m@1")
    token = admin.create_token("bb-reader", role="deployer", namespace="bb").token
    assert token is not None
    with httpx.Client(
        timeout=60, base_url=live.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        first = http.get("/v1/namespaces", params={"limit": 1})
        assert first.json() == [{"name": "bb"}] and "link" not in first.headers
    with httpx.Client(timeout=60, base_url=live.url,
                      headers={"Authorization": f"Bearer {live.admin_token}"}) as http:  # fmt: skip
        page = http.get("/v1/namespaces", params={"limit": 1})
        assert page.json() == [{"name": "aa"}] and 'rel="next"' in page.headers["link"]


def test_forwarded_for_is_not_believed_unless_a_proxy_is_configured(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODELSEAL_RATE_PER_ADDRESS": "0.5", "MODELSEAL_BURST_PER_ADDRESS": "3"}
    env = {k: v for k, v in env.items() if k != "MODELSEAL_FORWARDED_ALLOW_IPS"}
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--data-dir",
                             str(tmp_path / "data"), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        spoofed = [{"X-Forwarded-For": f"203.0.113.{i}"} for i in range(12)]
        codes = [httpx.get(f"{url}/v1/namespaces", headers=h).status_code for h in spoofed]
        assert codes.count(429) >= 6, codes  # one peer, one bucket, whatever the header says
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_pickle_named_with_escape_sequences_cannot_drive_the_terminal(
    live: Live, tmp_path: Path
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    forged = f"os{ESC}]0;TITLE\x07{ESC}[2J{ESC}[32mVERIFIED{ESC}[0m{ESC}[8m"
    (model / "model.pkl").write_bytes(b"\x80\x02c" + forged.encode() + b"\nsystem\n(S'true'\ntR.")
    pushed = run_cli("push", str(model), "team/evil@1", "--no-progress", live=live)
    released = run_cli("release", "team/evil@1", live=live)
    shown = run_cli("show", "team/evil@1", live=live)
    for done in (pushed, released, shown):
        text = done.stdout + done.stderr
        assert ESC not in text and "\x07" not in text, text
    assert "\ufffd" in pushed.stderr + released.stderr + shown.stdout  # shown, defanged


def test_verify_evidence_output_strips_controls_from_the_exports_own_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from registry.cli.evidence import _print_verdict

    check = SimpleNamespace(ok=False, link=f"export{ESC}[2J", message=f"bad {ESC}[32mVERIFIED\nok")
    verdict = SimpleNamespace(checks=[check], ok=False, holds=False, anchored=True, unanchored=[])
    with pytest.raises(Exception):  # typer.Exit(1)
        _print_verdict(verdict)
    out = capsys.readouterr().out
    assert ESC not in out and "NOT VERIFIED" in out
    assert len([line for line in out.splitlines() if "VERIFIED" in line]) == 2  # no forged line


def test_bidi_overrides_in_names_are_shown_not_obeyed() -> None:
    from registry.cli.common import Table, printable

    assert printable("weights\u202elkp.nib") == "weights\ufffdlkp.nib"
    assert printable("a\u2066b\u200fc") == "a\ufffdb\ufffdc"
    table = Table("path")
    table.add_row("weights\u202elkp.nib")
    assert "\u202e" not in table.render(colour=True)
    assert printable("one\ntwo", lines=False) == "one\ufffdtwo"


def test_a_version_the_scanner_rejects_is_audited_and_raises_a_security_event(
    live: Live, tmp_path: Path
) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.pkl").write_bytes(b"\x80\x02cos\nsystem\n(S'true'\ntR.")
    client = live.client()
    version = client.push(model, "team/bad@1")
    assert version.state == "rejected"
    entries = [e for e in client.audit_entries() if e["action"] == "scan_reject"]
    assert [e["target"] for e in entries] == ["/v1/namespaces/team/artifacts/bad/versions/1"]
    assert entries[0]["actor"] == "registry" and "os.system" in entries[0]["details"]
    metrics = httpx.get(f"{live.url}/metrics",
                        headers={"Authorization": f"Bearer {live.admin_token}"}).text  # fmt: skip
    assert 'modelseal_security_events_total{event="version_rejected"} 1.0' in metrics
    assert run_cli("audit", "verify", live=live).returncode == 0


def _session(http: httpx.Client, namespace: str, data: bytes) -> str:
    import hashlib

    started = http.post(f"/v1/namespaces/{namespace}/uploads",
                        json={"digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
                              "size": len(data)})  # fmt: skip
    assert started.status_code in (200, 201), started.text
    return str(started.json()["id"])


def test_a_planted_journal_record_cannot_send_a_push_into_another_namespace(
    live: Live, tmp_path: Path
) -> None:
    import hashlib

    admin = live.client()
    evil = admin.create_token("evil-pub", role="publisher", namespace="evil").token
    secret = os.urandom(4096)
    digest = hashlib.sha256(secret).hexdigest()
    with httpx.Client(
        timeout=60, base_url=live.url, headers={"Authorization": f"Bearer {evil}"}
    ) as http:
        planted = _session(http, "evil", secret)  # knowing digest and size, not the bytes
    admin.uploads.remember("victim", digest, len(secret), planted)
    model = tmp_path / "m"
    model.mkdir()
    (model / "secret.bin").write_bytes(secret)
    admin.push(model, "victim/m@1")
    assert admin.show("victim/m@1").files[0].digest == f"sha256:{digest}"
    with httpx.Client(
        timeout=60, base_url=live.url, headers={"Authorization": f"Bearer {evil}"}
    ) as http:
        assert http.get(f"/v1/uploads/{planted}").json()["offset"] == 0  # not one byte went there
        stolen = http.put("/v1/namespaces/evil/artifacts/m/versions/1", json={
            "kind": "model", "files": [{"path": "secret.bin", "size": len(secret),
                                        "digest": f"sha256:{digest}"}]})  # fmt: skip
        assert stolen.status_code == 400 and "missing-blobs" in stolen.json()["type"]


def test_another_pusher_of_the_namespace_cannot_touch_a_session(live: Live) -> None:
    admin = live.client()
    alice = admin.create_token("alice", role="publisher", namespace="team").token
    bob = admin.create_token("bob", role="publisher", namespace="team").token
    data = os.urandom(2048)
    as_alice = {"Authorization": f"Bearer {alice}"}
    as_bob = {"Authorization": f"Bearer {bob}"}
    with httpx.Client(timeout=60, base_url=live.url, headers=as_alice) as a, \
            httpx.Client(timeout=60, base_url=live.url, headers=as_bob) as b:  # fmt: skip
        session = _session(a, "team", data)
        assert b.get(f"/v1/uploads/{session}").status_code == 404
        assert b.patch(f"/v1/uploads/{session}", content=data[:1024],
                       headers={"Content-Range": "bytes 0-1023"}).status_code == 404  # fmt: skip
        assert b.delete(f"/v1/uploads/{session}").status_code == 404
        assert a.get(f"/v1/uploads/{session}").json()["offset"] == 0
    with httpx.Client(timeout=60, base_url=live.url,
                      headers={"Authorization": f"Bearer {live.admin_token}"}) as root:  # fmt: skip
        assert root.get(f"/v1/uploads/{session}").status_code == 200  # admins may clean up
