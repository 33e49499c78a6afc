"""The ``modelseal`` command line: parse, call the SDK, render. No business logic here."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from attest.errors import AttestError
from attest.keys import KeyType
from registry.errors import RegistryError
from registry.names import Kind, validate_name

if TYPE_CHECKING:  # imported where a command needs them: `--help` and typos stay fast
    from attest.signing import Signer
    from registry.sdk.client import RegistryClient

app = typer.Typer(
    name="modelseal",
    help="A model registry that only releases what it can prove.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
def _version(value: bool) -> None:
    if value:
        from registry import __version__

        sys.stdout.write(f"modelseal {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A model registry that only releases what it can prove."""


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def _transfer(label: str, enabled: bool) -> Any:
    """A rich progress bar on stderr; yields (on_total, advance)."""
    if not enabled:
        yield (None, None)
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{label}: preparing", total=None)
        started = False

        def on_total(total: int) -> None:
            # Known size, nothing moved yet: the first file is being hashed (pushes) or the
            # evidence checked (pulls).
            progress.update(task, total=total, description=f"{label}: hashing / verifying")

        def advance(n: int) -> None:
            nonlocal started
            if not started:
                started = True
                progress.update(task, description=label)
            progress.advance(task, n)

        yield (on_total, advance)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client() -> RegistryClient:
    from registry.errors import InvalidRequestError
    from registry.sdk.client import RegistryClient

    if not os.environ.get("MODELSEAL_TOKEN", "").strip():
        _fail("MODELSEAL_TOKEN is not set: export MODELSEAL_TOKEN=<API token> (an admin's is "
              "in DATA_DIR/admin-token; `modelseal token create` makes others)")  # fmt: skip
    url = os.environ.get("MODELSEAL_URL", "http://127.0.0.1:8700")
    try:
        client = RegistryClient.from_env()
    except InvalidRequestError as exc:
        if exc.facts.get("url") == url:
            _fail(f"MODELSEAL_URL={url!r} is not a registry URL: it needs http:// or https:// "
                  "and a host, e.g. http://127.0.0.1:8700 (the default)")  # fmt: skip
        raise
    client.on_pinned = lambda url, fingerprint, path: err.print(
        f"pinned the registry key {fingerprint} for {url} in {path} (first contact; a "
        "different key will be refused)", highlight=False, markup=False)  # fmt: skip
    return client


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _table(*headers: str) -> Table:
    """A table whose cells wrap instead of being cut: an identifier is copied whole or not at all
    (a digest cut with an ellipsis at 80 columns was then "not found")."""
    table = Table(*headers)
    for column in table.columns:
        column.overflow = "fold"
    return table


def _wide() -> Console:
    """``out``, or when stdout is not a terminal, a console that never cuts lines (logs, pipes)."""
    return out if out.is_terminal else Console(soft_wrap=True, width=100_000)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@app.command()
def serve(
    data_dir: Annotated[Path, typer.Option(help="Data directory (SQLite, blobs, tokens).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the data dir).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="s3://bucket/prefix or file:///path (default: data dir).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    drain_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            max=3600,
            help="On SIGTERM/SIGINT: stop accepting connections, let requests in flight finish "
            "for at most this many seconds, then cancel them and close their connections.",
        ),
    ] = 30,
    insecure_plain_http: Annotated[
        bool,
        typer.Option(
            "--insecure-plain-http",
            help="Allow plain HTTP on a non-loopback address (tokens travel in clear text).",
        ),
    ] = False,
) -> None:
    """Run the registry. On first start it migrates the database and writes an admin token."""
    from registry.server import entry

    if bool(tls_cert) != bool(tls_key):
        _fail("--tls-cert and --tls-key go together")
    if not tls_cert and not _is_loopback(host):
        if not insecure_plain_http:
            _fail(
                f"refusing plain HTTP on {host}: give --tls-cert/--tls-key, or "
                "--insecure-plain-http behind a TLS-terminating proxy"
            )
        err.print(f"[red]WARNING[/red]: serving plain HTTP on {host}; API tokens are not encrypted")
    settings = entry.settings(data_dir, database_url, storage)
    try:
        written = entry.bootstrap(settings)
    except RuntimeError as exc:  # misconfiguration found at start-up: say it plainly
        _fail(str(exc))
        return
    if written is not None:
        err.print(f"admin token written to {written} (mode 0600)")
    entry.run(
        settings,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        drain_seconds=drain_seconds,
    )


