"""The web console over HTTP against a real server: sessions, CSRF, every page, every role
rule, the actions and their audit entries, and hostile strings rendered inert.

Attackers modelled (docs/threat-model.md): anyone on the network (no session, forged or expired
cookies, cross-site form posts), a token of another namespace, a deployer (no pending versions,
no audit log, no actions), and a malicious uploader whose strings (file paths, metric names,
provenance sources, reasons, policy text) end up on the pages."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from attest.predicates import TEST_RESULT
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from registry.server.services.keys import load_registry_signer
from registry.server.ui.session import COOKIE, Sealer, session_key
from tests.integration.test_release import World
from tests.support import Live

XSS = "<script>alert('xss')</script>"
XSS_PATH = "<img src=x onerror=alert(1)>.txt"  # a path segment may not hold "/"


def _token(live: Live, name: str, role: Role, namespace: str | None) -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        return (
            TokenService(make_sessionmaker(engine))
            .create(name=name, role=role, namespace=namespace)
            .secret
        )
    finally:
        engine.dispose()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, html[:2000]
    return found.group(1)


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _http(live: Live) -> httpx.Client:
    client = httpx.Client(base_url=live.url, follow_redirects=False, timeout=60)
    _OPEN.append(client)
    return client


class Browser:
    """An HTTP client that signs in to the console like a browser (cookies kept)."""

    def __init__(self, live: Live, token: str | None = None) -> None:
        self.live = live
        self.http = _http(live)
        if token is not None:
            self.sign_in(token)

    def sign_in(self, token: str) -> httpx.Response:
        form = self.http.get("/ui/login")
        assert form.status_code == 200
        return self.http.post(
            "/ui/login", data={"token": token, "csrf": _csrf(form.text), "next": "/ui/"}
        )

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def csrf(self) -> str:
        return _csrf(self.get("/ui/").text)

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        if csrf:
            data = {**data, "csrf": self.csrf()}
        return self.http.post(path, data=data)


def _audit(live: Live) -> list[dict[str, object]]:
    return list(live.client().audit_entries())


# -- sessions, cookies, headers --------------------------------------------------------------------


def test_sign_in_seals_the_token_in_a_strict_http_only_cookie(live: Live) -> None:
    browser = Browser(live)
    page = browser.get("/ui/")
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login?next=")
    signed = browser.sign_in(live.admin_token)
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/"
    cookie = next(c for c in signed.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS it is Secure (tested below)
    assert live.admin_token not in cookie and live.admin_token.removeprefix("ms_") not in cookie
    home = browser.get("/ui/")
    assert home.status_code == 200 and "Signed in as <strong>admin</strong>" in home.text
    csp = home.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert home.headers["x-frame-options"] == "DENY"
    assert home.headers["x-content-type-options"] == "nosniff"
    assert home.headers["referrer-policy"] == "no-referrer"
    assert home.headers["cache-control"] == "no-store"
    assert "<script>" not in home.text.replace('<script src="/ui/static/ui.js" defer></script>', "")
    assert not re.search(r"<[^>]+\son[a-z]+=", home.text)
    static = browser.get("/ui/static/ui.js")
    assert static.status_code == 200 and "clipboard" in static.text


def test_the_cookie_is_secure_under_tls(live: Live) -> None:
    from registry.server.ui.web import Console

    class _Req:
        class url:
            scheme = "https"

    from starlette.responses import Response

    response = Response()
    console = Console.__new__(Console)
    console.sealer = Sealer(b"k" * 32)
    console.session_cookie(response, _Req(), "ms_x_y")  # type: ignore[arg-type]
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_a_wrong_token_is_refused_and_audited_as_denied(live: Live) -> None:
    browser = Browser(live)
    refused = browser.sign_in("ms_0123456789abcdef_not-the-secret")
    assert refused.status_code == 401 and "not valid" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    entry = _audit(live)[-1]
    assert entry["action"] == "ui_sign_in" and entry["outcome"] == "denied"


def test_sign_in_without_its_csrf_token_is_refused(live: Live) -> None:
    http = _http(live)
    http.get("/ui/login")
    refused = http.post("/ui/login", data={"token": live.admin_token, "csrf": "0" * 64})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    cross = http.post("/ui/login", data={"token": live.admin_token},
                      headers={"sec-fetch-site": "cross-site"})  # fmt: skip
    assert cross.status_code == 403


def test_sign_out_ends_the_session_and_needs_its_csrf_token(live: Live) -> None:
    browser = Browser(live, live.admin_token)
    forged = browser.post("/ui/logout", {}, csrf=False)
    assert forged.status_code == 403
    assert browser.get("/ui/").status_code == 200  # still signed in
    out = browser.post("/ui/logout", {})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login?why=signed-out"
    assert f'{COOKIE}=""' in out.headers["set-cookie"]
    assert browser.get("/ui/").status_code == 303


def test_expired_forged_and_revoked_sessions_send_back_to_sign_in(live: Live) -> None:
    sealer = Sealer(session_key(load_registry_signer(live.settings)))
    http = _http(live)
    good = sealer.seal(live.admin_token)
    assert http.get("/ui/", cookies={COOKIE: good}).status_code == 200
    expired = sealer.seal(live.admin_token, now=time.time() - 9 * 3600)
    answer = http.get("/ui/", cookies={COOKIE: expired})
    assert answer.status_code == 303 and "why=expired" in answer.headers["location"]
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    assert http.get("/ui/", cookies={COOKIE: tampered}).status_code == 303
    other_key = Sealer(b"x" * 32).seal(live.admin_token)
    assert http.get("/ui/", cookies={COOKIE: other_key}).status_code == 303
    # a session is only as good as its token: revoking the token ends it at once
    token = _token(live, "short-lived", Role.AUDITOR, None)
    browser = Browser(live, token)
    assert browser.get("/ui/").status_code == 200
    live.client().revoke_token(token.split("_")[1])
    answer = browser.get("/ui/audit")
    assert answer.status_code == 303 and "why=revoked" in answer.headers["location"]


def test_sign_in_never_redirects_off_the_console(live: Live) -> None:
    http = _http(live)
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/v1/x"):
        form = http.get("/ui/login")
        data = {"token": live.admin_token, "csrf": _csrf(form.text), "next": target}
        answer = http.post("/ui/login", data=data)
        assert answer.headers["location"] == "/ui/"


# -- pages ----------------------------------------------------------------------------------------


@pytest.fixture
def chain(live: Live, tmp_path: Path) -> World:
    """fraud/tx@3 (dataset, released) <- fraud/m@1 (released), fraud/m@2 pending (fails its
    evaluation), all signed by the World's identities."""
    world = World(live, tmp_path)
    dataset = world.dataset()
    world.model("fraud/m@1", deps=[("fraud/tx@3", dataset)])
    world.releaser.release("fraud/m@1")
    world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)], accuracy=0.5)
    return world


