"""Dependency direction, read from the source (imports anywhere in a module, lazy ones included).

    attest, sbom                      import nothing from registry (an auditor's verifier must not
                                      need the server's code paths); attest never imports sbom
    registry.errors, names, wire      shared by every room: import none of them
    registry.sdk                      never imports registry.server or registry.cli
    registry.cli                      never imports registry.server, except registry.server.entry,
                                      and that only inside a command (``serve``, ``admin``)
    registry.server                   never imports registry.sdk or registry.cli; its root holds
                                      only app, entry, config, db, models and the witness's app,
                                      the rest lives in api/, services/, storage/, ui/
    tests/unit/registry/<room>/       a room's unit tests, importing no other room
    registry.sdk.client               never imports what is built on it (training, export, lineage)
    registry.sdk.push, pull, trust    hold the client's larger methods: import it only for type
                                      checking, nor what is built on it; client.py stays < 850 lines

One name, one meaning: a public class name is defined once in attest, sbom and registry, except
where a module mirrors another room's entity on purpose (``registry/wire.py``,
``registry/server/models.py`` and ``registry/sdk/records.py`` name the same entities alike).

``registry/__init__.py`` is the public surface: its ``__all__`` is locked below, and it loads the
SDK on first use only, so importing one room never loads another (checked in a fresh process).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"registry", "fastapi", "starlette", "sqlalchemy", "boto3", "botocore", "alembic"}
SERVER_ENTRY = "registry.server.entry"


@dataclass(frozen=True)
class Import:
    module: str  # the full dotted name imported (``from a import b`` gives a.b and a)
    lazy: bool  # inside a function (or a TYPE_CHECKING block): not run when the module loads
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _all_imports(path: Path, source: str | None = None) -> list[Import]:
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = (
                lazy
                or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            )
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, lazy, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                module = _resolve(path, child)
                found.append(Import(module, lazy, child.lineno))
                found.extend(Import(f"{module}.{a.name}", lazy, child.lineno) for a in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _imports(path: Path) -> set[str]:
    """Top-level package names a file imports."""
    return {found.module.split(".")[0] for found in _all_imports(path) if found.module}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offenders(
    package: str, forbidden: tuple[str, ...], allowed_lazily: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    offenders: dict[str, list[str]] = {}
    for path in _sources(package):
        imports = _all_imports(path)
        allowed_lines = {i.line for i in imports if i.lazy and i.module in allowed_lazily}
        for found in imports:
            if not any(_within(found.module, f) for f in forbidden):
                continue
            if found.lazy and found.module in allowed_lazily:
                continue
            if found.line in allowed_lines and found.module in forbidden:
                continue  # the package half of ``from registry.server import entry``
            key = str(path.relative_to(ROOT))
            offenders.setdefault(key, []).append(f"{found.line}: {found.module}")
    return offenders


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


def test_the_registry_has_three_rooms_and_shared_modules() -> None:
    top = {p.name for p in (ROOT / "registry").iterdir() if not p.name.startswith((".", "__pyc"))}
    assert top == {
        "__init__.py", "__main__.py", "errors.py", "names.py", "wire.py", "sdk", "cli", "server"
    }  # fmt: skip


def test_the_server_root_holds_only_its_roots() -> None:
    """Everything else on the server side lives in a room: api/, services/, storage/, ui/."""
    top = {
        p.name
        for p in (ROOT / "registry/server").iterdir()
        if not p.name.startswith((".", "__pyc"))
    }
    assert top == {
        "__init__.py", "app.py", "entry.py", "config.py", "db.py", "models.py", "witness.py",
        "api", "services", "storage", "ui",
    }  # fmt: skip


def test_unit_tests_of_the_registry_mirror_its_rooms() -> None:
    """A unit test of one room sits in that room's folder and imports no other room."""
    base = ROOT / "tests/unit/registry"
    rooms = ("sdk", "cli", "server")
    assert {p.name for p in base.glob("test_*.py")} <= {
        "test_errors.py",
        "test_names.py",
        "test_digest_forms.py",
    }  # fmt: skip  the shared modules' tests (the digest forms cross rooms by design)
    for room in rooms:
        others = tuple(f"registry.{r}" for r in rooms if r != room)
        for path in sorted((base / room).glob("test_*.py")):
            found = [
                i.module for i in _all_imports(path) if any(_within(i.module, o) for o in others)
            ]
            assert found == [], path


