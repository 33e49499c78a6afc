"""Attacker: independent review of the web console (docs/ui.md, docs/threat-model.md).

Every test runs a real server (SQLite + local directory), real tokens, real signatures and real
sessions sealed by the server. Tests named ``test_resisted_*`` are attacks that failed; the
others each demonstrated a hole, failed against the console as reviewed (7a20495), and pass
since the fix (each says what the hole was and what the correct behaviour is).
"""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attest import keys
from attest.bundle import Bundle
from attest.predicates import SCAN, TEST_RESULT
from attest.signing import KeySigner
from attest.statement import make_statement
from registry.server.config import Settings
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from registry.server.ui.session import COOKIE, Sealer, session_key
from tests.integration.test_release import POLICY, World, _released
from tests.support import Live, serve

# -- helpers ---------------------------------------------------------------------------------------


def _token(live: Live, role: Role, namespace: str | None, name: str) -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        tokens = TokenService(make_sessionmaker(engine))
        return tokens.create(name=name, role=role, namespace=namespace).secret
    finally:
        engine.dispose()


def _revoke(live: Live, secret: str) -> None:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        token_id = secret.removeprefix("ms_").split("_", 1)[0]
        TokenService(make_sessionmaker(engine)).revoke(token_id)
    finally:
        engine.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, html[:500]
    return found.group(1)


def _browser(live: Live) -> httpx.Client:
    return httpx.Client(base_url=live.url, follow_redirects=False, timeout=60)


def _login(live: Live, token: str) -> httpx.Client:
    client = _browser(live)
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login", data={"csrf": _csrf(form.text), "token": token, "next": "/ui/"}
    )
    assert answer.status_code == 303, (answer.status_code, answer.text[:300])
    return client


def _db(live: Live) -> sqlite3.Connection:
    return sqlite3.connect(live.settings.data_dir / "registry.db")


def _registry_sealer(live: Live) -> Sealer:
    signer = KeySigner(keys.load_private(live.settings.data_dir / "registry.key"))
    return Sealer(session_key(signer))


def _signed_out(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with serve(Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)) as live:
        yield World(live, tmp_path)


# -- holes -----------------------------------------------------------------------------------------


# HOLE (medium, pending-version leak to deployers): the lineage graph of a version a deployer may
# see (a rejected model) draws every dependency its provenance names with its state, including a
# *pending* dataset ("fraud/tx@4 — dataset, pending", in the SVG and the screen-reader list). The
# console promises deployers never see pending versions (views.sees_pending); the node is only
# unlinked. Correct: for a principal who does not see pending versions, a pending dependency is
# drawn like an unknown one (no link, no state, no kind) or left out, and not walked further.
def test_deployer_does_not_see_a_pending_dependency_in_the_lineage(world: World) -> None:
    pending = world.dataset("fraud/tx@4", release=False)
    world.model("fraud/m@2", deps=[("fraud/tx@4", pending)])
    world.releaser.reject("fraud/m@2", "not this one")
    deployer = _login(world.live, _token(world.live, Role.DEPLOYER, "fraud", "deployer"))

    assert deployer.get("/ui/n/fraud/tx/4").status_code == 404  # the page itself is hidden
    page = deployer.get("/ui/n/fraud/m/2")
    assert page.status_code == 200
    # The name is in the model's signed provenance, which the deployer may read anyway; what it
    # must not learn is that the version exists and its state.
    assert 'href="/ui/n/fraud/tx/4"' not in page.text
    assert "fraud/tx@4 — missing, not registered" in page.text
    assert not re.search(r"fraud/tx@4 — \w+, pending", page.text), "the pending state leaked"