def test_the_lists_show_namespaces_artifacts_and_versions_with_states(
    live: Live, chain: World
) -> None:
    browser = Browser(live, live.admin_token)
    home = browser.get("/ui/")
    assert 'href="/ui/n/fraud"' in home.text
    ns = browser.get("/ui/n/fraud")
    assert ns.status_code == 200 and 'href="/ui/n/fraud/m"' in ns.text
    assert 'href="/ui/n/fraud/tx"' in ns.text and "revision 1" in ns.text
    only = browser.get("/ui/n/fraud", params={"q": "tx"})
    assert 'href="/ui/n/fraud/tx"' in only.text and 'href="/ui/n/fraud/m"' not in only.text
    chain.releaser.set_alias("fraud", "m", "prod", "1")
    versions = browser.get("/ui/n/fraud/m")
    assert 'class="badge released">released' in versions.text
    assert 'class="badge pending">pending' in versions.text
    assert '<span class="chip">prod</span>' in versions.text
    root = chain.admin.show("fraud/m@1").root_digest
    assert f'data-copy="{root}"' in versions.text
    pending = browser.get("/ui/n/fraud/m", params={"state": "pending"})
    one, two = 'href="/ui/n/fraud/m/1">1</a>', 'href="/ui/n/fraud/m/2">2</a>'
    assert two in pending.text and one not in pending.text
    searched = browser.get("/ui/n/fraud/m", params={"q": "2"})
    assert two in searched.text and one not in searched.text


