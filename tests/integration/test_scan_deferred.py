"""A version of more files than ``scan_inline_max_files`` is committed ``scanning`` and scanned by
the background job (``registry/server/services/bomjobs.py``) after the commit answered: until its
scan is recorded, none of its files is served to anyone (single files, batches, OCI), it cannot be
released or rejected, and deployers do not see it. The job then moves it to ``pending`` (or
``rejected``: an unsafe file) and builds a model's BOM once. The SDK's pull and release wait for
the scan.

The live server here runs no job worker (``BomJobs.start`` is switched off) and scans inline at
most 3 files: each test runs the worker itself, so the ``scanning`` state is there to be probed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from attest import keys
from attest.predicates import CYCLONEDX_BOM, SCAN
from attest.signing import KeySigner
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import Attestation, AuditEntry, BomJob, Version
from registry.server.services import Role, TokenService
from registry.server.services.bomjobs import BomJobs
from registry.server.services.common import utcnow
from registry.server.services.sbom import TRIGGERS
from tests.scan_corpus import malicious_payloads
from tests.support import Live, make_model_dir, serve

VERSION = "/v1/namespaces/vision/artifacts/m/versions/{v}"
POLICY = "model:\n  require:\n    signature: [ci]\n    scan: clean\n"


class Registry:
    def __init__(self, live: Live, tmp: Path) -> None:
        self.live = live
        self.tmp = tmp
        self.engine = make_engine(live.settings.resolved_database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.signer = KeySigner(keys.generate())
        self.client = live.client()
        self.client.add_key_identity("ci", keys.public_pem(self.signer.public_key).decode())
        self.deployer = (
            TokenService(self.sessions)
            .create(name="deploy", role=Role.DEPLOYER, namespace="vision")
            .secret
        )

    def worker(self, **options: Any) -> BomJobs:
        from registry.server.app import create_app

        app = create_app(self.live.settings, expiry_interval=None)  # another replica's worker
        return BomJobs(self.sessions, app.state.services.boms, triggers=TRIGGERS, **options)

    def job(self) -> tuple[str, int]:
        with self.sessions() as session:
            status, attempts = session.execute(select(BomJob.status, BomJob.attempts)).one()
        return str(status), int(attempts)

    def due_now(self) -> None:
        with self.sessions() as session, session.begin():
            session.execute(update(BomJob).values(due_at=utcnow() - timedelta(seconds=1)))

    def model(self, name: str, *, extra: dict[str, bytes] | None = None) -> Path:
        root = make_model_dir(self.tmp / name)  # 4 files: more than the 3 scanned inline
        for path, data in (extra or {}).items():
            (root / path).write_bytes(data)
        return root

    def state(self, v: str) -> str:
        query = select(Version.state).where(Version.version == v)
        with self.sessions() as session:
            return str(session.execute(query).scalar_one())

    def count(self, v: str, predicate_type: str) -> int:
        with self.sessions() as session:
            return int(session.execute(
                select(func.count()).select_from(Attestation)
                .join(Version, Attestation.version_id == Version.id)
                .where(Version.version == v, Attestation.predicate_type == predicate_type)
            ).scalar_one())  # fmt: skip

    def _auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.live.admin_token}"}

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return httpx.get(f"{self.live.url}{path}", timeout=60, headers=self._auth(token))

    def post(self, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        url = f"{self.live.url}{path}"
        return httpx.post(url, json=body, timeout=60, headers=self._auth(token))


@pytest.fixture
def reg(backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setattr(BomJobs, "start", lambda self: None)  # no worker thread: tests run it
    with serve(backend.model_copy(update={"scan_inline_max_files": 3})) as live:
        running = Registry(live, tmp_path)
        try:
            yield running
        finally:
            running.client.close()
            running.engine.dispose()


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug), body
    return body


def test_nothing_of_a_version_being_scanned_is_served_until_its_scan_is_recorded(
    reg: Registry,
) -> None:
    committed = reg.client.push(reg.model("m1"), "vision/m@1", signer=reg.signer)
    assert committed.state == "scanning" and committed.file_count == 4
    assert reg.client.show("vision/m@1").state == "scanning"
    assert reg.count("1", SCAN) == 0

    # The producer: every way to its bytes answers 503 scan-pending, with Retry-After.
    single = reg.get(VERSION.format(v="1") + "/files/config.json")
    _problem(single, 503, "scan-pending")
    assert int(single.headers["Retry-After"]) >= 1
    _problem(reg.post(VERSION.format(v="1") + "/files", {"paths": ["config.json"]}), 503,
             "scan-pending")  # fmt: skip
    _problem(reg.post(VERSION.format(v="1") + "/release"), 503, "scan-pending")
    _problem(reg.post(VERSION.format(v="1") + "/reject", {"reason": "no"}), 503, "scan-pending")
    assert reg.state("1") == "scanning"
    # A deployer is refused as for any unreleased version.
    _problem(reg.get(VERSION.format(v="1") + "/files/config.json", reg.deployer), 403,
             "forbidden")  # fmt: skip
    # OCI: not a manifest anyone can pull.
    oci = httpx.get(f"{reg.live.url}/v2/vision/m/manifests/1", timeout=60,
                    headers={"Authorization": f"Bearer {reg.live.admin_token}"})  # fmt: skip
    assert oci.status_code == 404 and oci.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # The SDK pull does not wait when it could not pull the version anyway.
    with pytest.raises(Exception, match="scanning"):
        reg.client.pull("vision/m@1", reg.tmp / "out")
    assert not (reg.tmp / "out").exists()

    # The job scans it (one registry-signed report), then builds its BOM once.
    assert reg.worker().run_pending() == 1
    assert reg.state("1") == "pending"
    assert reg.count("1", SCAN) == 1
    assert reg.count("1", CYCLONEDX_BOM) == 1
    with reg.sessions() as session:
        job = session.execute(select(BomJob.status, BomJob.again)).one()
    assert tuple(job) == ("done", False)  # the scan's report did not ask for a second build
    assert reg.get(VERSION.format(v="1") + "/files/config.json").status_code == 200


def test_an_unsafe_file_found_by_the_background_scan_rejects_the_version(reg: Registry) -> None:
    evil = pickle.dumps(malicious_payloads(reg.tmp / "sentinel")["os.system"], protocol=2)
    reg.client.push(reg.model("m1", extra={"extra.pkl": evil}), "vision/m@1")
    assert reg.state("1") == "scanning"
    _problem(reg.get(VERSION.format(v="1") + "/files/extra.pkl"), 503, "scan-pending")

    assert reg.worker().run_pending() == 1
    assert reg.state("1") == "rejected"
    assert reg.count("1", CYCLONEDX_BOM) == 0
    _problem(reg.get(VERSION.format(v="1") + "/files/extra.pkl"), 410, "version-unavailable")
    with reg.sessions() as session:
        rejected = session.execute(
            select(AuditEntry.actor).where(AuditEntry.action == "scan_reject")
        ).scalars().all()  # fmt: skip
    assert rejected == ["registry"]
    assert not (reg.tmp / "sentinel").exists()


def test_a_version_of_few_files_is_still_scanned_inside_its_commit(reg: Registry) -> None:
    root = reg.tmp / "small"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.json").write_text(f'{{"i": {i}}}')
    assert reg.client.push(root, "vision/m@1").state == "pending"
    assert reg.count("1", SCAN) == 1


def test_the_sdk_pull_and_release_wait_for_the_scan(reg: Registry) -> None:
    reg.client.set_policy("vision", POLICY)
    reg.client.push(reg.model("m1"), "vision/m@1", signer=reg.signer)
    reg.client.push(reg.model("m2"), "vision/m@2", signer=reg.signer)
    assert reg.state("1") == reg.state("2") == "scanning"

    def scan_soon() -> None:
        while reg.worker().run_pending():
            pass

    timer = threading.Timer(1.5, scan_soon)
    timer.start()
    try:
        with pytest.warns(UserWarning, match="UNSAFE"):
            pulled = reg.client.pull("vision/m@2", reg.tmp / "out", unsafe_skip_verify=True)
        assert pulled.state == "pending"
        assert (reg.tmp / "out" / "config.json").is_file()
        assert reg.client.release("vision/m@1").state == "released"
    finally:
        timer.join()


def test_a_scan_that_never_comes_is_asked_for_again_by_the_same_push(reg: Registry) -> None:
    root = reg.model("m1")
    reg.client.push(root, "vision/m@1")
    # As if its job were far off (a commit that died before scanning waits out a grace period).
    with reg.sessions() as session, session.begin():
        session.execute(update(BomJob).values(due_at=utcnow() + timedelta(hours=1)))
    assert reg.worker().run_pending() == 0
    _problem(reg.get(VERSION.format(v="1") + "/files/config.json"), 503, "scan-pending")
    # The same push again: the version is there ("scanning"), and its job is due now.
    assert reg.client.push(root, "vision/m@1").state == "scanning"
    assert reg.worker().run_pending() == 1
    assert reg.state("1") == "pending"


def test_a_deployer_does_not_see_a_version_being_scanned_in_the_console(reg: Registry) -> None:
    from tests.integration.test_ui import Browser  # the console's own sign-in

    reg.client.push(reg.model("m1"), "vision/m@1")
    admin = Browser(reg.live, reg.live.admin_token)
    page = admin.get("/ui/n/vision/m/1")
    assert page.status_code == 200 and "Being scanned" in page.text
    assert "Release…" not in page.text
    deployer = Browser(reg.live, reg.deployer)
    assert deployer.get("/ui/n/vision/m/1").status_code == 404
    assert 'href="/ui/n/vision/m"' not in deployer.get("/ui/n/vision").text
    admin.http.close()
    deployer.http.close()


@contextmanager
def _unreadable(live: Live, data: bytes) -> Iterator[None]:
    """The local store's file of blob ``data`` swapped for a directory: every read of it fails
    with an OSError (as EIO or a stale NFS handle would), as long as the block runs."""
    blob = live.settings.data_dir / "blobs" / "sha256"
    path = next(p for p in blob.rglob(hashlib.sha256(data).hexdigest()))
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        aside.rename(path)


def _big_evil(tmp: Path) -> bytes:
    """A code-running pickle of more than the 1 MiB the scanner reads whole (a larger file is
    read as the scanner goes, so a store failure happens inside it)."""
    payload = malicious_payloads(tmp / "sentinel")["os.system"]
    return pickle.dumps((os.urandom(2 * 1024 * 1024), payload), protocol=4)


@contextmanager
def _evil_pushed_unreadable(reg: Registry, backend: Any) -> Iterator[None]:
    """``vision/m@1`` pushed with a large code-running pickle whose blob cannot be read while
    the block runs (local store only)."""
    if backend.storage is not None:
        pytest.skip("the failure is made by swapping a file of the local store")
    evil = _big_evil(reg.tmp)
    reg.client.push(reg.model("m1", extra={"model.pkl": evil}), "vision/m@1")
    with _unreadable(reg.live, evil):
        yield


def test_a_store_failing_under_the_scan_is_retried_never_a_verdict(
    reg: Registry, backend: Any
) -> None:
    with _evil_pushed_unreadable(reg, backend):
        assert reg.worker().run_pending() == 1
        # The store failed: no report, the version still "scanning", the job to be retried.
        assert reg.count("1", SCAN) == 0 and reg.state("1") == "scanning"
        assert reg.job() == ("pending", 1)
    reg.due_now()
    assert reg.worker().run_pending() == 1
    assert reg.state("1") == "rejected"
    _problem(reg.get(VERSION.format(v="1") + "/files/model.pkl"), 410, "version-unavailable")


def test_the_scan_of_a_version_being_scanned_is_retried_past_the_last_attempt(
    reg: Registry, backend: Any
) -> None:
    with _evil_pushed_unreadable(reg, backend):
        for attempt in (1, 2):
            assert reg.worker(max_attempts=1).run_pending() == 1
            assert reg.job() == ("pending", attempt)  # never "failed" while it is scanning
            assert reg.state("1") == "scanning"
            reg.due_now()
    assert reg.worker(max_attempts=1).run_pending() == 1
    assert reg.state("1") == "rejected"


def test_a_scan_whose_worker_keeps_dying_is_tried_again_later_never_given_up(
    reg: Registry,
) -> None:
    reg.client.push(reg.model("m1"), "vision/m@1")
    # As a worker killed mid-scan on its last attempt leaves it: running, its lease ended.
    with reg.sessions() as session, session.begin():
        session.execute(update(BomJob).values(
            status="running", claim="dead-worker/1", attempts=1,
            due_at=utcnow() - timedelta(seconds=1),
        ))  # fmt: skip
    assert reg.worker(max_attempts=1).run_pending() == 0  # not at once: later
    assert reg.job() == ("pending", 1)
    assert reg.state("1") == "scanning"
    reg.due_now()
    assert reg.worker(max_attempts=1).run_pending() == 1
    assert reg.state("1") == "pending"
