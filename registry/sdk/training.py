"""Training runs: push a model (or dataset) with signed SLSA provenance of what it was made from.

    with TrainingRun.start(client, "fraud/detector@1.2.0", signer=signer,
                           builder_id="https://ci.example/jobs/train") as run:
        run.use_dataset("fraud/transactions@3")
        run.use_base_model("base/bert@1")
        run.log_params(lr=0.01, epochs=3)
        run.detect_git(".")               # or run.use_code("fraud/train-code@7")
        ...train...
        run.push("out/")

Every dependency is resolved through the registry *before* anything is uploaded: an unknown
reference, a rejected or revoked version, a wrong kind, or a digest other than the one pinned
(``NS/NAME@VERSION#sha256:<hex>``) refuses the push with nothing stored. The provenance then names
each dependency by exact version and root digest; the CLI's ``push --dataset … --param …`` goes
through this same class.
"""

from __future__ import annotations

import json
import subprocess
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attest.errors import ProvenanceError
from attest.predicates import SLSA_PROVENANCE
from attest.provenance import (
    ROLE_KINDS,
    Byproduct,
    GitSource,
    VersionDependency,
    build_predicate,
    check_parameters,
)
from attest.statement import make_statement
from registry.errors import DirtyTreeError, InvalidRequestError, NotFoundError
from registry.names import Kind, parse_ref, validate_external_uri
from sbom import parse_environment

if TYPE_CHECKING:
    from attest.signing import Signer
    from registry.sdk.client import RegistryClient
    from registry.wire import VersionPublic

DEFAULT_BUILDER = "https://modelseal.dev/builders/cli"


def detect_git(directory: Path) -> GitSource | None:
    """The git checkout ``directory`` is in (remote URL or path, HEAD, dirty), or None."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    commit = git("rev-parse", "HEAD")
    if not top or not commit:
        return None
    url = git("remote", "get-url", "origin") or Path(top).as_uri()
    status = git("status", "--porcelain", "--untracked-files=normal")
    return GitSource(url=url, commit=commit.lower(), dirty=bool(status))


@dataclass
class TrainingRun:
    """Collects what a run used, then pushes its output with signed provenance."""

    client: RegistryClient
    ref: str
    signer: Signer
    builder_id: str = DEFAULT_BUILDER
    kind: Kind = Kind.MODEL
    params: dict[str, Any] = field(default_factory=dict)
    dependencies: list[tuple[str, str]] = field(default_factory=list)  # (role, ref text)
    git: GitSource | None = None
    sources: list[str] = field(default_factory=list)
    byproducts: list[Byproduct] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def start(
        cls,
        client: RegistryClient,
        ref: str,
        *,
        signer: Signer | None = None,
        sign_key: Path | str | None = None,
        builder_id: str | None = None,
        kind: Kind = Kind.MODEL,
    ) -> TrainingRun:
        """A run that will push REF through CLIENT, signed with SIGNER or the PEM key SIGN_KEY."""
        from attest.signing import KeySigner

        if (signer is None) == (sign_key is None):
            raise InvalidRequestError("a training run needs exactly one of signer or sign_key")
        chosen = signer if signer is not None else KeySigner.from_file(Path(str(sign_key)))
        return cls(client, ref, chosen, builder_id or DEFAULT_BUILDER, kind)

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        return None  # nothing is sent until push(); a failed run leaves nothing behind

    # -- what the run used --------------------------------------------------------------------

    def use_dataset(self, ref: str) -> None:
        self.dependencies.append(("dataset", ref))

    def use_base_model(self, ref: str) -> None:
        self.dependencies.append(("base-model", ref))

    def use_code(self, ref: str) -> None:
        if self.git is not None:
            raise InvalidRequestError("the code is either a registered version or a git commit")
        self.dependencies.append(("code", ref))

    def use_git(self, url: str, commit: str, *, dirty: bool = False) -> None:
        if any(role == "code" for role, _ in self.dependencies):
            raise InvalidRequestError("the code is either a registered version or a git commit")
        self.git = GitSource(url, commit.lower(), dirty)

    def detect_git(self, directory: Path | str = ".", *, allow_dirty: bool = False) -> bool:
        """Record the git checkout ``directory`` is in; False when it is not in one.

        Raises:
            DirtyTreeError: uncommitted changes and not ``allow_dirty`` (then it is recorded).
        """
        found = detect_git(Path(directory))
        if found is None:
            return False
        if found.dirty and not allow_dirty:
            raise DirtyTreeError(
                f"the git checkout at {directory} has uncommitted changes: commit them, or pass "
                "--allow-dirty (recorded in the provenance)"
            )
        self.use_git(found.url, found.commit, dirty=found.dirty)
        return True

    def add_source(self, uri: str) -> None:
        """Where a dataset's data came from (a plain URI: credentials are refused)."""
        self.sources.append(validate_external_uri(uri))

    def log_param(self, key: str, value: Any) -> None:
        self.params.update(check_parameters({key: value}))

    def log_params(self, **values: Any) -> None:
        self.params.update(check_parameters(values))

    def set_environment(self, path: Path | str) -> None:
        """The training environment: a requirements.txt or a CycloneDX SBOM (JSON)."""
        path = Path(path)
        data = path.read_bytes()
        parse_environment(data, path.name)  # refuse a bad file now, not at the registry
        media = "application/vnd.cyclonedx+json" if data.lstrip()[:1] == b"{" else "text/plain"
        self.byproducts = [b for b in self.byproducts if b.name != "environment"]
        self.byproducts.append(Byproduct("environment", path.name, media, data))

    def describe(self, **card: Any) -> None:
        """Model-card facts for the ML-BOM: task, architecture, considerations (models);
        description, classification, owner (datasets)."""
        self.card.update({k: v for k, v in card.items() if v is not None})

    # -- the push -----------------------------------------------------------------------------

    def resolve(self) -> list[VersionDependency]:
        """Every dependency, resolved through the registry (nothing uploaded yet)."""
        resolved = []
        for role, text in self.dependencies:
            resolved.append(resolve_dependency(self.client, text, role))
        return resolved

    def predicate(self, dependencies: list[VersionDependency]) -> dict[str, Any]:
        byproducts = list(self.byproducts)
        if self.card:
            card = json.dumps(self.card, sort_keys=True).encode()
            byproducts.append(Byproduct("model-card", "model-card.json", "application/json", card))
        return build_predicate(
            builder_id=self.builder_id,
            parameters=self.params,
            dependencies=dependencies,
            git=self.git,
            sources=self.sources,
            byproducts=byproducts,
            started=self.started,
            finished=datetime.now(UTC),
        )

    def push(self, directory: Path | str, **push_options: Any) -> VersionPublic:
        """Resolve the dependencies, push ``directory`` with an OMS signature, then attach the
        signed provenance. Nothing is uploaded when a dependency does not resolve."""
        dependencies = self.resolve()
        predicate = self.predicate(dependencies)  # built (and checked) before any upload
        version = self.client.push(
            Path(directory), self.ref, kind=self.kind, signer=self.signer, **push_options
        )
        self._attach(version, predicate)
        return version

    def register_external(self, files: list[dict[str, Any]], **options: Any) -> VersionPublic:
        """Register a dataset by manifest only (``path``, ``size``, ``sha256``, ``uri``)."""
        dependencies = self.resolve()
        predicate = self.predicate(dependencies)
        version = self.client.register_external(self.ref, files, kind=self.kind,
                                                signer=self.signer, **options)  # fmt: skip
        self._attach(version, predicate)
        return version

    def _attach(self, version: VersionPublic, predicate: dict[str, Any]) -> None:
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=SLSA_PROVENANCE,
            predicate=predicate,
        )
        self.client.attach(self.ref, self.signer.sign(statement).raw)


