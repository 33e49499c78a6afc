"""The web console in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a downloaded one: Selenium Manager is kept offline).

Sign in, browse to a released version and read its verdict, evidence and lineage; try to
release a pending one and read the refusal; a cross-site form post carries no session; XSS
payloads in every text field stay text; actions are reachable from the keyboard and inputs
have labels. Screenshots of the main pages are written to ``$MODELSEAL_TEST_ARTIFACTS/ui``
(default ``test-artifacts/ui`` in the repository); ``docs/ui/`` holds copies for the README.

Without chromium and chromium-driver these tests skip locally; under CI (``CI=true``) they fail
instead, since CI installs both (scripts/test).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attest.predicates import SLSA_PROVENANCE, TEST_RESULT
from registry.server.db import make_engine, make_sessionmaker
from registry.server.services import Role, TokenService
from tests.integration.test_release import POLICY, World
from tests.support import Live

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
XSS = "<script>alert('xss')</script>"
XSS_PATH = "<img src=x onerror=alert(1)>.txt"
ARTIFACTS = (
    Path(
        os.environ.get(
            "MODELSEAL_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "ui"
)

embedded = pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None  # type: ignore[assignment]


def _missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def driver() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def _token(live: Live, name: str, role: Role, namespace: str | None) -> str:
    engine = make_engine(live.settings.resolved_database_url)
    try:
        service = TokenService(make_sessionmaker(engine))
        return service.create(name=name, role=role, namespace=namespace).secret
    finally:
        engine.dispose()


def _navigates(driver: Any, act: Any) -> None:
    """Run ``act`` (a click, a key press, a script) that leaves the page, and return once the
    next page has replaced it: a form post does not make WebDriver wait, and reading the old
    page's heading races the new one (a stale element, or the wrong text)."""
    old = driver.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _sign_in(driver: Any, live: Live, token: str) -> None:
    driver.get(f"{live.url}/ui/")
    assert "/ui/login" in driver.current_url
    field = driver.find_element(By.ID, "token")
    assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").text == "API token"
    field.send_keys(token)
    _navigates(driver, lambda: field.send_keys(Keys.ENTER))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Namespaces"


def _shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(600, min(int(height) + 40, 3000)))
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1280, 1000)
    return path


def _no_alert(driver: Any) -> None:
    try:
        alert = driver.switch_to.alert
    except NoAlertPresentException:
        return
    text = alert.text
    alert.dismiss()
    raise AssertionError(f"a script ran: alert({text!r})")


def _inert(driver: Any) -> None:
    """No injected element: the only script is the console's own file, no image from the
    payload, and no element carries an inline handler."""
    _no_alert(driver)
    scripts = driver.execute_script(
        "return Array.from(document.scripts).map(s => s.getAttribute('src'))"
    )
    assert scripts == ["/ui/static/ui.js"], scripts
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0
    handlers = driver.execute_script(
        "return Array.from(document.querySelectorAll('*')).filter(e => "
        "Array.from(e.attributes).some(a => a.name.startsWith('on'))).length"
    )
    assert handlers == 0


def _accessible(driver: Any) -> None:
    """One h1; every visible form control has a label (or is a button); the page has a main."""
    assert len(driver.find_elements(By.TAG_NAME, "h1")) == 1
    assert driver.find_elements(By.TAG_NAME, "main")
    unlabelled = driver.execute_script(
        "return Array.from(document.querySelectorAll('input,select,textarea'))"
        ".filter(e => e.type !== 'hidden' && !e.hidden)"
        ".filter(e => !(e.id && document.querySelector('label[for=\"' + e.id + '\"]'))"
        " && !e.getAttribute('aria-label')).map(e => e.name)"
    )
    assert unlabelled == []


@pytest.fixture
def chain(live: Live, tmp_path: Path) -> World:
    world = World(live, tmp_path)
    dataset = world.dataset()
    world.model("fraud/m@1", deps=[("fraud/tx@3", dataset)])
    world.releaser.release("fraud/m@1")
    world.releaser.set_alias("fraud", "m", "prod", "1")
    world.model("fraud/m@2", deps=[("fraud/tx@3", dataset)], accuracy=0.5)
    world.admin.set_policy("fraud", POLICY.replace(">= 0.90", ">= 0.91"))
    return world