def test_a_released_version_shows_verdict_evidence_lineage_files_metrics_and_bom(
    live: Live, chain: World
) -> None:
    browser = Browser(live, live.admin_token)
    page = browser.get("/ui/n/fraud/m/1")
    assert page.status_code == 200, page.text
    text = page.text
    assert "Released: the gate passed" in text and "release-bot" in text
    assert 'href="/ui/policy/fraud?revision=1"' in text
    for words in ("signature", "provenance", "evaluation", "scan", "ML-BOM", "release"):
        assert f">{words}</span>" in text, words
    assert "✗ not verified" not in text and text.count("✓ verified") >= 6
    assert "training-ci" in text and "eval-ci" in text
    # lineage: the dataset node, clickable, with its state
    assert "<svg" in text and 'href="/ui/n/fraud/tx/3"' in text and "dataset · released" in text
    # files with scan verdicts, metrics against the policy's threshold
    assert "model-00000-of-00002.safetensors" in text and 'scan-clean">clean' in text
    assert "accuracy &gt;= 0.9" in text and "✓ yes" in text
    assert "CycloneDX" in text and "/ui/n/fraud/m/1/bom" in text
    assert "modelseal export fraud/m@1" in text and "modelseal verify-evidence" in text
    # the bundle download is the exact stored bytes
    records = chain.admin.list_attestations("fraud/m@1")
    first = records[0]
    download = browser.get(f"/ui/n/fraud/m/1/bundles/{first.id}")
    assert download.status_code == 200
    assert download.content == chain.admin.get_attestation("fraud/m@1", first.id)
    assert "attachment" in download.headers["content-disposition"]
    bom = browser.get("/ui/n/fraud/m/1/bom")
    assert bom.status_code == 200 and bom.json()["bomFormat"] == "CycloneDX"
    # the dataset's page is reachable from the graph
    assert "Released: the gate passed" in browser.get("/ui/n/fraud/tx/3").text


def test_a_pending_version_shows_the_recorded_refusal_and_the_gate_now_on_request(
    live: Live, chain: World
) -> None:
    browser = Browser(live, live.admin_token)
    page = browser.get("/ui/n/fraud/m/2")
    assert "No release has been attempted yet." in page.text
    assert "?gate=now" in page.text and "What the gate would say now" not in page.text
    now = browser.get("/ui/n/fraud/m/2", params={"gate": "now"})
    assert "What the gate would say now" in now.text
    assert "evaluation: accuracy 0.5 &lt; 0.9" in now.text
    assert chain.admin.show("fraud/m@2").state == "pending"
    assert "✗ no" in now.text  # the metric against its threshold


def test_a_deployer_sees_no_pending_version_no_audit_log_and_no_action(
    live: Live, chain: World
) -> None:
    deployer = Browser(live, _token(live, "deploy-bot", Role.DEPLOYER, "fraud"))
    versions = deployer.get("/ui/n/fraud/m")
    assert 'href="/ui/n/fraud/m/1"' in versions.text
    assert 'href="/ui/n/fraud/m/2"' not in versions.text and "pending" not in versions.text
    assert deployer.get("/ui/n/fraud/m/2").status_code == 404
    assert deployer.get("/ui/n/fraud/m/2", params={"gate": "now"}).status_code == 404
    assert deployer.get("/ui/n/fraud/m/2/bundles/1").status_code == 404
    audit = deployer.get("/ui/audit")
    assert audit.status_code == 403 and "may not audit" in audit.text
    assert 'href="/ui/audit"' not in deployer.get("/ui/").text
    released = deployer.get("/ui/n/fraud/m/1")
    assert released.status_code == 200 and "Revoke…" not in released.text
    assert deployer.get("/ui/n/fraud/m/1/revoke").status_code == 403
    refused = deployer.post("/ui/n/fraud/m/1/revoke", {"reason": "no"})
    assert refused.status_code == 403
    assert chain.admin.show("fraud/m@1").state == "released"
    entry = _audit(live)[-1]
    assert entry["action"] == "revoke_version" and entry["outcome"] == "denied"
    assert entry["actor"] == "deploy-bot"