# HOLE (medium, cross-namespace leak): the page of a revoked version lists "Versions built on it
# (revoked with it)" from ReleaseService._dependents, which walks every namespace. A deployer
# scoped to `fraud` opening fraud/tx@3 reads the reference of `secret/m@1`, a model in a
# namespace it may not read (no API call tells it: only the revoker gets the dependents in the
# revoke answer). Correct: the cascade list on read pages keeps only versions in namespaces the
# principal may read (others at most counted), as the lineage hides them.
def test_namespace_scoped_reader_does_not_see_dependents_in_other_namespaces(
    world: World,
) -> None:
    dataset = _released(world)
    world.admin.set_policy("secret", POLICY)
    world.model("secret/m@1", deps=[("fraud/tx@3", dataset)])
    secret_releaser = world.live.client(
        token=_token(world.live, Role.RELEASER, "secret", "secret-releaser")
    )
    secret_releaser.release("secret/m@1")
    world.admin.revoke("fraud/tx@3", "poisoned rows")
    assert world.admin.show("secret/m@1").state == "revoked"

    deployer = _login(world.live, _token(world.live, Role.DEPLOYER, "fraud", "deployer"))
    assert deployer.get("/ui/n/secret").status_code == 403  # the namespace is not theirs
    page = deployer.get("/ui/n/fraud/tx/3")
    assert page.status_code == 200
    assert "secret/m@1" not in page.text, "another namespace's version is named to a scoped token"


# HOLE (low, GET writes / read-only roles write): `?gate=now` on the version page is offered to
# every role that sees pending versions (publishers, auditors) and is documented as "nothing is
# recorded". It calls ReleaseService.check, which first rescans a version whose registry scan
# predates the current ruleset (any registry upgraded past a ruleset bump holds many): a GET by a
# read-only, namespace-scoped auditor makes the registry sign and store a new scan attestation
# (and may move the version to rejected), with no audit entry. The release confirmation page
# (GET) does the same. Correct: a GET changes nothing; the console's dry run must not rescan
# (show "scan is stale, a release will rescan"), or the rescan needs a POST by a role allowed to
# cause it, audited.
def test_gate_now_by_a_read_only_auditor_writes_nothing(world: World) -> None:
    world.model("fraud/m@3")
    live = world.live
    # The model's ML-BOM is built off the request path by the registry's worker: let it settle
    # first, so what is counted below is only what the GET might write.
    deadline = time.monotonic() + 120
    while world.admin.show("fraud/m@3").bom_status == "pending":
        assert time.monotonic() < deadline, "the ML-BOM was never built"
        time.sleep(0.2)
    db = _db(live)
    # The registry was upgraded past a scanner ruleset bump: the version's scan is an older one,
    # signed by the registry's real key.
    row_id, raw = db.execute(
        "select a.id, a.bundle from attestations a join versions v on a.version_id = v.id "
        "where v.version = '3' and a.predicate_type = ?",
        (SCAN,),
    ).fetchone()
    statement = Bundle.parse(raw).statement()
    predicate = dict(statement.predicate)
    predicate["scanner"] = {**predicate["scanner"], "ruleset": "2020-01-01.1"}
    signer = KeySigner(keys.load_private(live.settings.data_dir / "registry.key"))
    old = signer.sign(make_statement(name=statement.subject.name,
                                     root_digest=statement.subject.sha256,
                                     predicate_type=SCAN, predicate=predicate))  # fmt: skip
    db.execute("update attestations set bundle = ?, bundle_digest = ? where id = ?",
               (old.raw, old.digest, row_id))  # fmt: skip
    db.commit()
    count = "select count(*) from attestations"
    before = db.execute(count).fetchone()[0]

    auditor = _login(live, _token(live, Role.AUDITOR, "fraud", "auditor"))
    page = auditor.get("/ui/n/fraud/m/3?gate=now")
    assert page.status_code == 200
    assert "nothing was recorded" in page.text
    assert db.execute(count).fetchone()[0] == before, "a GET by an auditor stored a new attestation"


