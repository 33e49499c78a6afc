"""The console's pages. Each handler authenticates the session's token as the API does, then
makes the service calls the API route of the same data or action makes, with that principal.

Action routes carry the operation id of the API route they stand for (``release_version``,
``reject_version``, ``revoke_version``, ``set_alias``), so the audit middleware records a
refused release, a denial or a failure from the console exactly as from the API (the target is
the console's path); successful actions are recorded by the services themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker

from attest.export import archive_name
from attest.keys import TrustedKey
from attest.signing import KeySigner, UriSigner
from registry.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    RegistryError,
    ReleaseRefusedError,
    problem_for,
)
from registry.names import Kind, Ref, validate_alias, validate_name, validate_version
from registry.server.api.deps import Services
from registry.server.services.auth import Action
from registry.server.services.common import PageRequest
from registry.server.services.scanning import REGISTRY_SIGNER
from registry.server.services.versions import State, VersionRecord
from registry.server.ui import views
from registry.server.ui.evidence import EvidenceCache
from registry.server.ui.exports import evidence_archive
from registry.server.ui.queries import LineageReads, Reads
from registry.server.ui.session import Sealer, session_key
from registry.server.ui.web import (
    HERE,
    PREFIX,
    Console,
    CsrfError,
    NeedSignIn,
    PageContext,
    SecurityHeaders,
    guarded,
    safe_next,
    sign_in_redirect,
)

#: Row ids, revisions and audit positions in URLs: numbers beyond what the database's integer
#: columns hold are a 4xx at the door, not an overflow inside a query.
MAX_ROW = 2**31 - 1
RowPath = Annotated[int, PathParam(ge=0, le=MAX_ROW)]
RowQuery = Annotated[int | None, Query(ge=0, le=MAX_ROW)]

P = ParamSpec("P")
STATES = (State.SCANNING, State.PENDING, State.RELEASED, State.REJECTED, State.REVOKED)


def install(
    app: FastAPI,
    services: Services,
    *,
    signer: KeySigner | UriSigner,
    sessions: sessionmaker[Session],
    session_seconds: int | None = None,
) -> None:
    """Mount the console at ``/ui/`` (its router, its static files, its security headers)."""
    sealer = Sealer(session_key(signer))
    if session_seconds:
        sealer.lifetime = session_seconds
    console = Console(services, sealer)
    registry_key = TrustedKey(REGISTRY_SIGNER, signer.public_key)
    reads = Reads(sessions)
    cache = EvidenceCache(reads, services.attestations, registry_key)
    app.state.ui_cache = cache
    app.add_middleware(SecurityHeaders)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(_router(console, cache, reads, LineageReads(sessions), registry_key))


def _guarded_async(
    console: Console,
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    def decorate(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(handler)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = kwargs["request"]
            assert isinstance(request, Request)
            try:
                return await handler(*args, **kwargs)
            except NeedSignIn as exc:
                return sign_in_redirect(request, exc.message)
            except CsrfError as exc:
                ctx = getattr(request.state, "ui_context", None)
                return console.error(request, ctx, 403, f"Refused: {exc}")
            except RegistryError as exc:
                status, _slug = problem_for(exc)
                ctx = getattr(request.state, "ui_context", None)
                return console.error(request, ctx, status, exc.detail)

        return wrapper

    return decorate


def _version(namespace: str, name: str, version: str) -> Ref:
    validate_name(namespace, what="namespace")
    validate_name(name, what="artifact name")
    validate_version(version)
    return views.alias_ref(namespace, name, version)


def _router(
    console: Console,
    cache: EvidenceCache,
    reads: Reads,
    lineage_reads: LineageReads,
    registry_key: TrustedKey,
) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    page = guarded(console)
    action = _guarded_async(console)
    services = console.services

    # -- sign-in ----------------------------------------------------------------------------------

    @router.get("", operation_id="ui_root")
    def root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @router.get("/login", operation_id="ui_login_form")
    @page
    def login_form(request: Request, next: str = "", why: str = "") -> Response:
        pre, new = console.pre_session(request)
        messages = {
            "expired": "Your session expired. Sign in again.",
            "revoked": "Your token is no longer valid (revoked or expired). Sign in with another.",
            "signed-out": "You are signed out.",
        }
        response = console.render(
            request, "login.html", None, next=safe_next(next), csrf_pre=console.sealer.csrf(pre),
            message=messages.get(why, ""),
        )  # fmt: skip
        if new:
            console.set_pre_session(response, request, pre)
        return response

    @router.post("/login", operation_id="ui_sign_in")
    @action
    async def sign_in(request: Request) -> Response:
        form = await console.form(request)
        pre, _new = console.pre_session(request)
        console.check_csrf(request, form, pre)
        token = form.get("token", "").strip()
        target = safe_next(form.get("next"))
        try:
            await run_in_threadpool(console.sign_in, request, token)
        except AuthenticationError:
            return console.render(
                request, "login.html", None, status=401, next=target,
                csrf_pre=console.sealer.csrf(pre),
                message="That token is not valid (unknown, expired or revoked).",
            )  # fmt: skip
        response = RedirectResponse(target, status_code=303)
        console.session_cookie(response, request, token)
        return response

    @router.post("/logout", operation_id="ui_sign_out")
    @action
    async def sign_out(request: Request) -> Response:
        form = await console.form(request)
        session = console.sealer.open(request.cookies.get("modelseal_session"))
        if session is not None:
            console.check_csrf(request, form, session.sid)
        response = RedirectResponse(f"{PREFIX}/login?why=signed-out", status_code=303)
        console.end_session(response, request)
        return response

    # -- browsing ---------------------------------------------------------------------------------

    @router.get("/", operation_id="ui_home")
    @page
    def home(request: Request) -> Response:
        ctx = console.signed_in(request)
        names = services.versions.list_namespaces(ctx.principal, PageRequest(views.LIST_LIMIT))
        return console.render(request, "home.html", ctx, namespaces=names.items,
                              more=names.next_after is not None)  # fmt: skip

    @router.get("/n/{namespace}", operation_id="ui_namespace")
    @page
    def namespace_page(request: Request, namespace: str, q: str = "", kind: str = "") -> Response:
        ctx = console.signed_in(request)
        validate_name(namespace, what="namespace")
        found = services.versions.list_artifacts(
            ctx.principal, namespace, PageRequest(views.LIST_LIMIT)
        )
        artifacts = [
            a
            for a in found.items
            if (not q or q.lower() in a.name.lower()) and (not kind or a.kind == kind)
        ]
        if not views.sees_pending(ctx.principal, namespace):
            # Counted and listed by the versions this token sees: an artifact with only
            # pending versions does not exist for it.
            settled = reads.settled_counts(namespace)
            artifacts = [dataclasses.replace(a, version_count=settled[a.name])
                         for a in artifacts if settled.get(a.name)]  # fmt: skip
        policy = services.releases.get_policy(ctx.principal, namespace)
        return console.render(request, "namespace.html", ctx, namespace=namespace,
                              artifacts=artifacts, q=q, kind=kind, kinds=[k.value for k in Kind],
                              policy=policy, more=found.next_after is not None)  # fmt: skip

    @router.get("/n/{namespace}/{name}", operation_id="ui_artifact")
    @page
    def artifact_page(
        request: Request, namespace: str, name: str, state: str = "", q: str = ""
    ) -> Response:
        ctx = console.signed_in(request)
        validate_name(namespace, what="namespace")
        validate_name(name, what="artifact name")
        state = state if state in STATES else ""
        rows, aliases = views.version_rows(
            services, ctx.principal, namespace, name, state=state, search=q
        )
        states = [s for s in STATES if s not in views.UNSETTLED or
                  views.sees_pending(ctx.principal, namespace)]  # fmt: skip
        released = [r.record.version for r in rows if r.record.state == State.RELEASED]
        if state or q:
            released = [
                r.record.version
                for r in views.version_rows(services, ctx.principal, namespace, name)[0]
                if r.record.state == State.RELEASED
            ]
        return console.render(
            request, "artifact.html", ctx, namespace=namespace, name=name, rows=rows,
            aliases=aliases, state=state, q=q, states=states, released=released,
            may_release=ctx.principal.allowed(Action.RELEASE, namespace),
        )  # fmt: skip

    @router.get("/n/{namespace}/{name}/alias", operation_id="ui_alias_form")
    @page
    def alias_form(
        request: Request, namespace: str, name: str, alias: str = "", version: str = ""
    ) -> Response:
        ctx = console.signed_in(request)
        ctx.principal.require(Action.RELEASE, namespace)
        validate_alias(alias)
        record = views.resolve_visible(services, ctx.principal, _version(namespace, name, version))
        current = {a.alias: a.version for a in services.lifecycle.list_aliases(
            ctx.principal, namespace, name, PageRequest(views.LIST_LIMIT)).items}  # fmt: skip
        return console.render(request, "confirm_alias.html", ctx, record=record, alias=alias,
                              current=current.get(alias))  # fmt: skip

    @router.post("/n/{namespace}/{name}/alias", operation_id="set_alias")
    @action
    async def alias_move(request: Request, namespace: str, name: str) -> Response:
        form = await console.form(request)

        def run() -> Response:
            ctx = console.signed_in(request)
            console.check_csrf(request, form, ctx.session.sid)
            alias, version = form.get("alias", ""), form.get("version", "")
            validate_name(namespace, what="namespace")
            validate_name(name, what="artifact name")
            validate_alias(alias)
            validate_version(version)
            services.lifecycle.set_alias(ctx.principal, namespace, name, alias, version)
            return RedirectResponse(
                f"{PREFIX}/n/{namespace}/{name}/{version}?done=alias", status_code=303
            )

        return await run_in_threadpool(run)

    @router.get("/n/{namespace}/{name}/{version}", operation_id="ui_version")
    @page
    def version_page(
        request: Request, namespace: str, name: str, version: str, gate: str = "",
        done: str = "",
    ) -> Response:  # fmt: skip
        ctx = console.signed_in(request)
        ref = _version(namespace, name, version)
        record = views.resolve_visible(services, ctx.principal, ref)
        data = views.version_page(services, cache, ctx.principal, record, lineage_reads,
                                  gate_now=gate == "now")  # fmt: skip
        p = ctx.principal
        return console.render(
            request, "version.html", ctx, v=data, r=record, done=done,
            bom=views.bom_summary(data.bom) if data.bom else None,
            may_release=p.allowed(Action.RELEASE, namespace),
            sees_pending=views.sees_pending(p, namespace),
            sees_audit=p.allowed(Action.AUDIT, None),
            archive=archive_name(record.ref),
            pretty=views.pretty_json,
        )  # fmt: skip

    @router.get("/n/{namespace}/{name}/{version}/bundles/{attestation_id}",
                operation_id="ui_bundle")  # fmt: skip
    @page
    def bundle(
        request: Request, namespace: str, name: str, version: str, attestation_id: RowPath
    ) -> Response:
        ctx = console.signed_in(request)
        ref = _version(namespace, name, version)
        views.resolve_visible(services, ctx.principal, ref)
        raw = services.attestations.get(ctx.principal, ref, attestation_id)
        filename = f"{namespace}-{name}-{version}-{attestation_id}.sigstore.json"
        return Response(raw, media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip

    @router.get("/n/{namespace}/{name}/{version}/bom", operation_id="ui_bom")
    @page
    def bom(request: Request, namespace: str, name: str, version: str) -> Response:
        ctx = console.signed_in(request)
        record = views.resolve_visible(services, ctx.principal, _version(namespace, name, version))
        from attest.predicates import CYCLONEDX_BOM

        items = [i for i in cache.items(record, CYCLONEDX_BOM) if i.ok and i.by_registry]
        if not items or items[-1].statement is None:
            raise NotFoundError(f"{record.ref} has no ML-BOM")
        body = json.dumps(items[-1].statement.predicate, indent=2, sort_keys=True).encode()
        filename = f"{namespace}-{name}-{version}.cdx.json"
        return Response(body, media_type="application/vnd.cyclonedx+json", headers={
            "Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip

    @router.post("/n/{namespace}/{name}/{version}/export", operation_id="ui_export_evidence")
    @action
    async def export(request: Request, namespace: str, name: str, version: str) -> Response:
        """The archive ``modelseal export`` writes (without files), for the signed-in token.
        A POST behind the CSRF check: an admin's export may sign a fresh audit checkpoint."""
        form = await console.form(request)

        def run() -> Response:
            ctx, record = _act(request, form, namespace, name, version)
            filename, body = evidence_archive(services, ctx.principal, record.ref, registry_key,
                                              str(request.base_url).rstrip("/"),
                                              log=request.app.state.tlog)  # fmt: skip
            return Response(body, media_type="application/gzip", headers={
                "Content-Disposition": f'attachment; filename="{filename}"'})  # fmt: skip

        return await run_in_threadpool(run)

    # -- actions ---------------------------------------------------------------------------------

    @router.get("/n/{namespace}/{name}/{version}/{verb}", operation_id="ui_confirm")
    @page
    def confirm(request: Request, namespace: str, name: str, version: str, verb: str) -> Response:
        ctx = console.signed_in(request)
        if verb not in ("release", "reject", "revoke"):
            raise NotFoundError(f"no page {verb!r}")
        ctx.principal.require(Action.RELEASE, namespace)
        record = views.resolve_visible(services, ctx.principal, _version(namespace, name, version))
        data: dict[str, Any] = {}
        if verb == "release" and record.state == State.PENDING:
            data["gate"], data["gate_at"] = views.run_gate(services, ctx.principal, record)
        if verb == "revoke" and record.state in (State.RELEASED, State.REVOKED):
            data["dependents"] = views.cascade(services, ctx.principal, record)
        return console.render(request, f"confirm_{verb}.html", ctx, r=record, **data)

    def _act(request: Request, form: dict[str, str], namespace: str, name: str,
             version: str) -> tuple[PageContext, VersionRecord]:  # fmt: skip
        ctx = console.signed_in(request)
        console.check_csrf(request, form, ctx.session.sid)
        ref = _version(namespace, name, version)
        return ctx, views.resolve_visible(services, ctx.principal, ref)

    @router.post("/n/{namespace}/{name}/{version}/release", operation_id="release_version")
    @action
    async def release(request: Request, namespace: str, name: str, version: str) -> Response:
        form = await console.form(request)

        def run() -> Response:
            ctx, record = _act(request, form, namespace, name, version)
            try:
                services.releases.release(ctx.principal, record.ref)
            except ReleaseRefusedError as exc:
                return console.render(request, "refused.html", ctx, status=409, r=record,
                                      reasons=list(exc.facts.get("reasons", [])))  # fmt: skip
            return RedirectResponse(_page_of(record, "released"), status_code=303)

        return await run_in_threadpool(run)

    @router.post("/n/{namespace}/{name}/{version}/reject", operation_id="reject_version")
    @action
    async def reject(request: Request, namespace: str, name: str, version: str) -> Response:
        form = await console.form(request)

        def run() -> Response:
            ctx, record = _act(request, form, namespace, name, version)
            reason = form.get("reason", "")
            if not reason.strip():
                raise InvalidRequestError("a rejection needs a reason")
            services.releases.reject(ctx.principal, record.ref, reason)
            return RedirectResponse(_page_of(record, "rejected"), status_code=303)

        return await run_in_threadpool(run)

    @router.post("/n/{namespace}/{name}/{version}/revoke", operation_id="revoke_version")
    @action
    async def revoke(request: Request, namespace: str, name: str, version: str) -> Response:
        form = await console.form(request)

        def run() -> Response:
            ctx, record = _act(request, form, namespace, name, version)
            result = services.releases.revoke(
                ctx.principal, _version(namespace, name, version), form.get("reason", "")
            )
            return console.render(request, "revoked.html", ctx, r=record, result=result)

        return await run_in_threadpool(run)

    # -- policies and the audit log ---------------------------------------------------------

    @router.get("/policy/{namespace}", operation_id="ui_policy")
    @page
    def policy(
        request: Request, namespace: str, revision: RowQuery = None, base: RowQuery = None
    ) -> Response:
        ctx = console.signed_in(request)
        validate_name(namespace, what="namespace")
        shown = services.releases.get_policy(ctx.principal, namespace, revision)
        history = views.policy_revisions(services, reads, ctx.principal, namespace)
        diff = None
        compared = None
        if base is not None:
            compared = services.releases.get_policy(ctx.principal, namespace, base)
            diff = views.policy_diff(compared, shown)
        return console.render(request, "policy.html", ctx, namespace=namespace, shown=shown,
                              history=history, diff=diff, compared=compared)  # fmt: skip

    @router.get("/audit", operation_id="ui_audit")
    @page
    def audit(
        request: Request, actor: str = "", action: str = "", target: str = "",
        outcome: str = "", since: str = "", until: str = "", before: RowQuery = None,
    ) -> Response:  # fmt: skip
        ctx = console.signed_in(request)
        wanted = views.AuditFilter(actor[:200], action[:200], target[:200], outcome[:32],
                                   since[:40], until[:40])  # fmt: skip
        data = views.audit_page(services, ctx.principal, registry_key, wanted, before)
        return console.render(request, "audit.html", ctx, a=data, f=wanted,
                              outcomes=["ok", "denied", "refused", "error", "redirected",
                                        "warned", "dry-run"])  # fmt: skip

    return router


def _page_of(record: VersionRecord, done: str) -> str:
    return f"{PREFIX}/n/{record.namespace}/{record.name}/{record.version}?done={done}"


__all__ = ["HTMLResponse", "install"]
