"""The console's HTTP plumbing: templates, security headers, sessions, CSRF and errors."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.errors import AuthenticationError, RateLimitedError, RegistryError, problem_for
from registry.server.api.deps import Services, _admit
from registry.server.services.auth import Action, Principal
from registry.server.ui.evidence import words
from registry.server.ui.session import COOKIE, PRE_COOKIE, PRE_SESSION_SECONDS, Sealer, Session

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
PREFIX = "/ui"
MAX_FORM_BYTES = 64 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the console's security headers (and ``Server-Timing``) to every ``/ui`` answer;
    pages are ``no-store`` (they show what a token may see)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        static = path.startswith(PREFIX + "/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in HEADERS}
                ]
                headers += HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                elapsed = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={elapsed:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, wrapped)


def environment() -> Environment:
    # imported with the first page, not with the server: a registry that serves only the API
    # (CI jobs, deploy fleets) does not carry the template compiler in memory
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = human_size
    env.filters["when"] = when
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["words"] = words
    return env


def human_size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def when(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return str(value)


@dataclass(frozen=True, slots=True)
class PageContext:
    """A signed-in request: who, and the CSRF token of the session."""

    principal: Principal
    session: Session
    csrf: str


def _limit(wait: float) -> None:
    if wait > 0:
        raise RateLimitedError(f"too many requests; retry in {wait:.1f} s")


class NeedSignIn(Exception):
    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class Console:
    """What the routes share: services, templates, the sealer."""

    def __init__(self, services: Services, sealer: Sealer) -> None:
        self.services = services
        self.sealer = sealer

    @functools.cached_property
    def templates(self) -> Environment:
        return environment()

    # -- sessions ------------------------------------------------------------------------------

    def signed_in(self, request: Request) -> PageContext:
        """The session's principal, authenticated again as the API authenticates a bearer
        token (address limit, token, token limit); :class:`NeedSignIn` without one."""
        session = self.sealer.open(request.cookies.get(COOKIE))
        if session is None:
            raise NeedSignIn("expired" if request.cookies.get(COOKIE) else "")
        client = request.client.host if request.client else "unknown"
        try:
            principal, wait = _admit(self.services, client, session.token)
        except AuthenticationError:
            raise NeedSignIn("revoked") from None
        request.state.principal = principal  # for the audit log, as the API's dependency does
        ctx = PageContext(principal, session, self.sealer.csrf(session.sid))
        request.state.ui_context = ctx
        _limit(wait)
        return ctx

    def sign_in(self, request: Request, token: str) -> Principal:
        client = request.client.host if request.client else "unknown"
        principal, wait = _admit(self.services, client, token)
        request.state.principal = principal
        _limit(wait)
        return principal

    def session_cookie(self, response: Response, request: Request, token: str) -> None:
        response.set_cookie(
            COOKIE,
            self.sealer.seal(token),
            max_age=self.sealer.lifetime,
            path=PREFIX,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(PRE_COOKIE, path=PREFIX, httponly=True, samesite="strict")

    @staticmethod
    def end_session(response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path=PREFIX, secure=request.url.scheme == "https", httponly=True,
            samesite="strict",
        )  # fmt: skip

    def pre_session(self, request: Request) -> tuple[str, bool]:
        """The sign-in form's pre-session id (and whether it is new)."""
        found = request.cookies.get(PRE_COOKIE, "")
        if len(found) == 32 and all(c in "0123456789abcdef" for c in found):
            return found, False
        return self.sealer.new_pre_session(), True

    @staticmethod
    def set_pre_session(response: Response, request: Request, pre: str) -> None:
        response.set_cookie(
            PRE_COOKIE, pre, max_age=PRE_SESSION_SECONDS, path=PREFIX,
            secure=request.url.scheme == "https", httponly=True, samesite="strict",
        )  # fmt: skip

    # -- forms -----------------------------------------------------------------------------------

    async def form(self, request: Request) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body (the only kind the console posts)."""
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            raise CsrfError("forms are posted as application/x-www-form-urlencoded")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise CsrfError("form too large")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise CsrfError("unreadable form") from None
        return {k: v[0] for k, v in parsed.items()}

    def check_csrf(self, request: Request, form: dict[str, str], sid: str) -> None:
        """A state-changing form must come from a console page: same-site fetch metadata when
        the browser sends it, and the session's CSRF token."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise CsrfError(f"cross-site form post refused (Sec-Fetch-Site: {site})")
        if not self.sealer.csrf_ok(sid, form.get("csrf")):
            raise CsrfError("the form's CSRF token is missing or wrong; reload the page")

    # -- rendering ---------------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        ctx: PageContext | None,
        *,
        status: int = 200,
        **data: Any,
    ) -> HTMLResponse:
        principal = ctx.principal if ctx else None
        html = self.templates.get_template(template).render(
            ctx=ctx,
            me=principal,
            csrf=ctx.csrf if ctx else "",
            can_audit=bool(principal and principal.allowed(Action.AUDIT, None)),
            path=request.url.path,
            **data,
        )
        return HTMLResponse(html, status_code=status)

    def error(self, request: Request, ctx: PageContext | None, status: int, message: str,
              **data: Any) -> HTMLResponse:  # fmt: skip
        return self.render(request, "error.html", ctx, status=status, status_code=status,
                           message=message, **data)  # fmt: skip


class CsrfError(Exception):
    """A state-changing form that did not come from a console page of this session."""


P = ParamSpec("P")


def guarded(console: Console) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Turn the registry's errors into console pages with the API's status codes (a 403 is a
    ``denied`` entry in the audit log, as for the API) and a missing session into a redirect
    to sign-in."""

    def decorate(handler: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(handler)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = kwargs["request"]
            assert isinstance(request, Request)
            try:
                return handler(*args, **kwargs)
            except NeedSignIn as exc:
                return sign_in_redirect(request, exc.message)
            except CsrfError as exc:
                return console.error(request, None, 403, f"Refused: {exc}")
            except RegistryError as exc:
                status, _slug = problem_for(exc)
                ctx = getattr(request.state, "ui_context", None)
                return console.error(request, ctx, status, exc.detail)

        return wrapper

    return decorate


def sign_in_redirect(request: Request, why: str = "") -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET" or not target.startswith(PREFIX):
        target = PREFIX + "/"
    query = f"?next={quote(target, safe='')}" + (f"&why={quote(why)}" if why else "")
    response = RedirectResponse(f"{PREFIX}/login{query}", status_code=303)
    if why:
        Console.end_session(response, request)
    return response


def safe_next(value: str | None) -> str:
    """Only a console path: never another host (``//evil``, ``/\\evil``) after sign-in."""
    if (
        not value
        or not value.startswith(PREFIX + "/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return PREFIX + "/"
    return value