@embedded
def test_browse_to_a_released_version_and_read_its_verdict_evidence_and_lineage(
    driver: Any, live: Live, chain: World
) -> None:
    driver.get(f"{live.url}/ui/login")
    _accessible(driver)
    _shot(driver, "sign-in")
    _sign_in(driver, live, live.admin_token)
    _shot(driver, "namespaces")
    _navigates(driver, lambda: driver.find_element(By.LINK_TEXT, "fraud").click())
    assert driver.find_element(By.TAG_NAME, "h1").text == "Namespace fraud"
    _accessible(driver)
    _shot(driver, "namespace")
    _navigates(driver, lambda: driver.find_element(By.LINK_TEXT, "m").click())
    assert "released" in driver.find_element(By.CSS_SELECTOR, "table").text
    assert driver.find_element(By.CSS_SELECTOR, ".chips").text.startswith("Aliases:")
    _accessible(driver)
    _shot(driver, "versions")
    _navigates(driver, lambda: driver.find_element(By.LINK_TEXT, "1").click())
    assert driver.find_element(By.TAG_NAME, "h1").text == "fraud/m@1 released"
    verdict = driver.find_element(By.CSS_SELECTOR, ".verdict.pass").text
    assert "Released: the gate passed" in verdict
    evidence = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=evidence-h]").text
    for words in ("signature", "provenance", "evaluation", "scan", "ML-BOM", "release"):
        assert words in evidence
    assert "✗" not in evidence
    node = driver.find_element(By.CSS_SELECTOR, "svg a[href='/ui/n/fraud/tx/3']")
    assert "dataset · released" in node.text
    _accessible(driver)
    _inert(driver)
    _shot(driver, "version")
    _navigates(driver, node.click)
    assert driver.find_element(By.TAG_NAME, "h1").text == "fraud/tx@3 released"
    driver.get(f"{live.url}/ui/policy/fraud?revision=2&base=1")
    assert driver.find_elements(By.CSS_SELECTOR, "pre.diff .add")
    _accessible(driver)
    _shot(driver, "policy")
    driver.get(f"{live.url}/ui/audit")
    assert "Intact" in driver.find_element(By.CSS_SELECTOR, ".verdict").text
    _accessible(driver)
    _shot(driver, "audit")


@embedded
def test_a_release_the_gate_refuses_shows_its_reasons(
    driver: Any, live: Live, chain: World
) -> None:
    _sign_in(driver, live, _token(live, "ui-releaser", Role.RELEASER, "fraud"))
    driver.get(f"{live.url}/ui/n/fraud/m/2")
    _navigates(driver, lambda: driver.find_element(By.LINK_TEXT, "Release…").click())
    assert "accuracy 0.5 < 0.91" in driver.find_element(By.CSS_SELECTOR, ".card").text
    _shot(driver, "release-confirm")
    _navigates(driver, lambda: driver.find_element(By.ID, "confirm").click())
    assert driver.find_element(By.TAG_NAME, "h1").text == "Release of fraud/m@2 refused"
    reasons = driver.find_element(By.ID, "refusal").text
    assert "evaluation: accuracy 0.5 < 0.91" in reasons
    _shot(driver, "release-refused")
    assert chain.admin.show("fraud/m@2").state == "pending"