def test_a_token_of_another_namespace_sees_nothing_of_it(live: Live, chain: World) -> None:
    outsider = Browser(live, _token(live, "other-team", Role.RELEASER, "vision"))
    assert 'href="/ui/n/fraud"' not in outsider.get("/ui/").text
    for path in (
        "/ui/n/fraud",
        "/ui/n/fraud/m",
        "/ui/n/fraud/m/1",
        "/ui/policy/fraud",
        "/ui/n/fraud/m/1/bundles/1",
        "/ui/n/fraud/m/1/bom",
        "/ui/n/fraud/m/2/release",
    ):
        answer = outsider.get(path)
        assert answer.status_code == 403, path
        assert "fraud/m@1" not in answer.text and "release-bot" not in answer.text
    assert outsider.post("/ui/n/fraud/m/2/release", {}).status_code == 403
    assert chain.admin.show("fraud/m@2").state == "pending"
    # a scoped auditor is not a registry-wide one: no audit log (as the API rules)
    scoped = Browser(live, _token(live, "fraud-auditor", Role.AUDITOR, "fraud"))
    assert scoped.get("/ui/audit").status_code == 403
    assert scoped.get("/ui/n/fraud/m/2").status_code == 200  # auditors see pending work


# -- actions --------------------------------------------------------------------------------------


def test_a_refused_release_shows_the_gates_reasons_and_is_audited(live: Live, chain: World) -> None:
    releaser = Browser(live, _token(live, "ui-releaser", Role.RELEASER, "fraud"))
    confirm = releaser.get("/ui/n/fraud/m/2/release")
    assert confirm.status_code == 200 and "evaluation: accuracy 0.5 &lt; 0.9" in confirm.text
    assert chain.admin.show("fraud/m@2").state == "pending"
    refused = releaser.post("/ui/n/fraud/m/2/release", {})
    assert refused.status_code == 409
    assert "evaluation: accuracy 0.5 &lt; 0.9" in refused.text
    entry = _audit(live)[-1]
    assert (entry["action"], entry["outcome"], entry["actor"]) == (
        "release_version", "refused", "ui-releaser")  # fmt: skip
    page = releaser.get("/ui/n/fraud/m/2")
    assert "The last release attempt was refused" in page.text
    assert "evaluation: accuracy 0.5 &lt; 0.9" in page.text


def test_release_reject_alias_and_revoke_are_the_api_calls_and_are_audited(
    live: Live, chain: World
) -> None:
    dataset = chain.admin.show("fraud/tx@3").root_digest
    chain.model("fraud/m@3", deps=[("fraud/tx@3", dataset)])
    releaser = Browser(live, _token(live, "ui-releaser", Role.RELEASER, "fraud"))
    # CSRF: without the token nothing happens
    assert releaser.post("/ui/n/fraud/m/3/release", {}, csrf=False).status_code == 403
    assert releaser.post("/ui/n/fraud/m/3/release", {"csrf": "f" * 64},
                         csrf=False).status_code == 403  # fmt: skip
    assert chain.admin.show("fraud/m@3").state == "pending"
    done = releaser.post("/ui/n/fraud/m/3/release", {})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=released")
    assert chain.admin.show("fraud/m@3").state == "released"
    assert _audit(live)[-1]["action"] == "release_version"
    # reject with a reason
    assert releaser.post("/ui/n/fraud/m/2/reject", {"reason": ""}).status_code == 400
    assert releaser.post("/ui/n/fraud/m/2/reject", {"reason": "x"}, csrf=False).status_code == 403
    rejected = releaser.post("/ui/n/fraud/m/2/reject", {"reason": "label leak"})
    assert rejected.status_code == 303
    shown = chain.admin.show("fraud/m@2")
    assert shown.state == "rejected" and "label leak" in (shown.state_reason or "")
    assert _audit(live)[-1]["action"] == "reject_version"
    # alias: review page, then the move
    review = releaser.get("/ui/n/fraud/m/alias", params={"alias": "prod", "version": "3"})
    assert review.status_code == 200 and "(new alias)" in review.text
    assert releaser.post("/ui/n/fraud/m/alias", {"alias": "prod", "version": "3"},
                         csrf=False).status_code == 403  # fmt: skip
    moved = releaser.post("/ui/n/fraud/m/alias", {"alias": "prod", "version": "3"})
    assert moved.status_code == 303
    assert [a.version for a in chain.admin.list_aliases("fraud", "m") if a.alias == "prod"] == ["3"]
    assert _audit(live)[-1]["action"] == "set_alias"
    releaser.post("/ui/n/fraud/m/alias", {"alias": "prod", "version": "1"})
    history = releaser.get("/ui/n/fraud/m/3").text
    assert "(new) → 3" in history and "3 → 1" in history
    # revoke: the confirmation names the cascade, the result lists it
    confirm = releaser.get("/ui/n/fraud/tx/3/revoke")
    assert confirm.status_code == 200
    for dependent in ("fraud/m@1", "fraud/m@3"):
        assert dependent in confirm.text
    assert releaser.post("/ui/n/fraud/tx/3/revoke", {"reason": "poisoned"},
                         csrf=False).status_code == 403  # fmt: skip
    assert chain.admin.show("fraud/tx@3").state == "released"
    revoked = releaser.post("/ui/n/fraud/tx/3/revoke", {"reason": "poisoned rows"})
    assert revoked.status_code == 200 and "fraud/m@1" in revoked.text
    assert "fraud/m@prod" in revoked.text  # the flagged alias
    for ref in ("fraud/tx@3", "fraud/m@1", "fraud/m@3"):
        assert chain.admin.show(ref).state == "revoked"
    actions = [e["action"] for e in _audit(live)[-4:]]
    assert "revoke_version" in actions and "revoke_dependent" in actions
    page = releaser.get("/ui/n/fraud/tx/3").text
    assert "poisoned rows" in page and "Versions built on it" in page
    assert 'href="/ui/n/fraud/m/1"' in page
    dependent = releaser.get("/ui/n/fraud/m/1").text
    assert "root cause" in dependent and "built on" in dependent


