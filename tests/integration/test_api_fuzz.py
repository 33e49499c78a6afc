"""Schemathesis against openapi.yaml, on a live server on the embedded backend (issue #18).

Every operation of the committed spec is fuzzed with schema-valid data (each answer must be a
documented status with a documented media type and a body matching its schema, and never a 5xx)
and with schema-invalid data (refused with a 4xx problem, never a 5xx). Operations on a version
are fuzzed a third time against versions that exist (``fuzz/model@1``, by version, root digest
and alias; ``reject`` gets ``fuzz/model@2`` of its own), so the handlers behind the 404 are
reached too.

The fuzzer runs with an admin token of its own, made for it by the bootstrap admin token, and
never revokes that token: ``DELETE /v1/tokens/{token_id}`` cases that name its id are filtered
out (revoking any other token, the bootstrap one included, is fuzzed like everything else; the
server itself refuses to revoke the last admin token). Sizes are bounded (``MAX_EXAMPLES`` per
operation and mode, a per-request deadline) so the file runs in well under three minutes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from registry.server.config import Settings
from registry.server.db import migrate
from registry.wire import BATCH_MEDIA_TYPE
from tests.support import Live, serve

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
#: Examples per operation and generation mode.
MAX_EXAMPLES = 25
#: The longest one request may take (a fuzzed request is small; a slower answer is a finding).
DEADLINE_MS = 5000


# A blob batch is bytes with a framing of its own (an index line, then the blobs): fuzzed as
# any byte string, which the server must refuse with a 4xx, never a 5xx.
@schemathesis.serializer(BATCH_MEDIA_TYPE)
def _batch_bytes(ctx: Any, value: Any) -> bytes:
    data = getattr(value, "data", value)
    return data if isinstance(data, bytes) else json.dumps(data, default=str).encode()


SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for result in SCHEMA.get_all_operations()
    for op in [result.ok()]
}
SEEDED = {"namespace": "fuzz", "name": "model"}
SELECTORS = ("1", "sha256:", "prod")  # the version, its root digest (filled in), an alias
#: Operations that end a version's life get a version of their own.
OWN_VERSION = {"POST /v1/namespaces/{namespace}/artifacts/{name}/versions/{selector}/reject": "2"}

POSITIVE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, openapi_checks.negative_data_rejection]


class Fuzzed:
    """The server under fuzz, the fuzzer's admin token and a version that exists."""

    def __init__(self, live: Live) -> None:
        self.live = live
        with httpx.Client(base_url=live.url, timeout=30) as http:
            made = http.post(
                "/v1/tokens",
                json={"name": "fuzzer", "role": "admin"},
                headers={"Authorization": f"Bearer {live.admin_token}"},
            )
            made.raise_for_status()
            self.token_id: str = made.json()["id"]
            self.token: str = made.json()["token"]
            self.root_digest = self._seed(http, "1")
            self._seed(http, "2")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _seed(self, http: httpx.Client, version: str) -> str:
        """``fuzz/model@VERSION`` with one file (pushed by hand: the SDK is not under test)."""
        data = f'{{"architectures": ["Tiny"], "version": "{version}"}}\n'.encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        ns = SEEDED["namespace"]
        opened = http.post(
            f"/v1/namespaces/{ns}/uploads",
            json={"digest": digest, "size": len(data)},
            headers=self.headers,
        )
        opened.raise_for_status()
        http.put(
            f"/v1/uploads/{opened.json()['id']}",
            content=data,
            headers={**self.headers, "Content-Type": "application/octet-stream"},
        ).raise_for_status()
        manifest = {"files": [{"path": "config.json", "size": len(data), "digest": digest}]}
        made = http.put(
            f"/v1/namespaces/{ns}/artifacts/{SEEDED['name']}/versions/{version}",
            json=manifest,
            headers=self.headers,
        )
        made.raise_for_status()
        return str(made.json()["root_digest"])


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    data.mkdir()
    # Rate limits off: the fuzzer is one client sending as fast as it can.
    config = Settings(data_dir=data, min_chunk_bytes=1024, rate_per_token=0, rate_per_address=0)
    migrate(config.resolved_database_url)
    with serve(config) as live:
        yield Fuzzed(live)


def _fuzz(fuzzed: Fuzzed, strategy: Any, checks: list[Any]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=DEADLINE_MS,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        case.call_and_validate(
            base_url=fuzzed.live.url, headers=fuzzed.headers, checks=checks, timeout=DEADLINE_MS
        )

    run()


def _keep_own_token(fuzzed: Fuzzed) -> Any:
    def keeps(case: Case) -> bool:
        return (case.path_parameters or {}).get("token_id") != fuzzed.token_id

    return keeps


def _inputs(label: str) -> bool:
    """Whether an operation takes any input but the token (else nothing can be invalid)."""
    operation = OPERATIONS[label]
    named = {p.name for p in operation.iter_parameters()} - {"Authorization"}
    return bool(named or len(operation.body))


MODES = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label in sorted(OPERATIONS)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _inputs(label)
]


@pytest.mark.parametrize(("label", "mode"), MODES)
def test_operation(fuzzed: Fuzzed, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]
    strategy = operation.as_strategy(generation_mode=mode).filter(_keep_own_token(fuzzed))
    _fuzz(fuzzed, strategy, NEGATIVE_CHECKS if mode is GenerationMode.NEGATIVE else POSITIVE_CHECKS)


SEEDED_OPERATIONS = sorted(
    label
    for label, op in OPERATIONS.items()
    if {"namespace", "name"} <= {p.name for p in op.path_parameters}
)


@pytest.mark.parametrize("label", SEEDED_OPERATIONS)
def test_operation_on_a_version_that_exists(fuzzed: Fuzzed, label: str) -> None:
    operation = OPERATIONS[label]
    names = {p.name for p in operation.path_parameters}
    selectors = [s if s != "sha256:" else fuzzed.root_digest for s in SELECTORS]
    if label in OWN_VERSION:
        selectors = [OWN_VERSION[label]]
    strategies = []
    for selector in selectors if "selector" in names else [None]:
        fixed: dict[str, Any] = dict(SEEDED)
        if selector is not None:
            fixed["selector"] = selector
        strategies.append(operation.as_strategy(path_parameters=fixed))
    _fuzz(fuzzed, st.one_of(strategies), POSITIVE_CHECKS)


def test_the_fuzzer_kept_its_token(fuzzed: Fuzzed) -> None:
    """Last (by name and order): whatever the run revoked, the fuzzer's admin token works."""
    with httpx.Client(base_url=fuzzed.live.url, headers=fuzzed.headers, timeout=30) as http:
        assert http.get("/v1/tokens").status_code == 200