@embedded
def test_actions_are_reachable_from_the_keyboard(driver: Any, live: Live, chain: World) -> None:
    _sign_in(driver, live, _token(live, "ui-releaser", Role.RELEASER, "fraud"))
    driver.get(f"{live.url}/ui/n/fraud/m/2")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)  # the skip link comes first
    assert driver.switch_to.active_element.text == "Skip to content"
    for _ in range(40):
        driver.switch_to.active_element.send_keys(Keys.TAB)
        if driver.switch_to.active_element.text == "Reject…":
            break
    else:
        raise AssertionError("the Reject… action is not reachable with Tab")
    _navigates(driver, lambda: driver.switch_to.active_element.send_keys(Keys.ENTER))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Reject fraud/m@2?"
    _accessible(driver)
    reason = driver.switch_to.active_element
    for _ in range(20):
        if reason.get_attribute("id") == "reason":
            break
        reason.send_keys(Keys.TAB)
        reason = driver.switch_to.active_element
    reason.send_keys("label leak")
    reason.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("id") == "confirm"
    _navigates(driver, lambda: driver.switch_to.active_element.send_keys(Keys.ENTER))
    assert "Rejected" in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert chain.admin.show("fraud/m@2").state == "rejected"


@embedded
def test_a_cross_site_form_carries_no_session(driver: Any, live: Live, chain: World) -> None:
    """A page elsewhere posting to the console: the SameSite=Strict cookie stays home, so the
    post lands on the sign-in page and nothing changes."""
    _sign_in(driver, live, _token(live, "ui-releaser", Role.RELEASER, "fraud"))
    attacker = (
        "data:text/html,<form id=f method=post "
        f"action='{live.url}/ui/n/fraud/m/2/reject'>"
        "<input name=reason value=csrf></form>"
    )
    driver.get(attacker)
    _navigates(driver, lambda: driver.execute_script("document.getElementById('f').submit()"))
    assert "Sign in" in driver.find_element(By.TAG_NAME, "h1").text
    assert chain.admin.show("fraud/m@2").state == "pending"


@embedded
def test_a_deployer_sees_neither_pending_versions_nor_the_audit_log(
    driver: Any, live: Live, chain: World
) -> None:
    _sign_in(driver, live, _token(live, "deploy-bot", Role.DEPLOYER, "fraud"))
    assert not driver.find_elements(By.LINK_TEXT, "Audit log")
    driver.get(f"{live.url}/ui/n/fraud/m")
    rows = driver.find_element(By.CSS_SELECTOR, "table").text
    assert "released" in rows and "pending" not in rows
    driver.get(f"{live.url}/ui/audit")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Not allowed"


@embedded
def test_xss_payloads_in_every_text_field_stay_text(
    driver: Any, live: Live, tmp_path: Path
) -> None:
    world = World(live, tmp_path)
    world.admin.set_policy("fraud", f"# {XSS}\n{POLICY}")
    dataset = world.dataset()
    world.model("fraud/m@1", deps=[("fraud/tx@3", dataset)], accuracy=None,
                extra={XSS_PATH: b"hello\n"})  # fmt: skip
    world.attest("fraud/m@1", TEST_RESULT,
                 {"result": "PASSED", "metrics": {"accuracy": 0.95, XSS: 1.0}},
                 world.evaluation)  # fmt: skip
    world.attest("fraud/m@1", SLSA_PROVENANCE, {
        "buildDefinition": {"buildType": "x", "externalParameters": {},
                            "resolvedDependencies": [
                                {"uri": "modelseal:fraud/tx@3",
                                 "digest": {"sha256": dataset.removeprefix("sha256:")}},
                                {"uri": f"https://data.example/{XSS}", "digest": {}}]},
        "runDetails": {"builder": {"id": "b"}}}, world.training)  # fmt: skip
    world.releaser.reject("fraud/m@1", XSS)
    _sign_in(driver, live, live.admin_token)
    for path, shows in (("/ui/n/fraud/m/1", True), ("/ui/n/fraud/m", False),
                        ("/ui/policy/fraud", True), ("/ui/audit", True)):  # fmt: skip
        driver.get(f"{live.url}{path}")
        _inert(driver)
        if shows:
            assert XSS in driver.find_element(By.TAG_NAME, "main").text, path
    driver.get(f"{live.url}/ui/n/fraud/m/1")
    text = driver.find_element(By.TAG_NAME, "main").text
    assert XSS_PATH in text and f"https://data.example/{XSS}"[:29] in text