@pytest.mark.parametrize("module", ["registry/errors.py", "registry/names.py", "registry/wire.py"])
def test_shared_modules_import_no_room(module: str) -> None:
    rooms = ("registry.sdk", "registry.cli", "registry.server")
    imports = _all_imports(ROOT / module)
    found = [i.module for i in imports if any(_within(i.module, r) for r in rooms)]
    assert found == []


def test_the_sdk_never_imports_the_server_or_the_cli() -> None:
    assert _offenders("registry.sdk", ("registry.server", "registry.cli")) == {}


def test_the_cli_reaches_the_server_only_through_its_entry_point_inside_a_command() -> None:
    assert _offenders("registry.cli", ("registry.server",), allowed_lazily=(SERVER_ENTRY,)) == {}


def test_the_server_never_imports_the_sdk_or_the_cli() -> None:
    assert _offenders("registry.server", ("registry.sdk", "registry.cli")) == {}


def test_the_console_is_covered_and_imports_neither_the_sdk_nor_the_cli() -> None:
    """The web console (registry/server/ui) is server code: it renders what the services
    return and never reaches for the client side (the SDK's export is client code)."""
    sources = {str(p.relative_to(ROOT)) for p in _sources("registry.server.ui")}
    assert "registry/server/ui/routes.py" in sources and "registry/server/ui/views.py" in sources
    assert _offenders("registry.server.ui", ("registry.sdk", "registry.cli")) == {}


def test_the_client_does_not_import_what_is_built_on_it() -> None:
    built_on = ("registry.sdk.training", "registry.sdk.export", "registry.sdk.lineage")
    found = [
        i.module
        for i in _all_imports(ROOT / "registry/sdk/client.py")
        if any(_within(i.module, b) for b in built_on)
    ]
    assert found == []


def test_the_client_stays_split() -> None:
    """client.py keeps the HTTP setup and the JSON endpoints; pushing, pulling and the trust
    checks live in the modules it delegates to, which need the client only for type checking
    (no import cycle) and, like it, never import what is built on it."""
    assert len((ROOT / "registry/sdk/client.py").read_text().splitlines()) < 850
    built_on = ("registry.sdk.training", "registry.sdk.export", "registry.sdk.lineage")
    for module in ("push", "pull", "trust"):
        imports = _all_imports(ROOT / f"registry/sdk/{module}.py")
        assert [i.module for i in imports if any(_within(i.module, b) for b in built_on)] == []
        assert all(i.lazy for i in imports if _within(i.module, "registry.sdk.client")), module


#: Modules whose classes mirror another room's entities by design, named alike on purpose.
MIRRORS = {"registry/sdk/records.py", "registry/wire.py", "registry/server/models.py"}


def test_a_public_class_name_means_one_thing() -> None:
    defined: dict[str, list[str]] = {}
    for package in ("attest", "sbom", "registry"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = path.relative_to(ROOT).as_posix()
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    defined.setdefault(node.name, []).append(where)
    twice = {
        name: places
        for name, places in defined.items()
        if len([p for p in places if p not in MIRRORS]) > 1
    }
    assert not twice, twice


def test_the_checker_sees_lazy_and_hidden_imports() -> None:
    """The rules above are only as good as the import reader: it must not miss a hidden import."""
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from registry.server import db\n"
        "def f():\n    from registry.server import entry\n    import registry.sdk.client\n"
    )
    path = ROOT / "registry" / "_layering_probe.py"
    found = {(i.module, i.lazy) for i in _all_imports(path, source)}
    assert ("os", False) in found
    assert ("registry.server.db", True) in found
    assert ("registry.server.entry", True) in found
    assert ("registry.sdk.client", True) in found


PUBLIC = {
    "__version__",
    "ConfigurationError",
    "DirtyTreeError",
    "ResponseVerificationError",
    "ServiceUnavailableError",
    "DatabaseUnavailableError",
    "ScanPendingError",
    "RegistryClient",
    "TrainingRun",
    "RegistryError",
    "InvalidRequestError",
    "InvalidNameError",
    "InvalidPathError",
    "InvalidReferenceError",
    "InvalidManifestError",
    "MissingBlobsError",
    "DigestMismatchError",
    "UploadIncompleteError",
    "EvidenceRejectedError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "VersionConflictError",
    "ReleaseRefusedError",
    "UploadExpiredError",
    "VersionUnavailableError",
    "PayloadTooLargeError",
    "UploadOffsetError",
    "RateLimitedError",
    "StorageUnavailableError",
    "PullVerificationError",
    "ConnectionFailedError",
}


