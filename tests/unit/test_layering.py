"""Dependency direction: registry -> attest, sbom; never the reverse (an auditor's verifier must
not need the server's code paths)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"registry", "fastapi", "starlette", "sqlalchemy", "boto3", "botocore", "alembic"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", ["attest", "sbom"])
def test_package_imports_nothing_from_the_service(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN)
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & FORBIDDEN
    }
    assert offenders == {}


def test_sbom_does_not_import_attest_backwards() -> None:
    for path in (ROOT / "attest").rglob("*.py"):
        assert "sbom" not in _imports(path), path