@app.command()
def push(
    directory: Annotated[Path, typer.Argument(help="Directory of files to push.")],
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    kind: Annotated[Kind, typer.Option(help="What the artifact is.")] = Kind.MODEL,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks",
            help="Push a symlink to a regular file as the bytes it points at, if the target lies "
            "inside DIR or the Hugging Face cache repository DIR is a snapshot of.",
        ),
    ] = False,
    symlink_root: Annotated[
        Path | None,
        typer.Option(help="With links: follow them only to files inside this directory."),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(help="Sign the OMS manifest and the SLSA provenance with this PEM key."),
    ] = None,
    sigstore: Annotated[
        bool, typer.Option("--sigstore", help="Sign keylessly (Sigstore) instead.")
    ] = False,
    sigstore_trust_config: Annotated[
        Path | None, typer.Option(help="Sigstore client trust config (private instance).")
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(help="An OMS bundle made by `model_signing sign` over exactly DIR."),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="A dataset the model was trained on: NS/NAME@VERSION[#sha256:HEX]."),
    ] = None,
    base_model: Annotated[
        list[str] | None, typer.Option(help="A base model it was fine-tuned from.")
    ] = None,
    code: Annotated[str | None, typer.Option(help="The code, as a registered version.")] = None,
    git_repo: Annotated[
        str | None, typer.Option(help="The code's git URL (default: the current checkout).")
    ] = None,
    git_commit: Annotated[str | None, typer.Option(help="The code's full commit id.")] = None,
    allow_dirty: Annotated[
        bool,
        typer.Option("--allow-dirty", help="Accept uncommitted changes (recorded as dirty)."),
    ] = False,
    param: Annotated[
        list[str] | None, typer.Option(help="A hyperparameter K=V; numbers stay numbers.")
    ] = None,
    builder_id: Annotated[
        str | None, typer.Option(help="URI naming the job that built this.")
    ] = None,
    environment: Annotated[
        Path | None,
        typer.Option(help="The training environment: requirements.txt or a CycloneDX SBOM."),
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="Datasets: a URI the data came from.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Model card: the task.")] = None,
    architecture: Annotated[str | None, typer.Option(help="Model card: the architecture.")] = None,
    considerations: Annotated[
        Path | None,
        typer.Option(help="Model card: a JSON file with CycloneDX modelCard.considerations."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="Datasets: a description.")] = None,
    classification: Annotated[
        str | None, typer.Option(help="Datasets: data classification.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Datasets: the governance owner.")] = None,
) -> None:
    """Push a directory as an immutable version; prints its root digest last.

    With --sign-key or --sigstore, the files get an OMS signature and the version gets signed
    SLSA provenance naming every --dataset, --base-model and the code (--code, --git-repo
    --git-commit, or the git checkout of the current directory) by root digest, resolved through
    the registry before anything is uploaded."""
    from registry.sdk.client import collect_files

    signer = _signer(sign_key, sigstore, sigstore_trust_config)
    if signer is not None and signature is not None:
        _fail("--signature and --sign-key/--sigstore exclude each other")
    provenance_flags = {
        "--dataset": dataset, "--base-model": base_model, "--code": code,
        "--git-repo": git_repo, "--git-commit": git_commit, "--param": param,
        "--builder-id": builder_id, "--environment": environment, "--source": source,
        "--task": task, "--architecture": architecture, "--considerations": considerations,
        "--description": description, "--classification": classification, "--owner": owner,
    }  # fmt: skip
    given = [flag for flag, value in provenance_flags.items() if value]
    if given and signer is None:
        _fail(f"{given[0]} goes into signed provenance: it needs --sign-key FILE or --sigstore")
    bundle = signature.read_bytes() if signature is not None else None
    within = None
    if follow_symlinks or symlink_root is not None:
        from attest.files import hf_cache_root

        within = symlink_root or hf_cache_root(directory)
        err.print(f"following symbolic links to regular files inside {within}",
                  highlight=False, markup=False)  # fmt: skip
    scan = collect_files(directory, follow_symlinks_within=within)
    for ignored in scan.ignored:
        err.print(f"skipping {ignored} (not part of a model signature)")
    with _client() as client:
        run = None
        if signer is not None:
            from registry.sdk.training import TrainingRun

            public = "PUBLIC_KEY.pem"
            if sign_key is not None and sign_key.with_suffix(".pub").is_file():
                public = str(sign_key.with_suffix(".pub"))
            run = TrainingRun.start(client, ref, signer=signer, builder_id=builder_id, kind=kind)
            _describe_run(run, dataset, base_model, code, git_repo, git_commit, allow_dirty,
                          param, environment, source, task, architecture, considerations,
                          description, classification, owner)  # fmt: skip
            client.check_signer(signer, public_key_file=public)  # before anything is uploaded
            run.resolve()  # refuse unknown or mismatched dependencies before any upload
        with _transfer(f"push {ref}", progress) as (on_total, advance):
            if run is not None:
                version = run.push(directory, progress=advance, on_total=on_total,
                                   follow_symlinks_within=within)  # fmt: skip
            else:
                version = client.push(directory, ref, kind=kind, progress=advance,
                                      on_total=on_total, signature=bundle,
                                      follow_symlinks_within=within)  # fmt: skip
    if run is not None:
        err.print("OMS signature and SLSA provenance attached")
    elif bundle is not None:
        err.print("OMS signature attached")
    if version.state == "rejected":
        err.print(f"[red]rejected[/red]: {version.state_reason}", highlight=False)
        sys.stdout.write(version.root_digest + "\n")
        raise typer.Exit(1)
    err.print(
        f"pushed {version.namespace}/{version.name}@{version.version} "
        f"({version.file_count} files, {version.total_size} bytes, {version.state})"
    )
    sys.stdout.write(version.root_digest + "\n")