# HOLE (low, robustness): integer query and path parameters are passed to the database
# unbounded; a value past 2**63 raises OverflowError in the SQLite driver, which the console's
# error handling (RegistryError only) does not catch: 500 "internal error" (a traceback in the
# server log, and "Exception in ASGI application" that resets the keep-alive connection).
# Correct: a clear 4xx (400 or 404) page, as for any other bad input.
@pytest.mark.parametrize(
    "path",
    [
        "/ui/policy/fraud?revision=99999999999999999999",
        "/ui/policy/fraud?revision=1&base=99999999999999999999",
        "/ui/n/fraud/m/1/bundles/99999999999999999999",
        "/ui/audit?before=99999999999999999999",
    ],
)
def test_huge_integers_get_a_4xx_not_a_500(world: World, path: str) -> None:
    _released(world)
    admin = _login(world.live, world.live.admin_token)
    answer = admin.get(path, headers={"connection": "close"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])


# HOLE (low, pending leak to deployers): an artifact whose only versions are pending is listed to
# a deployer on the namespace page, with its version count, and its page answers 200. The
# console's rule is that deployers do not see pending work. Correct: the namespace page lists (and
# counts) only what the principal may see; an artifact with nothing visible is not listed.
def test_deployer_does_not_see_an_artifact_that_is_only_pending(world: World) -> None:
    world.model("fraud/secret-project@1")
    deployer = _login(world.live, _token(world.live, Role.DEPLOYER, "fraud", "deployer"))
    page = deployer.get("/ui/n/fraud")
    assert page.status_code == 200
    assert "secret-project" not in page.text


# -- attacks resisted ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One released chain plus a pending version with hostile strings, for read-only attacks."""
    tmp = tmp_path_factory.mktemp("ui-attack")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELSEAL_CONFIG_DIR", str(tmp / "client-config"))
        with serve(Settings(data_dir=tmp / "data", min_chunk_bytes=1024)) as live:
            world = World(live, tmp)
            _released(world)
            hostile = "<img src=x onerror=alert(1)>\"'><script>alert(2)</script>"
            world.model("fraud/m@7", extra={"<svg onload=alert(3)>.json": b"{}"})
            world.attest("fraud/m@7", TEST_RESULT,
                         {"result": "PASSED", "metrics": {hostile: 1.0, "accuracy": 0.95}},
                         world.evaluation)  # fmt: skip
            world.model("fraud/m@8")
            world.releaser.reject("fraud/m@8", "javascript:alert(4) " + hostile)
            world.admin.set_policy("fraud", POLICY + "# </code></pre><script>alert(5)</script>\n")
            yield world


def test_resisted_hostile_strings_render_inert(shared: World) -> None:
    admin = _login(shared.live, shared.live.admin_token)
    for path in ("/ui/n/fraud/m/7", "/ui/n/fraud/m/8", "/ui/policy/fraud?revision=2&base=1",
                 "/ui/audit"):  # fmt: skip
        page = admin.get(path)
        assert page.status_code == 200, path
        for raw in ("<script>alert", "<img src=x", "<svg onload", "onerror=alert(1)>"):
            assert raw not in page.text, (path, raw)
        assert 'href="javascript:' not in page.text
    assert "&lt;script&gt;alert(5)" in admin.get("/ui/policy/fraud").text
    seven = admin.get("/ui/n/fraud/m/7").text
    assert "&lt;svg onload=alert(3)&gt;.json" in seven  # the file path
    metric = "&lt;img src=x onerror=alert(1)&gt;&#34;&#39;&gt;&lt;script&gt;alert(2)"
    assert metric in seven
    assert "javascript:alert(4) &lt;img" in admin.get("/ui/n/fraud/m/8").text  # the reason


