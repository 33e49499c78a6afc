"""ML-BOMs built off the request path (``registry/server/services/bomjobs.py``): the job is
asked for in the transaction of the change, a worker claims it (SKIP LOCKED on PostgreSQL, a
conditional UPDATE on SQLite), builds, validates, signs and records the BOM, retries a failing
build and finally gives up visibly, and a lease whose worker died is taken over. While pending,
the API says so.

The live server here runs no worker thread (``BomJobs.start`` is switched off); each test runs
workers itself, synchronously (``run_pending``, ``run_once``), with their own engines on the same
database: one job queue, any number of replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from attest import keys
from attest.predicates import CYCLONEDX_BOM, RELEASE, SLSA_PROVENANCE, TEST_RESULT
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.errors import ConflictError, RegistryError, ServiceUnavailableError
from registry.names import Kind, parse_ref
from registry.sdk import client as client_module
from registry.sdk.client import RegistryClient
from registry.sdk.lineage import verified_bom
from registry.sdk.transfer import Retry
from registry.server.app import create_app
from registry.server.db import make_engine, make_sessionmaker
from registry.server.models import Artifact, Attestation, BomJob, Version
from registry.server.services import bomjobs, journal
from registry.server.services.attestations import READER
from registry.server.services.bomjobs import BomJobs, Outcome
from registry.server.services.common import utcnow
from registry.server.services.sbom import TRIGGERS, BomService
from sbom import BomError, validate_bom
from tests.support import Live, make_model_dir, serve

POLICY = "model:\n  require:\n    signature: [ci]\n    provenance: [ci]\n    scan: clean\n"


class Lab:
    """A live registry (no BOM worker of its own), a trusted signer, and workers on demand."""

    def __init__(self, live: Live, tmp: Path) -> None:
        self.live = live
        self.tmp = tmp
        self.signer = KeySigner(keys.generate())
        self.client = live.client()
        self.client.add_key_identity("ci", keys.public_pem(self.signer.public_key).decode())
        self.app = create_app(live.settings, expiry_interval=None)  # a second replica's services
        self.boms: BomService = self.app.state.services.boms
        self.engines: list[Engine] = []
        self._seed = 0

    def worker(self, builder: Any = None, **options: Any) -> BomJobs:
        """A worker with its own engine (another replica), building with ``builder`` (default:
        the registry's BOM service)."""
        engine = make_engine(self.live.settings.resolved_database_url)
        self.engines.append(engine)
        return BomJobs(make_sessionmaker(engine), builder or self.boms, triggers=TRIGGERS,
                       **options)  # fmt: skip

    def push(self, ref: str, *, kind: Kind = Kind.MODEL) -> None:
        self._seed += 1
        root = make_model_dir(self.tmp / f"m{self._seed}", seed=self._seed)
        self.client.push(root, ref, kind=kind, signer=self.signer)

    def attest(self, ref: str, predicate_type: str, predicate: dict[str, Any]) -> None:
        version = self.client.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=predicate_type,
            predicate=predicate,
        )
        self.client.attach(ref, self.signer.sign(statement).raw)

    def provenance(self, ref: str) -> None:
        self.attest(ref, SLSA_PROVENANCE, {
            "buildDefinition": {"buildType": "https://modelseal.dev/training/v1",
                                "externalParameters": {"lr": 0.01}, "resolvedDependencies": []},
            "runDetails": {"builder": {"id": "https://ci.example/train"}},
        })  # fmt: skip

    def evaluation(self, ref: str, accuracy: float) -> None:
        self.attest(ref, TEST_RESULT, {"result": "PASSED", "metrics": {"accuracy": accuracy}})

    def vid(self, ref: str) -> int:
        name, version = ref.split("/", 1)[1].split("@", 1)
        with make_sessionmaker(self.engine())() as session:
            return int(session.execute(
                select(Version.id).join(Artifact, Version.artifact_id == Artifact.id)
                .where(Artifact.name == name, Version.version == version)
            ).scalar_one())  # fmt: skip

    def engine(self) -> Engine:
        if not self.engines:
            self.engines.append(make_engine(self.live.settings.resolved_database_url))
        return self.engines[0]

    def jobs(self) -> dict[int, tuple[str, int, bool, str | None]]:
        """version id -> (status, attempts, again, last_error)"""
        with make_sessionmaker(self.engine())() as session:
            rows = session.execute(
                select(BomJob.version_id, BomJob.status, BomJob.attempts, BomJob.again,
                       BomJob.last_error)
            ).all()  # fmt: skip
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def boms_of(self, ref: str) -> int:
        with make_sessionmaker(self.engine())() as session:
            return int(session.execute(
                select(func.count()).select_from(Attestation).where(
                    Attestation.version_id == self.vid(ref),
                    Attestation.predicate_type == CYCLONEDX_BOM)
            ).scalar_one())  # fmt: skip

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.live.url}{path}", params=params,
                         headers={"Authorization": f"Bearer {self.live.admin_token}"})  # fmt: skip