def _describe_run(
    run: Any,
    datasets: list[str] | None,
    base_models: list[str] | None,
    code: str | None,
    git_repo: str | None,
    git_commit: str | None,
    allow_dirty: bool,
    params: list[str] | None,
    environment: Path | None,
    sources: list[str] | None,
    task: str | None,
    architecture: str | None,
    considerations: Path | None,
    description: str | None,
    classification: str | None,
    owner: str | None,
    *,
    detect: bool = True,
) -> None:
    """Record the push flags on a training run (shared by push and register)."""
    from attest import jsonsafe
    from attest.provenance import parse_param

    for item in datasets or []:
        run.use_dataset(item)
    for item in base_models or []:
        run.use_base_model(item)
    if code and (git_repo or git_commit):
        _fail("--code and --git-repo/--git-commit exclude each other")
    if code:
        run.use_code(code)
    elif git_repo or git_commit:
        if not (git_repo and git_commit):
            _fail("--git-repo and --git-commit go together")
        run.use_git(str(git_repo), str(git_commit))
    elif detect and run.detect_git(Path.cwd(), allow_dirty=allow_dirty):
        if run.git is not None and run.git.dirty:
            err.print("[yellow]warning:[/yellow] the git checkout is dirty (recorded)")
    elif detect:
        err.print("note: no code recorded in the provenance (not in a git checkout; name it "
                  "with --code NS/NAME@VERSION or --git-repo URL --git-commit SHA)",
                  highlight=False, markup=False)  # fmt: skip
    for item in params or []:
        key, value = parse_param(item)
        run.log_param(key, value)
    if environment is not None:
        run.set_environment(environment)
    for uri in sources or []:
        run.add_source(uri)
    card: dict[str, Any] = {"task": task, "architecture": architecture,
                            "description": description, "classification": classification,
                            "owner": owner}  # fmt: skip
    if considerations is not None:
        card["considerations"] = jsonsafe.loads(
            considerations.read_bytes(), what=str(considerations)
        )
    run.describe(**card)


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION, @ALIAS or @sha256:<digest>")],
    to: Annotated[
        Path, typer.Option("--to", help="Target directory (must not exist or be empty).")
    ],
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    fsync: Annotated[
        bool,
        typer.Option(
            help="fsync every file before the target appears (crash-safe). --no-fsync is "
            "faster; the pull is still verified and atomic, but not crash-safe."
        ),
    ] = True,
    registry_key: Annotated[
        Path | None,
        typer.Option(help="The registry's public key (PEM); default: pinned on first contact."),
    ] = None,
    pending: Annotated[
        bool, typer.Option("--pending", help="Evaluation jobs: pull a pending version.")
    ] = False,
    allow_downgrade: Annotated[
        bool, typer.Option("--allow-downgrade", help="Accept an alias moved to an older release.")
    ] = False,
    unsafe_skip_verify: Annotated[
        bool,
        typer.Option(
            "--unsafe-skip-verify",
            help="UNSAFE: skip the release evidence (digests still checked).",
        ),
    ] = False,
    policy: Annotated[
        Path | None, typer.Option(help="Re-run the gate locally with YOUR policy (with --trust).")
    ] = None,
    trust: Annotated[
        Path | None, typer.Option(help="YOUR trusted signers (trust.yaml), for --policy.")
    ] = None,
    via_registry: Annotated[
        bool,
        typer.Option(
            "--via-registry",
            help="Stream every file through the registry even when it offers presigned storage "
            "URLs (for hosts that cannot reach the store). Bytes are checked either way.",
        ),
    ] = False,
    max_status_age: Annotated[
        float | None,
        typer.Option(
            help="Seconds the registry's signed status of the version may be old (default 300, "
            "or MODELSEAL_STATUS_MAX_AGE); an older, possibly replayed one is refused.",
            min=1,
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace what --to holds: the new copy is verified beside it, then swapped in "
            "one step.",
        ),
    ] = False,
) -> None:
    """Download a version, verifying its evidence, its current signed status (not revoked,
    nor built on a revoked version) and every byte before anything lands."""
    if unsafe_skip_verify:
        err.print("[red]WARNING[/red]: --unsafe-skip-verify: the release evidence is NOT checked")
    key = registry_key.read_bytes() if registry_key is not None else None
    if bool(policy) != bool(trust):
        _fail("--policy and --trust go together")
    local_trust = None
    if trust is not None:
        from attest.trust import parse_trust

        local_trust = parse_trust(trust.read_text(), trust.parent)
    with _client() as client, _transfer(f"pull {ref}", progress) as (on_total, advance):
        import warnings

        client.storage_redirects = not via_registry
        if max_status_age is not None:
            client.status_max_age = max_status_age
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = client.pull(
                ref,
                to,
                progress=advance,
                on_total=on_total,
                durable=fsync,
                registry_key=key,
                pending=pending,
                allow_downgrade=allow_downgrade,
                unsafe_skip_verify=unsafe_skip_verify,
                local_policy=policy.read_text() if policy is not None else None,
                local_trust=local_trust,
                replace=replace,
            )
    err.print(f"pulled {version.namespace}/{version.name}@{version.version} into {to}")
    sys.stdout.write(version.root_digest + "\n")


