"""The composition root: ``create_app(settings)`` wires settings, database, store and services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from attest import keys
from attest.scan import RULESET
from registry import __version__
from registry.names import parse_ref
from registry.server import ui
from registry.server.api import problems
from registry.server.api.deps import Services
from registry.server.api.middleware.audit import AuditMiddleware
from registry.server.api.middleware.limits import BodyLimitMiddleware
from registry.server.api.routes import (
    attestations,
    audit,
    events,
    health,
    oci,
    releases,
    tokens,
    uploads,
    versions,
)
from registry.server.api.routes import log as log_routes
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import TokenService, UploadService, VersionService
from registry.server.services.attestations import AttestationService
from registry.server.services.audit import AuditService
from registry.server.services.auth import Principal, Role
from registry.server.services.bomjobs import BomJobs
from registry.server.services.common import Clock, utcnow
from registry.server.services.events import SecurityEvents
from registry.server.services.intoto import IntotoService
from registry.server.services.keys import load_registry_signer
from registry.server.services.lifecycle import LifecycleService
from registry.server.services.oci import OciService
from registry.server.services.ratelimit import TokenBuckets
from registry.server.services.releases import ReleaseService
from registry.server.services.sbom import TRIGGERS as BOM_TRIGGERS
from registry.server.services.sbom import AfterCommit, BomService
from registry.server.services.scanning import ScanService
from registry.server.services.tlog import LogService, open_tile_store
from registry.server.services.versions import VersionRecord
from registry.server.storage import BlobStore, is_s3, open_blob_store
from registry.wire import PROBLEM_RESPONSES

log = logging.getLogger(__name__)

EXPIRY_INTERVAL_SECONDS = 300.0
LIMIT_PRUNE_SECONDS = 60.0


def create_app(
    settings: Settings,
    *,
    store: BlobStore | None = None,
    clock: Clock = utcnow,
    expiry_interval: float | None = EXPIRY_INTERVAL_SECONDS,
) -> FastAPI:
    """Build the API. The database must already be migrated (``modelseal serve`` does it)."""
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessionmaker(engine)
    blob_store = store if store is not None else open_blob_store(settings)
    presigns = is_s3(blob_store)
    if settings.s3_presign_downloads and not presigns:
        log.warning(
            "MODELSEAL_S3_PRESIGN_DOWNLOADS is set, but %s cannot hand out URLs: downloads are "
            "streamed through the registry",
            blob_store.description,
        )
    elif presigns and settings.s3_presign_downloads is None:
        log.info(
            "SDK downloads are redirected to presigned URLs of %s (clients that cannot reach it "
            "stream through the registry; MODELSEAL_S3_PRESIGN_DOWNLOADS=false turns this off)",
            settings.s3_public_endpoint_url or settings.s3_endpoint_url or "S3",
        )
    signer = load_registry_signer(settings)
    scans = ScanService(sessions, blob_store, signer, clock=clock)
    after_commit = AfterCommit(scans)
    # Presigned downloads (unset setting: on for S3) for the SDK, which streams through the
    # registry when a URL turns out unusable; OCI clients cannot, so only when set explicitly.
    versions_service = VersionService(
        sessions, blob_store, settings, clock=clock, scanner=after_commit,
        presign=settings.presigned_downloads(store_presigns=presigns, client_falls_back=True),
    )  # fmt: skip
    oci_versions = VersionService(
        sessions, blob_store, settings, clock=clock, scanner=after_commit,
        presign=settings.presigned_downloads(store_presigns=presigns, client_falls_back=False),
    )  # fmt: skip
    attestation_service = AttestationService(sessions, versions_service, settings, clock=clock)
    release_service = ReleaseService(
        sessions, versions_service, attestation_service, signer, clock=clock, scans=scans
    )
    scans.on_finding = lambda record, reason: _revoke_on_finding(release_service, record, reason)
    bom_service = BomService(sessions, versions_service, attestation_service, signer, clock=clock,
                             scans=scans)  # fmt: skip
    bom_jobs = BomJobs(sessions, bom_service, triggers=BOM_TRIGGERS, clock=clock)
    bom_service.jobs = bom_jobs
    audit_service = AuditService(sessions, signer, clock=clock)
    # The transparency log (docs/transparency-log.md): its checkpoints are signed by a thread.
    log_service = LogService(sessions, settings, tiles=open_tile_store(settings, blob_store),
                             clock=clock)  # fmt: skip
    witness_collector = None  # cosignatures of its checkpoints (MODELSEAL_LOG_WITNESSES)
    if settings.log_witnesses:
        from registry.server.services.witnesses import WitnessCollector, endpoints

        witnesses = endpoints(settings.log_witnesses)
        witness_collector = WitnessCollector(sessions, log_service, witnesses, clock=clock)
        log_service.on_signed = witness_collector.notify
    secret = settings.webhook_secret
    security_events = SecurityEvents(
        webhooks=settings.webhooks,
        secret=secret.get_secret_value().encode() if secret is not None else None,
        allow_private=settings.webhook_allow_private,
        burst_count=settings.auth_failure_burst,
        burst_window=settings.auth_failure_window_seconds,
        ca_bundle=str(settings.webhook_ca_bundle) if settings.webhook_ca_bundle else None,
        sessions=sessions,
        max_attempts=settings.webhook_max_attempts,
        retry_seconds=settings.webhook_retry_seconds,
        retry_max_seconds=settings.webhook_retry_max_seconds,
        poll_seconds=settings.webhook_poll_seconds,
    )
    token_limits = TokenBuckets(engine, "token", settings.rate_per_token,
                                settings.burst_per_token)  # fmt: skip
    address_limits = TokenBuckets(engine, "address", settings.rate_per_address,
                                  settings.burst_per_address)  # fmt: skip
    services = Services(
        settings=settings,
        tokens=TokenService(sessions, clock=clock),
        uploads=UploadService(sessions, blob_store, settings, clock=clock),
        versions=versions_service,
        attestations=attestation_service,
        lifecycle=LifecycleService(sessions, versions_service, clock=clock),
        audit=audit_service,
        token_limits=token_limits,
        address_limits=address_limits,
        releases=release_service,
        registry_key_pem=keys.public_pem(signer.public_key).decode(),
        registry_key_fingerprint=signer.identity,
        events=security_events,
        boms=bom_service,
        intoto=IntotoService(versions_service, attestation_service, signer, clock=clock),
        readiness=lambda: _readiness(engine, blob_store),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = []
        security_events.start()
        await run_in_threadpool(log_service.start)
        bom_jobs.start()
        if witness_collector is not None:
            witness_collector.start()
        if expiry_interval:
            tasks.append(asyncio.create_task(_expire_uploads(services.uploads, expiry_interval)))
        tasks.append(asyncio.create_task(_prune_limits((token_limits, address_limits))))
        if settings.audit_checkpoint_seconds:
            tasks.append(asyncio.create_task(
                _checkpoints(audit_service, settings.audit_checkpoint_seconds)))  # fmt: skip
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await run_in_threadpool(security_events.stop)
            await run_in_threadpool(log_service.stop)
            if witness_collector is not None:
                await run_in_threadpool(witness_collector.stop)
            await run_in_threadpool(bom_jobs.stop)
            engine.dispose()

    app = FastAPI(
        title="modelseal",
        version=__version__,
        summary="A model registry that only releases what it can prove.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.bom_jobs = bom_jobs
    app.state.oci = OciService(
        sessions, oci_versions, services.lifecycle, blob_store, signer, clock=clock
    )
    services.releases.on_release = app.state.oci.published
    app.state.tlog = log_service
    log_service.registry_signer = lambda statement: signer.sign(statement).raw
    services.releases.before_release = bom_service.settle_for_release
    app.add_middleware(AuditMiddleware, audit=audit_service)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_json_bytes,
        upload_limit=settings.max_chunk_bytes,
    )
    problems.install(app)
    app.include_router(health.router)
    app.include_router(versions.router, responses=PROBLEM_RESPONSES)
    app.include_router(uploads.router, responses=PROBLEM_RESPONSES)
    app.include_router(attestations.router, responses=PROBLEM_RESPONSES)
    app.include_router(releases.router, responses=PROBLEM_RESPONSES)
    app.include_router(tokens.router, responses=PROBLEM_RESPONSES)
    app.include_router(audit.router, responses=PROBLEM_RESPONSES)
    app.include_router(events.router, responses=PROBLEM_RESPONSES)
    app.include_router(log_routes.router, responses=PROBLEM_RESPONSES)
    app.include_router(oci.router)  # the OCI Distribution read API (not in openapi.yaml)
    ui.install(app, services, signer=signer, sessions=sessions)  # the web console at /ui/
    return app


def _readiness(engine: Engine, store: BlobStore) -> dict[str, str]:
    """Can this replica serve: the database answers a query, the store a lookup."""
    from registry.server.api.problems import unavailable

    found: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        found["database"] = "ok"
    except Exception as exc:  # the answer is unauthenticated: no addresses, no messages
        log.warning("not ready: database: %s", exc)
        found["database"] = "unavailable" if unavailable(exc) else "failed"
    try:
        store.size("0" * 64)  # no such blob: a cheap round trip to the store
        found["store"] = "ok"
    except Exception as exc:
        log.warning("not ready: blob store: %s", exc)
        found["store"] = "unavailable" if unavailable(exc) else "failed"
    return found


#: Who revokes a released version whose file a rescan under newer rules found unsafe.
SCANNER = Principal(token_id="-", name="registry-scan", role=Role.ADMIN, namespace=None)  # noqa: S106


def _revoke_on_finding(releases: ReleaseService, record: VersionRecord, reason: str) -> None:
    """Revoke ``record`` (and every release built on it): a rescan under the current rules
    found what would never have been released. Logged at ERROR; the revocation is audited,
    signed and logged as any other."""
    log.error("released %s fails a rescan under the current scan rules: %s", record.ref, reason)
    releases.revoke(SCANNER, parse_ref(record.ref),
                    f"a rescan under scan rules {RULESET} found {reason}")  # fmt: skip


async def _checkpoints(audit: AuditService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(audit.checkpoint)
        except Exception:
            log.exception("audit checkpoint failed")


async def _prune_limits(limits: tuple[TokenBuckets, ...]) -> None:
    """Delete rate-limit buckets idle long enough to be full again (any replica may)."""
    while True:
        await asyncio.sleep(LIMIT_PRUNE_SECONDS)
        for limit in limits:
            try:
                await run_in_threadpool(limit.prune)
            except Exception as exc:
                log.warning("pruning %s rate-limit buckets failed: %s", limit.bucket, exc)


async def _expire_uploads(uploads: UploadService, interval: float) -> None:
    while True:
        try:
            expired = await run_in_threadpool(uploads.expire)
            if expired:
                log.info("expired %d upload session(s)", expired)
        except Exception:
            log.exception("upload expiry failed")
        await asyncio.sleep(interval)
