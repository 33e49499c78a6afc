from __future__ import annotations

from pathlib import Path

from registry.server.api.openapi import render

ROOT = Path(__file__).resolve().parents[4]


def test_openapi_yaml_matches_the_app() -> None:
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == render(), (
        "openapi.yaml drifted from the app: "
        "run `python -m registry.server.api.openapi > openapi.yaml`"
    )


def test_every_operation_has_a_stable_id_and_auth_is_declared() -> None:
    import yaml

    document = yaml.safe_load(render())
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            assert operation.get("operationId"), f"{method} {path} has no operationId"
            if path not in {"/health", "/ready", "/v1/registry/key"}:  # public by design
                assert operation.get("security"), f"{method} {path} declares no auth"