# -- policies and the audit log -------------------------------------------------------------------


def test_policy_history_and_diff(live: Live, chain: World) -> None:
    from tests.integration.test_release import POLICY

    chain.admin.set_policy("fraud", POLICY.replace(">= 0.90", ">= 0.95"))
    browser = Browser(live, live.admin_token)
    page = browser.get("/ui/policy/fraud")
    assert page.status_code == 200 and "Revision 2" in page.text
    assert "revision=1" in page.text and "base=1" in page.text
    diff = browser.get("/ui/policy/fraud", params={"revision": 2, "base": 1})
    assert '<span class="del">-      metrics: {accuracy: &#34;&gt;= 0.90&#34;}</span>' in diff.text
    assert '<span class="add">+      metrics: {accuracy: &#34;&gt;= 0.95&#34;}</span>' in diff.text
    default = browser.get("/ui/policy/fraud", params={"revision": 0})
    assert "the built-in default" in default.text
    assert browser.get("/ui/policy/fraud", params={"revision": 9}).status_code == 404


def test_the_audit_log_filters_and_shows_the_chain_and_checkpoint(live: Live, chain: World) -> None:
    auditor = Browser(live, _token(live, "auditor", Role.AUDITOR, None))
    page = auditor.get("/ui/audit")
    assert page.status_code == 200 and "✓ Intact" in page.text
    assert "no checkpoint has been signed yet" in page.text
    live.client().sign_checkpoint()
    page = auditor.get("/ui/audit")
    assert "signature verified with the registry key" in page.text
    released = auditor.get("/ui/audit", params={"action": "release_version"})
    assert "release_version" in released.text and "put_version" not in released.text
    denied = auditor.get("/ui/audit", params={"outcome": "denied"})
    assert "release_version" not in denied.text
    future = auditor.get("/ui/audit", params={"since": "2999-01-01"})
    assert "No entry matches." in future.text


# -- hostile strings ------------------------------------------------------------------------------