@app.command("list")
def list_(
    target: Annotated[str | None, typer.Argument(help="NS or NS/NAME")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List namespaces, the artifacts of a namespace, or the versions of an artifact."""
    with _client() as client:
        if target is None:
            names = client.list_namespaces()
            if as_json:
                _print_json(names)
            else:
                for name in names:
                    out.print(name, highlight=False)
            return
        namespace, _, name = target.partition("/")
        validate_name(namespace, what="namespace")
        if not name:
            artifacts = client.list_artifacts(namespace)
            if as_json:
                _print_json([a.model_dump(mode="json") for a in artifacts])
                return
            table = _table("artifact", "kind", "versions", "created")
            for a in artifacts:
                table.add_row(
                    f"{a.namespace}/{a.name}",
                    a.kind,
                    str(a.version_count),
                    a.created_at.isoformat(),
                )
            _wide().print(table)
            return
        validate_name(name, what="artifact name")
        versions = client.list_versions(namespace, name)
        if as_json:
            _print_json([v.model_dump(mode="json") for v in versions])
            return
        table = _table("version", "state", "root digest", "files", "bytes", "created")
        for v in versions:
            table.add_row(
                v.version,
                f"{v.state} (external)" if v.external else v.state,
                v.root_digest,
                str(v.file_count),
                str(v.total_size),
                v.created_at.isoformat(),
            )
        _wide().print(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION, @ALIAS or @sha256:<digest>")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one version and its files."""
    with _client() as client:
        version = client.show(ref)
    if as_json:
        _print_json(version.model_dump(mode="json"))
        return
    out.print(f"{version.namespace}/{version.name}@{version.version}", highlight=False)
    out.print(f"  kind         {version.kind}", highlight=False)
    out.print(f"  state        {version.state}", highlight=False)
    if version.state_reason:
        out.print(f"  reason       {version.state_reason}", highlight=False)
    out.print(f"  root digest  {version.root_digest}", highlight=False)
    if version.external:
        out.print("  external     yes: registered by manifest; the registry holds no bytes",
                  highlight=False)  # fmt: skip
    out.print(
        f"  created      {version.created_at.isoformat()} by {version.created_by}", highlight=False
    )
    table = _table("path", "bytes", "sha256", *(["uri"] if version.external else []))
    for f in version.files:
        uri = [escape(f.uri or "")] if version.external else []
        table.add_row(escape(f.path), str(f.size), f.digest, *uri)
    _wide().print(table)


@app.command()
def register(
    manifest: Annotated[
        Path, typer.Argument(help='JSON: {"files": [{"path", "size", "sha256", "uri"}, …]}')
    ],
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    kind: Annotated[Kind, typer.Option(help="What the artifact is.")] = Kind.DATASET,
    sign_key: Annotated[
        Path | None, typer.Option(help="Sign the OMS manifest and the provenance with this key.")
    ] = None,
    sigstore: Annotated[bool, typer.Option("--sigstore", help="Sign keylessly.")] = False,
    source: Annotated[
        list[str] | None, typer.Option(help="A URI the data came from (provenance).")
    ] = None,
    builder_id: Annotated[str | None, typer.Option(help="URI naming the job.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="A parameter K=V.")] = None,
    description: Annotated[str | None, typer.Option(help="A description.")] = None,
    classification: Annotated[str | None, typer.Option(help="Data classification.")] = None,
    owner: Annotated[str | None, typer.Option(help="The governance owner.")] = None,
) -> None:
    """Register external data by manifest only: nothing is uploaded, the version is marked
    external everywhere, and the registry never serves its bytes. Prints the root digest."""
    from attest import jsonsafe

    document = jsonsafe.loads(manifest.read_bytes(), what=str(manifest))
    files = document.get("files") if isinstance(document, dict) else document
    if not isinstance(files, list) or not files or not all(isinstance(f, dict) for f in files):
        raise typer.BadParameter(f"{manifest}: expected a list of files")
    signer = _signer(sign_key, sigstore, None)
    with _client() as client:
        if signer is None:
            if source or builder_id or param or description or classification or owner:
                _fail("provenance flags need --sign-key FILE or --sigstore")
            version = client.register_external(ref, files, kind=kind)
        else:
            from registry.sdk.training import TrainingRun

            run = TrainingRun.start(client, ref, signer=signer, builder_id=builder_id, kind=kind)
            _describe_run(run, None, None, None, None, None, True, param, None, source, None,
                          None, None, description, classification, owner, detect=False)  # fmt: skip
            version = run.register_external(files)
    err.print(
        f"registered {version.namespace}/{version.name}@{version.version} (external, "
        f"{version.file_count} files, {version.total_size} bytes, {version.state})"
    )
    sys.stdout.write(version.root_digest + "\n")


@app.command()
def manifest(
    directory: Annotated[Path, typer.Argument(help="A local copy of the external data.")],
    base_uri: Annotated[
        str, typer.Option(help="Where the files live: URI of DIR (file URIs = BASE/PATH).")
    ],
) -> None:
    """Print the manifest `modelseal register` takes, hashing a local copy of the data."""
    from attest.files import hash_files
    from registry.sdk.client import collect_files

    digests = hash_files(collect_files(directory).files, workers=2)
    base = base_uri.rstrip("/")
    _print_json({"files": [
        {"path": d.path, "size": d.size, "sha256": d.sha256, "uri": f"{base}/{d.path}"}
        for d in digests
    ]})  # fmt: skip


@app.command()
def sbom(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION (a model).")],
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: pinned).")
    ] = None,
    validate_schema: Annotated[
        bool,
        typer.Option(
            "--validate-schema",
            help="Also check it against the strict CycloneDX 1.6 schema here (the registry "
            "does before signing it).",
        ),
    ] = False,
) -> None:
    """Print the version's CycloneDX 1.6 ML-BOM after verifying the registry's signature on it
    and that it lists exactly the version's files."""
    from registry.sdk.lineage import verified_bom

    with _client() as client:
        key = registry_key.read_bytes() if registry_key else None
        _print_json(verified_bom(client, ref, registry_key=key, validate_schema=validate_schema))


@app.command()
def provenance(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The lineage tree: model <- datasets <- their sources, code, base models <- …"""
    from rich.tree import Tree

    from registry.sdk.lineage import lineage

    with _client() as client:
        root = lineage(client, ref)
    if as_json:
        _print_json(root)
        return

    def label(node: dict[str, Any]) -> str:
        if node.get("cycle"):
            return f"{node['role']} {node['ref']} (cycle)"
        if node.get("truncated"):
            return f"{node['role']} {node['ref']} (deeper than the depth bound)"
        if node.get("error"):
            return f"{node['role']} {node['ref']}: {node['error']}"
        if node.get("kind") == "git":
            dirty = " (dirty)" if node.get("dirty") else ""
            return f"code git {node['ref']} @ {node['commit']}{dirty}"
        if node.get("role") == "source":
            return f"source {node['ref']}"
        signers = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(node["signers"].items()))
        external = " external" if node.get("external") else ""
        text = (
            f"{node['role']} {node['ref']} {node['digest']} [{node['state']}]{external} "
            f"signed by {signers or 'nobody'}"
        )
        for problem in node.get("problems", []):
            text += f"\n  problem: {problem}"
        return text

    def grow(tree: Tree, node: dict[str, Any]) -> None:
        for child in node.get("children", []):
            grow(tree.add(escape(label(child)), highlight=False), child)
        for uri in node.get("sources", []):
            tree.add(escape(f"source {uri}"), highlight=False)

    tree = Tree(escape(label(root)), highlight=False)
    grow(tree, root)
    _wide().print(tree)


def _signer(sign_key: Path | None, sigstore: bool, trust_config: Path | None) -> Signer | None:
    """The signer the options name: a key file or signer URI, Sigstore keyless, or none.

    A signer URI (``awskms:…``, ``gcpkms:…``, ``hsm:…``, ``file2:PATH``…) needs the public key in
    ``MODELSEAL_SIGN_KEY_PUB`` (a PEM file), which is how verifiers will know the signer.
    """
    from attest.keys import load_public
    from attest.signing import KeySigner, SigstoreSigner, UriSigner

    if sign_key is not None and sigstore:
        _fail("--sign-key and --sigstore exclude each other")
    if sign_key is not None:
        text = str(sign_key)
        if ":" in text.split("/", 1)[0]:
            pub = os.environ.get("MODELSEAL_SIGN_KEY_PUB")
            if not pub:
                _fail("a signer URI needs MODELSEAL_SIGN_KEY_PUB=<public key PEM file>")
                return None
            return UriSigner(text, load_public(Path(pub).read_bytes()))
        password = os.environ.get("MODELSEAL_SIGN_KEY_PASSWORD")
        return KeySigner.from_file(sign_key, password.encode() if password else None)
    if sigstore:
        signer = SigstoreSigner(trust_config=trust_config)
        err.print(f"signing keylessly as {signer.identity}")  # fails now, before any upload
        return signer
    return None


@app.command()
def keygen(
    prefix: Annotated[Path, typer.Argument(help="Writes PREFIX.key (0600) and PREFIX.pub.")],
    key_type: Annotated[KeyType, typer.Option("--type", help="Key type.")] = KeyType.ECDSA_P256,
) -> None:
    """Generate a signing key pair (ECDSA P-256 by default)."""
    from attest import keys

    password = os.environ.get("MODELSEAL_SIGN_KEY_PASSWORD")
    try:
        private, public = keys.write_keypair(
            prefix, keys.generate(key_type), password.encode() if password else None
        )
    except FileExistsError:
        _fail(f"{prefix}.key exists; refusing to overwrite a private key")
        return
    fingerprint = keys.fingerprint(keys.load_public(public.read_bytes()))
    err.print(f"wrote {private} (mode 0600) and {public}")
    sys.stdout.write(f"sha256:{fingerprint}\n")


identity_app = typer.Typer(help="Signers the registry trusts (admins).", no_args_is_help=True)
app.add_typer(identity_app, name="identity")


@identity_app.command("add")
def identity_add(
    name: Annotated[str, typer.Argument(help="A name policies will refer to.")],
    key: Annotated[Path | None, typer.Option(help="PEM public key file.")] = None,
    sigstore_issuer: Annotated[str | None, typer.Option(help="OIDC issuer URL.")] = None,
    sigstore_identity: Annotated[
        str | None, typer.Option(help="Certificate identity (email, URI…).")
    ] = None,
    regex: Annotated[
        bool, typer.Option("--regex", help="--sigstore-identity is a regular expression.")
    ] = False,
) -> None:
    """Trust a key, or a Sigstore issuer + identity, under NAME."""
    with _client() as client:
        if key is not None:
            if sigstore_issuer or sigstore_identity:
                _fail("--key and --sigstore-* exclude each other")
            record = client.add_key_identity(name, key.read_text())
        elif sigstore_issuer and sigstore_identity:
            record = client.add_sigstore_identity(
                name, issuer=sigstore_issuer, identity=sigstore_identity, regex=regex
            )
        else:
            _fail("give --key FILE, or --sigstore-issuer URL and --sigstore-identity ID")
            return
    err.print(f"identity {record.name} added ({record.fingerprint or record.sigstore_identity})")


@identity_app.command("list")
def identity_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List trusted identities."""
    with _client() as client:
        records = client.list_identities()
    if as_json:
        _print_json([r.model_dump(mode="json") for r in records])
        return
    table = _table("name", "kind", "key / identity", "issuer", "added")
    for r in records:
        who = r.fingerprint or (f"/{r.sigstore_identity}/" if r.regex else r.sigstore_identity)
        table.add_row(r.name, r.kind, who or "", r.sigstore_issuer or "", r.created_at.isoformat())
    out.print(table)


@app.command()
def attest(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    evaluation: Annotated[
        Path | None,
        typer.Option(
            help="JSON file: a flat object of metric name to number, e.g. "
            '{"accuracy": 0.93}; signed as the test-result statement the release gate reads.'
        ),
    ] = None,
    predicate_type: Annotated[
        str | None, typer.Option(help="Any other statement: its predicateType URI.")
    ] = None,
    predicate: Annotated[
        Path | None, typer.Option(help="With --predicate-type: JSON file holding the predicate.")
    ] = None,
    sign_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    sigstore: Annotated[bool, typer.Option("--sigstore", help="Sign keylessly.")] = False,
    sigstore_trust_config: Annotated[Path | None, typer.Option(help="Trust config.")] = None,
) -> None:
    """Sign a statement about a version and attach it: evaluation metrics (--evaluation), or any
    predicate (--predicate-type with --predicate)."""
    from attest.errors import AttestError
    from attest.evaluation import TEST_RESULT, check_evaluation_predicate, evaluation_predicate
    from attest.jsonsafe import loads
    from attest.statement import make_statement

    if (evaluation is None) == (predicate_type is None and predicate is None):
        _fail("attest needs either --evaluation METRICS.json or --predicate-type URI "
              "--predicate FILE")  # fmt: skip
    if evaluation is None and (predicate_type is None or predicate is None):
        _fail("--predicate-type and --predicate go together")
    signer = _signer(sign_key, sigstore, sigstore_trust_config)
    if signer is None:
        _fail("attest needs --sign-key FILE or --sigstore")
        return
    source = evaluation or predicate
    assert source is not None
    try:
        body = loads(source.read_bytes(), what=str(source))
        if evaluation is not None:
            body = evaluation_predicate(body)
            predicate_type = TEST_RESULT
        elif not isinstance(body, dict):
            _fail(f"{source} must hold a JSON object")
        elif predicate_type == TEST_RESULT:
            check_evaluation_predicate(body)
    except OSError as exc:
        _fail(f"cannot read {source}: {exc.strerror or exc}")
        return
    except AttestError as exc:
        _fail(f"{source}: {exc}")
        return
    assert predicate_type is not None
    with _client() as client:
        version = client.show(ref)
        statement = make_statement(
            name=f"{version.namespace}/{version.name}",
            root_digest=version.root_digest.removeprefix("sha256:"),
            predicate_type=predicate_type,
            predicate=body,
        )
        record = client.attach(
            f"{version.namespace}/{version.name}@{version.version}", signer.sign(statement).raw
        )
    err.print(f"attached {record.predicate_type} signed by {record.signer}")
    sys.stdout.write(record.bundle_digest + "\n")


@app.command()
def attestations(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION, @ALIAS or @sha256:<digest>")],
    predicate_type: Annotated[str | None, typer.Option(help="Only this predicateType.")] = None,
    save: Annotated[
        Path | None, typer.Option(help="Write each bundle to DIR/<id>.sigstore.json.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the evidence attached to a version (optionally saving the exact bundles)."""
    with _client() as client:
        records = client.list_attestations(ref, predicate_type)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            for r in records:
                (save / f"{r.id}.sigstore.json").write_bytes(client.get_attestation(ref, r.id))
    if as_json:
        _print_json([r.model_dump(mode="json") for r in records])
        return
    table = _table("id", "predicate type", "signer", "bundle digest", "attached")
    for r in records:
        table.add_row(str(r.id), r.predicate_type, r.signer, r.bundle_digest,
                      r.created_at.isoformat())  # fmt: skip
    out.print(table)


@app.command("verify-signature")
def verify_signature(
    directory: Annotated[Path, typer.Argument(help="A local copy of the files.")],
    signature: Annotated[Path, typer.Option(help="The OMS bundle (model.sig).")],
    key: Annotated[
        list[Path] | None, typer.Option(help="A trusted PEM public key (repeatable).")
    ] = None,
    sigstore_issuer: Annotated[str | None, typer.Option(help="Trusted OIDC issuer.")] = None,
    sigstore_identity: Annotated[str | None, typer.Option(help="Trusted identity.")] = None,
    trusted_root: Annotated[
        Path | None, typer.Option(help="Sigstore trusted_root.json (default: shipped copy).")
    ] = None,
) -> None:
    """Offline: check that an OMS bundle by a trusted signer covers exactly DIRECTORY."""
    from attest.bundle import Bundle
    from attest.files import verify_directory
    from attest.keys import TrustedKey
    from attest.verifying import SigstoreIdentity, Verifier

    trusted = [TrustedKey.from_pem(p.name, p.read_bytes()) for p in key or []]
    identities = []
    if sigstore_issuer and sigstore_identity:
        identities.append(SigstoreIdentity("sigstore", sigstore_issuer, sigstore_identity))
    verifier = Verifier(keys=trusted, identities=identities, trusted_root=trusted_root)
    verified = verify_directory(directory, Bundle.parse(signature.read_bytes()), verifier)
    err.print(f"verified: {len(verified.statement.predicate['resources'])} files signed by "
              f"{verified.signer} ({verified.signer_id})")  # fmt: skip
    sys.stdout.write(f"sha256:{verified.statement.subject.sha256}\n")


@app.command()
def scan(
    path: Annotated[Path, typer.Argument(help="A model directory or a single file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Scan model files locally, as the registry does on push. Exit 1 unless every file is clean
    (unsafe, unscannable and unknown files all count)."""
    from attest.errors import AttestError
    from attest.scan import ScanReport, Verdict, scan_directory, scan_stream

    try:
        if path.is_dir() and not path.is_symlink():
            report = scan_directory(path)
        elif path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                report = ScanReport((scan_stream(path.name, handle, path.stat().st_size),))
        else:
            _fail(f"{path} is not a regular file or directory")
            return
    except (AttestError, OSError) as exc:
        _fail(f"cannot scan {path}: {exc}")
        return
    if as_json:
        _print_json(report.to_json())
    else:
        colours = {Verdict.CLEAN: "green", Verdict.UNKNOWN: "yellow",
                   Verdict.UNSCANNABLE: "magenta", Verdict.UNSAFE: "red"}  # fmt: skip
        table = _table("path", "format", "verdict", "findings")
        for f in report.files:
            style = "yellow" if f.clean and f.pickle else colours[f.verdict]
            verdict = f"[{style}]{f.verdict}{' (pickle)' if f.pickle else ''}[/{style}]"
            table.add_row(escape(f.path), str(f.format), verdict, escape("\n".join(f.findings)))
        out.print(table)
    if not report.clean:
        counts = {v: sum(f.verdict is v for f in report.files) for v in Verdict if v.severity}
        detail = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        err.print(f"{len(report.not_clean)} file(s) not clean ({detail})")
        raise typer.Exit(1)


policy_app = typer.Typer(help="Release policies per namespace (admins).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


@policy_app.command("set")
def policy_set(
    namespace: Annotated[str, typer.Argument(help="Namespace.")],
    file: Annotated[Path, typer.Argument(help="Policy YAML.")],
) -> None:
    """Validate and store a new policy revision."""
    with _client() as client:
        record = client.set_policy(namespace, file.read_text())
    err.print(f"policy of {namespace} is now revision {record.revision}")


@policy_app.command("template")
def policy_template() -> None:
    """Print a commented starter policy (every rule the gate knows), to edit and `policy set`."""
    from attest.policy import POLICY_TEMPLATE

    sys.stdout.write(POLICY_TEMPLATE)


@policy_app.command("show")
def policy_show(namespace: Annotated[str, typer.Argument(help="Namespace.")]) -> None:
    """Print the policy in force (revision 0 is the built-in default)."""
    with _client() as client:
        record = client.get_policy(namespace)
    who = f", set by {record.created_by}" if record.created_by else " (default)"
    err.print(f"# {namespace}: revision {record.revision}{who}")
    sys.stdout.write(record.document if record.document.endswith("\n") else record.document + "\n")


@app.command()
def release(ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")]) -> None:
    """Run the release gate; on failure print every reason on its own line and exit 1."""
    from registry.errors import ReleaseRefusedError

    with _client() as client:
        try:
            version = client.release(ref)
        except ReleaseRefusedError as exc:
            err.print(f"{ref}: release refused", highlight=False)
            for reason in exc.facts.get("reasons", []):
                sys.stdout.write(f"{reason}\n")
            raise typer.Exit(1) from None
    err.print(f"released {version.namespace}/{version.name}@{version.version}")
    sys.stdout.write(version.root_digest + "\n")


@app.command()
def reject(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Reject a pending version for good."""
    with _client() as client:
        version = client.reject(ref, reason)
    err.print(f"rejected {version.namespace}/{version.name}@{version.version}: {reason}")


@app.command()
def revoke(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    reason: Annotated[str, typer.Option(help="Why (shown to every later pull).")],
) -> None:
    """Revoke a released version and every release built on it (transitively, through
    provenance); print each one revoked with it and every alias now pointing at a revoked one."""
    with _client() as client:
        result = client.revocation(ref, reason)
    version = result.version
    err.print(f"revoked {version.namespace}/{version.name}@{version.version}")
    newly = {item.version for item in result.revoked}
    for item in result.revoked:
        if item.built_on is not None:
            sys.stdout.write(f"revoked with it: {item.version} (built on {item.built_on})\n")
    for dependent in result.dependents:
        if dependent not in newly:
            sys.stdout.write(f"built on it, revoked already: {dependent}\n")
    for alias in result.aliases:
        sys.stdout.write(f"alias {alias.alias} points at revoked {alias.version}\n")


alias_app = typer.Typer(help="Aliases (prod, staging…) of released versions.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")


@alias_app.command("set")
def alias_set(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    version: Annotated[str, typer.Argument(help="A released version.")],
) -> None:
    """Point ALIAS at a released VERSION."""
    namespace, _, name = artifact.partition("/")
    with _client() as client:
        move = client.set_alias(namespace, name, alias, version)
    err.print(f"{artifact}@{alias}: {move.from_version or '(new)'} -> {move.to_version}")


@alias_app.command("list")
def alias_list(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Aliases of an artifact; one that points at a revoked version is flagged."""
    namespace, _, name = artifact.partition("/")
    with _client() as client:
        aliases = client.list_aliases(namespace, name)
    if as_json:
        _print_json([a.model_dump(mode="json") for a in aliases])
        return
    table = _table("alias", "version", "state", "moved", "by")
    for a in aliases:
        state = f"[red]{a.state} (!)[/red]" if a.state != "released" else a.state
        table.add_row(a.alias, a.version, state, a.updated_at.isoformat(), a.updated_by)
    out.print(table)


@alias_app.command("history")
def alias_history(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every move of an alias: who, when, from, to."""
    namespace, _, name = artifact.partition("/")
    with _client() as client:
        moves = client.alias_history(namespace, name, alias)
    if as_json:
        _print_json([m.model_dump(mode="json") for m in moves])
        return
    table = _table("when", "who", "from", "to")
    for m in moves:
        table.add_row(m.at.isoformat(), m.actor, m.from_version or "", m.to_version)
    out.print(table)


token_app = typer.Typer(help="API tokens (admins).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, publisher, releaser, deployer or auditor.")],
    namespace: Annotated[
        str | None, typer.Option(help="Scope (required but for admins and registry-wide auditors).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label (default: ROLE@NAMESPACE).")] = None,
    expires: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until it expires (1-3650).")
    ] = None,
) -> None:
    """Create a token; prints the token alone on stdout (it is shown only once)."""
    label = name or f"{role}@{namespace or '*'}"
    with _client() as client:
        token = client.create_token(label, role, namespace, expires)
    err.print(f"token {token.id} ({role}, {namespace or 'every namespace'})")
    sys.stdout.write(f"{token.token}\n")


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List tokens (never their secrets)."""
    with _client() as client:
        tokens = client.list_tokens()
    if as_json:
        _print_json([t.model_dump(mode="json", exclude={"token"}) for t in tokens])
        return
    table = _table("id", "name", "role", "namespace", "expires", "revoked")
    for t in tokens:
        table.add_row(t.id, t.name, t.role, t.namespace or "*",
                      t.expires_at.isoformat() if t.expires_at else "", str(t.revoked))  # fmt: skip
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(help="Token id (or ms_<id>; a whole token is reduced to its id).")
    ],
) -> None:
    """Revoke a token; it stops working at once."""
    from registry.sdk.client import token_id_of

    bare = token_id_of(token_id)  # never send or show a secret pasted with the id
    with _client() as client:
        client.revoke_token(bare)
    err.print(f"token ms_{bare} revoked")


audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("log")
def audit_log(
    since: Annotated[
        str | None, typer.Option(help="Only entries at or after this ISO time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the audit log (auditors, admins)."""
    with _client() as client:
        entries = client.audit_entries()
    if since:
        from datetime import datetime

        cutoff = datetime.fromisoformat(since)
        if cutoff.tzinfo is None:
            from datetime import UTC

            cutoff = cutoff.replace(tzinfo=UTC)
        entries = [e for e in entries if datetime.fromisoformat(e["at"]) >= cutoff]
    if as_json:
        _print_json(entries)
        return
    table = _table("seq", "at", "actor", "action", "target", "outcome")
    for e in entries:
        table.add_row(str(e["seq"]), e["at"], e["actor"], e["action"], e["target"], e["outcome"])
    out.print(table)


@audit_app.command("verify")
def audit_verify(
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: the pinned one).")
    ] = None,
) -> None:
    """Check every link of the chain and the newest signed checkpoint; exit 1 at the first
    edited, removed or reordered entry."""
    key = registry_key.read_bytes() if registry_key is not None else None
    with _client() as client:
        count, head = client.verify_audit_log(registry_key=key)
    err.print(f"audit log intact: {count} entries, head sha256:{head}")


@app.command()
def export(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    to: Annotated[Path, typer.Option("--to", help="Directory to create (must not exist).")],
    with_files: Annotated[
        bool, typer.Option("--with-files", help="Also pull the files into DIR/files.")
    ] = False,
    in_toto: Annotated[
        bool, typer.Option("--in-toto", help="Also write an in-toto layout and links.")
    ] = False,
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: pinned).")
    ] = None,
) -> None:
    """Write the version's whole evidence chain for offline verification (verify-evidence)."""
    from registry.sdk.export import export_evidence

    with _client() as client:
        key = registry_key.read_bytes() if registry_key else None
        written = export_evidence(client, ref, to, with_files=with_files, in_toto=in_toto,
                                  registry_key=key)  # fmt: skip
    count = len(list((written / "evidence").glob("*.sigstore.json")))
    err.print(f"exported {ref} to {written} ({count} bundles)")


def _print_verdict(verdict: Any) -> None:
    """One line per check, then the verdict. Exit 0 only for VERIFIED (every link holds against
    keys the caller brought); 3 for UNANCHORED (holds only against the export's own keys)."""
    for check in verdict.checks:
        colour = "green" if check.ok else "red"
        word = "ok  " if check.ok else "FAIL"
        out.print(f"[{colour}]{word}[/{colour}] {escape(check.link)}: {escape(check.message)}",
                  highlight=False, markup=True, soft_wrap=True)  # fmt: skip
    if verdict.ok:
        out.print("[green]VERIFIED[/green]", markup=True)
        return
    if verdict.holds and not verdict.anchored:
        out.print(
            "[yellow]UNANCHORED[/yellow]: every link holds, but only against what the export "
            f"itself carries: {escape('; '.join(verdict.unanchored))}",
            markup=True, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(3)
    unanchored = "" if verdict.anchored else " (UNANCHORED)"
    out.print(f"[red]NOT VERIFIED[/red]{unanchored}", markup=True)
    raise typer.Exit(1)


def _auditor_inputs(trust: Path | None, policy: Path | None) -> tuple[Any, str | None]:
    from attest.trust import parse_trust

    parsed = parse_trust(trust.read_text(), trust.parent) if trust is not None else None
    return parsed, policy.read_text() if policy is not None else None


def _registry_anchor(
    registry_key: Path | None, registry_url: str | None, trusted: Any
) -> tuple[Any, str]:
    """The registry key the auditor brings: ``--registry-key``, else the key pinned for
    ``--registry URL``, else (when the trust file names no ``registry:``) the one registry key
    this machine pinned. The export's own ``registry`` URL is unsigned: it never chooses among
    several pins, nor supplies a key."""
    from attest.keys import TrustedKey
    from registry.sdk.pins import PinStore

    if registry_key is not None:
        try:
            key = TrustedKey.from_pem("registry", registry_key.read_bytes())
        except ValueError as exc:
            _fail(f"--registry-key {registry_key}: not a PEM public key ({exc})")
        return key, f"--registry-key {registry_key}"
    pins = PinStore()
    try:
        pinned = pins.registry_keys()
    except ValueError as exc:
        _fail(f"{pins.path}: {exc}")
    if registry_url is not None:
        if registry_url not in pinned:
            known = ", ".join(sorted(pinned)) or "none"
            _fail(f"no registry key is pinned for {registry_url} in {pins.path} (pinned: "
                  f"{known}); pass --registry-key FILE")  # fmt: skip
        return (TrustedKey.from_pem("registry", pinned[registry_url].encode()),
                f"the key pinned for {registry_url} ({pins.path})")  # fmt: skip
    if trusted is not None and trusted.registry_key is not None:
        return None, ""
    keys = {TrustedKey.from_pem("registry", pem.encode()).fingerprint: (url, pem)
            for url, pem in sorted(pinned.items())}  # fmt: skip
    if len(keys) > 1:
        _fail(f"{len(keys)} registry keys are pinned on this machine ({', '.join(sorted(pinned))}) "
              "and the export's manifest.json, which names its registry, is signed by nothing: "
              "say which one anchors it with --registry-key FILE or --registry URL")  # fmt: skip
    if not keys:
        return None, ""
    [(url, pem)] = keys.values()
    source = f"the key pinned for {url} ({pins.path}), the only registry key pinned here"
    return TrustedKey.from_pem("registry", pem.encode()), source


@app.command("verify-evidence")
def verify_evidence_cmd(
    directory: Annotated[Path, typer.Argument(help="A directory written by `modelseal export`.")],
    trust: Annotated[
        Path | None,
        typer.Option(help="Your trust.yaml (signers you accept, registry key). Without it the "
                     "export's signer identities are taken as given: at most UNANCHORED."),
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Your policy.yaml (e.g. stricter).")] = None,
    registry_key: Annotated[
        Path | None,
        typer.Option(
            help="The registry's public key (PEM) to anchor on; default: your trust file's "
            "registry:, else the one registry key pinned here. Never the export's own."
        ),
    ] = None,
    registry_url: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="The registry URL whose pinned key anchors (needed when several are pinned; "
            "the export's own manifest.json never chooses).",
        ),
    ] = None,
    trust_export_keys: Annotated[
        bool,
        typer.Option(
            "--trust-export-keys",
            help="No key of yours: check against the export's own registry.pub and trust.yaml. "
            "Reported UNANCHORED (exit 3), never VERIFIED.",
        ),
    ] = False,
    without_audit: Annotated[
        bool,
        typer.Option(
            "--without-audit",
            help="Accept an export without audit/ (a deployer's): revocations go unchecked.",
        ),
    ] = False,
) -> None:
    """Re-run the whole release gate from DIR alone, offline, against keys you bring; exit 0
    only if every link holds (1: a link broke or no registry key anchors it; 3: UNANCHORED)."""
    from attest.evidence import verify_evidence

    trusted, policy_text = _auditor_inputs(trust, policy)
    key, source = _registry_anchor(registry_key, registry_url, trusted)
    verdict = verify_evidence(directory, trust=trusted, policy_text=policy_text,
                              registry_key=key, registry_key_source=source,
                              trust_export_keys=trust_export_keys,
                              require_audit=not without_audit)  # fmt: skip
    _print_verdict(verdict)


@app.command()
def verify(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    trust: Annotated[Path | None, typer.Option(help="Your trust.yaml.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Your policy.yaml.")] = None,
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: pinned).")
    ] = None,
) -> None:
    """Fetch the version's evidence and verify it here, without trusting the server's verdict.
    First the version's current signed status: its audit-log head must extend the newest
    checkpoint this client saw (a rolled-back log is refused, naming both)."""
    from registry.sdk.export import verify_online

    trusted, policy_text = _auditor_inputs(trust, policy)
    with _client() as client:
        key = registry_key.read_bytes() if registry_key else None
        client.version_status(client.show(ref), registry_key=key)
        verdict = verify_online(client, ref, trust=trusted, policy_text=policy_text,
                                registry_key=key)  # fmt: skip
    _print_verdict(verdict)


# -- operator commands: run on the server, against the database and store, not the API ----------

admin_app = typer.Typer(
    help="Operator commands run on the server (they need the database, not an API token).",
    no_args_is_help=True,
)
app.add_typer(admin_app, name="admin")
admin_token_app = typer.Typer(help="Recover administrator access.", no_args_is_help=True)
admin_app.add_typer(admin_token_app, name="token")

_DataDir = Annotated[
    Path, typer.Option(help="The registry's data directory (as given to `serve`).")
]
_DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL (default: MODELSEAL_DATABASE_URL, else SQLite in the data "
                 "dir)."),
]  # fmt: skip


