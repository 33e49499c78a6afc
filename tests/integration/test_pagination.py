"""Every list endpoint pages with an opaque cursor in a `Link: rel="next"` header; the SDK follows
the pages; a forged or stale cursor is a 400, never another scope's data."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from attest import keys
from registry.errors import InvalidRequestError
from registry.sdk.client import RegistryClient
from registry.server.api.paging import encode_cursor
from tests.support import Live


def _walk(http: httpx.Client, path: str, limit: int, **params: str) -> list[list[object]]:
    """The pages of PATH, LIMIT at a time, following Link headers as given."""
    pages = []
    response = http.get(path, params={**params, "limit": limit})
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        following = response.links.get("next")
        if following is None:
            return pages
        assert following["url"].startswith(path + "?")  # relative to the registry
        response = http.get(following["url"])


def _tiny(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    (root / "w.bin").write_bytes(seed.to_bytes(4, "little") * 8)
    return root


@pytest.fixture
def filled(live: Live, tmp_path: Path) -> RegistryClient:
    client = live.client()
    for i in range(5):
        client.push(_tiny(tmp_path / f"v{i}", i), f"team/model@{i}")
        client.push(_tiny(tmp_path / f"a{i}", 100 + i), f"team/art{i}@1")
        client.push(_tiny(tmp_path / f"n{i}", 200 + i), f"ns{i}/m@1")
    for i in range(3):
        _, public = keys.write_keypair(tmp_path / f"k{i}", keys.generate())
        client.add_key_identity(f"id{i}", public.read_text())
        client.create_token(f"t{i}", role="deployer", namespace="team")
    return client


def test_each_list_pages_in_order_without_gaps_or_repeats(
    live: Live, filled: RegistryClient
) -> None:
    auth = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(timeout=60, base_url=live.url, headers=auth) as http:
        cases = {
            "/v1/namespaces": ("name", 6),
            "/v1/namespaces/team/artifacts": ("name", 6),
            "/v1/namespaces/team/artifacts/model/versions": ("version", 5),
            "/v1/identities": ("name", 3),
            "/v1/tokens": ("id", 4),  # three made + the admin's
        }
        for path, (key, count) in cases.items():
            whole = http.get(path).json()
            assert len(whole) == count, path
            pages = _walk(http, path, 2)
            assert [len(p) for p in pages] == [2] * (count // 2) + (
                [count % 2] if count % 2 else []
            )
            paged = [item[key] for page in pages for item in page]  # type: ignore[index]
            assert paged == [item[key] for item in whole]
        model_versions = http.get("/v1/namespaces/team/artifacts/model/versions").json()
        versions = [v["version"] for v in model_versions]
        assert versions == ["0", "1", "2", "3", "4"]  # oldest first
        names = [n["name"] for n in http.get("/v1/namespaces").json()]
        assert names == sorted(names)


def test_the_sdk_follows_the_pages(filled: RegistryClient) -> None:
    filled.page_size = 2
    assert [v.version for v in filled.list_versions("team", "model")] == ["0", "1", "2", "3", "4"]
    assert len(filled.list_artifacts("team")) == 6
    assert filled.list_namespaces() == sorted(filled.list_namespaces())
    assert len(filled.list_identities()) == 3
    assert len(filled.list_tokens()) == 4


def test_aliases_and_their_history_page_too(live: Live, tmp_path: Path) -> None:
    from tests.integration.test_release import World

    world = World(live, tmp_path)
    data = world.dataset()
    for v in "123":
        world.model(f"fraud/m@{v}", deps=[("fraud/tx@3", data)])
        world.releaser.release(f"fraud/m@{v}")
        world.releaser.set_alias("fraud", "m", "prod", v)
    for i in range(3):
        world.releaser.set_alias("fraud", "m", f"a{i}", "1")
    client = live.client()
    auth = {"Authorization": f"Bearer {live.admin_token}"}
    with httpx.Client(timeout=60, base_url=live.url, headers=auth) as http:
        aliases = _walk(http, "/v1/namespaces/fraud/artifacts/m/aliases", 2)
        assert [a["alias"] for page in aliases for a in page] == ["a0", "a1", "a2", "prod"]  # type: ignore[index]
        history = _walk(http, "/v1/namespaces/fraud/artifacts/m/aliases/prod/history", 2)
        assert [m["to_version"] for page in history for m in page] == ["1", "2", "3"]  # type: ignore[index]
        assert http.get("/v1/namespaces/fraud/artifacts/m/aliases/prod/history",
                        params={"cursor": encode_cursor("x")}).status_code == 400  # fmt: skip
    client.page_size = 1
    assert [m.to_version for m in client.alias_history("fraud", "m", "prod")] == ["1", "2", "3"]
    assert len(client.list_aliases("fraud", "m")) == 4


def test_bad_cursors_and_limits_are_refused(live: Live, filled: RegistryClient) -> None:
    auth = {"Authorization": f"Bearer {live.admin_token}"}
    versions = "/v1/namespaces/team/artifacts/model/versions"
    with httpx.Client(timeout=60, base_url=live.url, headers=auth) as http:
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "nope"},
                       {"cursor": "c1.!!"}, {"cursor": "c1." + "A" * 600},
                       {"cursor": encode_cursor("no-such-version")},
                       {"cursor": encode_cursor("\x00")}):  # fmt: skip
            answer = http.get(versions, params=params)
            assert answer.status_code == 400, (params, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert (
            http.get("/v1/tokens", params={"cursor": encode_cursor("ms_nope")}).status_code == 400
        )


def test_a_namespace_admin_cannot_page_from_another_scopes_token(
    live: Live, filled: RegistryClient
) -> None:
    admin = filled
    other = admin.create_token("elsewhere-admin", role="admin", namespace="ns0")
    scoped = admin.create_token("team-admin", role="admin", namespace="team")
    assert other.id is not None and scoped.token is not None
    with httpx.Client(timeout=60, base_url=live.url,
                      headers={"Authorization": f"Bearer {scoped.token}"}) as http:  # fmt: skip
        mine = http.get("/v1/tokens").json()
        assert {t["namespace"] for t in mine} == {"team"}
        refused = http.get("/v1/tokens", params={"cursor": encode_cursor(other.id)})
        assert refused.status_code == 400  # as if it did not exist: no oracle, no other scope


def test_a_page_that_does_not_move_on_is_an_error_not_a_loop(live: Live) -> None:
    client = live.client()
    answers = iter([
        httpx.Response(200, json=[{"name": "a"}],
                       headers={"Link": '</v1/namespaces?cursor=c1.YQ&limit=2>; rel="next"'}),
        httpx.Response(200, json=[{"name": "a"}],
                       headers={"Link": '</v1/namespaces?cursor=c1.YQ&limit=2>; rel="next"'}),
    ])  # fmt: skip
    client._request = lambda *a, **k: next(answers)  # type: ignore[method-assign]
    with pytest.raises(InvalidRequestError, match="does not move on"):
        client.list_namespaces()