def test_resisted_cookie_flags_and_headers(shared: World) -> None:
    client = _browser(shared.live)
    form = client.get("/ui/login")
    data = {"csrf": _csrf(form.text), "token": shared.live.admin_token, "next": "/ui/"}
    answer = client.post("/ui/login", data=data)
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/ui" in lowered
    assert "secure" not in lowered  # plain http here
    secret = shared.live.admin_token.split("_", 2)[2]
    assert secret not in cookie and secret not in base64.urlsafe_b64decode(
        cookie.split("=", 1)[1].split(";")[0] + "==").decode("latin1")  # fmt: skip
    page = client.get("/ui/n/fraud/m/1")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert secret not in page.text
    assert "<script>" not in page.text and " onclick=" not in page.text


def test_resisted_tampered_forged_expired_and_foreign_cookies(shared: World) -> None:
    live = shared.live
    real = _registry_sealer(live)
    good = real.seal(live.admin_token)
    flipped = bytearray(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    flipped[20] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("=")
    foreign = Sealer(b"\x01" * 32).seal(live.admin_token)  # another registry's key
    expired = real.seal(live.admin_token, now=time.time() - 9 * 3600)

    def with_cookie(cookie: str) -> httpx.Response:
        client = _browser(live)
        client.cookies.set(COOKIE, cookie, path="/ui")
        return client.get("/ui/")

    assert with_cookie(good).status_code == 200  # the control
    for cookie in (tampered, foreign, expired, "A" * 5000, "AQ", good[:-4]):
        assert _signed_out(with_cookie(cookie)), cookie[:40]


def test_resisted_cookie_of_a_revoked_token(shared: World) -> None:
    secret = _token(shared.live, Role.RELEASER, "fraud", "soon-revoked")
    client = _login(shared.live, secret)
    assert client.get("/ui/n/fraud").status_code == 200
    _revoke(shared.live, secret)
    answer = client.get("/ui/n/fraud")
    assert _signed_out(answer) and "why=revoked" in answer.headers["location"]


def test_resisted_csrf_from_another_session_missing_or_cross_site(shared: World) -> None:
    live = shared.live
    shared.model("fraud/m@9")
    victim = _login(live, live.admin_token)
    attacker = _login(live, _token(live, Role.RELEASER, "fraud", "attacker"))
    theirs = _csrf(attacker.get("/ui/n/fraud/m/9/reject").text)
    mine = _csrf(victim.get("/ui/n/fraud/m/9/reject").text)
    for data, headers in (
        ({"csrf": theirs, "reason": "x"}, {}),
        ({"reason": "x"}, {}),
        ({"csrf": "0" * 64, "reason": "x"}, {}),
        ({"csrf": mine, "reason": "x"}, {"sec-fetch-site": "cross-site"}),
        ({"csrf": mine, "reason": "x"}, {"sec-fetch-site": "same-site"}),
    ):
        answer = victim.post("/ui/n/fraud/m/9/reject", data=data, headers=headers)
        assert answer.status_code == 403
    # a JSON or multipart body is not a console form
    answer = victim.post("/ui/n/fraud/m/9/reject", json={"csrf": mine, "reason": "x"})
    assert answer.status_code == 403
    # no session at all: sent to sign in, nothing done
    assert _signed_out(_browser(live).post("/ui/n/fraud/m/9/reject",
                                           data={"csrf": mine, "reason": "x"}))  # fmt: skip
    # GET never acts; method override headers are ignored
    victim.get("/ui/n/fraud/m/9/reject?reason=x&csrf=" + mine,
               headers={"x-http-method-override": "POST"})  # fmt: skip
    assert live.client().show("fraud/m@9").state == "pending"


def test_resisted_login_csrf_and_open_redirect(shared: World) -> None:
    live = shared.live
    # a cross-site sign-in post carries no pre-session cookie (SameSite=Strict): refused
    fresh = _browser(live)
    csrf = _csrf(_browser(live).get("/ui/login").text)
    answer = fresh.post("/ui/login", data={"csrf": csrf, "token": live.admin_token})
    assert answer.status_code == 403 and COOKIE not in answer.headers.get("set-cookie", "")
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/",
                   "/ui/\t//evil.example", "/v1/tokens", "\\\\evil.example"):  # fmt: skip
        client = _browser(live)
        form = client.get("/ui/login")
        data = {"csrf": _csrf(form.text), "token": live.admin_token, "next": target}
        answer = client.post("/ui/login", data=data)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/", target


