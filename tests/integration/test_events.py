"""Security events end to end: a real HTTP receiver gets HMAC-signed webhooks, /metrics counts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from attest import keys
from attest.signing import KeySigner
from registry.errors import PullVerificationError, ReleaseRefusedError
from registry.server.config import Settings
from registry.server.db import migrate
from registry.server.services.events import SIGNATURE_HEADER, WebhookTargetError, verify_signature
from tests.support import Live, make_model_dir, serve

SECRET = "s3cret-webhook-key"
POLICY = "model:\n  require:\n    signature: [training-ci]\n    scan: clean\n"


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.received.append((dict(self.headers), body))
                    receiver.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.received) < count and time.monotonic() < deadline:
                self.cond.wait(0.1)
            for headers, body in self.received:
                assert verify_signature(SECRET.encode(), body, headers[SIGNATURE_HEADER])
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024, **extra)
    settings.data_dir.mkdir(parents=True)
    migrate(settings.resolved_database_url)
    return settings


def _metric(live: Live, name: str) -> float:
    text = httpx.get(f"{live.url}/metrics",
                     headers={"Authorization": f"Bearer {live.admin_token}"}).text  # fmt: skip
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if line.split(" ")[0] == name or name.endswith("}"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_security_events_reach_the_webhook_signed_and_the_metrics(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = _settings(
        tmp_path,
        webhooks=[receiver.url],
        webhook_secret=SECRET,
        webhook_allow_private=True,  # the receiver is on loopback
        auth_failure_burst=3,
    )
    training = KeySigner(keys.generate())
    with serve(settings) as live, live.client() as admin:
        admin.add_key_identity("training-ci", keys.public_pem(training.public_key).decode())
        admin.set_policy("ns", POLICY)
        admin.push(make_model_dir(tmp_path / "m1"), "ns/m@1")  # unsigned
        with pytest.raises(ReleaseRefusedError):
            admin.release("ns/m@1")
        admin.reject("ns/m@1", "unsigned build")
        admin.push(make_model_dir(tmp_path / "m2", seed=2), "ns/m@2", signer=training)
        admin.release("ns/m@2")
        admin.revoke("ns/m@2", "key leaked")
        with pytest.raises(PullVerificationError, match="revoked"):
            admin.pull("ns/m@2", tmp_path / "out")
        bad = {"Authorization": "Bearer ms_bad_guess"}
        for _ in range(3):
            assert httpx.get(f"{live.url}/v1/namespaces", headers=bad).status_code == 401

        events = receiver.events(5)
        kinds = [e["event"] for e in events]
        assert kinds == [
            "release_refused",
            "version_rejected",
            "version_revoked",
            "verification_failure",
            "auth_failure_burst",
        ]
        assert events[0]["reasons"] == ["signature: missing"]
        assert events[0]["actor"] == "admin" and events[0]["request_id"]
        assert events[2]["reason"] == "key leaked" and events[2]["version"] == "ns/m@2"
        assert events[3]["source"] == "client pull" and "revoked" in events[3]["detail"]
        assert events[4]["client"] == "127.0.0.1"

        name = "modelseal_security_events_total"
        assert _metric(live, f'{name}{{event="release_refused"}}') == 1
        assert _metric(live, f'{name}{{event="auth_failure_burst"}}') == 1
        assert _metric(live, "modelseal_auth_failures_total") == 3
        assert _metric(live, 'modelseal_webhook_deliveries_total{outcome="delivered"}') >= 4
        # The report itself is audit-logged.
        actions = [e["action"] for e in admin.audit_entries()]
        assert "report_verification_failure" in actions


def test_metrics_need_an_auditor_token_unless_public(tmp_path: Path) -> None:
    with serve(_settings(tmp_path)) as live, live.client() as admin:
        deployer = admin.create_token("d", "deployer", "ns").token
        auditor = admin.create_token("a", "auditor", None).token

        def get(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.get(f"{live.url}/metrics", headers=headers).status_code

        assert (get(None), get("ms_x_y"), get(deployer), get(auditor)) == (401, 401, 403, 200)
    with serve(_settings(tmp_path / "public", metrics_public=True)) as live:
        assert httpx.get(f"{live.url}/metrics").status_code == 200


def test_a_loopback_webhook_is_refused_at_start_unless_allowed(tmp_path: Path) -> None:
    settings = _settings(tmp_path, webhooks=["http://127.0.0.1:9/hook"], webhook_secret=SECRET)
    with pytest.raises(WebhookTargetError, match="loopback"), serve(settings):
        pass


def test_verification_failures_are_accepted_only_about_the_callers_namespaces(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Attacker: a deployer of one namespace flooding security channels with false alarms about
    another team's models. Refused (403, audited, no event); its own namespace is accepted (the
    acceptance is test_security_events_reach_the_webhook_signed_and_the_metrics)."""
    settings = _settings(tmp_path, webhooks=[receiver.url], webhook_secret=SECRET,
                         webhook_allow_private=True)  # fmt: skip
    with serve(settings) as live, live.client() as admin:
        token = admin.create_token("deploy-fraud", "deployer", "fraud").token
        assert token is not None
        report = f"{live.url}/v1/events/verification-failure"
        headers = {"Authorization": f"Bearer {token}"}
        own = {"reference": "fraud/m@1", "reason": "digest mismatch"}
        assert httpx.post(report, json=own, headers=headers).status_code == 204
        other = {"reference": "vision/resnet@prod", "reason": "forged alarm"}
        refused = httpx.post(report, json=other, headers=headers)
        assert refused.status_code == 403, refused.text
        assert "may not read in namespace 'vision'" in refused.json()["detail"]
        garbage = {"reference": "not a reference", "reason": "x"}
        assert httpx.post(report, json=garbage, headers=headers).status_code == 400
        events = receiver.events(1)
        time.sleep(0.5)  # a second (wrong) event would have arrived by now
        assert [e["reference"] for e in receiver.events(1)] == ["fraud/m@1"], events
        assert _metric(live, 'modelseal_security_events_total{event="verification_failure"}') == 1
        denied = [(e["actor"], e["outcome"]) for e in admin.audit_entries()
                  if e["action"] == "report_verification_failure"]  # fmt: skip
        assert denied == [("deploy-fraud", "ok"), ("deploy-fraud", "denied")]
