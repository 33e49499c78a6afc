"""Administration: API tokens and the audit log over the API; ``admin …`` are operator commands
run on the server, against the database and store, not the API (through
:mod:`registry.server.entry`, imported inside the command)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli import reads
from registry.cli.common import (
    Table,
    apply_log_options,
    connect,
    err,
    fatal,
    print_json,
    print_table,
    warn_password_on_argv,
)
from registry.cli.logflags import MaxAgeOption, WitnessOption, WitnessThresholdOption

token_app = typer.Typer(help="API tokens (admins).", no_args_is_help=True)


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
    with connect() as client:
        token = client.create_token(label, role, namespace, expires)
    err.print(f"token {token.id} ({role}, {namespace or 'every namespace'})")
    sys.stdout.write(f"{token.token}\n")


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List tokens (never their secrets)."""
    reads.token_list(as_json)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str, typer.Argument(help="Token id (or ms_<id>; a whole token is reduced to its id).")
    ],
) -> None:
    """Revoke a token; it stops working at once."""
    from registry.sdk.client import token_id_of

    bare = token_id_of(token_id)  # never send or show a secret pasted with the id
    with connect() as client:
        client.revoke_token(bare)
    err.print(f"token ms_{bare} revoked")


audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("log")
def audit_log(
    since: Annotated[
        str | None, typer.Option(help="Only entries at or after this ISO time.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the audit log (auditors, admins)."""
    reads.audit_log(since, as_json)


@audit_app.command("verify")
def audit_verify(
    registry_key: Annotated[
        Path | None, typer.Option(help="The registry's public key (default: the pinned one).")
    ] = None,
    max_age: MaxAgeOption = None,
    witness: WitnessOption = None,
    witness_threshold: WitnessThresholdOption = None,
) -> None:
    """Check every link of the chain and the newest signed checkpoint; exit 1 at the first
    edited, removed or reordered entry. Then the transparency log: its newest checkpoint
    (pinned log key, fresh, witnesses) must extend the newest one this client saw (a consistency
    proof; a smaller or forked tree is refused, naming both), and every entry must hash into
    its root."""
    from registry.sdk.logcheck import requirements, verify_log
    from registry.sdk.pins import PinStore

    key = registry_key.read_bytes() if registry_key is not None else None
    with connect() as client:
        apply_log_options(client, max_age, witness, witness_threshold)
        count, head = client.verify_audit_log(registry_key=key)
        checkpoint, entries = verify_log(client, PinStore(), requirements(client))
    err.print(f"audit log intact: {count} entries, head sha256:{head}")
    err.print(f"transparency log consistent: {entries} entries, checkpoint "
              f"{checkpoint.describe()}")  # fmt: skip


admin_app = typer.Typer(
    help="Operator commands run on the server (they need the database, not an API token).",
    no_args_is_help=True,
)


admin_token_app = typer.Typer(help="Recover administrator access.", no_args_is_help=True)
admin_app.add_typer(admin_token_app, name="token")


_DataDir = Annotated[
    Path, typer.Option(help="The registry's data directory (as given to `serve`).")
]


_DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL (default: MODELSEAL_DATABASE_URL, else SQLite in the data "
                 "dir). Prefer the variable for a URL with a password."),
]  # fmt: skip


def _operator_settings(data_dir: Path, database_url: str | None, storage: str | None = None) -> Any:
    from registry.server import entry

    warn_password_on_argv(database_url)
    settings = entry.settings(data_dir, database_url, storage)
    if (
        settings.resolved_database_url.startswith("sqlite")
        and not (data_dir / "registry.db").is_file()
    ):
        fatal(f"{data_dir} holds no registry database (registry.db); give the data dir `serve` "
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
    from registry.errors import ConfigurationError
    from registry.server import entry

    settings = _operator_settings(data_dir, database_url)
    try:
        issued = entry.issue_admin_token(settings, name=name, expires_days=expires)
    except ConfigurationError as exc:
        fatal(exc.diagnostics())
    err.print(f"admin token {issued.id} created by {entry.operator_actor()} (audited)")
    sys.stdout.write(f"{issued.secret}\n")


_Storage = Annotated[
    str | None,
    typer.Option(help="s3://bucket/prefix or file:///path (default: MODELSEAL_STORAGE, else the "
                 "data dir)."),
]  # fmt: skip

_Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _report(report: Any, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    table = Table("kind", "subject", "detail")
    for f in report.findings:
        table.add_row(f.kind, f.subject, f.detail)
    if report.findings:
        print_table(table)


@admin_app.command("fsck")
def admin_fsck(
    data_dir: _DataDir,
    database_url: _DatabaseUrl = None,
    storage: _Storage = None,
    rehash: Annotated[
        bool, typer.Option("--rehash", help="Also read every blob and check its SHA-256.")
    ] = False,
    as_json: _Json = False,
) -> None:
    """Check the database against the blob store: every blob row's object present with its size
    (and digest, with --rehash), every object a row, every blob a version, no expired upload
    sessions, no staged uploads without a session. Exit 1 with a report when anything is found.
    Audited as operator:USER@HOST."""
    from registry.errors import ConfigurationError
    from registry.server import entry

    settings = _operator_settings(data_dir, database_url, storage)
    try:
        report = entry.fsck(settings, rehash=rehash)
    except ConfigurationError as exc:
        fatal(exc.diagnostics())
    _report(report, as_json)
    counts = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in report.counts.items())
    if report.clean:
        err.print(f"fsck: clean ({counts})")
        return
    found = ", ".join(f"{n} {kind}" for kind, n in report.tally().items())
    err.print(
        f"fsck: {found} (checked {counts}); `modelseal admin gc` collects garbage, not damage"
    )
    raise typer.Exit(1)


@admin_app.command("gc")
def admin_gc(
    data_dir: _DataDir,
    database_url: _DatabaseUrl = None,
    storage: _Storage = None,
    grace_hours: Annotated[
        float,
        typer.Option(
            min=0,
            help="Only collect what is older than this many hours (a push "
            "uploads its blobs before it names them in a version).",
        ),
    ] = 24,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be collected; change nothing.")
    ] = False,
    as_json: _Json = False,
) -> None:
    """Delete blobs no version references, objects with no blob row, expired upload sessions and
    staged uploads with no session, once older than the grace period. A blob a version names is
    never deleted, and a file being written into place (written to in the last 10 minutes) is
    left whatever the grace period. Audited as operator:USER@HOST."""
    from registry.errors import ConfigurationError
    from registry.server import entry

    settings = _operator_settings(data_dir, database_url, storage)
    try:
        report = entry.collect_garbage(settings, grace_hours=grace_hours, dry_run=dry_run)
    except ConfigurationError as exc:
        fatal(exc.diagnostics())
    except ValueError as exc:
        fatal(str(exc))
    _report(report, as_json)
    done = ", ".join(f"{n} {kind}" for kind, n in report.tally().items()) or "nothing"
    err.print(f"gc{' --dry-run' if dry_run else ''}: {'would collect' if dry_run else 'collected'} "
              f"{done} (grace {grace_hours:g} h)")  # fmt: skip