def _operator_settings(data_dir: Path, database_url: str | None, storage: str | None = None) -> Any:
    from registry.server import entry

    settings = entry.settings(data_dir, database_url, storage)
    if settings.resolved_database_url.startswith("sqlite") and not (
        data_dir / "registry.db"
    ).is_file():
        _fail(f"{data_dir} holds no registry database (registry.db); give the data dir `serve` "
              "uses, or --database-url")  # fmt: skip
    return settings


@admin_token_app.command("create")
def admin_token_create(
    data_dir: _DataDir,
    database_url: _DatabaseUrl = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "operator-admin",
    expires: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until it expires (1-3650).")
    ] = None,
) -> None:
    """Issue a registry-wide admin token directly in the database, for when no admin token
    works (all revoked or expired). Audited as operator:USER@HOST. Prints the token alone on
    stdout (it is shown only once)."""
    from registry.server import entry

    settings = _operator_settings(data_dir, database_url)
    try:
        issued = entry.issue_admin_token(settings, name=name, expires_days=expires)
    except RuntimeError as exc:
        _fail(str(exc))
        return
    err.print(f"admin token {issued.id} created by {entry.operator_actor()} (audited)")
    sys.stdout.write(f"{issued.secret}\n")


def main() -> None:
    """Console-script entry point: library errors become one readable line and exit 1."""
    from registry.errors import AuthenticationError

    try:
        app()
    except AuthenticationError as exc:
        err.print(f"error: {exc.diagnostics()} (the token in MODELSEAL_TOKEN was not accepted: "
                  "expired, revoked or mistyped?)", highlight=False, markup=False)  # fmt: skip
        sys.exit(1)
    except (RegistryError, AttestError) as exc:
        err.print(f"error: {exc.diagnostics()}", highlight=False, markup=False)
        sys.exit(1)
    except OSError as exc:  # a file named on the command line cannot be read or written
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
