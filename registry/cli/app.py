"""The ``modelseal`` Typer app: the root options, then every command in the order ``--help``
lists them (each defined in the module of its group), and :func:`main`, the console script."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from attest.errors import AttestError
from registry.cli import admin, artifacts, evidence, governance, serve
from registry.cli.common import err
from registry.errors import RegistryError

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


# Every command, in the order `modelseal --help` lists them.
app.command()(serve.serve)
app.command()(artifacts.push)
app.command()(artifacts.pull)
app.command("list")(artifacts.list_)
app.command()(artifacts.show)
app.command()(artifacts.register)
app.command()(artifacts.manifest)
app.command()(artifacts.sbom)
app.command()(artifacts.provenance)
app.command()(evidence.keygen)
app.add_typer(governance.identity_app, name="identity")
app.command()(evidence.attest)
app.command()(evidence.attestations)
app.command("verify-signature")(evidence.verify_signature)
app.command()(evidence.scan)
app.add_typer(governance.policy_app, name="policy")
app.command()(governance.release)
app.command()(governance.reject)
app.command()(governance.revoke)
app.add_typer(governance.alias_app, name="alias")
app.add_typer(admin.token_app, name="token")
app.add_typer(admin.audit_app, name="audit")
app.command()(evidence.export)
app.command("verify-evidence")(evidence.verify_evidence_cmd)
app.command()(evidence.verify)
app.add_typer(admin.admin_app, name="admin")


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