def test_resisted_roles_and_namespaces(shared: World) -> None:
    live = shared.live
    deployer = _login(live, _token(live, Role.DEPLOYER, "fraud", "dep"))
    assert deployer.get("/ui/n/fraud/m/7").status_code == 404  # pending
    assert deployer.get("/ui/n/fraud/m/7?gate=now").status_code == 404
    assert deployer.get("/ui/n/fraud/m/1/revoke").status_code == 403
    assert deployer.get("/ui/audit").status_code == 403
    assert "m/7" not in deployer.get("/ui/n/fraud/m").text
    csrf = _csrf(deployer.get("/ui/n/fraud/m/1").text)
    answer = deployer.post("/ui/n/fraud/m/1/revoke", data={"csrf": csrf, "reason": "x"})
    assert answer.status_code == 403
    other = _login(live, _token(live, Role.AUDITOR, "other", "other-auditor"))
    for path in ("/ui/n/fraud", "/ui/n/fraud/m", "/ui/n/fraud/m/1", "/ui/policy/fraud",
                 "/ui/audit", "/ui/n/fraud/m/1/bundles/1", "/ui/n/fraud/m/1/bom"):  # fmt: skip
        assert other.get(path).status_code in (403, 404), path
    assert "fraud" not in other.get("/ui/").text
    assert live.client().show("fraud/m@1").state == "released"


def test_resisted_sign_out(shared: World) -> None:
    client = _login(shared.live, shared.live.admin_token)
    csrf = _csrf(client.get("/ui/").text)
    assert client.post("/ui/logout", data={"csrf": "1" * 64}).status_code == 403
    answer = client.post("/ui/logout", data={"csrf": csrf})
    assert answer.status_code == 303
    assert COOKIE in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]
    client.cookies.clear()
    assert _signed_out(client.get("/ui/"))


def test_resisted_bundle_of_another_version_through_a_visible_one(shared: World) -> None:
    live = shared.live
    hidden = (
        _db(live)
        .execute(
            "select a.id from attestations a join versions v on a.version_id = v.id "
            "where v.version = '7'"
        )
        .fetchone()[0]
    )
    deployer = _login(live, _token(live, Role.DEPLOYER, "fraud", "dep-idor"))
    assert deployer.get(f"/ui/n/fraud/m/1/bundles/{hidden}").status_code == 404
    assert deployer.get(f"/ui/n/fraud/m/7/bundles/{hidden}").status_code == 404


def test_resisted_secure_cookie_under_tls(tmp_path: Path) -> None:
    import threading

    import uvicorn

    from registry.server.app import create_app
    from registry.server.services.bootstrap import bootstrap
    from tests.support import free_port, self_signed

    settings = Settings(data_dir=tmp_path / "data", min_chunk_bytes=1024)
    written = bootstrap(settings)
    assert written is not None
    admin = written.read_text().strip()
    ca, cert, key = self_signed(tmp_path)
    port = free_port()
    config = uvicorn.Config(create_app(settings, expiry_interval=None), host="127.0.0.1",
                            port=port, log_level="warning", ssl_certfile=str(cert),
                            ssl_keyfile=str(key))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        client = httpx.Client(timeout=60, base_url=f"https://127.0.0.1:{port}", verify=str(ca),
                              follow_redirects=False)  # fmt: skip
        form = client.get("/ui/login")
        pre = form.headers["set-cookie"].lower()
        assert "secure" in pre
        answer = client.post("/ui/login", data={"csrf": _csrf(form.text), "token": admin})
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(COOKIE))
        assert "secure" in cookie.lower()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
