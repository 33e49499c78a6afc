"""The read commands' bodies: ``show``, ``list``, ``attestations``, ``identity list``, ``policy
show``, ``alias list``, ``alias history``, ``token list`` and ``audit log``.

Such a command is mostly start-up, so this module imports neither Typer nor pydantic: the Typer
commands (in :mod:`~registry.cli.artifacts`, :mod:`~registry.cli.evidence`…) call these
functions, and so does :mod:`registry.cli.quick`, which runs a plainly written read command
line without building the Typer app. The SDK answers with :mod:`registry.sdk.records`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from registry.cli.common import (
    Styled,
    Table,
    connect,
    echo,
    err,
    fatal,
    print_json,
    print_table,
    printable,
)
from registry.names import validate_name


def list_(target: str | None, as_json: bool) -> None:
    with connect() as client:
        if target is None:
            names = client.list_namespaces()
            if as_json:
                print_json(names)
            else:
                for name in names:
                    echo(name)
            return
        namespace, _, name = target.partition("/")
        validate_name(namespace, what="namespace")
        if not name:
            artifacts = client.list_artifact_records(namespace)
            if as_json:
                print_json([a.as_json() for a in artifacts])
                return
            table = Table("artifact", "kind", "versions", "created")
            for a in artifacts:
                table.add_row(
                    f"{a.namespace}/{a.name}",
                    a.kind,
                    str(a.version_count),
                    a.created_at.isoformat(),
                )
            print_table(table)
            return
        validate_name(name, what="artifact name")
        versions = client.list_version_records(namespace, name)
        if as_json:
            print_json([v.as_json() for v in versions])
            return
        table = Table("version", "state", "root digest", "files", "bytes", "created")
        for v in versions:
            table.add_row(
                v.version,
                f"{v.state} (external)" if v.external else v.state,
                v.root_digest,
                str(v.file_count),
                str(v.total_size),
                v.created_at.isoformat(),
            )
        print_table(table)


def show(ref: str, as_json: bool) -> None:
    with connect() as client:
        version = client.show_record(ref)
    if as_json:
        print_json(version.as_json())
        return
    echo(f"{version.namespace}/{version.name}@{version.version}")
    echo(f"  kind         {version.kind}")
    echo(f"  state        {version.state}")
    if version.state_reason:
        echo(f"  reason       {version.state_reason}")
    echo(f"  root digest  {version.root_digest}")
    if version.external:
        echo("  external     yes: registered by manifest; the registry holds no bytes")
    echo(f"  created      {version.created_at.isoformat()} by {version.created_by}")
    table = Table("path", "bytes", "sha256", *(["uri"] if version.external else []))
    for f in version.files:
        uri = [f.uri or ""] if version.external else []
        table.add_row(f.path, str(f.size), f.digest, *uri)
    print_table(table)


def attestations(ref: str, predicate_type: str | None, save: Path | None, as_json: bool) -> None:
    with connect() as client:
        records = client.list_attestation_records(ref, predicate_type)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            for r in records:
                (save / f"{r.id}.sigstore.json").write_bytes(client.get_attestation(ref, r.id))
    if as_json:
        print_json([r.as_json() for r in records])
        return
    table = Table("id", "predicate type", "signer", "bundle digest", "attached")
    for r in records:
        table.add_row(str(r.id), r.predicate_type, r.signer, r.bundle_digest,
                      r.created_at.isoformat())  # fmt: skip
    print_table(table)


def identity_list(as_json: bool) -> None:
    with connect() as client:
        records = client.list_identity_records()
    if as_json:
        print_json([r.as_json() for r in records])
        return
    table = Table("name", "kind", "key / identity", "issuer", "added")
    for r in records:
        who = r.fingerprint or (f"/{r.sigstore_identity}/" if r.regex else r.sigstore_identity)
        table.add_row(r.name, r.kind, who or "", r.sigstore_issuer or "", r.created_at.isoformat())
    print_table(table)


def policy_show(namespace: str) -> None:
    with connect() as client:
        record = client.policy_record(namespace)
    who = f", set by {record.created_by}" if record.created_by else " (default)"
    err.print(f"# {namespace}: revision {record.revision}{who}")
    sys.stdout.write(printable(record.document.rstrip("\n")) + "\n")


def alias_list(artifact: str, as_json: bool) -> None:
    namespace, _, name = artifact.partition("/")
    with connect() as client:
        aliases = client.list_alias_records(namespace, name)
    if as_json:
        print_json([a.as_json() for a in aliases])
        return
    table = Table("alias", "version", "state", "moved", "by")
    for a in aliases:
        state = Styled(f"{a.state} (!)", "red") if a.state != "released" else a.state
        table.add_row(a.alias, a.version, state, a.updated_at.isoformat(), a.updated_by)
    print_table(table)


def alias_history(artifact: str, alias: str, as_json: bool) -> None:
    namespace, _, name = artifact.partition("/")
    with connect() as client:
        moves = client.alias_history_records(namespace, name, alias)
    if as_json:
        print_json([m.as_json() for m in moves])
        return
    table = Table("when", "who", "from", "to")
    for m in moves:
        table.add_row(m.at.isoformat(), m.actor, m.from_version or "", m.to_version)
    print_table(table)


def token_list(as_json: bool) -> None:
    with connect() as client:
        tokens = client.list_token_records()
    if as_json:
        print_json([t.as_json(exclude={"token"}) for t in tokens])
        return
    table = Table("id", "name", "role", "namespace", "expires", "revoked")
    for t in tokens:
        table.add_row(t.id, t.name, t.role, t.namespace or "*",
                      t.expires_at.isoformat() if t.expires_at else "", str(t.revoked))  # fmt: skip
    print_table(table)


def audit_log(since: str | None, as_json: bool) -> None:
    from registry.sdk.records import AuditEntry, malformed, parse_list

    where = "GET /v1/audit/log"
    with connect() as client:
        entries = client.audit_entries()
    shown = parse_list(AuditEntry, entries, where)  # what the table shows is there, as text
    if since:
        from datetime import datetime

        try:
            cutoff = datetime.fromisoformat(since)
        except ValueError:
            fatal(f"--since {since!r} is not an ISO 8601 time (e.g. 2025-01-31 or "
                  "2025-01-31T12:00:00+00:00)")  # fmt: skip
        if cutoff.tzinfo is None:
            from datetime import UTC

            cutoff = cutoff.replace(tzinfo=UTC)
        kept = []
        for i, (entry, checked) in enumerate(zip(entries, shown, strict=True)):
            try:
                at = datetime.fromisoformat(checked.at)
            except ValueError:
                at = None
            if at is None or at.tzinfo is None:
                raise malformed(where, f"[{i}].at is {checked.at!r}, not a time with its offset")
            if at >= cutoff:
                kept.append((entry, checked))
        pairs = kept
    else:
        pairs = list(zip(entries, shown, strict=True))
    if as_json:
        print_json([entry for entry, _ in pairs])
        return
    table = Table("seq", "at", "actor", "action", "target", "outcome")
    for _, e in pairs:
        table.add_row(str(e.seq), e.at, e.actor, e.action, e.target, e.outcome)
    print_table(table)