VERSION = "/v1/namespaces/{ns}/artifacts/{name}/versions/{version}"


def _bom_answers(lab: Lab, ref: str) -> list[httpx.Response]:
    """GET of the version's ML-BOM, and its evidence list filtered to BOMs (what the CLI reads)."""
    return [
        lab.get(_path(ref, "/sbom")),
        lab.get(_path(ref, "/attestations"), predicate_type=CYCLONEDX_BOM),
    ]


def _path(ref: str, tail: str = "") -> str:
    ns, rest = ref.split("/", 1)
    name, version = rest.split("@", 1)
    return VERSION.format(ns=ns, name=name, version=version) + tail


@pytest.fixture
def lab(backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setattr(BomJobs, "start", lambda self: None)  # no worker thread: tests run them
    with serve(backend) as live:
        running = Lab(live, tmp_path)
        try:
            yield running
        finally:
            running.client.close()
            for engine in running.engines:
                engine.dispose()


class _Later:
    """A clock ``offset`` ahead of the real one."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return utcnow() + self.offset


# -- asking for a build ---------------------------------------------------------------------------


def test_a_commit_asks_for_its_bom_in_its_own_transaction(lab: Lab) -> None:
    # A commit that fails inside its transaction leaves neither the version nor a job.
    def crash(action: str) -> None:
        if action == "put_version":
            raise RuntimeError("killed inside the commit")

    journal.crash_hook = crash
    try:
        with pytest.raises(RegistryError):
            lab.push("vision/m@1")
    finally:
        journal.crash_hook = None
    assert lab.jobs() == {}
    lab.push("vision/m@1")
    assert lab.jobs() == {lab.vid("vision/m@1"): ("pending", 0, False, None)}
    # Datasets and code get no BOM; their job is the scan's safety net (a commit request that
    # dies before it scans leaves the version "scanning" for the job to scan). The model is
    # "pending" until a worker built its BOM.
    lab.push("vision/tx@1", kind=Kind.DATASET)
    assert set(lab.jobs()) == {lab.vid("vision/m@1"), lab.vid("vision/tx@1")}
    assert lab.client.show("vision/m@1").bom_status == "pending"
    assert lab.client.show("vision/tx@1").bom_status is None
    assert lab.boms_of("vision/m@1") == 0


def test_the_scan_makes_the_job_due_at_once_and_the_commit_alone_waits_for_it(lab: Lab) -> None:
    lab.push("vision/m@1")
    # The scan (in the commit request) asked again, due now: a worker takes it at once.
    assert lab.worker().run_pending() == 1
    # A commit whose scan never came (the request died in between) waits out the grace first.
    with make_sessionmaker(lab.engine())() as session, session.begin():
        bomjobs.enqueue(session, lab.vid("vision/m@1"), utcnow(), delay=bomjobs.SCAN_GRACE)
    assert lab.worker().run_pending() == 0
    assert lab.worker(clock=_Later(bomjobs.SCAN_GRACE)).run_pending() == 1


def test_evidence_asks_again_and_repeated_asks_coalesce(lab: Lab) -> None:
    lab.push("vision/m@1")
    vid = lab.vid("vision/m@1")
    lab.provenance("vision/m@1")
    lab.evaluation("vision/m@1", 0.9)
    assert lab.jobs() == {vid: ("pending", 0, False, None)}  # one job for three asks
    assert lab.worker().run_pending() == 1
    assert lab.boms_of("vision/m@1") == 1
    # Evidence while a build runs: the job runs once more after it (that build may not have
    # read it), and the BOM has the new metrics.
    real = lab.boms.build_job

    def build_while_evidence_arrives(version_id: int) -> Outcome:
        outcome = real(version_id)  # read before the evaluation is there
        lab.evaluation("vision/m@1", 0.95)
        assert lab.jobs()[vid][:3] == ("running", 1, True)
        return outcome

    class Racing:
        def build_job(self, version_id: int) -> Outcome:
            return build_while_evidence_arrives(version_id)

    lab.evaluation("vision/m@1", 0.91)
    assert lab.worker(Racing()).run_once()
    assert lab.jobs()[vid][:3] == ("pending", 0, False)
    assert lab.worker().run_pending() == 1
    assert lab.jobs()[vid][0] == "done"
    bom = verified_bom(lab.client, "vision/m@1")
    metrics = bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]
    assert {"type": "accuracy", "value": "0.95"} in metrics["performanceMetrics"]


def test_evidence_after_release_asks_for_nothing(lab: Lab) -> None:
    lab.client.set_policy("vision", POLICY)
    lab.push("vision/m@1")
    lab.provenance("vision/m@1")
    lab.worker().run_pending()
    assert lab.client.release("vision/m@1").state == "released"
    lab.evaluation("vision/m@1", 0.9)
    assert lab.jobs()[lab.vid("vision/m@1")][0] == "done"


# -- the worker ----------------------------------------------------------------------------------


def test_the_worker_builds_validates_signs_and_records_the_bom(lab: Lab) -> None:
    lab.push("vision/m@1")
    lab.provenance("vision/m@1")
    assert lab.worker().run_pending() == 1
    assert lab.jobs()[lab.vid("vision/m@1")] == ("done", 1, False, None)
    assert lab.boms_of("vision/m@1") == 1
    bom = verified_bom(lab.client, "vision/m@1")  # signed by the registry's key, the files'
    validate_bom(bom)
    assert lab.client.show("vision/m@1").bom_status == "ready"
    raw = lab.get(_path("vision/m@1", "/sbom"))
    assert raw.status_code == 200
    [listed] = lab.client.list_attestations("vision/m@1", CYCLONEDX_BOM)
    assert raw.content == lab.client.get_attestation("vision/m@1", listed.id)
    # Nothing new: nothing due, and a build asked for anyway stores no second, equal BOM.
    assert lab.worker().run_pending() == 0
    with make_sessionmaker(lab.engine())() as session, session.begin():
        bomjobs.enqueue(session, lab.vid("vision/m@1"), utcnow())
    assert lab.worker().run_pending() == 1
    assert lab.boms_of("vision/m@1") == 1


def test_a_rejected_model_gets_no_bom(lab: Lab) -> None:
    import pickle

    root = make_model_dir(lab.tmp / "bad")
    (root / "payload.pkl").write_bytes(pickle.dumps(print))  # a global outside the allowlist
    lab.client.push(root, "vision/bad@1")
    assert lab.client.show("vision/bad@1").state == "rejected"
    lab.worker().run_pending()
    assert lab.jobs()[lab.vid("vision/bad@1")][0] == "skipped"
    assert lab.client.show("vision/bad@1").bom_status is None
    assert lab.get(_path("vision/bad@1", "/sbom")).status_code == 404


def test_two_workers_never_build_one_job_at_the_same_time(lab: Lab) -> None:
    """Two replicas' workers on one database, each building with the other mid-build: they hold
    different jobs; every job is built once, and all are done."""
    for i in range(4):
        lab.push(f"vision/m@{i + 1}")
    both_building = threading.Barrier(2, timeout=60)
    building: dict[int, str] = {}
    built: list[int] = []
    lock = threading.Lock()

    class Spy:
        def __init__(self, name: str) -> None:
            self.name = name
            self.first = True

        def build_job(self, version_id: int) -> Outcome:
            with lock:
                assert version_id not in building, f"{version_id} is being built twice"
                building[version_id] = self.name
            if self.first:  # each worker's first build waits until the other one builds too
                self.first = False
                both_building.wait()
            try:
                return lab.boms.build_job(version_id)
            finally:
                with lock:
                    del building[version_id]
                    built.append(version_id)

    workers = [lab.worker(Spy(name), name=name) for name in ("a", "b")]
    errors: list[BaseException] = []

    def run(worker: BomJobs) -> None:
        try:
            worker.run_pending()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sorted(built) == sorted(lab.jobs())
    assert {status for status, *_ in lab.jobs().values()} == {"done"}
    for i in range(4):
        assert lab.boms_of(f"vision/m@{i + 1}") == 1


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_a_claim_in_progress_elsewhere_is_skipped_not_waited_for(lab: Lab) -> None:
    """PostgreSQL: a job row another replica is claiming right now (its row lock held) is
    skipped (SKIP LOCKED): the worker takes the next due job, and nothing when none is left."""
    lab.push("vision/m@1")
    lab.push("vision/m@2")
    first, second = lab.vid("vision/m@1"), lab.vid("vision/m@2")
    worker = lab.worker()
    ran: list[bool] = []
    with lab.engine().connect() as other:
        other.execute(select(BomJob.version_id).where(BomJob.version_id == first)
                      .with_for_update())  # fmt: skip
        thread = threading.Thread(target=lambda: ran.extend([worker.run_once(),
                                                             worker.run_once()]))  # fmt: skip
        thread.start()
        thread.join(120)
        locked_out = thread.is_alive()
        other.rollback()
    thread.join(120)
    assert not locked_out, "the worker waited for a locked job instead of skipping it"
    assert ran == [True, False]
    assert lab.jobs()[second][0] == "done" and lab.jobs()[first][0] == "pending"
    assert worker.run_pending() == 1


@pytest.mark.parametrize("backend", ["postgres-s3"], indirect=True)
def test_recording_a_bom_and_an_attachment_do_not_deadlock(lab: Lab) -> None:
    """PostgreSQL: an attachment locks the version's row, then (its listener) the job's; a worker
    recording a BOM takes them in the same order, so it waits instead of deadlocking (this once
    answered attachments 503 "database unavailable")."""
    lab.push("vision/m@1")
    vid = lab.vid("vision/m@1")
    worker = lab.worker()
    claim = worker._claim()
    assert claim is not None
    outcome = lab.boms.build_job(vid)  # built, not recorded yet
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            worker._finish(claim, outcome)
        except BaseException as exc:
            errors.append(exc)

    with lab.engine().connect() as attaching:
        attaching.execute(select(Version.id).where(Version.id == vid).with_for_update())
        thread = threading.Thread(target=finish)
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the worker waits for the version's row
            waiting = attaching.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).scalar_one()
            if waiting:
                break
            time.sleep(0.05)
        with Session(bind=attaching) as session:  # the attachment's listener asks again
            bomjobs.enqueue(session, vid, utcnow())
        attaching.commit()
    thread.join(60)
    assert not errors, errors
    assert lab.jobs()[vid][:3] == ("pending", 0, False)  # asked again while running: runs again
    assert lab.boms_of("vision/m@1") == 1


def test_a_job_whose_worker_died_is_taken_over_after_its_lease(lab: Lab) -> None:
    lab.push("vision/m@1")
    vid = lab.vid("vision/m@1")
    entered, release = threading.Event(), threading.Event()

    class Stuck:
        def build_job(self, version_id: int) -> Outcome:
            entered.set()
            assert release.wait(60)
            return lab.boms.build_job(version_id)

    dying = lab.worker(Stuck(), name="dying")
    thread = threading.Thread(target=dying.run_once)
    thread.start()
    try:
        assert entered.wait(60)
        assert lab.jobs()[vid][:2] == ("running", 1)
        assert lab.worker(name="early").run_pending() == 0  # the lease holds
        later = lab.worker(name="later", clock=_Later(bomjobs.LEASE + timedelta(seconds=1)))
        assert later.run_pending() == 1  # ... until it ends
        assert lab.jobs()[vid] == ("done", 2, False, None)
    finally:
        release.set()
        thread.join(60)
    # The first worker finished its build after all: it no longer held the job, so it recorded
    # nothing (one BOM, built by the worker that took over).
    assert lab.jobs()[vid] == ("done", 2, False, None)
    assert lab.boms_of("vision/m@1") == 1


def test_a_failing_build_is_retried_with_backoff_then_fails_visibly(lab: Lab) -> None:
    lab.push("vision/m@1")
    vid = lab.vid("vision/m@1")

    class Broken:
        calls = 0

        def build_job(self, version_id: int) -> Outcome:
            Broken.calls += 1
            raise BomError("$.components[0]: not valid CycloneDX 1.6")

    def worker(at: float) -> BomJobs:
        return lab.worker(Broken(), clock=_Later(timedelta(seconds=at)), max_attempts=3,
                          retry_seconds=10, retry_max_seconds=15)  # fmt: skip

    assert worker(0).run_pending() == 1
    assert lab.jobs()[vid] == ("pending", 1, False,
                               "BomError: $.components[0]: not valid CycloneDX 1.6")  # fmt: skip
    assert lab.client.show("vision/m@1").bom_status == "pending"
    assert worker(5).run_pending() == 0  # backing off: 10 s
    assert worker(11).run_pending() == 1
    assert worker(25).run_pending() == 0  # 20 s, at most 15: due at 26
    assert worker(27).run_pending() == 1
    assert Broken.calls == 3
    assert lab.jobs()[vid][:2] == ("failed", 3)
    assert worker(3600).run_pending() == 0  # given up
    # Visible: the version's status, the BOM answers, and the job row.
    assert lab.client.show("vision/m@1").bom_status == "failed"
    for answer in _bom_answers(lab, "vision/m@1"):
        assert answer.status_code == 409
        problem = answer.json()
        assert problem["facts"]["bom_status"] == "failed"
        assert "not valid CycloneDX 1.6" in problem["detail"]
    with pytest.raises(ConflictError, match="could not be built"):
        verified_bom(lab.client, "vision/m@1")
    # New evidence asks again, with fresh attempts; a working build then succeeds.
    lab.provenance("vision/m@1")
    assert lab.jobs()[vid][:2] == ("pending", 0)
    assert lab.worker().run_pending() == 1
    assert lab.client.show("vision/m@1").bom_status == "ready"


def test_errors_other_than_the_boms_own_are_kept_without_their_text(lab: Lab) -> None:
    lab.push("vision/m@1")

    class Leaky:
        def build_job(self, version_id: int) -> Outcome:
            raise OSError("connect to 10.0.0.7:5432 as user secret-admin failed")

    lab.worker(Leaky(), max_attempts=1).run_pending()
    _, _, _, error = lab.jobs()[lab.vid("vision/m@1")]
    assert error == "OSError (details in the registry's log)"


def test_an_attempt_whose_worker_died_counts(lab: Lab) -> None:
    """A build that kills its process (out of memory) every time is given up on, not retried
    for ever by every replica in turn."""
    lab.push("vision/m@1")
    vid = lab.vid("vision/m@1")
    with make_sessionmaker(lab.engine())() as session, session.begin():
        job = session.get(BomJob, vid)
        assert job is not None
        job.status, job.attempts, job.claim = "running", 2, "dead/1"
        job.due_at = utcnow() - timedelta(seconds=1)
    assert lab.worker(max_attempts=2).run_pending() == 0
    status, attempts, _, error = lab.jobs()[vid]
    assert (status, attempts) == ("failed", 2)
    assert error is not None and "never finished" in error


# -- answers while pending --------------------------------------------------------------------


def test_a_pending_bom_is_answered_503_with_retry_after(lab: Lab) -> None:
    lab.push("vision/m@1")
    for answer in _bom_answers(lab, "vision/m@1"):
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) >= 1
        problem = answer.json()
        assert problem["facts"]["bom_status"] == "pending"
        assert "vision/m@1 is pending" in problem["detail"]
    # The rest of the evidence lists as always; a dataset has no BOM to wait for.
    assert lab.get(_path("vision/m@1", "/attestations")).status_code == 200
    lab.push("vision/tx@1", kind=Kind.DATASET)
    assert lab.get(_path("vision/tx@1", "/attestations"),
                   predicate_type=CYCLONEDX_BOM).json() == []  # fmt: skip
    assert lab.get(_path("vision/tx@1", "/sbom")).status_code == 404


def test_a_bom_list_is_never_older_than_the_status_it_is_answered_under(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status is read before the list: a build that finishes between the two must not let
    an older list through as the current one (this once answered a BOM without the evidence
    that had asked for the newer one)."""
    lab.push("vision/m@1")
    boms = lab.app.state.services.boms
    read_status = boms.target

    def finishing_meanwhile(principal: Any, ref: Any) -> Any:
        lab.worker().run_pending()  # the job is done just as the status is read
        return read_status(principal, ref)

    monkeypatch.setattr(boms, "target", finishing_meanwhile)
    answer = TestClient(lab.app).get(
        _path("vision/m@1", "/attestations"),
        params={"predicate_type": CYCLONEDX_BOM},
        headers={"Authorization": f"Bearer {lab.live.admin_token}"},
    )
    assert answer.status_code == 200
    assert [a["predicate_type"] for a in answer.json()] == [CYCLONEDX_BOM]


def test_the_current_client_waits_for_a_pending_bom_and_then_says_so(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelseal sbom` (verified_bom) retries the 503 as it does every 503: a BOM built while
    it waits is printed; one still pending when it gives up is named pending."""
    lab.push("vision/m@1")
    worker = lab.worker()
    slept: list[float] = []

    class Clock:  # the client's time module, whose sleep lets the worker run instead
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            slept.append(seconds)
            worker.run_pending()

    monkeypatch.setattr(client_module, "time", Clock())
    validate_bom(verified_bom(lab.client, "vision/m@1"))
    assert len(slept) == 1

    lab.provenance("vision/m@1")
    monkeypatch.setattr(Clock, "sleep", lambda self, seconds: None)
    monkeypatch.setattr(Retry, "attempts", 2)
    with pytest.raises(ServiceUnavailableError, match="the ML-BOM of vision/m@1 is pending"):
        verified_bom(lab.client, "vision/m@1")


def test_settle_builds_a_pending_bom_in_the_callers_thread(lab: Lab) -> None:
    """What a release needs before the gate (ReleaseService does not call it yet)."""
    lab.push("vision/m@1")
    record = lab.app.state.services.versions.resolve(READER, parse_ref("vision/m@1"))
    assert lab.boms.settle(record, timeout=0).status == "ready"
    assert lab.boms_of("vision/m@1") == 1
    assert lab.jobs()[lab.vid("vision/m@1")][0] == "done"
    lab.push("vision/tx@1", kind=Kind.DATASET)
    dataset = lab.app.state.services.versions.resolve(READER, parse_ref("vision/tx@1"))
    assert lab.boms.settle(dataset, timeout=0).status is None
    # A job held by another worker is waited for, up to the timeout: still pending then.
    lab.provenance("vision/m@1")
    assert lab.worker()._claim() is not None  # claimed, never finished (a slow worker)
    assert lab.boms.settle(record, timeout=0.3).status == "pending"


# -- the release gate --------------------------------------------------------------------------


def test_a_release_whose_bom_another_worker_holds_answers_503_and_stays_pending(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.server.services import sbom

    monkeypatch.setattr(sbom, "RELEASE_WAIT_SECONDS", 0.5)
    lab.client.set_policy("vision", POLICY)
    lab.push("vision/m@1")
    lab.provenance("vision/m@1")
    slow = lab.worker()
    claim = slow._claim()  # claimed and never finished in time (a slow worker elsewhere)
    assert claim is not None
    auth = {"Authorization": f"Bearer {lab.live.admin_token}"}
    with httpx.Client(base_url=lab.live.url, timeout=60, headers=auth) as http:
        answer = http.post("/v1/namespaces/vision/artifacts/m/versions/1/release")
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) > 0
    assert "ML-BOM of vision/m@1 is still being built" in answer.json()["detail"]
    assert lab.client.show("vision/m@1").state == "pending"
    assert not lab.client.list_attestations("vision/m@1", RELEASE)
    slow._run(claim)  # the worker finishes: the release goes through and names the BOM
    assert lab.client.release("vision/m@1").state == "released"
    assert lab.boms_of("vision/m@1") == 1


def test_a_release_waits_for_a_pending_bom_and_names_it_as_evidence(lab: Lab) -> None:
    lab.client.set_policy("vision", POLICY)
    lab.push("vision/m@1")
    lab.provenance("vision/m@1")
    assert lab.client.release("vision/m@1").state == "released"
    assert lab.boms_of("vision/m@1") == 1  # built before the release, not after
    [release] = lab.client.list_attestations("vision/m@1", RELEASE)
    from attest.bundle import Bundle

    predicate = Bundle.parse(lab.client.get_attestation("vision/m@1", release.id)).statement()
    assert CYCLONEDX_BOM in {e["predicateType"] for e in predicate.predicate["evidence"]}


def test_the_sdk_reads_bom_status(lab: Lab) -> None:
    lab.push("vision/m@1")
    with RegistryClient(lab.live.url, lab.live.admin_token) as client:
        assert client.show("vision/m@1").bom_status == "pending"
        lab.worker().run_pending()
        assert client.show("vision/m@1").bom_status == "ready"