def split_pin(text: str) -> tuple[str, str | None]:
    """``NS/NAME@SEL#sha256:<hex>`` -> (ref, hex) ; the pin is optional."""
    ref, sep, pin = text.partition("#")
    if not sep:
        return ref, None
    if not pin.startswith("sha256:") or len(pin) != 71:
        raise ProvenanceError(f"{text!r}: a pinned digest is written #sha256:<64 hex digits>")
    return ref, pin.removeprefix("sha256:").lower()


def resolve_dependency(client: RegistryClient, text: str, role: str) -> VersionDependency:
    """One dependency through the registry: exists, right kind, usable, pinned digest holds."""
    ref_text, pinned = split_pin(text)
    try:
        parse_ref(ref_text)
        version = client.show(ref_text)
    except NotFoundError:
        raise InvalidRequestError(
            f"{role} {ref_text} is not registered; push or register it first",
            dependency=ref_text,
        ) from None
    digest = version.root_digest.removeprefix("sha256:")
    exact = f"{version.namespace}/{version.name}@{version.version}"
    if version.kind != ROLE_KINDS[role]:
        raise InvalidRequestError(
            f"{exact} is a {version.kind}, not a {ROLE_KINDS[role]} (given as {role})"
        )
    if version.state in ("rejected", "revoked"):
        raise InvalidRequestError(
            f"{role} {exact} is {version.state}: {version.state_reason or 'no reason'}"
        )
    if pinned is not None and pinned != digest:
        raise InvalidRequestError(
            f"{role} {ref_text} has digest sha256:{digest}, not the pinned sha256:{pinned}",
            expected=f"sha256:{pinned}",
            got=f"sha256:{digest}",
        )
    # Recorded by exact version even when given by alias or digest: an alias may move later.
    return VersionDependency(exact, digest, role)
