"""Artifacts: push, pull, list, show, register (external data), manifest, sbom, provenance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli import reads
from registry.cli.common import (
    apply_log_options,
    chosen_signer,
    connect,
    err,
    fatal,
    print_json,
    printable,
    transfer_progress,
    wide,
)
from registry.cli.logflags import MaxAgeOption, WitnessOption, WitnessThresholdOption
from registry.names import Kind


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

    signer = chosen_signer(sign_key, sigstore, sigstore_trust_config)
    if signer is not None and signature is not None:
        fatal("--signature and --sign-key/--sigstore exclude each other")
    provenance_flags = {
        "--dataset": dataset, "--base-model": base_model, "--code": code,
        "--git-repo": git_repo, "--git-commit": git_commit, "--param": param,
        "--builder-id": builder_id, "--environment": environment, "--source": source,
        "--task": task, "--architecture": architecture, "--considerations": considerations,
        "--description": description, "--classification": classification, "--owner": owner,
    }  # fmt: skip
    given = [flag for flag, value in provenance_flags.items() if value]
    if given and signer is None:
        fatal(f"{given[0]} goes into signed provenance: it needs --sign-key FILE or --sigstore")
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
    with connect() as client:
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
        from registry.errors import ConnectionFailedError, ServiceUnavailableError

        try:
            with transfer_progress(f"push {ref}", progress) as (on_total, advance):
                if run is not None:
                    version = run.push(directory, progress=advance, on_total=on_total,
                                       follow_symlinks_within=within)  # fmt: skip
                else:
                    version = client.push(directory, ref, kind=kind, progress=advance,
                                          on_total=on_total, signature=bundle,
                                          follow_symlinks_within=within)  # fmt: skip
        except (ConnectionFailedError, ServiceUnavailableError) as exc:
            fatal(f"{exc.diagnostics()}; the bytes already sent are kept for a while: run the "
                  "same push again to resume where it stopped")  # fmt: skip
        if version.state == "scanning":
            # Many files: committed, scanned in the background; the verdict is what a push
            # reports (a rejected version fails the command).
            from registry.sdk.pull import SCAN_WAIT_SECONDS, wait_scanned

            err.print(f"the registry is scanning {version.file_count} files…")
            version = wait_scanned(client, ref, timeout=SCAN_WAIT_SECONDS)
    if run is not None:
        err.print("OMS signature and SLSA provenance attached")
    elif bundle is not None:
        err.print("OMS signature attached")
    if version.state == "rejected":
        from rich.markup import escape

        reason = escape(printable(version.state_reason or "", lines=False))
        err.print(f"[red]rejected[/red]: {reason}", highlight=False, markup=True)
        sys.stdout.write(printable(version.root_digest) + "\n")
        raise typer.Exit(1)
    err.print(
        f"pushed {version.namespace}/{version.name}@{version.version} "
        f"({version.file_count} files, {version.total_size} bytes, {version.state})"
    )
    sys.stdout.write(printable(version.root_digest) + "\n")


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
        fatal("--code and --git-repo/--git-commit exclude each other")
    if code:
        run.use_code(code)
    elif git_repo or git_commit:
        if not (git_repo and git_commit):
            fatal("--git-repo and --git-commit go together")
        run.use_git(str(git_repo), str(git_commit))
    elif detect and run.detect_git(Path.cwd(), allow_dirty=allow_dirty):
        if run.git is not None and run.git.dirty:
            err.print("[yellow]warning:[/yellow] the git checkout is dirty (recorded)", markup=True)
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
        bool,
        typer.Option(
            "--allow-downgrade",
            help="Accepted for compatibility; no longer needed: an alias follows its newest move "
            "in the transparency log, a logged rollback included (printed as one). An alias "
            "state the log does not hold is refused even with this flag.",
        ),
    ] = False,
    unsafe_skip_verify: Annotated[
        bool,
        typer.Option(
            "--unsafe-skip-verify",
            help="UNSAFE: skip the release evidence and the transparency log's checks (digests "
            "still checked).",
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
    max_age: MaxAgeOption = None,
    witness: WitnessOption = None,
    witness_threshold: WitnessThresholdOption = None,
) -> None:
    """Download a version, verifying its evidence, its current signed status (not revoked,
    nor built on a revoked version), its newest status event in the transparency log (and an
    alias's newest logged move) in a fresh checkpoint extending the one seen before, and every
    byte before anything lands."""
    if unsafe_skip_verify:
        err.print("[red]WARNING[/red]: --unsafe-skip-verify: the release evidence is NOT checked",
                  markup=True)  # fmt: skip
    key = registry_key.read_bytes() if registry_key is not None else None
    if bool(policy) != bool(trust):
        fatal("--policy and --trust go together")
    local_trust = None
    if trust is not None:
        from attest.trust import parse_trust

        local_trust = parse_trust(trust.read_text(), trust.parent)
    with connect() as client, transfer_progress(f"pull {ref}", progress) as (on_total, advance):
        import warnings

        client.storage_redirects = not via_registry
        apply_log_options(client, max_age, witness, witness_threshold)
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
    sys.stdout.write(printable(version.root_digest) + "\n")


def list_(
    target: Annotated[str | None, typer.Argument(help="NS or NS/NAME")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List namespaces, the artifacts of a namespace, or the versions of an artifact."""
    reads.list_(target, as_json)


def show(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION, @ALIAS or @sha256:<digest>")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one version and its files."""
    reads.show(ref, as_json)


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
    signer = chosen_signer(sign_key, sigstore, None)
    with connect() as client:
        if signer is None:
            if source or builder_id or param or description or classification or owner:
                fatal("provenance flags need --sign-key FILE or --sigstore")
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
    sys.stdout.write(printable(version.root_digest) + "\n")


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
    print_json({"files": [
        {"path": d.path, "size": d.size, "sha256": d.sha256, "uri": f"{base}/{d.path}"}
        for d in digests
    ]})  # fmt: skip


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

    with connect() as client:
        key = registry_key.read_bytes() if registry_key else None
        print_json(verified_bom(client, ref, registry_key=key, validate_schema=validate_schema))


def provenance(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The lineage tree: model <- datasets <- their sources, code, base models <- …"""
    from rich.tree import Tree

    from registry.sdk.lineage import lineage

    with connect() as client:
        root = lineage(client, ref)
    if as_json:
        print_json(root)
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
            grow(tree.add(printable(label(child)), highlight=False), child)
        for uri in node.get("sources", []):
            tree.add(printable(f"source {uri}"), highlight=False)

    tree = Tree(printable(label(root)), highlight=False)
    grow(tree, root)
    wide().print(tree)