def test_hostile_strings_are_escaped_on_every_page(live: Live, tmp_path: Path) -> None:
    world = World(live, tmp_path)
    world.admin.set_policy("fraud", f"# {XSS}\n" + __import__(
        "tests.integration.test_release", fromlist=["POLICY"]).POLICY)  # fmt: skip
    dataset = world.dataset()
    world.model("fraud/m@1", deps=[("fraud/tx@3", dataset)], accuracy=None,
                extra={XSS_PATH: b"hello\n"})  # fmt: skip
    world.attest("fraud/m@1", TEST_RESULT,
                 {"result": "PASSED", "metrics": {"accuracy": 0.95, XSS: 1.0}},
                 world.evaluation)  # fmt: skip
    world.provenance("fraud/m@1", world.training, [("fraud/tx@3", dataset)])
    world.attest("fraud/m@1", "https://slsa.dev/provenance/v1", {
        "buildDefinition": {"buildType": "x", "externalParameters": {},
                            "resolvedDependencies": [
                                {"uri": "modelseal:fraud/tx@3",
                                 "digest": {"sha256": dataset.removeprefix("sha256:")}},
                                {"uri": f"https://data.example/{XSS}", "digest": {}}]},
        "runDetails": {"builder": {"id": "b"}}}, world.training)  # fmt: skip
    releaser = Browser(live, _token(live, "rel", Role.RELEASER, "fraud"))
    releaser.post("/ui/n/fraud/m/1/reject", {"reason": XSS})
    pages = [releaser.get(p).text for p in (
        "/ui/n/fraud/m/1", "/ui/n/fraud/m", "/ui/policy/fraud", "/ui/n/fraud")]  # fmt: skip
    admin = Browser(live, live.admin_token)
    pages.append(admin.get("/ui/audit").text)
    version = pages[0]
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in version  # metric, reason
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in version  # the file path
    assert "https://data.example/&lt;script&gt;" in version  # the lineage's source node
    assert "&lt;script&gt;" in pages[2]  # the policy's comment
    for html in pages:
        assert XSS not in html and "<img src=x" not in html
        assert not re.search(r"<[^>]+\son[a-z]+=", html)


# -- the evidence archive --------------------------------------------------------------------------


def _auditor_trust(chain: World, into: Path, registry_pem: bytes) -> Path:
    """The auditor's own trust file: their copies of the signers' keys and the registry's."""
    from attest import keys

    into.mkdir()
    lines = ["identities:"]
    for name, signer in (("training-ci", chain.training), ("eval-ci", chain.evaluation),
                         ("data-pipeline", chain.data)):  # fmt: skip
        (into / f"{name}.pub").write_bytes(keys.public_pem(signer.public_key))
        lines.append(f"  {name}: {{key: {name}.pub}}")
    (into / "registry.pub").write_bytes(registry_pem)
    lines.append("registry: {key: registry.pub}")
    (into / "trust.yaml").write_text("\n".join(lines) + "\n")
    return into / "trust.yaml"


def _download(browser: Browser, ref_path: str, into: Path) -> Path:
    answer = browser.post(f"/ui/n/{ref_path}/export", {})
    assert answer.status_code == 200, answer.text[:2000]
    assert answer.headers["content-type"] == "application/gzip"
    name = re.fullmatch(r'attachment; filename="([^"/]+)"', answer.headers["content-disposition"])
    assert name, answer.headers["content-disposition"]
    archive = into / name.group(1)
    archive.write_bytes(answer.content)
    return archive