def test_the_public_surface_is_locked() -> None:
    import registry
    from registry import errors
    from registry.sdk.client import RegistryClient
    from registry.sdk.training import TrainingRun

    assert set(registry.__all__) == PUBLIC
    assert registry.RegistryClient is RegistryClient
    assert registry.TrainingRun is TrainingRun
    for name in PUBLIC - {"__version__", "RegistryClient", "TrainingRun"}:
        assert getattr(registry, name) is getattr(errors, name), name
    # every class of the error tree is public
    tree = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.RegistryError)
    }
    assert tree <= PUBLIC


@pytest.mark.parametrize(
    ("imported", "absent"),
    [
        ("registry.server.app", ("registry.sdk", "registry.cli")),
        # the BOM builder (cyclonedx) and strict validation (jsonschema's RFC 3987 grammar:
        # ~1.3 s, ~24 MiB) run in a child process, never in the server's
        ("registry.server.app", ("jsonschema", "rfc3987_syntax", "cyclonedx")),
        ("registry.server.entry", ("registry.sdk", "registry.cli")),
        ("registry.sdk.client", ("registry.server", "registry.cli", "fastapi", "sqlalchemy")),
        ("registry.cli.app", ("registry.server", "fastapi", "sqlalchemy")),
        ("registry", ("registry.sdk", "registry.server", "registry.cli")),
    ],
)
def test_importing_one_room_loads_no_other(imported: str, absent: tuple[str, ...]) -> None:
    probe = (
        f"import sys, {imported}\n"
        f"absent = {absent!r}\n"
        "print(sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') "
        "for a in absent)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_predicate_types_are_defined_once() -> None:
    """Every predicate-type URI is written in attest/predicates.py and nowhere else."""
    from attest import predicates

    uris = {v for k, v in vars(predicates).items() if k.isupper() and isinstance(v, str)}
    assert len(uris) == 11
    sources = [
        p for package in ("registry", "attest", "sbom") for p in (ROOT / package).rglob("*.py")
    ]
    for path in sorted(sources):
        if path.name == "predicates.py":
            continue
        text = path.read_text()
        assert not [u for u in uris if f'"{u}"' in text], path


def test_a_read_command_starts_without_the_signing_and_verifying_machinery() -> None:
    """`show` and `list` are mostly start-up: building their command and the SDK client must not
    load cryptography, hashing, the scanner, rich's progress bars or its markdown help."""
    heavy = ("cryptography", "attest.files", "attest.keys", "attest.scan", "attest.verifying",
             "rich.progress", "rich.markdown", "typer.rich_utils", "registry.server")  # fmt: skip
    probe = (
        "import sys\n"
        # what `python -m registry` and the console script block first (see registry/__main__)
        "sys.modules['trio'] = sys.modules['httpx._main'] = None\n"
        "from registry.cli.app import build\n"
        "build('show'); build('list')\n"
        "import registry.sdk.client\n"
        f"heavy = {heavy!r}\n"
        "print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') "
        "for h in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"


def test_the_command_table_builds_each_command_alone_and_all_together() -> None:
    from registry.cli.app import COMMANDS, build

    whole = build()
    names = [entry[0] for entry in COMMANDS]
    listed = [c.name for c in whole.registered_commands] + [g.name for g in whole.registered_groups]
    assert sorted(listed) == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        alone = build(name)
        assert [c.name for c in alone.registered_commands] + [
            g.name for g in alone.registered_groups
        ] == [name]


def test_a_server_on_local_storage_carries_neither_boto3_nor_the_bom_builder(
    tmp_path: Path,
) -> None:
    """Memory a server need not hold: boto3 (~30 MiB, with securesystemslib's AWS signer that
    in-toto imports) on the embedded default, and the BOM builder and strict validator
    (cyclonedx-python-lib and jsonschema, ~30 MiB), which run in a child process. A server that
    took a push and built its BOM loads none of them."""
    probe = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from registry.server.config import Settings\n"
        "from tests.support import serve, make_model_dir\n"
        f"settings = Settings(data_dir={str(tmp_path / 'data')!r})\n"
        "settings.data_dir.mkdir()\n"
        "with serve(settings) as live, live.client() as client:\n"
        f"    client.push(make_model_dir(Path({str(tmp_path / 'model')!r})), 'ns/m@1')\n"
        "    deadline = time.monotonic() + 120\n"
        "    while client.show('ns/m@1').bom_status != 'ready':\n"
        "        assert time.monotonic() < deadline\n"
        "        time.sleep(0.2)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'in_toto', "
        "'securesystemslib', 's3transfer', 'jsonschema', 'rfc3987_syntax', 'cyclonedx')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
