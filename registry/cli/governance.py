"""Governance (admins and releasers): trusted identities, release policies, release / reject /
revoke, aliases."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from registry.cli import reads
from registry.cli.common import (
    connect,
    err,
    fatal,
    printable,
)

identity_app = typer.Typer(help="Signers the registry trusts (admins).", no_args_is_help=True)


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
    with connect() as client:
        if key is not None:
            if sigstore_issuer or sigstore_identity:
                fatal("--key and --sigstore-* exclude each other")
            record = client.add_key_identity(name, key.read_text())
        elif sigstore_issuer and sigstore_identity:
            record = client.add_sigstore_identity(
                name, issuer=sigstore_issuer, identity=sigstore_identity, regex=regex
            )
        else:
            fatal("give --key FILE, or --sigstore-issuer URL and --sigstore-identity ID")
    err.print(f"identity {record.name} added ({record.fingerprint or record.sigstore_identity})")


@identity_app.command("list")
def identity_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List trusted identities."""
    reads.identity_list(as_json)


policy_app = typer.Typer(help="Release policies per namespace (admins).", no_args_is_help=True)


@policy_app.command("set")
def policy_set(
    namespace: Annotated[str, typer.Argument(help="Namespace.")],
    file: Annotated[Path, typer.Argument(help="Policy YAML.")],
) -> None:
    """Validate and store a new policy revision."""
    with connect() as client:
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
    reads.policy_show(namespace)


def release(ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")]) -> None:
    """Run the release gate; on failure print every reason on its own line and exit 1."""
    from registry.errors import ReleaseRefusedError

    with connect() as client:
        try:
            version = client.release(ref)
        except ReleaseRefusedError as exc:
            err.print(f"{ref}: release refused", highlight=False)
            for reason in exc.facts.get("reasons", []):
                sys.stdout.write(f"{printable(str(reason), lines=False)}\n")
            raise typer.Exit(1) from None
    err.print(f"released {version.namespace}/{version.name}@{version.version}")
    sys.stdout.write(printable(version.root_digest) + "\n")


def reject(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
) -> None:
    """Reject a pending version for good."""
    with connect() as client:
        version = client.reject(ref, reason)
    err.print(f"rejected {version.namespace}/{version.name}@{version.version}: {reason}")


def revoke(
    ref: Annotated[str, typer.Argument(help="NS/NAME@VERSION")],
    reason: Annotated[str, typer.Option(help="Why (shown to every later pull).")],
) -> None:
    """Revoke a released version and every release built on it (transitively, through
    provenance); print each one revoked with it and every alias now pointing at a revoked one."""
    with connect() as client:
        result = client.revocation(ref, reason)
    version = result.version
    err.print(f"revoked {version.namespace}/{version.name}@{version.version}")
    newly = {item.version for item in result.revoked}
    for item in result.revoked:
        if item.built_on is not None:
            sys.stdout.write(
                printable(f"revoked with it: {item.version} (built on {item.built_on})\n")
            )
    for dependent in result.dependents:
        if dependent not in newly:
            sys.stdout.write(printable(f"built on it, revoked already: {dependent}\n"))
    for alias in result.aliases:
        sys.stdout.write(printable(f"alias {alias.alias} points at revoked {alias.version}\n"))


alias_app = typer.Typer(help="Aliases (prod, staging…) of released versions.", no_args_is_help=True)


@alias_app.command("set")
def alias_set(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    version: Annotated[str, typer.Argument(help="A released version.")],
) -> None:
    """Point ALIAS at a released VERSION."""
    namespace, _, name = artifact.partition("/")
    with connect() as client:
        move = client.set_alias(namespace, name, alias, version)
    err.print(f"{artifact}@{alias}: {move.from_version or '(new)'} -> {move.to_version}")


@alias_app.command("list")
def alias_list(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Aliases of an artifact; one that points at a revoked version is flagged."""
    reads.alias_list(artifact, as_json)


@alias_app.command("history")
def alias_history(
    artifact: Annotated[str, typer.Argument(help="NS/NAME")],
    alias: Annotated[str, typer.Argument(help="Alias name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every move of an alias: who, when, from, to."""
    reads.alias_history(artifact, alias, as_json)