def test_the_console_downloads_the_archive_modelseal_export_writes_and_it_verifies_offline(
    live: Live, chain: World, tmp_path: Path
) -> None:
    from attest.export import unpack
    from registry.sdk.export import export_evidence
    from tests.support import run_cli

    browser = Browser(live, live.admin_token)
    page = browser.get("/ui/n/fraud/m/1")
    assert 'action="/ui/n/fraud/m/1/export"' in page.text
    command = "modelseal verify-evidence fraud.m.1.evidence.tar.gz --registry-key registry.pub"
    assert command in page.text
    archive = _download(browser, "fraud/m/1", tmp_path)
    assert archive.name == "fraud.m.1.evidence.tar.gz"
    (tmp_path / "unpacked").mkdir()
    ui = unpack(archive, tmp_path / "unpacked")
    cli = export_evidence(chain.admin, "fraud/m@1", tmp_path / "cli")
    # The same files, byte for byte, but for when and from where each was written.
    listing = sorted(p.relative_to(ui).as_posix() for p in ui.rglob("*"))
    assert listing == sorted(p.relative_to(cli).as_posix() for p in cli.rglob("*"))
    assert "audit/checkpoint.sigstore.json" in listing and "release.sigstore.json" in listing
    for name in listing:
        if name in ("manifest.json", "audit/entries.json", "audit/checkpoint.sigstore.json"):
            continue
        if (ui / name).is_file():
            assert (ui / name).read_bytes() == (cli / name).read_bytes(), name
    ours, theirs = (json.loads((d / "manifest.json").read_text()) for d in (ui, cli))
    for field in ("exported_at", "registry"):
        ours.pop(field), theirs.pop(field)
    assert ours == theirs
    trust = _auditor_trust(chain, tmp_path / "auditor", (cli / "registry.pub").read_bytes())
    ok = run_cli("verify-evidence", str(archive), "--trust", str(trust), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout and "ok   audit:" in ok.stdout
    # A byte changed in a bundle inside the archive: the signature check names it.
    tampered = tmp_path / "tampered"
    (tampered / "x").mkdir(parents=True)
    from attest.export import pack

    inner = unpack(archive, tampered / "x")
    bundle = next((inner / "evidence").glob("fraud.m@1.*.sigstore.json"))
    document = json.loads(bundle.read_text())
    signature = document["dsseEnvelope"]["signatures"][0]
    signature["sig"] = ("A" if signature["sig"][0] != "A" else "B") + signature["sig"][1:]
    bundle.write_text(json.dumps(document))
    with (tampered / "t.tar.gz").open("wb") as out:
        pack(inner, inner.name, out)
    bad = run_cli("verify-evidence", str(tampered / "t.tar.gz"), "--trust", str(trust),
                  cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 1 and "NOT VERIFIED" in bad.stdout, bad.stdout + bad.stderr


def test_the_archive_needs_the_forms_csrf_token_and_follows_the_callers_rights(
    live: Live, chain: World, tmp_path: Path
) -> None:
    from attest.export import AUDIT_FORBIDDEN, unpack
    from tests.support import run_cli

    admin = Browser(live, live.admin_token)
    refused = admin.post("/ui/n/fraud/m/1/export", {}, csrf=False)
    assert refused.status_code == 403 and "Refused" in refused.text
    assert "gzip" not in refused.headers["content-type"]
    nobody = Browser(live)
    anonymous = nobody.post("/ui/n/fraud/m/1/export", {}, csrf=False)
    assert anonymous.status_code in (303, 403)
    assert "gzip" not in anonymous.headers.get("content-type", "")

    deployer = Browser(live, _token(live, "deploy-bot", Role.DEPLOYER, "fraud"))
    assert "--without-audit" in deployer.get("/ui/n/fraud/m/1").text
    hidden = deployer.post("/ui/n/fraud/m/2/export", {})  # pending: as if it did not exist
    assert hidden.status_code == 404 and "gzip" not in hidden.headers["content-type"]
    other = Browser(live, _token(live, "elsewhere", Role.AUDITOR, "other"))
    assert other.post("/ui/n/fraud/m/1/export", {}).status_code == 403
    archive = _download(deployer, "fraud/m/1", tmp_path)
    (tmp_path / "d").mkdir()
    exported = unpack(archive, tmp_path / "d")
    assert not (exported / "audit").exists()  # the audit log is for auditors and admins
    assert json.loads((exported / "manifest.json").read_text())["audit"] == AUDIT_FORBIDDEN
    trust = _auditor_trust(chain, tmp_path / "auditor", (exported / "registry.pub").read_bytes())
    strict = run_cli("verify-evidence", str(archive), "--trust", str(trust), cwd=tmp_path)
    assert strict.returncode == 1 and "FAIL audit:" in strict.stdout, strict.stdout
    lenient = run_cli("verify-evidence", str(archive), "--trust", str(trust), "--without-audit",
                      cwd=tmp_path)  # fmt: skip
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    # Every attempt is on record, with the version it was about, whatever its outcome.
    exports = [(e["target"], e["outcome"]) for e in _audit(live)
               if e["action"] == "ui_export_evidence"]  # fmt: skip
    assert ("/ui/n/fraud/m/2/export", "refused") in exports  # the deployer's pending one
    assert ("/ui/n/fraud/m/1/export", "denied") in exports  # another namespace's token
    assert ("/ui/n/fraud/m/1/export", "ok") in exports
